"""Text as files a person can read: plain .txt files and monospace text rendered to a PNG."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def save_text(text: str, path: str | Path) -> Path:
    """Write `text` (plus a final newline) to `path`, creating its folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")
    return path


def text_panel(text: str, path: str | Path, fontsize: int = 9) -> Path:
    """Render monospace text to a PNG (the text panels of discrete diffusion)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = text.split("\n")
    width = max(len(s) for s in lines) if lines else 1
    fig = plt.figure(figsize=(max(4.0, 0.075 * width * fontsize / 9), max(1.0, 0.16 * len(lines) * fontsize / 9)))
    fig.text(0.01, 0.99, text, family="monospace", fontsize=fontsize, va="top", ha="left")
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path

"""Line plots with matplotlib (Agg: no display needed)."""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def save_figure(fig, path: str | Path, dpi: int | None = None) -> Path:
    """Lay out, write (creating the folder) and close a matplotlib figure; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi or "figure")
    plt.close(fig)
    return path


def moving_average(values, window: int) -> np.ndarray:
    v = np.asarray(values, dtype=float)
    window = max(1, min(window, len(v)))
    c = np.cumsum(np.insert(v, 0, 0.0))
    head = c[1:window] / np.arange(1, window)  # shorter windows at the start, no lag-free gap
    return np.concatenate([head, (c[window:] - c[:-window]) / window])


def plot_loss(csv_path: str | Path, png_path: str | Path, window: int = 20) -> Path:
    """Plot every loss column of a loss log ("loss", or a GAN's "d_loss" and "g_loss") against step,
    raw and smoothed. A column a row lacks (a generator updated every n_critic steps) is skipped there."""
    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    names = [k for k in (rows[0] if rows else {}) if k == "loss" or k.endswith("_loss")]
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=120)
    positive = True
    spread = 1.0
    for i, name in enumerate(names):
        pts = [(int(r["step"]), float(r[name])) for r in rows if r.get(name) not in (None, "")]
        if not pts:
            continue
        steps, loss = zip(*pts)
        color = f"C{i}"
        ax.plot(steps, loss, alpha=0.35, lw=1, color=color, label=name)
        ax.plot(steps, moving_average(loss, window), lw=2, color=color, label=f"{name}, moving average ({window})")
        positive = positive and min(loss) > 0
        spread = max(spread, max(loss) / min(loss) if min(loss) > 0 else 1.0)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    if names and positive and spread > 20:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    if names:
        ax.legend(fontsize=8)
    return save_figure(fig, png_path)

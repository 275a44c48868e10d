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
    """Plot the loss column of a loss log against step, raw and smoothed."""
    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    steps = [int(r["step"]) for r in rows]
    loss = [float(r["loss"]) for r in rows]
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=120)
    ax.plot(steps, loss, alpha=0.35, lw=1, label="loss")
    if loss:
        ax.plot(steps, moving_average(loss, window), lw=2, label=f"moving average ({window})")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    if loss and min(loss) > 0 and max(loss) / min(loss) > 20:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    return save_figure(fig, png_path)

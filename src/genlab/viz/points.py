"""Plots of 2-D point clouds: scatter plots, trajectories and GIFs (no model knowledge; any layer may write them)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from .plots import save_figure  # noqa: E402

LIM = 3.0  # toy2d data are standardised: +-3 shows every shape and most of N(0, I)


def _style(ax, title: str | None = None, lim: float = LIM) -> None:
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=8)


def scatter_plot(points: torch.Tensor, path: str | Path, title: str | None = None,
                 color: str = "tab:blue") -> Path:
    """One scatter plot of (N, 2) points."""
    p = points.detach().cpu().float()
    fig, ax = plt.subplots(figsize=(3.6, 3.6), dpi=120)
    ax.scatter(p[:, 0], p[:, 1], s=2, alpha=0.5, color=color, linewidths=0)
    _style(ax, title)
    return save_figure(fig, path)


def trajectory_plot(panels: list[tuple[list[torch.Tensor], str]], path: str | Path, k: int = 48,
                    data: torch.Tensor | None = None) -> Path:
    """One panel per (frames, title): paths of the first k points from x_T (black) to x_0 (coloured)."""
    fig, axes = plt.subplots(1, len(panels), figsize=(4.0 * len(panels), 4.2), dpi=110, squeeze=False)
    colors = plt.cm.viridis(torch.linspace(0, 1, k).numpy())
    for ax, (frames, title) in zip(axes[0], panels):
        pts = torch.stack([f[:k].cpu().float() for f in frames])  # (F, k, 2)
        if data is not None:
            d = data.cpu().float()
            ax.scatter(d[:, 0], d[:, 1], s=1, alpha=0.15, color="tab:grey", linewidths=0)
        for i in range(pts.shape[1]):
            ax.plot(pts[:, i, 0], pts[:, i, 1], lw=0.6, alpha=0.7, color=colors[i])
        ax.scatter(pts[0, :, 0], pts[0, :, 1], s=6, color="black", alpha=0.5, label="x_T")
        ax.scatter(pts[-1, :, 0], pts[-1, :, 1], s=10, color=colors[: pts.shape[1]], edgecolors="black",
                   linewidths=0.3, label="x_0")
        ax.legend(fontsize=7, loc="upper right")
        _style(ax, title)
    return save_figure(fig, path)


def _raster(points: torch.Tensor, size: int, lim: float = LIM) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel rows and columns of points in [-lim, lim]^2 on a size x size canvas (y up)."""
    p = points.detach().cpu().float()
    col = ((p[:, 0] + lim) / (2 * lim) * (size - 1)).round().long()
    row = ((lim - p[:, 1]) / (2 * lim) * (size - 1)).round().long()
    keep = (col >= 0) & (col < size) & (row >= 0) & (row < size)
    return row[keep], col[keep]


def points_gif(frames: list[torch.Tensor], path: str | Path, data: torch.Tensor | None = None,
               size: int = 256, duration_ms: int = 80, hold_last_ms: int = 1500) -> Path:
    """Animate the point cloud through the frames: blue points over the data in light grey (+-3 shown)."""
    background = torch.full((size, size, 3), 255, dtype=torch.uint8)
    if data is not None:
        r, c = _raster(data, size)
        background[r, c] = torch.tensor([200, 200, 200], dtype=torch.uint8)
    pics = []
    for f in frames:
        img = background.clone()
        r, c = _raster(f, size)
        for dr in (0, 1):  # 2 x 2 pixel dots
            for dc in (0, 1):
                img[(r + dr).clamp(max=size - 1), (c + dc).clamp(max=size - 1)] = torch.tensor([31, 119, 180],
                                                                                              dtype=torch.uint8)
        pics.append(Image.fromarray(img.numpy()))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    durations = [duration_ms] * (len(pics) - 1) + [hold_last_ms]
    pics[0].save(path, save_all=True, append_images=pics[1:], duration=durations, loop=0)
    return path

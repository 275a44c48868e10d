"""Image grids and GIFs with PIL (no torchvision needed)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..pixels import to_uint8_image


def make_grid(images: torch.Tensor, nrow: int | None = None, padding: int = 2, pad_value: int = 255) -> np.ndarray:
    """Tile N,C,H,W images in [-1, 1] into one H',W',C uint8 array (nrow = images per row)."""
    images = to_uint8_image(images.detach().cpu())
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    n, c, h, w = images.shape
    nrow = nrow or math.ceil(math.sqrt(n))
    rows = math.ceil(n / nrow)
    grid = np.full((rows * (h + padding) + padding, nrow * (w + padding) + padding, c), pad_value, np.uint8)
    arr = images.permute(0, 2, 3, 1).numpy()
    for i in range(n):
        r, col = divmod(i, nrow)
        y, x = padding + r * (h + padding), padding + col * (w + padding)
        grid[y : y + h, x : x + w] = arr[i]
    return grid


def _upscale(img: Image.Image, min_side: int) -> Image.Image:
    # tiny 28-px images are unreadable at 1:1; nearest-neighbour keeps pixels honest
    s = max(1, math.ceil(min_side / min(img.size)))
    return img.resize((img.width * s, img.height * s), Image.NEAREST) if s > 1 else img


def save_grid(images: torch.Tensor, path: str | Path, nrow: int | None = None, min_side: int = 256) -> Path:
    """Save images in [-1, 1] as a PNG grid; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _upscale(Image.fromarray(make_grid(images, nrow)), min_side).save(path)
    return path


def save_strip(rows: list[torch.Tensor], path: str | Path, min_side: int = 256) -> Path:
    """Save several equally long image rows (each N,C,H,W) stacked as one picture."""
    return save_grid(torch.cat(rows), path, nrow=rows[0].shape[0], min_side=min_side)


def save_gif(frames: list[torch.Tensor], path: str | Path, nrow: int | None = None,
             duration_ms: int = 60, hold_last_ms: int = 1500, min_side: int = 256) -> Path:
    """Animate a list of image batches (each N,C,H,W in [-1, 1]) as a looping GIF."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pics = [_upscale(Image.fromarray(make_grid(f, nrow)), min_side) for f in frames]
    durations = [duration_ms] * (len(pics) - 1) + [hold_last_ms]
    pics[0].save(path, save_all=True, append_images=pics[1:], duration=durations, loop=0, optimize=False)
    return path

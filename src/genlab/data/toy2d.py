"""Toy 2-D point clouds, the classic test beds for density models and diffusion.

Every shape is scaled by one fixed affine map (mean and isotropic std of a
100k-point reference sample) to roughly zero mean and unit std, so models
can use the same noise scale for all of them and train/test share one map.
Shapes with natural components carry labels (moons: 2, 8gaussians: 8, rings: 3).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from ..errors import GenlabError
from .base import TensorDataset
from .registry import register_dataset

DEFAULT_N = {"train": 10000, "test": 2000}
_SPLIT_ID = {"train": 0, "test": 1}


def swiss_roll(n, rng):
    t = 1.5 * np.pi * (1 + 2 * rng.random(n))
    x = np.stack([t * np.cos(t), t * np.sin(t)], 1) + 0.4 * rng.standard_normal((n, 2))
    return x, None


def moons(n, rng):
    """Two interleaving half circles (as sklearn's make_moons)."""
    y = rng.integers(2, size=n)
    theta = np.pi * rng.random(n)
    upper = np.stack([np.cos(theta), np.sin(theta)], 1)
    lower = np.stack([1 - np.cos(theta), 0.5 - np.sin(theta)], 1)
    x = np.where(y[:, None] == 0, upper, lower) + 0.08 * rng.standard_normal((n, 2))
    return x, y


def eight_gaussians(n, rng):
    """Mixture of 8 narrow Gaussians on a circle."""
    y = rng.integers(8, size=n)
    angle = y * (np.pi / 4)
    x = np.stack([np.cos(angle), np.sin(angle)], 1) + 0.08 * rng.standard_normal((n, 2))
    return x, y


def checkerboard(n, rng):
    """Uniform on the black cells of a 4x4 board."""
    x1 = rng.uniform(-2, 2, n)
    x2 = rng.uniform(0, 1, n) - 2 * rng.integers(2, size=n)  # one of two cells per column half
    x2 = x2 + (np.floor(x1) % 2)
    return np.stack([x1, x2], 1), None


def rings(n, rng):
    """Three concentric noisy circles of radius 1, 2, 3."""
    y = rng.integers(3, size=n)
    theta = 2 * np.pi * rng.random(n)
    x = (y + 1.0)[:, None] * np.stack([np.cos(theta), np.sin(theta)], 1) + 0.08 * rng.standard_normal((n, 2))
    return x, y


TOY_SHAPES = {"swiss_roll": swiss_roll, "moons": moons, "8gaussians": eight_gaussians,
              "checkerboard": checkerboard, "rings": rings}
NUM_CLASSES = {"moons": 2, "8gaussians": 8, "rings": 3}


@lru_cache(maxsize=None)
def _standardiser(shape: str) -> tuple[np.ndarray, float]:
    ref, _ = TOY_SHAPES[shape](100_000, np.random.default_rng(12345))
    return ref.mean(0), float(ref.std())


def load_toy2d(split: str = "train", shape: str = "swiss_roll", n: int | None = None, seed: int = 0) -> TensorDataset:
    """n points (default 10000 train / 2000 test) of a 2-D toy distribution, float32 (n, 2)."""
    if shape not in TOY_SHAPES:
        raise GenlabError(f"unknown toy2d shape {shape!r}; valid: {', '.join(TOY_SHAPES)}")
    if split not in _SPLIT_ID:
        raise GenlabError(f"toy2d has splits train and test, not {split!r}")
    n = DEFAULT_N[split] if n is None else n
    x, y = TOY_SHAPES[shape](n, np.random.default_rng([seed, _SPLIT_ID[split]]))
    mean, std = _standardiser(shape)
    tensors = {"x": torch.from_numpy(((x - mean) / std).astype(np.float32))}
    classes = []
    if y is not None:
        tensors["y"] = torch.from_numpy(y.astype(np.int64))
        classes = [str(c) for c in range(NUM_CLASSES[shape])]
    return TensorDataset("toy2d", "points", tensors, classes=classes,
                         meta={"shape": shape, "source": f"procedural (genlab.data.toy2d, seed={seed})"})


register_dataset("toy2d", load_toy2d, f"2-D point clouds: shape={'|'.join(TOY_SHAPES)}", kind="points")

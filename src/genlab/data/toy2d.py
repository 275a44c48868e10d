"""Toy 2-D point clouds, the classic test beds for density models and diffusion.

Every shape is scaled by one fixed affine map (mean and isotropic std of a
100k-point reference sample) to roughly zero mean and unit std, so models
can use the same noise scale for all of them and train/test share one map.
Shapes with natural components carry labels (moons: 2, 8gaussians: 8, grid25: 25, rings: 3).
The two Gaussian mixtures also know their modes (`mode_coverage`): the mode-collapse test beds of
the GAN literature (Metz et al. 2017; Srivastava et al. 2017, VEEGAN; Lin et al. 2018, PacGAN).
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


def grid25(n, rng):
    """Mixture of 25 narrow Gaussians on a 5x5 grid with spacing 1 (centres -2..2)."""
    y = rng.integers(25, size=n)
    return _grid_centres()[y] + 0.05 * rng.standard_normal((n, 2)), y


def _ring_centres():
    angle = np.arange(8) * (np.pi / 4)
    return np.stack([np.cos(angle), np.sin(angle)], 1)


def _grid_centres():
    k = np.arange(25)
    return np.stack([k // 5 - 2, k % 5 - 2], 1).astype(np.float64)


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


TOY_SHAPES = {"swiss_roll": swiss_roll, "moons": moons, "8gaussians": eight_gaussians, "grid25": grid25,
              "checkerboard": checkerboard, "rings": rings}
NUM_CLASSES = {"moons": 2, "8gaussians": 8, "grid25": 25, "rings": 3}
# mixtures of Gaussians: (centres in data units, the std of each component)
MODES = {"8gaussians": (_ring_centres, 0.08), "grid25": (_grid_centres, 0.05)}


@lru_cache(maxsize=None)
def _standardiser(shape: str) -> tuple[np.ndarray, float]:
    ref, _ = TOY_SHAPES[shape](100_000, np.random.default_rng(12345))
    return ref.mean(0), float(ref.std())


def mode_coverage(points: torch.Tensor, shape: str, min_count: int | None = None) -> dict[str, float]:
    """How many modes a sample of a Gaussian mixture covers, and how many of its points are good.

    Points are in the standardised units load_toy2d returns. A point is *high quality* when it lies
    within 3 std of its nearest mode's centre; a mode is *covered* when at least min_count high-quality
    points fall on it (VEEGAN's rule, 20 of 2,500 samples, scaled to len(points) by default).
    Returns modes (covered), num_modes, high_quality (fraction of all points).
    """
    if shape not in MODES:
        raise GenlabError(f"toy2d shape {shape!r} has no modes to count; use one of: {', '.join(MODES)}")
    centres_fn, sigma = MODES[shape]
    mean, std = _standardiser(shape)
    centres = torch.from_numpy((centres_fn() - mean) / std)
    d = torch.cdist(points.double().reshape(-1, 2), centres)
    nearest, dist = d.argmin(1), d.min(1).values
    good = dist < 3 * sigma / std
    min_count = max(1, round(20 * len(points) / 2500)) if min_count is None else min_count
    counts = torch.bincount(nearest[good], minlength=len(centres))
    return {"modes": int((counts >= min_count).sum()), "num_modes": len(centres),
            "high_quality": float(good.double().mean()) if len(points) else 0.0}


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

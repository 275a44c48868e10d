"""Shapes: a procedural dataset of one coloured shape per image, with captions.

Every image shows one of 6 shapes in one of 8 colours, at one of 3 sizes and
in one of 9 positions (a 3x3 grid, jittered), slightly rotated, on a plain
dark background: "a small red circle in the top left". Labels are the shape;
colour, size and position ids are stored too (tensors "color", "size",
"position"), for conditioning. Nothing is downloaded, any resolution works,
and a (seed, split) pair always gives the same images.

Rendering is vectorised numpy: each shape is a signed distance function
(Inigo Quilez's formulas) evaluated at the pixel centres of a whole batch of
images, and a pixel's coverage is clip(0.5 - distance, 0, 1), i.e. the
fraction of a one-pixel box filter inside the edge. That is anti-aliasing
without supersampling, and 20k images at 32 px take well under a second.
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import GenlabError
from .base import TensorDataset
from .registry import register_dataset

SHAPES = ("circle", "square", "triangle", "diamond", "cross", "star")
COLORS = {
    "red": (225, 45, 45), "orange": (245, 140, 25), "yellow": (240, 215, 40), "green": (50, 180, 70),
    "cyan": (40, 200, 215), "blue": (45, 95, 235), "purple": (150, 75, 215), "pink": (245, 120, 190),
}
SIZES = {"small": 0.12, "medium": 0.18, "large": 0.25}  # half-extent as a fraction of the image side
POSITIONS = ("top left", "top", "top right", "left", "center", "right", "bottom left", "bottom", "bottom right")
_PHRASES = ("in the top left", "at the top", "in the top right", "on the left", "in the center", "on the right",
            "in the bottom left", "at the bottom", "in the bottom right")
BACKGROUND = (18, 18, 22)
DEFAULT_N = {"train": 20000, "test": 2000}
_SPLIT_ID = {"train": 0, "test": 1}


def caption(shape: int, color: int, size: int, position: int) -> str:
    return f"a {list(SIZES)[size]} {list(COLORS)[color]} {SHAPES[shape]} {_PHRASES[position]}"


def load_shapes(split: str = "train", image_size: int = 32, channels: int = 3, n: int | None = None,
                seed: int = 0) -> TensorDataset:
    """n images (default 20000 train / 2000 test) of side image_size; channels 1 gives grey."""
    if split not in _SPLIT_ID:
        raise GenlabError(f"shapes has splits train and test, not {split!r}")
    if image_size < 8:
        raise GenlabError(f"shapes needs image_size >= 8, got {image_size}")
    n = DEFAULT_N[split] if n is None else n
    rng = np.random.default_rng([seed, _SPLIT_ID[split]])
    attrs = {
        "shape": rng.integers(len(SHAPES), size=n),
        "color": rng.integers(len(COLORS), size=n),
        "size": rng.integers(len(SIZES), size=n),
        "position": rng.integers(len(POSITIONS), size=n),
    }
    geometry = _layout(attrs, image_size, rng)
    x = render(attrs["shape"], attrs["color"], geometry, image_size, channels)
    captions = [caption(*a) for a in zip(*(attrs[k].tolist() for k in ("shape", "color", "size", "position")))]
    tensors = {"x": torch.from_numpy(x), "y": torch.from_numpy(attrs["shape"].astype(np.int64))}
    tensors.update({k: torch.from_numpy(attrs[k].astype(np.int64)) for k in ("color", "size", "position")})
    meta = {"source": f"procedural (genlab.data.shapes, seed={seed})",
            "attributes": {"shape": list(SHAPES), "color": list(COLORS), "size": list(SIZES),
                           "position": list(POSITIONS)}}
    return TensorDataset("shapes", "image", tensors, classes=list(SHAPES), captions=captions, meta=meta)


def _layout(attrs: dict, side: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Centre (pixels), half-extent (pixels) and rotation of each shape."""
    n = len(attrs["shape"])
    extent = np.array(list(SIZES.values()))[attrs["size"]] * side * rng.uniform(0.92, 1.08, n)
    # grid cells: the outer columns/rows sit as far out as the shape allows, so a
    # large shape "on the left" still fits inside the image
    lo = 1.1 * extent + 0.04 * side
    row, col = np.divmod(attrs["position"], 3)
    jitter = rng.uniform(-0.04, 0.04, (2, n)) * side
    cx = np.clip(lo + col * (side / 2 - lo) + jitter[0], lo, side - lo)
    cy = np.clip(lo + row * (side / 2 - lo) + jitter[1], lo, side - lo)
    angle = np.deg2rad(rng.uniform(-12, 12, n))
    return {"cx": cx, "cy": cy, "extent": extent, "angle": angle}


def render(shape: np.ndarray, color: np.ndarray, geo: dict, side: int, channels: int = 3) -> np.ndarray:
    """uint8 (N, channels, side, side) images, rendered in batches to bound memory."""
    n = len(shape)
    out = np.empty((n, channels, side, side), np.uint8)
    palette = np.array(list(COLORS.values()), np.float32)
    background = np.array(BACKGROUND, np.float32)
    pix = np.arange(side, dtype=np.float32) + 0.5  # pixel centres
    step = max(1, (1 << 21) // (side * side))
    for s in range(0, n, step):
        sl = slice(s, min(n, s + step))
        g = {k: v[sl].astype(np.float32)[:, None, None] for k, v in geo.items()}
        dx = pix[None, None, :] - g["cx"]
        dy = g["cy"] - pix[None, :, None]  # y points up, as in the distance formulas
        cos, sin = np.cos(g["angle"]), np.sin(g["angle"])
        u, v = cos * dx + sin * dy, cos * dy - sin * dx  # rotate the shape by `angle`
        dist = np.empty(u.shape, np.float32)
        for k, sdf in enumerate(_SDF):
            m = shape[sl] == k
            if m.any():
                dist[m] = sdf(u[m], v[m], g["extent"][m])
        alpha = np.clip(0.5 - dist, 0.0, 1.0)[..., None]  # N,H,W,1 coverage
        rgb = background + alpha * (palette[color[sl]][:, None, None, :] - background)
        if channels == 1:
            rgb = rgb @ np.array([[0.299], [0.587], [0.114]], np.float32)  # BT.601 luma
        out[sl] = np.rint(rgb).astype(np.uint8).transpose(0, 3, 1, 2)
    return out


# Signed distances in pixels (negative inside) for a shape of half-extent e at the
# origin, after https://iquilezles.org/articles/distfunctions2d/. Sizes are tuned
# so that the shapes look about equally big.

def _box(u, v, bx, by):
    qx, qy = np.abs(u) - bx, np.abs(v) - by
    return np.hypot(np.maximum(qx, 0), np.maximum(qy, 0)) + np.minimum(np.maximum(qx, qy), 0)


def _circle(u, v, e):
    return np.hypot(u, v) - 0.9 * e


def _square(u, v, e):
    return _box(u, v, 0.8 * e, 0.8 * e)


def _diamond(u, v, e):
    s = np.float32(np.sqrt(0.5))
    return _box((u + v) * s, (v - u) * s, 0.75 * e, 0.75 * e)


def _cross(u, v, e):
    return np.minimum(_box(u, v, 0.95 * e, 0.32 * e), _box(u, v, 0.32 * e, 0.95 * e))


def _triangle(u, v, e):
    """Equilateral, pointing up, bounding box centred on the origin."""
    k, r = np.float32(np.sqrt(3.0)), 1.0 * e  # r = half the side
    px = np.abs(u) - r
    py = v + r / (2 * k) + r / k
    fold = px + k * py > 0
    px, py = np.where(fold, (px - k * py) / 2, px), np.where(fold, (-k * px - py) / 2, py)
    px = px - np.clip(px, -2 * r, 0)
    return -np.hypot(px, py) * np.sign(py)


def _star(u, v, e, inner=0.5):
    """Five-pointed star with outer radius r; bounding box centred on the origin."""
    r = 1.08 * e
    k1x, k1y = np.float32(0.809016994), np.float32(-0.587785252)
    px, py = np.abs(u), v + 0.0955 * r  # the star's box centre sits 0.0955 r above its own centre
    d = np.maximum(k1x * px + k1y * py, 0)
    px, py = px - 2 * d * k1x, py - 2 * d * k1y
    d = np.maximum(-k1x * px + k1y * py, 0)
    px, py = px + 2 * d * k1x, py - 2 * d * k1y
    px, py = np.abs(px), py - r
    bax, bay = -inner * k1y, inner * k1x - 1
    h = np.clip((px * bax + py * bay) / (bax * bax + bay * bay), 0, r)
    return np.hypot(px - bax * h, py - bay * h) * np.sign(py * bax - px * bay)


_SDF = (_circle, _square, _triangle, _diamond, _cross, _star)  # same order as SHAPES

register_dataset("shapes", load_shapes,
                 "procedural coloured shapes with captions (6 shapes x 8 colours x 3 sizes x 9 positions)")

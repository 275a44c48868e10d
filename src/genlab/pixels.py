"""The one mapping between stored pixels (uint8 [0, 255]) and model images (float [-1, 1]).

Low level on purpose: datasets decode batches with it, and the image writers
(genlab.viz) encode pictures with it, without either depending on the other.
"""

from __future__ import annotations

import torch


def to_float_image(x: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1] (the convention of every model here)."""
    return x.float().div_(127.5).sub_(1.0)


def to_uint8_image(x: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] -> uint8 [0, 255], clamped and rounded."""
    return ((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)

"""Write samples where a person can see them, whatever they are.

`save_samples(samples, path)` takes what a family's `present(samples)` returns:
images (float N,C,H,W in [-1, 1]) -> a PNG grid at `path`; 2-D points (float N,2)
-> a scatter plot at `path`; text (a list of strings) -> `path` with suffix .txt,
one per line. The training loop and `genlab sample` call it; it knows no model.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .grid import save_grid
from .points import scatter_plot
from .text import save_text


def save_samples(samples: torch.Tensor | list[str], path: str | Path, nrow: int | None = None) -> list[Path]:
    """Write images, points or lines of text (see the module docstring); returns the paths written."""
    path = Path(path)
    if isinstance(samples, (list, tuple)):
        return [save_text("\n".join(samples), path.with_suffix(".txt"))]
    if samples.dim() == 4:
        return [save_grid(samples, path, nrow=nrow)]
    if samples.dim() == 2 and samples.dtype.is_floating_point and samples.shape[1] == 2:
        return [scatter_plot(samples, path, title=f"{len(samples)} samples")]
    return []

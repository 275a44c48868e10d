"""Pictures of GANs (the gan and toy-gan families).

gan:
  interpolation.png   rows = pairs of latents z0, z1; columns = G(slerp(z0, z1, a)) for a in [0, 1]
  interpolation.gif   the same walk for 16 pairs at once, frame by frame (and back)
  class_grid.png      (conditional GANs) one row per class; each column one z shared by every row,
                      so a column shows what z controls and a row what the class controls
toy-gan:
  samples_vs_data.png samples over held-out points with the mode centres, modes covered and quality
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from ..data.toy2d import MODES, mode_coverage  # noqa: E402
from ..viz.grid import save_gif  # noqa: E402
from ..viz.plots import save_figure  # noqa: E402
from ..viz.points import _style  # noqa: E402
from .samplers import labelled_rows, slerp  # noqa: E402


@torch.no_grad()
def latent_walk(model, pairs: int, frames: int, generator: torch.Generator | None = None,
                y: torch.Tensor | None = None) -> list[torch.Tensor]:
    """frames batches of `pairs` images: G(slerp(z0, z1, a)) for a = 0 .. 1 (slerp keeps |z| typical)."""
    z0, z1 = model.noise(pairs, generator), model.noise(pairs, generator)
    return [model.sample(pairs, z=slerp(z0, z1, a), y=y).cpu() for a in torch.linspace(0, 1, frames).tolist()]


def interpolation_figure(model, path: str | Path, pairs: int = 6, frames: int = 9,
                         generator: torch.Generator | None = None) -> Path:
    cols = latent_walk(model, pairs, frames, generator)
    rows = [torch.stack([c[i] for c in cols]) for i in range(pairs)]
    alphas = torch.linspace(0, 1, frames).tolist()
    return labelled_rows(rows, [f"pair {i + 1}" for i in range(pairs)], path, col_labels=[f"{a:.2g}" for a in alphas],
                         title="G(slerp(z0, z1, a)): a walk in the latent space")


def interpolation_gif(model, path: str | Path, pairs: int = 16, frames: int = 24,
                      generator: torch.Generator | None = None) -> Path:
    walk = latent_walk(model, pairs, frames, generator)
    return save_gif(walk + walk[-2:0:-1], path, nrow=4)


@torch.no_grad()
def class_grid(model, path: str | Path, per_class: int = 10, generator: torch.Generator | None = None,
               class_names: list[str] | None = None) -> Path:
    k = model.num_classes
    z = model.noise(per_class, generator)
    rows = [model.sample(per_class, z=z, y=torch.full((per_class,), c, dtype=torch.long)).cpu() for c in range(k)]
    names = class_names if class_names and len(class_names) == k else [str(c) for c in range(k)]
    return labelled_rows(rows, names, path, title="one row per class; one z per column")


def gan_artifacts(model, data, out_dir: Path, generator: torch.Generator) -> list[Path]:
    paths = [interpolation_figure(model, out_dir / "interpolation.png", generator=generator),
             interpolation_gif(model, out_dir / "interpolation.gif", generator=generator)]
    if model.num_classes:
        paths.append(class_grid(model, out_dir / "class_grid.png", generator=generator,
                                class_names=getattr(data, "classes", None)))
    return paths


@torch.no_grad()
def toy_gan_figure(model, data, path: str | Path, n: int = 2500, generator: torch.Generator | None = None) -> Path:
    """Samples (blue) over held-out points (grey); for Gaussian mixtures the mode centres and the counts."""
    samples = model.sample(n, generator=generator).cpu()
    real = data.x[:n].float()
    fig, ax = plt.subplots(figsize=(4.0, 4.2), dpi=120)
    ax.scatter(real[:, 0], real[:, 1], s=2, alpha=0.25, color="tab:grey", linewidths=0, label="data")
    ax.scatter(samples[:, 0], samples[:, 1], s=2, alpha=0.5, color="tab:blue", linewidths=0, label="samples")
    shape = data.meta.get("shape")
    title = f"{model.cfg.loss}: {n} samples"
    if shape in MODES:
        m = mode_coverage(samples, shape)
        title += f"\nmodes {m['modes']}/{m['num_modes']}, high quality {m['high_quality']:.0%}"
    ax.legend(fontsize=7, loc="upper right", markerscale=4)
    _style(ax, title)
    return save_figure(fig, path)


def toy_gan_artifacts(model, data, out_dir: Path, generator: torch.Generator) -> list[Path]:
    return [toy_gan_figure(model, data, out_dir / "samples_vs_data.png", generator=generator)]

"""The pictures each family leaves in its run folder, by family name.

    from genlab.figures.artifacts import save_artifacts
    paths = save_artifacts(model, test_data, run_folder, generator)

`genlab train` and the lab call this after training. Models draw no pictures
themselves: the figures layer sits above models and metrics, so a figure may
use both. A family not listed leaves no pictures.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .classifier import accuracy_vs_t_figure, confusion_figure
from .colorize import colorize_artifacts
from .diffusion import ddpm_artifacts
from .discrete import discrete_artifacts
from .gan import gan_artifacts, toy_gan_artifacts
from .latent import save_latent_artifacts
from .toy2d import toy_artifacts

# family -> figures(model, data, out_dir, generator) -> list of paths written
ARTIFACTS = {
    "classifier": confusion_figure,
    "noisy-classifier": accuracy_vs_t_figure,
    "ae": save_latent_artifacts,
    "vae": save_latent_artifacts,
    "hvae": save_latent_artifacts,
    "diffusion": ddpm_artifacts,
    "toy-diffusion": toy_artifacts,
    "discrete": discrete_artifacts,
    "gan": gan_artifacts,
    "toy-gan": toy_gan_artifacts,
    "colorize": colorize_artifacts,
}


def has_artifacts(model) -> bool:
    return model.family in ARTIFACTS


@torch.no_grad()
def save_artifacts(model, data, out_dir: str | Path, generator: torch.Generator | None = None) -> list[Path]:
    """Write the family's pictures of a trained `model` (in eval mode) on `data` into out_dir; their paths."""
    if model.family not in ARTIFACTS:
        return []
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    was_training = model.training
    model.eval()
    try:
        return ARTIFACTS[model.family](model, data, out_dir, g)
    finally:
        model.train(was_training)

"""The `toy-gan` family: the GAN step of models/gan.py on 2-D point clouds, with MLP networks.

Where the GAN losses are compared: on toy2d's 8gaussians ring and 25-Gaussian grid every mode is
known, so mode collapse is counted (genlab.data.toy2d.mode_coverage) instead of guessed from a grid
of images, and a run takes seconds. The metrics are those of the toy diffusion model (energy
distance, MMD, Chamfer, each beside its floor) plus modes covered and the fraction of high-quality
samples (within 3 std of a mode).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..data.base import TensorDataset
from ..data.toy2d import MODES, mode_coverage
from ..errors import GenlabError, ParamError
from ..nn.gan import MLPDiscriminator, MLPGenerator
from .base import register
from .gan import GANBase, GANLossConfig, check_loss_config
from .toy_diffusion import point_metrics


@dataclass
class ToyGANConfig(GANLossConfig):
    dim: int = 2                    # dimension of the points
    z_dim: int = 2                  # latent dimension
    hidden: int = 128               # MLP width of both networks
    depth: int = 3                  # hidden layers of both networks


@register
class ToyGAN(GANBase):
    """GAN on 2-D toy point clouds (MLP networks): the GAN losses compared where modes can be counted."""

    family = "toy-gan"
    Config = ToyGANConfig
    data_kind = "points"
    default_dataset = "toy2d"
    train_defaults = {"epochs": 50, "batch_size": 256, "lr": 1e-4, "warmup_steps": 0, "lr_schedule": "constant",
                      "weight_decay": 0.0, "grad_clip": 0.0, "ema_decay": 0.0, "sample_every": 0,
                      "num_samples": 2000, "log_every": 50, "precision": "fp32"}

    def __init__(self, cfg: ToyGANConfig):
        super().__init__(cfg)
        check_loss_config(cfg)
        for name in ("dim", "z_dim", "hidden", "depth"):
            if getattr(cfg, name) < 1:
                raise ParamError(name, f"must be at least 1, got {getattr(cfg, name)}")
        self.generator = MLPGenerator(cfg.z_dim, cfg.dim, cfg.hidden, cfg.depth)
        self.discriminator = MLPDiscriminator(cfg.dim, cfg.hidden, cfg.depth, cfg.spectral_norm)

    def train_step(self, batch, step, ctx):
        if batch["x"].shape[-1] != self.cfg.dim:
            raise ParamError("dim", f"is {self.cfg.dim}, but the data are {batch['x'].shape[-1]}-D points; "
                                    f"set it to {batch['x'].shape[-1]}")
        return super().train_step(batch, step, ctx)

    @torch.no_grad()
    def evaluate(self, data: TensorDataset, n: int | None = None, seed: int = 0, **unused) -> dict[str, float]:
        """Point metrics of n samples vs n held-out points (and their floors); modes for Gaussian mixtures."""
        n = min(n or 2500, len(data) // 2)
        if n < 2:
            raise GenlabError(f"need at least 4 held-out points to evaluate, got {len(data)}")
        ref, other = data.x[:n].float(), data.x[n: 2 * n].float()
        g = torch.Generator(device=self.device).manual_seed(seed)
        samples = self.sample(n, generator=g).cpu()
        out = point_metrics(samples, ref)
        out.update({f"floor_{k}": v for k, v in point_metrics(other, ref).items()})
        shape = data.meta.get("shape")
        if shape in MODES:
            out.update(mode_coverage(samples, shape))
            out.update({f"floor_{k}": v for k, v in mode_coverage(other, shape).items() if k != "num_modes"})
        return out

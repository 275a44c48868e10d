"""A convolutional autoencoder: x -> z (the bottleneck) -> x_hat.

Deterministic, so it has no prior to sample from: it compresses and
reconstructs, and its latent space is what the VAE's KL term regularises.
Two reconstruction losses, both averaged over pixels:
    mse  (x_hat - x)^2 on [-1, 1] images; the decoder output is the image
    bce  BCE-with-logits against intensities (x + 1) / 2 in [0, 1]; the image is sigmoid(logits)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import ParamError
from ..nn.conv import ConvDecoder, ConvEncoder
from .base import GenerativeModel, register

RECON_LOSSES = ("mse", "bce")


@dataclass
class AEConfig:
    channels: int = 1
    image_size: int = 28
    latent_dim: int = 32        # bottleneck size
    width: int = 32             # conv channels (2x at the lowest resolution)
    hidden: int = 256           # width of the fully connected layer on each side
    recon_loss: str = "mse"     # "mse" or "bce"


@register
class Autoencoder(GenerativeModel):
    """Conv encoder -> latent_dim bottleneck -> conv decoder."""

    family = "ae"
    default_dataset = "fashion_mnist"
    train_defaults = {"lr": 1e-3, "epochs": 10, "warmup_steps": 100}
    Config = AEConfig

    def __init__(self, cfg: AEConfig):
        super().__init__(cfg)
        if cfg.recon_loss not in RECON_LOSSES:
            raise ParamError("recon_loss", f"'{cfg.recon_loss}' is unknown; choose one of: {', '.join(RECON_LOSSES)}")
        if cfg.latent_dim < 1:
            raise ParamError("latent_dim", f"must be >= 1, got {cfg.latent_dim}")
        self.encoder = ConvEncoder(cfg.channels, cfg.image_size, cfg.latent_dim, cfg.width, cfg.hidden)
        self.decoder = ConvDecoder(cfg.latent_dim, cfg.channels, cfg.image_size, cfg.width, cfg.hidden)

    def observe(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x).float()

    embed = encode  # the code used for interpolation and scatter plots

    def _to_image(self, out: torch.Tensor) -> torch.Tensor:
        out = out.float()
        return torch.sigmoid(out) * 2 - 1 if self.cfg.recon_loss == "bce" else out.clamp(-1, 1)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Image in [-1, 1] for codes z (N, latent_dim)."""
        return self._to_image(self.decoder(z))

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    def loss(self, batch):
        x = batch["x"]
        out = self.decoder(self.encoder(x)).float()
        if self.cfg.recon_loss == "mse":
            loss = F.mse_loss(out, x.float())
        else:
            loss = F.binary_cross_entropy_with_logits(out, (x.float() + 1) * 0.5)
        # MSE on the [0, 1] scale, the number people quote (and 10 log10(1 / mse) is the PSNR)
        mse01 = ((self._to_image(out.detach()) - x) * 0.5).pow(2).mean()
        return loss, {"mse": mse01}

"""Small convolutional encoder / decoder pair for 28 and 32 px images.

Shared by the autoencoder, the VAE and the hierarchical VAE, so the three
families differ only in what sits between the two halves. The shapes, for an
image of side s (any multiple of 4; 28 and 32 are the ones we use):

    ConvEncoder:  x (C,s,s) -> conv4x4/2 -> conv3x3 -> conv4x4/2 -> (2w, s/4, s/4)
                  -> flatten -> Linear -> hidden -> Linear -> out_dim
    ConvDecoder:  z -> Linear -> hidden -> Linear -> (2w, s/4, s/4)
                  -> convT4x4/2 -> conv3x3 -> convT4x4/2 -> (C_out,s,s)

Two stride-2 steps take 28 -> 14 -> 7 and 32 -> 16 -> 8. Nothing but the
first and last layer works at full resolution, which halves the cost of a
training step on a CPU compared with a 3x3 conv there. No normalisation
layers: a VAE's likelihood should not depend on batch statistics, and these
nets are shallow enough to train without them. Every op is a plain conv,
linear or reshape, so the nets run unchanged on channels_last tensors.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import GenlabError, ParamError


def check_widths(**widths: int) -> None:
    """Layer widths (width, hidden, ...) must be >= 1: a zero-width layer crashes or cuts x off from z."""
    for name, v in widths.items():
        if not v >= 1:
            raise ParamError(name, f"must be >= 1, got {v}")


def check_image_geometry(channels: int, image_size: int) -> None:
    """Reject shapes the conv nets cannot handle, with a message saying why."""
    if channels not in (1, 3):
        raise GenlabError(f"the conv encoder/decoder take 1- or 3-channel images, got {channels} channels")
    if image_size < 8 or image_size % 4:
        raise ParamError("image_size", f"must be a multiple of 4 and at least 8 (e.g. 28 or 32), got {image_size}; "
                         "resize the data")


class ConvEncoder(nn.Module):
    """Image (N,C,s,s) -> vector (N,out_dim)."""

    def __init__(self, channels: int, image_size: int, out_dim: int, width: int = 32, hidden: int = 256):
        super().__init__()
        check_image_geometry(channels, image_size)
        check_widths(width=width, hidden=hidden)
        self.channels, self.image_size = channels, image_size
        s4 = image_size // 4
        self.down1 = nn.Conv2d(channels, width, 4, stride=2, padding=1)
        self.conv = nn.Conv2d(width, width, 3, padding=1)
        self.down2 = nn.Conv2d(width, 2 * width, 4, stride=2, padding=1)
        self.fc = nn.Linear(2 * width * s4 * s4, hidden)
        self.out = nn.Linear(hidden, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1:] != (self.channels, self.image_size, self.image_size):
            raise GenlabError(f"the encoder expects images of shape {self.channels}x{self.image_size}x"
                              f"{self.image_size}, got {'x'.join(map(str, x.shape[1:]))}; "
                              f"use a model trained on this data or resize the data to {self.image_size}x{self.image_size}")
        h = F.silu(self.down1(x))
        h = F.silu(self.conv(h))
        h = F.silu(self.down2(h))
        # reshape (not view): the features may be channels_last in memory
        h = F.silu(self.fc(h.reshape(h.shape[0], -1)))
        return self.out(h)


class ConvDecoder(nn.Module):
    """Vector (N,in_dim) -> image-shaped output (N,out_channels,s,s), unbounded."""

    def __init__(self, in_dim: int, channels: int, image_size: int, width: int = 32, hidden: int = 256,
                 out_channels: int | None = None):
        super().__init__()
        check_image_geometry(channels, image_size)
        self.in_dim, self.width, self.s4 = in_dim, width, image_size // 4
        self.fc = nn.Linear(in_dim, hidden)
        self.fc_img = nn.Linear(hidden, 2 * width * self.s4 * self.s4)
        self.up1 = nn.ConvTranspose2d(2 * width, width, 4, stride=2, padding=1)
        self.conv = nn.Conv2d(width, width, 3, padding=1)
        self.up2 = nn.ConvTranspose2d(width, out_channels or channels, 4, stride=2, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.ndim != 2 or z.shape[1] != self.in_dim:
            raise GenlabError(f"the decoder expects latent vectors of size {self.in_dim}, got shape "
                              f"{tuple(z.shape)}; pass latents of the model's latent_dim")
        h = F.silu(self.fc(z))
        h = F.silu(self.fc_img(h)).reshape(z.shape[0], 2 * self.width, self.s4, self.s4)
        h = F.silu(self.up1(h))
        h = F.silu(self.conv(h))
        return self.up2(h)

"""The PatchGAN discriminator of Pix2Pix (Isola et al. 2017, Sec. 3.2.2 and Appendix 6.1.2).

Instead of one real/fake verdict per image it gives one logit per overlapping patch: a
fully convolutional stack whose every output pixel sees only a window of the input (its
receptive field). The paper's "70x70 PatchGAN" is, in its code's terms, n_layers = 3:

    C64 (no norm) - C128 - C256        4x4 convs, stride 2, LeakyReLU(0.2)      (n_layers of them)
    - C512                              4x4 conv, stride 1
    - conv to 1 channel                 4x4 conv, stride 1: the patch logits (N, 1, h, w)

with the width doubling per layer up to 8x and BatchNorm after every conv but the first and
the last. Each 4x4 conv of stride s widens the receptive field by 3 times the product of the
strides before it: 1 + 3 (1 + 2 + 4 + 8 + 8) = 70 for n_layers = 3 (`receptive_field`).

"Sized to the image": 70 px patches suit 256 px images; `layers_for(image_size)` picks the
most stride-2 layers whose receptive field is at most half the image side (n_layers = 3 at
256 px, 1 at 32 px: 16 px patches). The input is a condition and an image concatenated on
channels (Pix2Pix's D(x, y)): in_channels counts both.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ParamError

KERNEL = 4


def receptive_field(n_layers: int = 3) -> int:
    """Side in pixels of the input window one output logit sees: n_layers stride-2 4x4 convs, then two
    stride-1 4x4 convs; each layer adds (kernel - 1) x the product of the strides before it."""
    strides = [2] * n_layers + [1, 1]
    field, jump = 1, 1
    for s in strides:
        field += (KERNEL - 1) * jump
        jump *= s
    return field


def layers_for(image_size: int) -> int:
    """The most stride-2 layers (at least 1) whose receptive field is at most half the image side."""
    n = 1
    while receptive_field(n + 1) <= image_size // 2:
        n += 1
    return n


class PatchGAN(nn.Module):
    """(N, in_channels, H, W) -> patch logits (N, 1, h, w); no sigmoid (the GAN losses take logits)."""

    def __init__(self, in_channels: int, width: int = 64, n_layers: int = 3):
        super().__init__()
        for name, v in (("in_channels", in_channels), ("width", width), ("n_layers", n_layers)):
            if v < 1:
                raise ParamError(name, f"must be >= 1, got {v}")
        self.n_layers = n_layers
        layers = [nn.Conv2d(in_channels, width, KERNEL, stride=2, padding=1), nn.LeakyReLU(0.2, inplace=True)]
        ch = width
        for i in range(1, n_layers + 1):   # n_layers - 1 more stride-2 convs, then the stride-1 one
            out = width * min(2**i, 8)
            stride = 2 if i < n_layers else 1
            layers += [nn.Conv2d(ch, out, KERNEL, stride=stride, padding=1, bias=False), nn.BatchNorm2d(out),
                       nn.LeakyReLU(0.2, inplace=True)]
            ch = out
        layers.append(nn.Conv2d(ch, 1, KERNEL, stride=1, padding=1))
        self.net = nn.Sequential(*layers)

    def receptive_field(self) -> int:
        return receptive_field(self.n_layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

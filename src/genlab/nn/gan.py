"""GAN networks: a DCGAN generator and discriminator sized from the image, and MLPs for 2-D points.

DCGAN (Radford et al. 2016): the generator maps z to a small base map (4..7 px) and doubles it with
stride-2 transposed convolutions, batch norm and ReLU, to a Tanh image; the discriminator mirrors it
with stride-2 convolutions and LeakyReLU(0.2). It has no batch norm: a gradient penalty (WGAN-GP) is
taken per sample, which batch norm would mix across the batch (Gulrajani et al. 2017, Sec. 4).

The conditional parts of the GAN lessons:
- the generator's batch norms become *conditional* (de Vries et al. 2017): the scale and shift of
  each norm are looked up per class, starting at (1, 0);
- the discriminator takes the class either as one-hot maps concatenated to the image (the plain
  cGAN of Mirza & Osindero 2014), or through a *projection* head (Miyato & Koyama 2018, Eq. 3):
  D(x, y) = psi(phi(x)) + embed(y) . phi(x);
- spectral normalisation (Miyato et al. 2018) divides each weight of the discriminator by its
  largest singular value, estimated by one power iteration per training step.

Every discriminator returns (logits (N,), features (N, F)): the features phi(x) are what the
projection head and the feature-matching loss (Salimans et al. 2016) use.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as _sn

from ..errors import ParamError


def dcgan_plan(image_size: int) -> tuple[int, int]:
    """(base, doublings) with image_size = base * 2**doublings, base in 4..7 and at least one doubling."""
    size, ups = image_size, 0
    while size % 2 == 0 and size > 7:
        size, ups = size // 2, ups + 1
    if not (4 <= size <= 7 and ups >= 1):
        raise ParamError("image_size", f"{image_size} cannot be built by the DCGAN networks: they need "
                                       "base * 2^k pixels with base 4..7 and k >= 1 (e.g. 16, 28, 32, 64); "
                                       "resize the images (--image-size)")
    return size, ups


class ConditionalBatchNorm2d(nn.Module):
    """Batch norm whose scale and shift depend on the class (de Vries et al. 2017); plain BN for y None."""

    def __init__(self, channels: int, num_classes: int = 0):
        super().__init__()
        self.num_classes = num_classes
        self.bn = nn.BatchNorm2d(channels, affine=num_classes == 0)
        if num_classes:
            self.gamma = nn.Embedding(num_classes, channels)
            self.beta = nn.Embedding(num_classes, channels)
            nn.init.ones_(self.gamma.weight)
            nn.init.zeros_(self.beta.weight)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = self.bn(x)
        if not self.num_classes:
            return h
        return self.gamma(y)[:, :, None, None] * h + self.beta(y)[:, :, None, None]


class DCGANGenerator(nn.Module):
    """z (N, z_dim) [+ class y] -> image (N, C, S, S) in [-1, 1]."""

    def __init__(self, z_dim: int, channels: int, image_size: int, width: int = 64, num_classes: int = 0):
        super().__init__()
        self.base, ups = dcgan_plan(image_size)
        self.z_dim, self.num_classes = z_dim, num_classes
        widths = [width * 2 ** i for i in reversed(range(ups))]       # e.g. 64 px: 512, 256, 128, 64
        self.fc = nn.Linear(z_dim, widths[0] * self.base ** 2, bias=False)
        self.norms = nn.ModuleList([ConditionalBatchNorm2d(widths[0], num_classes)])
        self.ups = nn.ModuleList()
        for c_in, c_out in zip(widths, widths[1:]):
            self.ups.append(nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False))
            self.norms.append(ConditionalBatchNorm2d(c_out, num_classes))
        self.out = nn.ConvTranspose2d(widths[-1], channels, 4, 2, 1)
        for m in self.modules():  # DCGAN's N(0, 0.02) initialisation
            if isinstance(m, (nn.Linear, nn.ConvTranspose2d)):
                nn.init.normal_(m.weight, 0.0, 0.02)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = self.fc(z).view(len(z), -1, self.base, self.base)
        h = F.relu(self.norms[0](h, y))
        for up, norm in zip(self.ups, self.norms[1:]):
            h = F.relu(norm(up(h), y))
        return torch.tanh(self.out(h))


class DCGANDiscriminator(nn.Module):
    """image (N, C, S, S) [+ class y] -> (logits (N,), features (N, F)).

    cond: "projection" (Miyato & Koyama 2018) or "concat" (one-hot maps on the input, Mirza & Osindero 2014).
    """

    def __init__(self, channels: int, image_size: int, width: int = 64, num_classes: int = 0,
                 cond: str = "projection", spectral_norm: bool = False):
        super().__init__()
        if cond not in ("projection", "concat"):
            raise ParamError("d_cond", f"unknown '{cond}'; choose projection or concat")
        base, downs = dcgan_plan(image_size)
        self.num_classes, self.cond = num_classes, cond
        sn = _sn if spectral_norm else (lambda m: m)
        c_in = channels + (num_classes if num_classes and cond == "concat" else 0)
        widths = [width * 2 ** i for i in range(downs)]               # e.g. 64 px: 64, 128, 256, 512
        self.convs = nn.ModuleList()
        for c_out in widths:
            self.convs.append(sn(nn.Conv2d(c_in, c_out, 4, 2, 1)))
            c_in = c_out
        self.feature_dim = widths[-1] * base * base
        self.head = sn(nn.Linear(self.feature_dim, 1))
        if num_classes and cond == "projection":
            embed = nn.Embedding(num_classes, self.feature_dim)
            nn.init.normal_(embed.weight, 0.0, 0.02)
            self.embed = sn(embed)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if self.num_classes and self.cond == "concat":
            onehot = F.one_hot(y, self.num_classes).to(x.dtype)[:, :, None, None]
            x = torch.cat([x, onehot.expand(-1, -1, *x.shape[-2:])], dim=1)
        h = x
        for conv in self.convs:
            h = F.leaky_relu(conv(h), 0.2)
        phi = h.flatten(1)
        logits = self.head(phi).squeeze(1)
        if self.num_classes and self.cond == "projection":
            logits = logits + (self.embed(y) * phi).sum(1)             # Miyato & Koyama 2018, Eq. 3
        return logits, phi


class MLPGenerator(nn.Module):
    """z (N, z_dim) -> points (N, dim): the toy GAN's generator (ReLU MLP)."""

    def __init__(self, z_dim: int = 2, dim: int = 2, hidden: int = 128, depth: int = 3):
        super().__init__()
        layers, d = [], z_dim
        for _ in range(depth):
            layers += [nn.Linear(d, hidden), nn.ReLU()]
            d = hidden
        self.net = nn.Sequential(*layers, nn.Linear(d, dim))
        self.z_dim = z_dim

    def forward(self, z: torch.Tensor, y=None) -> torch.Tensor:
        return self.net(z)


class MLPDiscriminator(nn.Module):
    """points (N, dim) -> (logits (N,), features (N, hidden)): the toy GAN's critic (LeakyReLU MLP)."""

    def __init__(self, dim: int = 2, hidden: int = 128, depth: int = 3, spectral_norm: bool = False):
        super().__init__()
        sn = _sn if spectral_norm else (lambda m: m)
        layers, d = [], dim
        for _ in range(depth):
            layers += [sn(nn.Linear(d, hidden)), nn.LeakyReLU(0.2)]
            d = hidden
        self.body = nn.Sequential(*layers)
        self.head = sn(nn.Linear(d, 1))

    def forward(self, x: torch.Tensor, y=None) -> tuple[torch.Tensor, torch.Tensor]:
        phi = self.body(x)
        return self.head(phi).squeeze(1), phi

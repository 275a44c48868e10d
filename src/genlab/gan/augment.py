"""DiffAugment (Zhao et al. 2020, "Differentiable Augmentation for Data-Efficient GAN Training").

A discriminator trained on few images memorises them. DiffAugment applies the *same* family of
random transforms T to real and generated images before the discriminator sees them,
D(T(x)) and D(T(G(z))), in both the D and the G step (their Eq. 3-4). The transforms are
differentiable, so G's gradient flows back through T(G(z)). The policies of the paper (Sec. 3):

  color        brightness + U[-0.5, 0.5], saturation x U[0, 2], contrast x U[0.5, 1.5]
  translation  a shift of up to 1/8 of the image side in each direction, zero-padded
  cutout       a square of half the image side set to zero

Every draw is one per sample, through genlab.rng (a CPU generator drives any device). Images are
(N, C, H, W) in [-1, 1], so the zeros of translation and cutout are mid-grey; color may leave
[-1, 1] (the paper does not clamp). Saturation needs colour: it is the identity for C = 1.
Unlike the paper's code, whose cutout square may hang over the image's edge, the square here lies
inside the image, so cutout always erases a quarter of an even-sized image.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .. import rng
from ..errors import ParamError


def _per_sample(x: torch.Tensor, generator) -> torch.Tensor:
    """One U[0, 1) number per sample, shaped (N, 1, 1, 1) to broadcast over an image."""
    return rng.rand((x.shape[0], 1, 1, 1), generator=generator, device=x.device).to(x.dtype)


def brightness(x: torch.Tensor, generator=None) -> torch.Tensor:
    """x + b, b ~ U[-0.5, 0.5]."""
    return x + (_per_sample(x, generator) - 0.5)


def saturation(x: torch.Tensor, generator=None) -> torch.Tensor:
    """Scale each pixel's distance from its grey (the channel mean) by s ~ U[0, 2]."""
    if x.shape[1] == 1:
        return x
    grey = x.mean(dim=1, keepdim=True)
    return (x - grey) * (2 * _per_sample(x, generator)) + grey


def contrast(x: torch.Tensor, generator=None) -> torch.Tensor:
    """Scale each image's distance from its mean by c ~ U[0.5, 1.5]."""
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (_per_sample(x, generator) + 0.5) + mean


def translation(x: torch.Tensor, generator=None, ratio: float = 0.125) -> torch.Tensor:
    """Shift each image by (dy, dx), |dy| <= round(H * ratio), |dx| <= round(W * ratio), filling with 0.

    out[n, :, i, j] = x[n, :, i - dy, j - dx] where that pixel exists, else 0: pad by the largest
    shift, then read each sample's H x W window at its own offset.
    """
    n, _, h, w = x.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = rng.randint(-sh, sh + 1, (n, 1), generator=generator, device=x.device)
    dx = rng.randint(-sw, sw + 1, (n, 1), generator=generator, device=x.device)
    padded = F.pad(x, (sw, sw, sh, sh))
    rows = torch.arange(h, device=x.device) + sh - dy                     # (N, H) rows of `padded`
    cols = torch.arange(w, device=x.device) + sw - dx                     # (N, W)
    batch = torch.arange(n, device=x.device).view(n, 1, 1)
    window = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]   # (N, H, W, C)
    return window.permute(0, 3, 1, 2)


def cutout(x: torch.Tensor, generator=None, ratio: float = 0.5) -> torch.Tensor:
    """Zero a (round(H * ratio) x round(W * ratio)) square at a random place inside each image."""
    n, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    top = rng.randint(0, h - ch + 1, (n, 1, 1), generator=generator, device=x.device)
    left = rng.randint(0, w - cw + 1, (n, 1, 1), generator=generator, device=x.device)
    i = torch.arange(h, device=x.device).view(1, h, 1)
    j = torch.arange(w, device=x.device).view(1, 1, w)
    inside = (i >= top) & (i < top + ch) & (j >= left) & (j < left + cw)  # (N, H, W)
    return x * (~inside).unsqueeze(1).to(x.dtype)


TRANSFORMS = {"color": (brightness, saturation, contrast), "translation": (translation,), "cutout": (cutout,)}
POLICIES = tuple(TRANSFORMS)


def parse_policy(policy: str, param: str = "diffaugment") -> list[str]:
    """The policy names in a comma-separated string ("" means no augmentation); ParamError(param, ...)
    for an unknown one, worded about `param` (the config field that set it)."""
    names = [p.strip() for p in policy.split(",") if p.strip()]
    for name in names:
        if name not in TRANSFORMS:
            raise ParamError(param, f"unknown policy {name!r}; choose a comma-separated list of: "
                                    f"{', '.join(POLICIES)} (or '' for none)")
    return names


def diff_augment(x: torch.Tensor, policy: str = "color,translation,cutout",
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """Apply the policy's transforms in order to a batch (N, C, H, W); differentiable w.r.t. x.

    Call it on the real and the generated batch alike, in both the D and the G step.
    """
    for name in parse_policy(policy):
        for transform in TRANSFORMS[name]:
            x = transform(x, generator)
    return x

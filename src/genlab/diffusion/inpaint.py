"""Inpainting with an unconditional diffusion model: the replacement method and RePaint.

Lugmayr et al. 2022, "RePaint: Inpainting using Denoising Diffusion
Probabilistic Models". `mask` is 1 on known pixels and 0 where the model
must fill in. At every reverse step t -> s (s < t, s = -1 being clean data):

    x_s^known   ~ q(x_s | x_0) = N(sqrt(abar_s) x_0, (1 - abar_s) I)    (RePaint Eq. 8, left)
    x_s^unknown ~ p_theta(x_s | x_t)   (a DDIM step; eta = 1: DDPM's)  (RePaint Eq. 8, middle)
    x_s = m * x_s^known + (1 - m) * x_s^unknown                         (RePaint Eq. 8, right)

With resample = 1 this is the replacement method (Song et al. 2021, App. I);
it keeps the known pixels but the generated ones only ever see a noisy copy
of them, so the seams often show. RePaint (resample = r > 1) goes back and
forth: after each step x_s is re-noised to x_t ~ q(x_t | x_s) =
N(sqrt(abar_t / abar_s) x_s, (1 - abar_t / abar_s) I) (RePaint Eq. 9, for
any pair of timesteps) and the step is redone, r times, which lets the two
parts harmonise. Cost: steps x resample network calls (progress is called once per call).

`RePaint` is the hook samplers.sample_loop calls at every step, so any sampler can
fill in (`inpaint` uses DDIM with eta; eta = 1 over all T steps is RePaint's DDPM);
a multistep sampler redoes each step from the same history.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .. import rng
from ..errors import GenlabError, ParamError
from .ddim import DDIM
from .sampling import Sampler, State, sample_loop
from .schedules import NoiseSchedule, abar

MASK_PRESETS = ("left", "right", "top", "bottom", "center", "box", "random")


def mask_preset(name: str, n: int, image_size: int, generator: torch.Generator | None = None,
                ratio: float = 0.5) -> torch.Tensor:
    """Known-pixels mask (n, 1, H, W), 1 = known, 0 = to generate; `name` is the hole.

    left/right/top/bottom: that half is missing; center: the central square of
    half the side; box: a square of half the side at a random place per image;
    random: each pixel missing with probability `ratio`.
    """
    s = image_size
    m = torch.ones(n, 1, s, s)
    h = s // 2
    if name == "left":
        m[..., :, :h] = 0
    elif name == "right":
        m[..., :, s - h:] = 0
    elif name == "top":
        m[..., :h, :] = 0
    elif name == "bottom":
        m[..., s - h:, :] = 0
    elif name == "center":
        a = (s - h) // 2
        m[..., a:a + h, a:a + h] = 0
    elif name == "box":
        corners = torch.randint(0, s - h + 1, (n, 2), generator=generator)
        for i, (r, c) in enumerate(corners.tolist()):
            m[i, :, r:r + h, c:c + h] = 0
    elif name == "random":
        if not 0 < ratio < 1:
            raise GenlabError(f"the random mask's missing fraction must be in (0, 1), got {ratio}")
        m = (torch.rand(n, 1, s, s, generator=generator) >= ratio).float()
    else:
        raise GenlabError(f"unknown mask '{name}'; choose one of {', '.join(MASK_PRESETS)} or give a PNG file")
    return m


def load_mask(spec: str, n: int, image_size: int, generator: torch.Generator | None = None,
              ratio: float = 0.5) -> torch.Tensor:
    """A preset name (see `mask_preset`) or a PNG file: white (>= 128) = known, black = to generate."""
    if spec in MASK_PRESETS:
        return mask_preset(spec, n, image_size, generator, ratio)
    path = Path(spec)
    if not path.exists():
        raise ParamError("mask", f"'{spec}' is neither a preset ({', '.join(MASK_PRESETS)}) nor an existing "
                          "PNG file")
    try:
        with Image.open(path) as im:
            grey = im.convert("L").resize((image_size, image_size), Image.NEAREST)
    except OSError as e:
        raise GenlabError(f"could not read the mask image {path}: {e}") from e
    m = torch.from_numpy((np.asarray(grey) >= 128).astype(np.float32))[None, None]
    if m.min() == 1:
        raise GenlabError(f"the mask {path} is all white (everything known): paint the region to fill in black")
    return m.expand(n, 1, image_size, image_size).clone()


def renoise(schedule: NoiseSchedule, x_s: torch.Tensor, s: int, t: int,
            generator: torch.Generator | None = None) -> torch.Tensor:
    """x_t ~ q(x_t | x_s) = N(sqrt(abar_t / abar_s) x_s, (1 - abar_t / abar_s) I), s < t (RePaint Eq. 9).

    s = -1 (clean data) gives q(x_t | x_0)."""
    ratio = abar(schedule, t) / abar(schedule, s)
    z = rng.randn(x_s.shape, generator, x_s.device, x_s.dtype)
    return math.sqrt(ratio) * x_s + math.sqrt(1 - ratio) * z


def known_at(schedule: NoiseSchedule, x0: torch.Tensor, s: int,
             generator: torch.Generator | None = None) -> torch.Tensor:
    """x_s^known ~ q(x_s | x_0) (DDPM Eq. 4); x_0 itself at s = -1."""
    if s < 0:
        return x0
    a = abar(schedule, s)
    z = rng.randn(x0.shape, generator, x0.device, x0.dtype)
    return math.sqrt(a) * x0 + math.sqrt(1 - a) * z


class RePaint:
    """Known pixels x_known where mask == 1; each reverse step t -> s done `resample` times (RePaint Eqs. 8-9)."""

    def __init__(self, schedule: NoiseSchedule, x_known: torch.Tensor, mask: torch.Tensor, resample: int = 1):
        if resample < 1:
            raise ParamError("resample", f"must be at least 1, got {resample}")
        self.schedule, self.x_known, self.resample = schedule, x_known, resample
        self.mask = mask.to(device=x_known.device, dtype=x_known.dtype).expand_as(x_known)

    def step(self, sampler: Sampler, denoise, x: torch.Tensor, t: int, s: int, state: State,
             generator: torch.Generator | None = None) -> torch.Tensor:
        for u in range(self.resample):
            redo = copy.copy(state)  # every round starts from the history before this step
            # 1. known pixels: a fresh sample of q(x_s | x_0) (Eq. 8, left)
            known = known_at(self.schedule, self.x_known, s, generator)
            # 2. unknown pixels: one reverse step x_t -> x_s (Eq. 8, middle)
            unknown = sampler.step(denoise, x, t, s, redo, generator)
            # 3. combine (Eq. 8, right)
            x_s = self.mask * known + (1 - self.mask) * unknown
            # 4. RePaint: jump back to t and redo the step, except after the last round (Eq. 9)
            x = renoise(self.schedule, x_s, s, t, generator) if u < self.resample - 1 else x_s
        state.__dict__.update(redo.__dict__)
        return x

    def paste(self, x: torch.Tensor) -> torch.Tensor:
        """The known pixels exactly as given."""
        return self.mask * self.x_known + (1 - self.mask) * x


def inpaint(schedule: NoiseSchedule, model, x_known: torch.Tensor, mask: torch.Tensor, steps: int | None = None,
            y=None, prediction: str = "eps", eta: float = 1.0, spacing: str = "uniform", resample: int = 1,
            clip: bool = True, generator: torch.Generator | None = None, return_intermediates: int = 0,
            progress=None, sampler: Sampler | None = None):
    """Fill in the pixels where mask == 0 of x_known (N,C,H,W in [-1, 1]).

    steps: reverse steps (default all T, as RePaint); eta: noise of each DDIM step
    (1 = ancestral, 0 = deterministic); resample: RePaint's r (1 = replacement);
    sampler: another sampler object instead of DDIM(eta).
    Known pixels of the result are exactly those of x_known.
    """
    repaint = RePaint(schedule, x_known, mask, resample)
    return sample_loop(schedule, model, x_known.shape, sampler or DDIM(eta), steps or schedule.T, spacing, y=y,
                       prediction=prediction, clip=clip, generator=generator, device=x_known.device,
                       return_intermediates=return_intermediates, progress=progress, repaint=repaint)

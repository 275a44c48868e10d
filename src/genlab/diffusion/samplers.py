"""Every Gaussian-diffusion sampler, by name: `sample(schedule, model, shape, sampler=..., steps=...)`.

The interface and the loop are in sampling.py; each sampler is one file that
registers itself (`@register_sampler`), imported here:

    ddpm     ancestral, all T steps          (Ho et al. 2020, Algorithm 2)            ddpm.py
    ddim     Eq. 12 with noise eta in [0, 1] (Song et al. 2021)                       ddim.py
    dpmpp    DPM-Solver++(2M)                (Lu et al. 2022, Algorithm 2)            dpm_solver.py
    euler    Euler on the probability-flow ODE (Karras et al. 2022, Algorithm 1)      euler.py
    heun     Heun, 2 network calls per step  (Karras et al. 2022, Algorithm 1)        heun.py
    euler_a  Euler ancestral                 (k-diffusion; = DDIM at eta = 1)         euler_ancestral.py

Adding one is a file with a `Sampler` subclass (name, default_steps, step) and a
line here; a test may also register one of its own.
"""

from __future__ import annotations

import torch

# each import registers its sampler; this order is available()'s (--sampler's help, the tests' lists)
from . import ddpm, ddim, dpm_solver, euler, heun, euler_ancestral  # noqa: F401, I001
from .sampling import (SAMPLERS, Denoise, Sampler, State, frame_steps, register_sampler,  # noqa: F401
                       resolve_steps, sample_loop, sampler_class)
from .schedules import NoiseSchedule
from .timesteps import SPACINGS  # noqa: F401


def available() -> list[str]:
    return list(SAMPLERS)


def make_sampler(name: str, eta: float | None = None) -> Sampler:
    """The sampler `name`, with DDIM's noise eta (the others refuse an eta other than 0 / None)."""
    return sampler_class(name)(eta=eta)


def default_steps() -> dict[str, int | None]:
    """Each sampler's default number of timesteps (None: all T); resolve_steps applies them."""
    return {name: cls.default_steps for name, cls in SAMPLERS.items()}


def spacing_samplers() -> list[str]:
    """The samplers that take --spacing."""
    return [name for name, cls in SAMPLERS.items() if cls.spacings]


def sample(schedule: NoiseSchedule, model, shape, sampler: str = "ddpm", steps: int | None = None, *,
           eta: float | None = None, spacing: str | None = None, y=None, prediction: str = "eps", clip: bool = True,
           generator: torch.Generator | None = None, device=None, x_T: torch.Tensor | None = None,
           return_intermediates: int = 0, progress=None):
    """x0 (or (x0, frames)) from `sampler` with `steps` timesteps (None: the sampler's default_steps)."""
    return sample_loop(schedule, model, shape, make_sampler(sampler, eta), steps, spacing, y=y,
                       prediction=prediction, clip=clip, generator=generator, device=device, x_T=x_T,
                       return_intermediates=return_intermediates, progress=progress)

"""The DDPM sampler: ancestral sampling over every timestep (Ho et al. 2020, Algorithm 2).

    x_{t-1} = mu~_t(x_t, x0_theta(x_t, t)) + sigma_t z,  z ~ N(0, I),  sigma_t^2 = beta~_t   (Eqs. 7 and 11)

The step is gaussian.ddpm_step, the same one p_sample takes. It always visits all T
timesteps (for fewer, DDIM with eta = 1 is the same process on a sub-sequence), so
it has no --steps choice and no --spacing. diffusers: DDPMScheduler (variance_type
"fixed_small"; "large" is "fixed_large").
"""

from __future__ import annotations

import torch

from ..errors import ParamError
from .gaussian import Denoiser, ddpm_step
from .sampling import SAMPLERS, Sampler, State, register_sampler, sample_loop
from .schedules import NoiseSchedule


@register_sampler
class DDPM(Sampler):
    name = "ddpm"
    default_steps = None  # all T
    spacings = ()
    noise = "ancestral (always eta = 1)"

    def __init__(self, eta: float | None = None, variance: str = "small"):
        if eta not in (None, 0, 1):
            raise ParamError("eta", f"{eta} applies to the ddim sampler only; the ddpm sampler is ancestral (eta = 1)")
        self.variance = variance

    def timesteps(self, T: int, steps: int, spacing: str | None = None) -> list[int]:
        if steps != T:
            raise ParamError("steps", f"{steps} does not fit the ddpm sampler, which runs all {T} steps; "
                             f"use the ddim or dpmpp sampler for {steps} steps")
        if spacing is not None:
            others = [name for name, cls in SAMPLERS.items() if cls.spacings]  # (samplers.spacing_samplers)
            raise ParamError("spacing", f"applies to the {', '.join(others)} samplers, not ddpm")
        return list(range(T - 1, -1, -1))

    def step(self, denoise, x: torch.Tensor, t: int, t_next: int, state: State,
             generator: torch.Generator | None = None) -> torch.Tensor:
        x0, _ = denoise(x, t)
        return ddpm_step(state.schedule, x0, x, t, self.variance, generator)


def p_sample_loop(s: NoiseSchedule, model: Denoiser, shape, y=None, prediction: str = "eps",
                  variance: str = "small", clip: bool = True, generator: torch.Generator | None = None,
                  device=None, x_T: torch.Tensor | None = None, return_intermediates: int = 0, progress=None):
    """Algorithm 2 of DDPM: x_T ~ N(0, I), then T ancestral steps (p_sample) down to x_0.

    The loop itself is sampling.sample_loop with the DDPM sampler above, as for every sampler.
    return_intermediates=k > 1 also returns k snapshots of x_t evenly spaced over the steps
    (x_T first, the final x_0 last), for strips and GIFs.
    """
    return sample_loop(s, model, shape, DDPM(variance=variance), y=y, prediction=prediction, clip=clip,
                       generator=generator, device=device, x_T=x_T, return_intermediates=return_intermediates,
                       progress=progress)

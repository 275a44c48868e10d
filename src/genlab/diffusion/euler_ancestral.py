"""Euler ancestral: an Euler step of the ODE to a lower noise level, then fresh noise back up to the next one.

The "ancestral" sampler of k-diffusion (Crowson 2022; Karras et al. 2022, EDM, Sec. 4
on stochastic samplers), in the variance-exploding variables of euler.py. The step
sigma_t -> sigma_{t_next} = s' splits the target variance s'^2 into a deterministic part
sigma_down^2 and the variance sigma_up^2 of new noise:

    sigma_up   = sqrt(s'^2 (sigma_t^2 - s'^2) / sigma_t^2),   sigma_down = sqrt(s'^2 - sigma_up^2)
    x~_{t_next} = x~ + (sigma_down - sigma_t) (x~ - x0) / sigma_t + sigma_up z,   z ~ N(0, I)

sigma_up^2 (1 + s'^2)^-1 is exactly the DDIM sigma^2 of Eq. 16 at eta = 1 (the DDPM
posterior variance over one step), so this is DDIM with eta = 1 written as an ODE
step plus noise; with every timestep, it is ancestral DDPM. No noise at the last step
(s' = 0). diffusers: EulerAncestralDiscreteScheduler.
"""

from __future__ import annotations

import math

import torch

from .. import rng
from .euler import from_ve, ode_derivative, to_ve
from .sampling import Sampler, State, register_sampler
from .schedules import ve_sigma


@register_sampler
class EulerAncestral(Sampler):
    name = "euler_a"
    default_steps = 50
    noise = "ancestral (always eta = 1)"

    def step(self, denoise, x: torch.Tensor, t: int, t_next: int, state: State,
             generator: torch.Generator | None = None) -> torch.Tensor:
        sigma, sigma_next = ve_sigma(state.schedule, t), ve_sigma(state.schedule, t_next)
        sigma_up = math.sqrt(sigma_next**2 * (sigma**2 - sigma_next**2) / sigma**2)
        sigma_down = math.sqrt(max(sigma_next**2 - sigma_up**2, 0.0))  # max(): rounding when sigma_next << sigma
        x0, _ = denoise(x, t)
        x_ve = to_ve(x, sigma)
        x_ve = x_ve + (sigma_down - sigma) * ode_derivative(x_ve, x0, sigma)
        if sigma_up > 0:
            x_ve = x_ve + sigma_up * rng.randn(x.shape, generator, x.device, x.dtype)
        return from_ve(x_ve, sigma_next)

"""Euler: the probability-flow ODE in its variance-exploding form, one Euler step per timestep.

Karras et al. 2022, "Elucidating the Design Space of Diffusion-Based Generative
Models" (EDM). Dividing x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps by sqrt(abar_t)
gives x~ = x_0 + sigma eps with sigma_t = sqrt((1 - abar_t) / abar_t)
(schedules.ve_sigma), whose probability-flow ODE is (EDM Eq. 3 with s = 1)

    dx~/dsigma = (x~ - D(x~; sigma)) / sigma,   D = the network's x0 estimate.

One Euler step from sigma_t to sigma_{t_next} (EDM Algorithm 1, lines 4-5, without the
correction of line 7; heun.py adds it):

    d = (x~ - x0) / sigma_t,   x~' = x~ + (sigma_{t_next} - sigma_t) d

For an eps-predicting network d is eps itself, so this is exactly deterministic DDIM
(DDIM Eq. 14 is the same ODE, written for x / sqrt(abar)); the loop's state stays in
the x_t of the rest of genlab and each step converts. diffusers: EulerDiscreteScheduler.
"""

from __future__ import annotations

import math

import torch

from .sampling import Sampler, State, register_sampler
from .schedules import ve_sigma


def to_ve(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """x_t -> x~ = x_t / sqrt(abar_t) = x_t sqrt(1 + sigma_t^2)."""
    return x * math.sqrt(1 + sigma**2)


def from_ve(x_ve: torch.Tensor, sigma: float) -> torch.Tensor:
    """x~ -> x_t = x~ / sqrt(1 + sigma_t^2) (x0 itself at sigma = 0)."""
    return x_ve / math.sqrt(1 + sigma**2)


def ode_derivative(x_ve: torch.Tensor, x0: torch.Tensor, sigma: float) -> torch.Tensor:
    """dx~/dsigma = (x~ - x0) / sigma  (EDM Eq. 3; Algorithm 1, line 4)."""
    return (x_ve - x0) / sigma


@register_sampler
class Euler(Sampler):
    name = "euler"
    default_steps = 50

    def step(self, denoise, x: torch.Tensor, t: int, t_next: int, state: State,
             generator: torch.Generator | None = None) -> torch.Tensor:
        sigma, sigma_next = ve_sigma(state.schedule, t), ve_sigma(state.schedule, t_next)
        x0, _ = denoise(x, t)
        x_ve = to_ve(x, sigma)
        d = ode_derivative(x_ve, x0, sigma)
        return from_ve(x_ve + (sigma_next - sigma) * d, sigma_next)  # Algorithm 1, line 5

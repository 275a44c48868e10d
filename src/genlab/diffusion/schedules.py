"""Noise schedules: the betas and the quantities every formula reuses.

Notation of Ho et al. 2020 (DDPM): beta_t is the variance added at step t,
alpha_t = 1 - beta_t, alpha_bar_t = prod_{s<=t} alpha_s ("alphas_cumprod"),
so that q(x_t | x_0) = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I).
Timesteps are 0-based here: t = 0 is the first noising step, t = T-1 the last.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..errors import GenlabError


def linear_betas(T: int, beta_start: float = 1e-4, beta_end: float = 0.02, max_beta: float = 0.999) -> torch.Tensor:
    """DDPM's linear schedule (Ho et al. 2020, Sec. 4), rescaled so any T keeps its shape.

    For T < 21 the rescaled betas would reach 1 (x_t all noise in one step, and a
    division by zero in Eq. 7), so they are clipped at max_beta like the cosine ones.
    """
    scale = 1000 / T
    return torch.linspace(scale * beta_start, scale * beta_end, T, dtype=torch.float64).clamp(max=max_beta)


def cosine_betas(T: int, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """Improved DDPM's cosine schedule (Nichol & Dhariwal 2021, Eq. 17).

    alpha_bar(t) = f(t)/f(0), f(t) = cos^2(((t/T + s)/(1 + s)) * pi/2); betas are
    clipped at max_beta to avoid the singularity at t = T.
    """
    steps = torch.arange(T + 1, dtype=torch.float64) / T
    f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
    alpha_bar = f / f[0]
    return (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(max=max_beta)


SCHEDULES = {"linear": linear_betas, "cosine": cosine_betas}


@dataclass
class NoiseSchedule:
    """All per-timestep constants of a schedule, as float64 tensors of length T."""

    betas: torch.Tensor

    def __post_init__(self):
        b = self.betas.double()
        self.betas = b
        self.alphas = 1 - b
        self.alphas_cumprod = torch.cumprod(self.alphas, 0)
        self.alphas_cumprod_prev = torch.cat([b.new_ones(1), self.alphas_cumprod[:-1]])
        # Posterior q(x_{t-1} | x_t, x_0) = N(mu~, beta~) (Ho et al. 2020, Eqs. 6-7)
        self.posterior_variance = b * (1 - self.alphas_cumprod_prev) / (1 - self.alphas_cumprod)
        self.posterior_mean_coef1 = b * self.alphas_cumprod_prev.sqrt() / (1 - self.alphas_cumprod)
        self.posterior_mean_coef2 = (1 - self.alphas_cumprod_prev) * self.alphas.sqrt() / (1 - self.alphas_cumprod)
        # beta~_0 = 0, so its log is clipped to beta~_1 (as in the reference code)
        self.posterior_log_variance_clipped = torch.log(
            torch.cat([self.posterior_variance[1:2], self.posterior_variance[1:]]))

    @property
    def T(self) -> int:
        return self.betas.shape[0]

    def snr(self) -> torch.Tensor:
        """Signal-to-noise ratio alpha_bar / (1 - alpha_bar) per step."""
        return self.alphas_cumprod / (1 - self.alphas_cumprod)


def make_schedule(name: str, T: int) -> NoiseSchedule:
    if name not in SCHEDULES:
        raise GenlabError(f"unknown noise schedule '{name}'; choose one of: {', '.join(SCHEDULES)}")
    if T < 2:
        raise GenlabError(f"the number of diffusion timesteps must be at least 2, got {T}")
    return NoiseSchedule(SCHEDULES[name](T))


def abar(schedule: NoiseSchedule, t: int) -> float:
    """alpha_bar_t as a Python float, with alpha_bar_{-1} = 1 (clean data, the target of a sampler's last step)."""
    return 1.0 if t < 0 else float(schedule.alphas_cumprod[t])


def ve_sigma(schedule: NoiseSchedule, t: int) -> float:
    """sigma_t = sqrt((1 - abar_t) / abar_t): the noise level of x_t / sqrt(abar_t) = x_0 + sigma_t eps.

    The variance-exploding view of the same process (Karras et al. 2022, "Elucidating the Design Space
    of Diffusion-Based Generative Models", Sec. 2 and Table 1: s(t) = sqrt(abar), sigma = sqrt(1/abar - 1));
    0 at t = -1 (clean data).
    """
    a = abar(schedule, t)
    return math.sqrt((1 - a) / a)


def extract(a: torch.Tensor, t: torch.Tensor, ndim: int) -> torch.Tensor:
    """a[t] as float32 on t's device, shaped (N, 1, 1, ...) to broadcast over x."""
    out = a.to(t.device)[t].float()
    return out.reshape(t.shape[0], *([1] * (ndim - 1)))

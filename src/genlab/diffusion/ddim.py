"""DDIM: deterministic (or partly stochastic) sampling on a subset of the timesteps.

Song, Meng & Ermon 2021, "Denoising Diffusion Implicit Models". Given the
network's estimates x0 and eps at x_t, one step to an earlier timestep s < t is

    x_s = sqrt(abar_s) x0 + sqrt(1 - abar_s - sigma^2) eps + sigma z          (Eq. 12)
    sigma = eta sqrt((1 - abar_s) / (1 - abar_t)) sqrt(1 - abar_t / abar_s)  (Eq. 16)

eta = 0 is the deterministic DDIM sampler: an Euler step of the probability-flow
ODE d(x / sqrt(abar)) = eps d(sqrt(1 - abar) / sqrt(abar)) (Eq. 14); eta = 1 with every
timestep is exactly ancestral DDPM sampling (sigma^2 becomes the posterior
variance beta~_t). Running the eta = 0 update forwards in time maps an image to
the noise that generates it (DDIM inversion, Sec. 4.3 / 5.4 of the paper).

Timesteps are 0-based as in schedules.py; s = -1 stands for "clean data"
(abar = 1), the target of the last step. diffusers: DDIMScheduler (with
use_clipped_model_output when x0 is clipped), DDIMInverseScheduler.
"""

from __future__ import annotations

import math

import torch

from .. import rng
from ..errors import ParamError
from .gaussian import model_x0_eps  # noqa: F401  (re-exported: the (x0, eps) estimates every step starts from)
from .sampling import Sampler, State, register_sampler, sample_loop
from .schedules import NoiseSchedule, abar
from .timesteps import SPACINGS  # noqa: F401
from .timesteps import spaced_timesteps as ddim_timesteps  # noqa: F401  (the DDIM paper's sub-sequences)


def check_eta(eta: float) -> None:
    """eta in [0, 1] (also rejects NaN): beyond 1, sigma^2 of Eq. 16 exceeds what Eq. 12 can hold."""
    if not 0 <= eta <= 1:
        raise ParamError("eta", f"must be between 0 (deterministic DDIM) and 1 (DDPM-like), got {eta}")


def ddim_sigma(schedule: NoiseSchedule, t: int, t_prev: int, eta: float) -> float:
    """sigma_t(eta) of DDIM Eq. 16 for the step t -> t_prev."""
    a_t, a_prev = abar(schedule, t), abar(schedule, t_prev)
    return eta * math.sqrt((1 - a_prev) / (1 - a_t)) * math.sqrt(1 - a_t / a_prev)


def ddim_update(schedule: NoiseSchedule, x0: torch.Tensor, eps: torch.Tensor, t: int, t_prev: int,
                eta: float = 0.0, generator: torch.Generator | None = None,
                noise: torch.Tensor | None = None) -> torch.Tensor:
    """x_{t_prev} = sqrt(abar_prev) x0 + sqrt(1 - abar_prev - sigma^2) eps + sigma z  (Eq. 12).

    Noise is drawn only where sigma > 0 (eta > 0 and t_prev >= 0), one draw per
    step, so with eta = 1 over all timesteps the random stream is DDPM's.
    """
    a_prev = abar(schedule, t_prev)
    # 1. sigma_t(eta) (Eq. 16)
    sigma = ddim_sigma(schedule, t, t_prev, eta) if t_prev >= 0 else 0.0
    # 2. "direction pointing to x_t" (Eq. 12, middle term); max() guards rounding at sigma^2 ~ 1 - abar_prev
    direction = math.sqrt(max(1 - a_prev - sigma**2, 0.0)) * eps
    # 3. x_{t_prev} = sqrt(abar_prev) x0 + direction + sigma z (Eq. 12)
    x_prev = math.sqrt(a_prev) * x0 + direction
    if sigma > 0:
        if noise is None:
            noise = rng.randn(x0.shape, generator, x0.device, x0.dtype)
        x_prev = x_prev + sigma * noise
    return x_prev


def ddim_step(schedule: NoiseSchedule, model_output: torch.Tensor, t: int, t_prev: int, x_t: torch.Tensor,
              eta: float = 0.0, prediction: str = "eps", clip: bool = False,
              generator: torch.Generator | None = None, noise: torch.Tensor | None = None):
    """One DDIM update x_t -> x_{t_prev} (t_prev = -1: to clean data) from the network output. Returns (x_prev, x0)."""
    # the network's estimates of the clean sample and of the noise (DDIM Eq. 9), then Eq. 12
    x0, eps = model_x0_eps(schedule, model_output, x_t, t, prediction, clip)
    return ddim_update(schedule, x0, eps, t, t_prev, eta, generator, noise), x0


def ddim_invert_update(schedule: NoiseSchedule, x: torch.Tensor, eps: torch.Tensor, t_prev: int, t: int):
    """The eta = 0 update of Eq. 12 run forwards, x_{t_prev} -> x_t, with a given eps (DDIM Sec. 4.3)."""
    a_t, a_prev = abar(schedule, t), abar(schedule, t_prev)
    # 1. x0 implied by the current point and eps (Eq. 9 at t_prev; x itself when t_prev = -1)
    x0_hat = (x - math.sqrt(1 - a_prev) * eps) / math.sqrt(a_prev)
    # 2. the deterministic update of Eq. 12 (sigma = 0), from t_prev up to t
    return math.sqrt(a_t) * x0_hat + math.sqrt(1 - a_t) * eps


@register_sampler
class DDIM(Sampler):
    """DDIM (Eq. 12) with noise eta in [0, 1]; `refine` fixed-point iterations when inverting."""

    name = "ddim"
    default_steps = 50

    def __init__(self, eta: float | None = 0.0, refine: int = 0):
        self.eta = 0.0 if eta is None else eta
        check_eta(self.eta)
        self.refine = refine

    def step(self, denoise, x: torch.Tensor, t: int, t_next: int, state: State,
             generator: torch.Generator | None = None) -> torch.Tensor:
        x0, eps = denoise(x, t)
        return ddim_update(state.schedule, x0, eps, t, t_next, self.eta, generator)

    def invert_step(self, denoise, x: torch.Tensor, t: int, t_next: int, state: State) -> torch.Tensor:
        """x_t -> x_{t_next}, t_next > t. The sampler's step back evaluates eps at x_{t_next}, which is not
        known yet, so start from eps at (x_t, t_next) (DDIM Sec. 5.4) and re-evaluate it at the new point
        `refine` times (fixed-point iteration of the implicit equation the sampler inverts)."""
        guess = x
        for _ in range(self.refine + 1):
            _, eps = denoise(guess, t_next)
            guess = ddim_invert_update(state.schedule, x, eps, t, t_next)
        return guess


def ddim_sample_loop(schedule: NoiseSchedule, model, shape, steps: int = 50, y=None, prediction: str = "eps",
                     eta: float = 0.0, spacing: str = "uniform", clip: bool = True,
                     generator: torch.Generator | None = None, device=None, x_T: torch.Tensor | None = None,
                     return_intermediates: int = 0, progress=None):
    """Sample with `steps` DDIM updates (one network call each). eta = 0: deterministic given x_T."""
    return sample_loop(schedule, model, shape, DDIM(eta), steps, spacing, y=y, prediction=prediction, clip=clip,
                       generator=generator, device=device, x_T=x_T, return_intermediates=return_intermediates,
                       progress=progress)


@torch.no_grad()
def ddim_invert(schedule: NoiseSchedule, model, x0: torch.Tensor, steps: int = 50, y=None,
                prediction: str = "eps", spacing: str = "uniform", refine: int = 0,
                return_intermediates: int = 0, progress=None):
    """DDIM inversion: the x_T that deterministic DDIM (eta = 0, same steps) maps back to x0.

    Runs the eta = 0 update of Eq. 12 forwards (DDIM Sec. 4.3 / 5.4); refine = k > 0
    re-evaluates eps at the new x_t k times, which shrinks the round-trip error.
    """
    return sample_loop(schedule, model, x0.shape, DDIM(0.0, refine), steps, spacing, y=y, prediction=prediction,
                       x_T=x0, return_intermediates=return_intermediates, progress=progress, invert=True)

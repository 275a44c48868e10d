"""DPM-Solver++(2M): a second-order multistep solver of the probability-flow ODE.

Lu et al. 2022, "DPM-Solver++: Fast Solver for Guided Sampling of Diffusion
Probabilistic Models", Algorithm 2. Write x_t = alpha_t x0 + sigma_t eps with
alpha_t = sqrt(abar_t), sigma_t = sqrt(1 - abar_t) and the half log-SNR
lambda_t = log(alpha_t / sigma_t). In the data-prediction form the ODE has the
exact solution (their Eq. 9)

    x_t = (sigma_t / sigma_s) x_s + sigma_t int_{lambda_s}^{lambda_t} e^lambda x0(x_lambda) dlambda,

and the solver approximates x0(x_lambda) on each step [t_{i-1}, t_i], h_i = lambda_{t_i} - lambda_{t_{i-1}}:

    first order  (i = 1):  x_{t_i} = (sigma_{t_i} / sigma_{t_{i-1}}) x_{t_{i-1}} - alpha_{t_i} (e^{-h_i} - 1) x0_{i-1}
    second order (i > 1):  D_i = (1 + 1 / (2 r_i)) x0_{i-1} - (1 / (2 r_i)) x0_{i-2},  r_i = h_{i-1} / h_i
                           x_{t_i} = (sigma_{t_i} / sigma_{t_{i-1}}) x_{t_{i-1}} - alpha_{t_i} (e^{-h_i} - 1) D_i

i.e. x0 extrapolated linearly in lambda from the last two network calls: one
call per step, error O(h^2) per unit time against DDIM's O(h) (the first-order
update above *is* the eta = 0 DDIM step).

The last step is first order ("lower-order final" of the reference implementation;
diffusers' DPMSolverMultistepScheduler with final_sigmas_type "zero"): the step to
clean data (sigma = 0, lambda = inf) simply returns the last x0. When the timesteps
end at t = 0 (uniform and quadratic spacing; trailing stops at T / S - 1) the step
into t = 0 is first order too: it spans a much longer lambda interval than the one
before it (abar_0 ~ 1, so lambda_0 is large), r_i is then small and the
extrapolation 1 / (2 r_i) amplifies the error instead of cancelling it.
"""

from __future__ import annotations

import math

import torch

from .sampling import Sampler, State, register_sampler, sample_loop
from .schedules import NoiseSchedule, abar

def alpha_sigma_lambda(schedule: NoiseSchedule, t: int) -> tuple[float, float, float]:
    """(alpha_t, sigma_t, lambda_t) with t = -1 meaning clean data (1, 0, +inf)."""
    a = abar(schedule, t)
    if t < 0:
        return 1.0, 0.0, math.inf
    return math.sqrt(a), math.sqrt(1 - a), 0.5 * (math.log(a) - math.log1p(-a))


def dpmpp_2m_step(schedule: NoiseSchedule, x: torch.Tensor, x0: torch.Tensor, t: int, t_next: int,
                  x0_prev: torch.Tensor | None = None, t_prev: int | None = None) -> torch.Tensor:
    """One DPM-Solver++(2M) update x_t -> x_{t_next} (Algorithm 2 of Lu et al. 2022).

    x0 is the data prediction at (x, t); x0_prev the one of the step before, at t_prev
    (None on the first step: first order). t_next = -1 returns x0 (sigma = 0).
    """
    if t_next < 0:
        return x0
    a_t, s_t, l_t = alpha_sigma_lambda(schedule, t)
    a_n, s_n, l_n = alpha_sigma_lambda(schedule, t_next)
    # 1. step size in half log-SNR
    h = l_n - l_t
    d = x0
    if x0_prev is not None:
        # 2. r_i = h_{i-1} / h_i, and x0 extrapolated to the middle of the step (the D_i of Algorithm 2)
        r = (l_t - alpha_sigma_lambda(schedule, t_prev)[2]) / h
        d = (1 + 1 / (2 * r)) * x0 - (1 / (2 * r)) * x0_prev
    # 3. the exponential-integrator update (Eq. 9 with x0 held at D_i over the step)
    return (s_n / s_t) * x - a_n * math.expm1(-h) * d


@register_sampler
class DPMSolverPP(Sampler):
    """DPM-Solver++(2M): one network call per step, x0 of the step before kept in the state."""

    name = "dpmpp"
    default_steps = 20

    def init_state(self, schedule: NoiseSchedule, timesteps: list[int]) -> State:
        state = super().init_state(schedule, timesteps)
        state.x0_prev, state.t_prev = None, None
        # lower-order final (see the module docstring)
        state.first_order_into = 0 if timesteps[-1] == 0 else None
        return state

    def step(self, denoise, x: torch.Tensor, t: int, t_next: int, state: State,
             generator: torch.Generator | None = None) -> torch.Tensor:
        x0, _ = denoise(x, t)
        x0_prev = None if t_next == state.first_order_into else state.x0_prev
        x = dpmpp_2m_step(state.schedule, x, x0, t, t_next, x0_prev, state.t_prev)
        state.x0_prev, state.t_prev = x0, t
        return x


def dpmpp_sample_loop(schedule: NoiseSchedule, model, shape, steps: int = 20, y=None, prediction: str = "eps",
                      spacing: str = "uniform", clip: bool = True, generator: torch.Generator | None = None,
                      device=None, x_T: torch.Tensor | None = None, return_intermediates: int = 0,
                      progress=None):
    """Sample with `steps` DPM-Solver++(2M) steps (one network call each); deterministic given x_T."""
    return sample_loop(schedule, model, shape, DPMSolverPP(), steps, spacing, y=y, prediction=prediction, clip=clip,
                       generator=generator, device=device, x_T=x_T, return_intermediates=return_intermediates,
                       progress=progress)

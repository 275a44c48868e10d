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

The last two steps are first order ("lower-order final" of the reference
implementation): the step into t = 0 spans a much longer lambda interval than
the one before it (abar_0 ~ 1, so lambda_0 is large), r_i is then small and
the extrapolation 1 / (2 r_i) amplifies the error instead of cancelling it;
and the step from t = 0 to clean data (sigma = 0, lambda = inf) simply returns
the last x0.
"""

from __future__ import annotations

import math

import torch

from ..errors import GenlabError
from .ddim import _call, abar, ddim_timesteps, frame_steps, model_x0_eps
from .samplers import register_sampler
from .schedules import NoiseSchedule


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


def dpmpp_sample_loop(schedule: NoiseSchedule, model, shape, steps: int = 20, y=None, prediction: str = "eps",
                      spacing: str = "uniform", clip: bool = True, generator: torch.Generator | None = None,
                      device="cpu", x_T: torch.Tensor | None = None, return_intermediates: int = 0,
                      progress=None):
    """Sample with `steps` DPM-Solver++(2M) steps (one network call each); deterministic given x_T."""
    ts = ddim_timesteps(schedule.T, steps, spacing)
    x = torch.randn(shape, generator=generator, device=device) if x_T is None else x_T.to(device)
    keep = frame_steps(len(ts), return_intermediates)
    frames = [x.clone()] if return_intermediates else []
    x0_prev, t_prev = None, None
    for i, t in enumerate(ts):
        t_next = ts[i + 1] if i + 1 < len(ts) else -1
        x0, _ = model_x0_eps(schedule, _call(model, x, t, y), x, t, prediction, clip)
        if t_next == ts[-1]:  # lower-order final (see the module docstring)
            x0_prev = None
        x = dpmpp_2m_step(schedule, x, x0, t, t_next, x0_prev, t_prev)
        x0_prev, t_prev = x0, t
        if i + 1 in keep:
            frames.append(x.clone())
        if progress is not None:
            progress(1)
    return (x, frames) if return_intermediates else x


@register_sampler("dpmpp", default_steps=20)
def dpmpp(schedule, model, shape, *, steps=20, y=None, prediction="eps", eta=0.0, spacing="uniform", clip=True,
          generator=None, device="cpu", x_T=None, return_intermediates=0, progress=None):
    if eta:
        raise GenlabError(f"the dpmpp sampler is deterministic; --eta {eta} applies to --sampler ddim only")
    return dpmpp_sample_loop(schedule, model, shape, steps=steps, y=y, prediction=prediction, spacing=spacing,
                             clip=clip, generator=generator, device=device, x_T=x_T,
                             return_intermediates=return_intermediates, progress=progress)

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
(abar = 1), the target of the last step.
"""

from __future__ import annotations

import math

import torch

from ..errors import GenlabError
from .gaussian import predict_eps, predict_x0
from .samplers import register_sampler
from .schedules import NoiseSchedule

SPACINGS = ("uniform", "quadratic")


def ddim_timesteps(T: int, steps: int, spacing: str = "uniform") -> list[int]:
    """`steps` distinct timesteps in 0..T-1, in sampling order (T-1 first, 0 last).

    uniform:   tau_i = round(i (T-1) / (S-1))        (the "linear" sub-sequence of DDIM Sec. 4.2)
    quadratic: tau_i = round((i sqrt(T-1) / (S-1))^2) (DDIM Appendix D.2: more steps at low noise)
    Both include t = T-1 (where x_T ~ N(0, I) is a good start) and t = 0; steps = T gives all of them.
    """
    if spacing not in SPACINGS:
        raise GenlabError(f"unknown timestep spacing '{spacing}'; choose one of: {', '.join(SPACINGS)}")
    if not 1 <= steps <= T:
        raise GenlabError(f"--steps must be between 1 and the model's {T} timesteps, got {steps}")
    if steps == 1:
        return [T - 1]
    grid = torch.linspace(0, 1, steps, dtype=torch.float64)
    ts = ((T - 1) * grid if spacing == "uniform" else (grid * math.sqrt(T - 1)) ** 2).round().long().tolist()
    # rounding can repeat small t (quadratic): push each t above its predecessor and keep room above it
    for i in range(1, steps):
        ts[i] = max(ts[i], ts[i - 1] + 1)
    for i in reversed(range(steps - 1)):
        ts[i] = min(ts[i], ts[i + 1] - 1)
    return ts[::-1]


def check_eta(eta: float) -> None:
    """eta in [0, 1] (also rejects NaN): beyond 1, sigma^2 of Eq. 16 exceeds what Eq. 12 can hold."""
    if not 0 <= eta <= 1:
        raise GenlabError(f"--eta must be between 0 (deterministic DDIM) and 1 (DDPM-like), got {eta}")


def abar(schedule: NoiseSchedule, t: int) -> float:
    """alpha_bar_t as a Python float, with alpha_bar_{-1} = 1 (clean data)."""
    return 1.0 if t < 0 else float(schedule.alphas_cumprod[t])


def ddim_sigma(schedule: NoiseSchedule, t: int, t_prev: int, eta: float) -> float:
    """sigma_t(eta) of DDIM Eq. 16 for the step t -> t_prev."""
    a_t, a_prev = abar(schedule, t), abar(schedule, t_prev)
    return eta * math.sqrt((1 - a_prev) / (1 - a_t)) * math.sqrt(1 - a_t / a_prev)


def model_x0_eps(schedule: NoiseSchedule, model_output: torch.Tensor, x_t: torch.Tensor, t: int,
                 prediction: str = "eps", clip: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(x0, eps) estimates from the network output at x_t, whatever it predicts.

    With clip, x0 is clamped to the data range [-1, 1] and eps is recomputed from
    the clamped x0 (so that x_t = sqrt(abar) x0 + sqrt(1 - abar) eps still holds,
    as in DDPM's clipped posterior mean).
    """
    tt = torch.full((x_t.shape[0],), t, device=x_t.device, dtype=torch.long)
    x0 = predict_x0(schedule, x_t, tt, model_output, prediction)
    if clip:
        x0 = x0.clamp(-1, 1)
    if prediction == "eps" and not clip:
        return x0, model_output
    return x0, predict_eps(schedule, x_t, tt, x0)


def ddim_step(schedule: NoiseSchedule, model_output: torch.Tensor, t: int, t_prev: int, x_t: torch.Tensor,
              eta: float = 0.0, prediction: str = "eps", clip: bool = False,
              generator: torch.Generator | None = None, noise: torch.Tensor | None = None):
    """One DDIM update x_t -> x_{t_prev} (t_prev = -1: to clean data). Returns (x_prev, x0).

    Noise is drawn only where sigma > 0 (eta > 0 and t_prev >= 0), one draw per
    step, so with eta = 1 over all timesteps the random stream is DDPM's.
    """
    # 1. the network's estimates of the clean sample and of the noise (DDIM Eq. 9)
    x0, eps = model_x0_eps(schedule, model_output, x_t, t, prediction, clip)
    a_prev = abar(schedule, t_prev)
    # 2. sigma_t(eta) (Eq. 16)
    sigma = ddim_sigma(schedule, t, t_prev, eta) if t_prev >= 0 else 0.0
    # 3. "direction pointing to x_t" (Eq. 12, middle term); max() guards rounding at sigma^2 ~ 1 - abar_prev
    direction = math.sqrt(max(1 - a_prev - sigma**2, 0.0)) * eps
    # 4. x_{t_prev} = sqrt(abar_prev) x0 + direction + sigma z (Eq. 12)
    x_prev = math.sqrt(a_prev) * x0 + direction
    if sigma > 0:
        if noise is None:
            noise = torch.randn(x_t.shape, generator=generator, device=x_t.device, dtype=x_t.dtype)
        x_prev = x_prev + sigma * noise
    return x_prev, x0


def frame_steps(num_steps: int, k: int) -> set[int]:
    """Which of the states 0 (x_T) .. num_steps (the result) to keep for k snapshots."""
    if not k:
        return set()
    return set(torch.linspace(0, num_steps, max(k, 2)).round().long().tolist())


def _call(model, x, t: int, y):
    return model(x, torch.full((x.shape[0],), t, device=x.device, dtype=torch.long), y).float()


def ddim_sample_loop(schedule: NoiseSchedule, model, shape, steps: int = 50, y=None, prediction: str = "eps",
                     eta: float = 0.0, spacing: str = "uniform", clip: bool = True,
                     generator: torch.Generator | None = None, device="cpu", x_T: torch.Tensor | None = None,
                     return_intermediates: int = 0, progress=None):
    """Sample with `steps` DDIM updates (one network call each). eta = 0: deterministic given x_T.

    return_intermediates=k also returns k snapshots evenly spaced over the steps
    (x_T first, the result last), as p_sample_loop does.
    """
    ts = ddim_timesteps(schedule.T, steps, spacing)
    x = torch.randn(shape, generator=generator, device=device) if x_T is None else x_T.to(device)
    keep = frame_steps(len(ts), return_intermediates)
    frames = [x.clone()] if return_intermediates else []
    for i, t in enumerate(ts):
        t_prev = ts[i + 1] if i + 1 < len(ts) else -1
        x, _ = ddim_step(schedule, _call(model, x, t, y), t, t_prev, x, eta, prediction, clip, generator)
        if i + 1 in keep:
            frames.append(x.clone())
        if progress is not None:
            progress(1)
    return (x, frames) if return_intermediates else x


@torch.no_grad()
def ddim_invert(schedule: NoiseSchedule, model, x0: torch.Tensor, steps: int = 50, y=None,
                prediction: str = "eps", spacing: str = "uniform", refine: int = 0,
                return_intermediates: int = 0, progress=None):
    """DDIM inversion: the x_T that deterministic DDIM (eta = 0, same steps) maps back to x0.

    Runs the eta = 0 update of Eq. 12 forwards, t_prev -> t, with eps taken at the
    current (less noisy) point, since the one at x_t is not known yet (DDIM Sec. 5.4).
    refine = k > 0 re-evaluates eps at the new x_t k times (fixed-point iteration of
    the implicit equation the sampler inverts), which shrinks the round-trip error.
    """
    ts = ddim_timesteps(schedule.T, steps, spacing)[::-1]  # 0 ... T-1
    x = x0.clone()
    keep = frame_steps(len(ts), return_intermediates)
    frames = [x.clone()] if return_intermediates else []
    for i, t in enumerate(ts):
        t_prev = ts[i - 1] if i > 0 else -1
        a_t, a_prev = abar(schedule, t), abar(schedule, t_prev)
        # the sampler's step t -> t_prev evaluates eps at (x_t, t); x_t is unknown, so start from (x_prev, t)
        guess = x
        for _ in range(refine + 1):
            _, eps = model_x0_eps(schedule, _call(model, guess, t, y), guess, t, prediction)
            # 1. x0 implied by the current point and eps (Eq. 9 at t_prev; x itself when t_prev = -1)
            x0_hat = (x - math.sqrt(1 - a_prev) * eps) / math.sqrt(a_prev)
            # 2. the deterministic update of Eq. 12 (sigma = 0), from t_prev up to t
            guess = math.sqrt(a_t) * x0_hat + math.sqrt(1 - a_t) * eps
        x = guess
        if i + 1 in keep:
            frames.append(x.clone())
        if progress is not None:
            progress(1)
    return (x, frames) if return_intermediates else x


@register_sampler("ddim", default_steps=50)
def ddim(schedule, model, shape, *, steps=50, y=None, prediction="eps", eta=0.0, spacing="uniform", clip=True,
         generator=None, device="cpu", x_T=None, return_intermediates=0, progress=None):
    if eta is None:
        eta = 0.0
    check_eta(eta)
    return ddim_sample_loop(schedule, model, shape, steps=steps, y=y, prediction=prediction, eta=eta,
                            spacing=spacing, clip=clip, generator=generator, device=device, x_T=x_T,
                            return_intermediates=return_intermediates, progress=progress)

"""The DDPM forward and reverse processes (Ho et al. 2020), one equation each.

`model(x_t, t, y)` is any network predicting, depending on `prediction`:
  "eps": the noise epsilon (DDPM, Eq. 14),
  "x0":  the clean image x_0,
  "v":   v = sqrt(alpha_bar) eps - sqrt(1 - alpha_bar) x_0 (Salimans & Ho 2022, Sec. 4).
"""

from __future__ import annotations

from typing import Callable

import torch

from .. import rng
from .schedules import NoiseSchedule, extract

Denoiser = Callable[..., torch.Tensor]


def q_sample(s: NoiseSchedule, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
    """Sample x_t ~ q(x_t | x_0) = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I)  (DDPM, Eq. 4)."""
    noise = torch.randn_like(x0) if noise is None else noise
    ab = extract(s.alphas_cumprod, t, x0.ndim)
    return ab.sqrt() * x0 + (1 - ab).sqrt() * noise


def q_posterior(s: NoiseSchedule, x0: torch.Tensor, xt: torch.Tensor, t: torch.Tensor):
    """Mean and variance of q(x_{t-1} | x_t, x_0)  (DDPM, Eqs. 6-7)."""
    mean = extract(s.posterior_mean_coef1, t, xt.ndim) * x0 + extract(s.posterior_mean_coef2, t, xt.ndim) * xt
    return mean, extract(s.posterior_variance, t, xt.ndim)


def predict_x0(s: NoiseSchedule, xt: torch.Tensor, t: torch.Tensor, out: torch.Tensor, prediction: str) -> torch.Tensor:
    """Turn the network output into an estimate of x_0 (inverting Eq. 4 for eps)."""
    ab = extract(s.alphas_cumprod, t, xt.ndim)
    if prediction == "eps":
        return (xt - (1 - ab).sqrt() * out) / ab.sqrt()
    if prediction == "v":
        return ab.sqrt() * xt - (1 - ab).sqrt() * out
    return out


def predict_eps(s: NoiseSchedule, xt: torch.Tensor, t: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
    """The noise implied by x_t and an x_0 estimate (Eq. 4 solved for eps)."""
    ab = extract(s.alphas_cumprod, t, xt.ndim)
    return (xt - ab.sqrt() * x0) / (1 - ab).sqrt()


def model_x0_eps(s: NoiseSchedule, model_output: torch.Tensor, x_t: torch.Tensor, t: int,
                 prediction: str = "eps", clip: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(x0, eps) estimates from the network output at (x_t, t), whatever it predicts.

    With clip, x0 is clamped to the data range [-1, 1] and eps is recomputed from
    the clamped x0 (so that x_t = sqrt(abar) x0 + sqrt(1 - abar) eps still holds,
    as in DDPM's clipped posterior mean).
    """
    tt = torch.full((x_t.shape[0],), t, device=x_t.device, dtype=torch.long)
    x0 = predict_x0(s, x_t, tt, model_output, prediction)
    if clip:
        x0 = x0.clamp(-1, 1)
    if prediction == "eps" and not clip:
        return x0, model_output
    return x0, predict_eps(s, x_t, tt, x0)


def diffusion_loss(s: NoiseSchedule, model: Denoiser, x0: torch.Tensor, t: torch.Tensor | None = None,
                   y: torch.Tensor | None = None, prediction: str = "eps", weighting: str = "none",
                   noise: torch.Tensor | None = None) -> torch.Tensor:
    """The simplified DDPM objective || target - model(x_t, t) ||^2  (DDPM, Eq. 14 / Algorithm 1).

    weighting="min_snr": Min-SNR-gamma (Hang et al. 2023, gamma = 5), which stops
    the nearly-clean steps from dominating and speeds up convergence; expressed
    for each prediction type so that all three optimise the same weighted x0 error.
    """
    n = x0.shape[0]
    t = torch.randint(0, s.T, (n,), device=x0.device) if t is None else t
    noise = torch.randn_like(x0) if noise is None else noise
    xt = q_sample(s, x0, t, noise)
    out = model(xt, t, y).float()
    ab = extract(s.alphas_cumprod, t, x0.ndim)
    target = {"eps": noise, "x0": x0, "v": ab.sqrt() * noise - (1 - ab).sqrt() * x0}[prediction]
    per_item = (out - target).pow(2).mean(dim=tuple(range(1, x0.ndim)))
    if weighting == "min_snr":
        snr = (ab / (1 - ab)).flatten()
        w = snr.clamp(max=5.0) / {"eps": snr, "x0": torch.ones_like(snr), "v": snr + 1}[prediction]
        per_item = per_item * w
    return per_item.mean()


def p_mean_variance(s: NoiseSchedule, model: Denoiser, xt: torch.Tensor, t: torch.Tensor, y=None,
                    prediction: str = "eps", variance: str = "small", clip: bool = True):
    """Mean, variance and x_0 estimate of p(x_{t-1} | x_t).

    The mean is the posterior mean of Eq. 7 evaluated at the predicted x_0 (equivalent
    to Eq. 11 for eps prediction, and lets us clip x_0 to the data range).
    variance "small": beta~_t (posterior variance); "large": beta_t (DDPM Sec. 3.2).
    """
    x0 = predict_x0(s, xt, t, model(xt, t, y).float(), prediction)
    if clip:
        x0 = x0.clamp(-1, 1)
    mean, _ = q_posterior(s, x0, xt, t)
    var = extract(s.posterior_variance if variance == "small" else s.betas, t, xt.ndim)
    return mean, var, x0


def ddpm_step(s: NoiseSchedule, x0: torch.Tensor, xt: torch.Tensor, t: int, variance: str = "small",
              generator: torch.Generator | None = None) -> torch.Tensor:
    """x_{t-1} = mu~_t(x_t, x0) + sigma_t z: the posterior of Eq. 7 at the estimate x0  (DDPM, Algorithm 2, line 4).

    variance "small": sigma_t^2 = beta~_t (posterior variance); "large": beta_t (DDPM Sec. 3.2).
    No noise is added at the last step (t = 0).
    """
    tt = torch.full((xt.shape[0],), t, device=xt.device, dtype=torch.long)
    mean, _ = q_posterior(s, x0, xt, tt)
    if t == 0:
        return mean
    var = extract(s.posterior_variance if variance == "small" else s.betas, tt, xt.ndim)
    return mean + var.sqrt() * rng.randn(xt.shape, generator, xt.device, xt.dtype)


def p_sample(s: NoiseSchedule, model: Denoiser, xt: torch.Tensor, t: int, y=None, prediction: str = "eps",
             variance: str = "small", clip: bool = True, generator: torch.Generator | None = None):
    """One ancestral step x_t -> x_{t-1} = mu_theta + sigma_t z  (DDPM, Algorithm 2, line 4).

    Returns (x_{t-1}, x0_estimate). No noise is added at the last step (t = 0).
    """
    tt = torch.full((xt.shape[0],), t, device=xt.device, dtype=torch.long)
    _, _, x0 = p_mean_variance(s, model, xt, tt, y, prediction, variance, clip)
    return ddpm_step(s, x0, xt, t, variance, generator), x0

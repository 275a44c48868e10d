"""The DDPM forward and reverse processes (Ho et al. 2020), one equation each.

`model(x_t, t, y)` is any network predicting, depending on `prediction`:
  "eps": the noise epsilon (DDPM, Eq. 14),
  "x0":  the clean image x_0,
  "v":   v = sqrt(alpha_bar) eps - sqrt(1 - alpha_bar) x_0 (Salimans & Ho 2022, Sec. 4).
"""

from __future__ import annotations

from typing import Callable

import torch

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


def p_sample(s: NoiseSchedule, model: Denoiser, xt: torch.Tensor, t: int, y=None, prediction: str = "eps",
             variance: str = "small", clip: bool = True, generator: torch.Generator | None = None):
    """One ancestral step x_t -> x_{t-1} = mu_theta + sigma_t z  (DDPM, Algorithm 2, line 4).

    Returns (x_{t-1}, x0_estimate). No noise is added at the last step (t = 0).
    """
    tt = torch.full((xt.shape[0],), t, device=xt.device, dtype=torch.long)
    mean, var, x0 = p_mean_variance(s, model, xt, tt, y, prediction, variance, clip)
    if t == 0:
        return mean, x0
    z = torch.randn(xt.shape, generator=generator, device=xt.device, dtype=xt.dtype)
    return mean + var.sqrt() * z, x0


def p_sample_loop(s: NoiseSchedule, model: Denoiser, shape, y=None, prediction: str = "eps",
                  variance: str = "small", clip: bool = True, generator: torch.Generator | None = None,
                  device="cpu", x_T: torch.Tensor | None = None, return_intermediates: int = 0, progress=None):
    """Algorithm 2 of DDPM: x_T ~ N(0, I), then T ancestral steps down to x_0.

    return_intermediates=k > 1 also returns k snapshots of x_t evenly spaced in t
    (x_T first, the final x_0 last), for strips and GIFs.
    """
    x = torch.randn(shape, generator=generator, device=device) if x_T is None else x_T
    keep = set(torch.linspace(s.T - 1, 0, return_intermediates).round().long().tolist()) if return_intermediates else set()
    frames = [x.clone()] if return_intermediates else []
    for t in reversed(range(s.T)):
        x, _ = p_sample(s, model, x, t, y, prediction, variance, clip, generator)
        if t in keep and t != s.T - 1:
            frames.append(x.clone())
        if progress is not None:
            progress(1)
    return (x, frames) if return_intermediates else x

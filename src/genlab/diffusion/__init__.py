"""Gaussian diffusion (DDPM/DDIM and friends) and discrete diffusion."""

from .schedules import NoiseSchedule, cosine_betas, linear_betas, make_schedule  # noqa: F401
from .gaussian import (  # noqa: F401
    diffusion_loss,
    p_mean_variance,
    p_sample,
    predict_x0,
    q_posterior,
    q_sample,
)
from .ddpm import p_sample_loop  # noqa: F401  (DDPM Algorithm 2, the DDPM sampler's loop)

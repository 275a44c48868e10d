"""The variational autoencoder (Kingma & Welling 2014), the maths it needs,
and the two image likelihoods shared with the hierarchical VAE.

    encoder:  x -> (mu, log_var) of q(z|x) = N(mu, diag(exp(log_var)))
    sample:   z = mu + exp(log_var / 2) * eps,  eps ~ N(0, I)      (reparameterisation)
    decoder:  z -> parameters of p(x|z)
    ELBO:     log p(x) >= E_q[log p(x|z)] - KL(q(z|x) || N(0, I))  (Eq. 3 of Kingma & Welling 2014)

Training minimises  -E_q[log p(x|z)] + beta * w(step) * KL  per image, in
nats: beta is the beta-VAE weight (Higgins et al. 2017) and w ramps linearly
from 0 to 1 over `kl_warmup_steps` (KL warm-up, Bowman et al. 2016).

Likelihood conventions (what "nats" and "bits/dim" mean here):
  bernoulli  targets are the intensities (x + 1) / 2 in [0, 1] (binarised at
             0.5 with `binarize=True`); log p(x|z) = -BCE-with-logits. On
             binarised data this is an exact likelihood of binary images; on
             grey intensities it is a cross-entropy (not a density of 8-bit
             data), so compare such numbers only among Bernoulli models.
  gaussian   a discretised Gaussian over the 256 levels of 8-bit data: the
             mass of N(mean, sigma^2) on each level's bin of width 2/255 in
             [-1, 1] units, the end bins extending to -inf / +inf (as for the
             discretised logistic of PixelCNN++, Salimans et al. 2017). This
             is a proper likelihood of the 8-bit images, so bits/dim is
             comparable with published numbers. The decoder predicts sigma
             per pixel alongside the mean.
bits/dim = nats per image / (C * H * W * ln 2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .. import rng
from ..errors import GenlabError, ParamError
from ..nn.conv import ConvDecoder, ConvEncoder
from .base import GenerativeModel, register

LIKELIHOODS = ("bernoulli", "gaussian")
LOG_2PI = math.log(2 * math.pi)


# ----------------------------------------------------------------------------- maths

def randn(shape, generator: torch.Generator | None, device) -> torch.Tensor:
    """Standard normal noise drawn on the generator's device, then moved to `device`."""
    return rng.randn(shape, generator, device)


def reparameterize(mu: torch.Tensor, log_var: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """z = mu + sigma * eps with eps ~ N(0, I): a sample of N(mu, sigma^2) that is
    differentiable in mu and log_var (Sec. 2.4 of Kingma & Welling 2014)."""
    eps = randn(mu.shape, generator, mu.device).to(mu.dtype)
    return mu + torch.exp(0.5 * log_var) * eps


def gaussian_kl(mu: torch.Tensor, log_var: torch.Tensor,
                mu_p: torch.Tensor | None = None, log_var_p: torch.Tensor | None = None) -> torch.Tensor:
    """Elementwise KL( N(mu, e^log_var) || N(mu_p, e^log_var_p) ) in nats; sum over dims yourself.

    With mu_p = log_var_p = None the second Gaussian is N(0, 1):
        KL = 0.5 * (mu^2 + e^log_var - 1 - log_var)                     (Appendix B of Kingma & Welling)
    Between two Gaussians:
        KL = 0.5 * (log_var_p - log_var + (e^log_var + (mu - mu_p)^2) / e^log_var_p - 1)
    """
    if mu_p is None and log_var_p is None:
        return 0.5 * (mu.pow(2) + log_var.exp() - 1.0 - log_var)
    if mu_p is None:
        mu_p = torch.zeros_like(mu)
    if log_var_p is None:
        log_var_p = torch.zeros_like(log_var)
    return 0.5 * (log_var_p - log_var + (log_var.exp() + (mu - mu_p).pow(2)) * torch.exp(-log_var_p) - 1.0)


def gaussian_log_prob(z: torch.Tensor, mu: torch.Tensor | None = None,
                      log_var: torch.Tensor | None = None) -> torch.Tensor:
    """log N(z; mu, diag(e^log_var)) summed over the last dim (standard normal when mu, log_var are None)."""
    if mu is None:
        return -0.5 * (z.pow(2) + LOG_2PI).sum(-1)
    return -0.5 * ((z - mu).pow(2) * torch.exp(-log_var) + log_var + LOG_2PI).sum(-1)


def _sum_per_item(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(t.shape[0], -1).sum(1)


def bernoulli_log_likelihood(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """log p(target | logits) per item, summed over pixels; targets in [0, 1]."""
    return -_sum_per_item(F.binary_cross_entropy_with_logits(logits, target, reduction="none"))


def gaussian_log_likelihood(x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """Continuous log N(x; mean, e^(2 log_scale)) per item, summed over all non-batch dims."""
    z = (x - mean) * torch.exp(-log_scale)
    return _sum_per_item(-0.5 * z.pow(2) - log_scale - 0.5 * LOG_2PI)


def discretized_gaussian_log_likelihood(x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """log P(x) per item for 8-bit images scaled to [-1, 1] under a discretised Gaussian.

    Each of the 256 levels owns the bin [x - 1/255, x + 1/255]; the bins of -1
    and +1 extend to -inf and +inf so the 256 masses sum to exactly one.
    """
    half_bin = 1.0 / 255.0
    inv_std = torch.exp(-log_scale)
    centred = x - mean
    upper, lower = (centred + half_bin) * inv_std, (centred - half_bin) * inv_std
    log_cdf_upper = torch.special.log_ndtr(upper)          # mass of (-inf, x + 1/255]: the bin of -1
    log_sf_lower = torch.special.log_ndtr(-lower)          # mass of [x - 1/255, inf): the bin of +1
    # inner bins: Phi(b) - Phi(a) = Phi(b) * (1 - exp(log Phi(a) - log Phi(b))), taken in the tail
    # nearer to x (mirrored when x > mean) and in log space, so it neither cancels nor underflows
    b = torch.where(centred > 0, -lower, upper)
    a = torch.where(centred > 0, -upper, lower)
    log_b = torch.special.log_ndtr(b)
    one_minus = -torch.expm1(torch.special.log_ndtr(a) - log_b)
    log_mid = log_b + torch.log(one_minus.clamp_min(torch.finfo(one_minus.dtype).tiny))
    log_p = torch.where(x < -1 + half_bin, log_cdf_upper, torch.where(x > 1 - half_bin, log_sf_lower, log_mid))
    return _sum_per_item(log_p)


def vae_loss(recon_logits: torch.Tensor, x: torch.Tensor, mu: torch.Tensor, log_var: torch.Tensor,
             kl_weight: float = 1.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The Bernoulli VAE loss: (loss, reconstruction, KL), each averaged over the batch.

    recon_logits: decoder output (N, ...) for targets x in [0, 1] (same shape);
    mu, log_var: (N, D) of q(z|x). Per image, in nats:
        reconstruction = BCE-with-logits summed over pixels = -log p(x|z)
        KL             = KL(q(z|x) || N(0, I)) summed over latent dims
        loss           = reconstruction + kl_weight * KL   (kl_weight = 1: the negative ELBO)
    """
    if mu.ndim != 2 or mu.shape != log_var.shape:
        raise GenlabError(f"mu and log_var must both be (N, D), got {tuple(mu.shape)} and {tuple(log_var.shape)}")
    if not (math.isfinite(kl_weight) and kl_weight >= 0):
        raise GenlabError(f"kl_weight must be a finite number >= 0, got {kl_weight}")
    if x.min() < 0 or x.max() > 1:
        raise GenlabError("vae_loss takes targets in [0, 1]; genlab images are in [-1, 1], pass (x + 1) / 2")
    recon = -bernoulli_log_likelihood(recon_logits, x).mean()
    kl = gaussian_kl(mu, log_var).sum(1).mean()
    return recon + kl_weight * kl, recon, kl


def iwae_bound(log_weights: torch.Tensor) -> torch.Tensor:
    """Importance-weighted bound (Eq. 8 of Burda et al. 2016) from log w_i = log p(x, z_i) - log q(z_i|x).

    log_weights: (k, N) for k samples per item -> (N,)  log (1/k) sum_i w_i.
    k = 1 is the ELBO; the bound rises towards log p(x) as k grows.
    """
    k = log_weights.shape[0]
    return torch.logsumexp(log_weights, dim=0) - math.log(k)


def kl_weight_at(step: torch.Tensor, beta: float, warmup_steps: int) -> torch.Tensor:
    """beta * min(1, step / warmup_steps): linear KL warm-up to the beta-VAE weight, as a tensor (no sync)."""
    if warmup_steps <= 0:
        return torch.full((), float(beta), device=step.device)
    return beta * (step.float() / warmup_steps).clamp(max=1.0)


# ----------------------------------------------------------------------------- likelihood module

class ImageLikelihood(nn.Module):
    """p(x | decoder output) for images in [-1, 1]: 'bernoulli' or discretised 'gaussian' (see module doc).

    The decoder emits `out_channels` maps: C logits (Bernoulli), or C means
    followed by C log-sigmas (Gaussian: a per-pixel, per-image scale, so the
    net can be sure of the black background and unsure of textures at once).
    """

    def __init__(self, kind: str, channels: int, binarize: bool = False):
        super().__init__()
        if kind not in LIKELIHOODS:
            raise GenlabError(f"unknown likelihood '{kind}'; choose one of: {', '.join(LIKELIHOODS)}")
        if binarize and kind != "bernoulli":
            raise ParamError("binarize", f"needs likelihood bernoulli (binary pixels have a Bernoulli likelihood), "
                             f"not {kind}")
        self.kind, self.binarize, self.channels = kind, binarize, channels
        self.out_channels = channels if kind == "bernoulli" else 2 * channels

    def observe(self, x: torch.Tensor) -> torch.Tensor:
        """The data as modelled, still in [-1, 1]: thresholded at intensity 0.5 when binarising."""
        return torch.where(x > 0, 1.0, -1.0).to(x.dtype) if self.binarize else x

    def log_prob(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """log p(x | out) per image in nats; x as returned by `observe`. Computed in float32."""
        out, x = out.float(), x.float()
        if self.kind == "bernoulli":
            return bernoulli_log_likelihood(out, (x + 1) * 0.5)
        mean, log_scale = out.split(self.channels, dim=1)
        # sigma below ~1/1000 of the range buys nothing on 8-bit data and invites overflow
        return discretized_gaussian_log_likelihood(x, mean, log_scale.clamp(-7.0, 2.0))

    def mean(self, out: torch.Tensor) -> torch.Tensor:
        """Mean of p(x|out) as an image in [-1, 1] (what `sample` and reconstructions show)."""
        if self.kind == "bernoulli":
            return torch.sigmoid(out.float()) * 2 - 1
        return out[:, : self.channels].float().clamp(-1, 1)


# ----------------------------------------------------------------------------- the model

@dataclass
class VAEConfig:
    channels: int = 1
    image_size: int = 28
    latent_dim: int = 16          # size of z
    width: int = 32               # conv channels (2x at the lowest resolution)
    hidden: int = 256             # width of the fully connected layer on each side
    likelihood: str = "bernoulli"  # "bernoulli" (intensities in [0, 1]) or "gaussian" (discretised, 8-bit)
    binarize: bool = False        # bernoulli only: threshold pixels at 0.5 (binary data)
    kl_weight: float = 1.0        # beta; 1 = the true ELBO
    kl_warmup_steps: int = 0      # KL weight ramps 0 -> kl_weight over this many training steps
    iwae_k: int = 50              # importance samples per image for the IWAE bound in evaluate()


def check_kl_options(cfg) -> None:
    if not (math.isfinite(cfg.kl_weight) and cfg.kl_weight >= 0):
        raise ParamError("kl_weight", f"must be a finite number >= 0 (1 = the true ELBO), got {cfg.kl_weight}")
    if cfg.kl_warmup_steps < 0:
        raise ParamError("kl_warmup_steps", f"must be >= 0, got {cfg.kl_warmup_steps}")
    if cfg.iwae_k < 1:
        raise ParamError("iwae_k", f"must be >= 1, got {cfg.iwae_k}")


class LatentVariableModel(GenerativeModel):
    """What the VAE and the hierarchical VAE share: the bound's terms and the KL warm-up counter.

    Subclasses provide encode/decode plus
      elbo_terms(x, generator) -> dict of per-image tensors with key "elbo",
      log_weights(x, k, generator) -> (k, N) importance log weights,
      posterior_stats(x, generator) -> {layer: (posterior mean (N,D), KL per dim (N,D))}.
    """

    likelihood: ImageLikelihood

    def observe(self, x: torch.Tensor) -> torch.Tensor:
        return self.likelihood.observe(x)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Mean of p(x|z) at the posterior mean code, as an image in [-1, 1]."""
        return self.decode(self.embed(x))

    def current_kl_weight(self) -> torch.Tensor:
        return kl_weight_at(self.kl_step, self.cfg.kl_weight, self.cfg.kl_warmup_steps)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # checkpoints written before the counter was renamed (GenerativeModel.train_step is the loop's method)
        if prefix + "train_step" in state_dict:
            state_dict[prefix + "kl_step"] = state_dict.pop(prefix + "train_step")
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _count_step(self) -> None:
        # the warm-up counts optimisation steps only, not evaluation passes
        if self.training and torch.is_grad_enabled():
            self.kl_step += 1



@register
class VAE(LatentVariableModel):
    """Convolutional VAE with a N(0, I) prior and a Bernoulli or discretised Gaussian decoder."""

    family = "vae"
    default_dataset = "fashion_mnist"
    train_defaults = {"lr": 1e-3, "epochs": 10, "warmup_steps": 100}
    Config = VAEConfig

    def __init__(self, cfg: VAEConfig):
        super().__init__(cfg)
        if cfg.latent_dim < 1:
            raise ParamError("latent_dim", f"must be >= 1, got {cfg.latent_dim}")
        check_kl_options(cfg)
        self.encoder = ConvEncoder(cfg.channels, cfg.image_size, 2 * cfg.latent_dim, cfg.width, cfg.hidden)
        self.likelihood = ImageLikelihood(cfg.likelihood, cfg.channels, cfg.binarize)
        self.decoder = ConvDecoder(cfg.latent_dim, cfg.channels, cfg.image_size, cfg.width, cfg.hidden,
                                   out_channels=self.likelihood.out_channels)
        self.register_buffer("kl_step", torch.zeros((), dtype=torch.long))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, log_var) of q(z|x) for observed images x in [-1, 1]."""
        mu, log_var = self.encoder(x).float().chunk(2, dim=1)
        return mu, log_var

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Mean image of p(x|z) in [-1, 1]."""
        return self.likelihood.mean(self.decoder(z))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Posterior mean code of raw data x (used for interpolation and scatter plots)."""
        return self.encode(self.observe(x))[0]

    def loss(self, batch):
        x = self.observe(batch["x"])
        mu, log_var = self.encode(x)
        z = reparameterize(mu, log_var)
        log_px = self.likelihood.log_prob(self.decoder(z), x)
        kl = gaussian_kl(mu, log_var).sum(1)
        w = self.current_kl_weight()
        self._count_step()
        loss = (-log_px + w * kl).mean()
        neg_elbo = (kl - log_px).mean().detach()
        return loss, {"recon": -log_px.mean().detach(), "kl": kl.mean().detach(),
                      "neg_elbo": neg_elbo, "kl_weight": w.detach()}

    def elbo_terms(self, x: torch.Tensor, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Per-image E_q[log p(x|z)] (one sample), analytic KL and their difference, the ELBO."""
        x = self.observe(x)
        mu, log_var = self.encode(x)
        z = reparameterize(mu, log_var, generator)
        log_px = self.likelihood.log_prob(self.decoder(z), x)
        kl = gaussian_kl(mu, log_var).sum(1)
        return {"log_px_z": log_px, "kl": kl, "elbo": log_px - kl}

    def log_weights(self, x: torch.Tensor, k: int, generator: torch.Generator | None = None,
                    max_batch: int = 4096) -> torch.Tensor:
        """(k, N) log p(x, z_i) - log q(z_i|x), z_i ~ q(z|x); decoded `max_batch` images at a time."""
        x = self.observe(x)
        mu, log_var = self.encode(x)
        n = x.shape[0]
        rows, per_chunk = [], max(1, max_batch // n)
        for start in range(0, k, per_chunk):
            m = min(per_chunk, k - start)
            mu_k, lv_k = mu.repeat(m, 1), log_var.repeat(m, 1)     # (m*n, D), sample-major
            z = reparameterize(mu_k, lv_k, generator)
            log_px = self.likelihood.log_prob(self.decoder(z), x.repeat(m, 1, 1, 1))
            log_w = log_px + gaussian_log_prob(z) - gaussian_log_prob(z, mu_k, lv_k)
            rows.append(log_w.reshape(m, n))
        return torch.cat(rows)

    def posterior_stats(self, x: torch.Tensor, generator: torch.Generator | None = None):
        mu, log_var = self.encode(self.observe(x))
        return {"z": (mu, gaussian_kl(mu, log_var))}

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, temperature: float = 1.0, **kwargs):
        """n images: z ~ N(0, temperature^2 I), shown as the mean of p(x|z)."""
        z = randn((n, self.cfg.latent_dim), generator, self.device) * temperature
        return self.decode(z)

"""A VAE with two stochastic layers (top-down generative path).

Generative model (top-down):
    z2 ~ p(z2) = N(0, I)
    z1 ~ p(z1|z2) = N(mu_p(z2), diag(exp(log_var_p(z2))))
    x  ~ p(x|z1)            (Bernoulli or discretised Gaussian, as in vae.py)
Inference model (x -> (z1, z2)):
    h = encoder(x);  z2 ~ q(z2|x) = N(.|h);  z1 ~ q(z1|x, z2) = N(.|h, z2)
The inference net shares one conv encoder and samples z2 first, so q(z1|.)
can follow the same top-down order as the prior (as in the Ladder VAE,
Sonderby et al. 2016); "q(z1|x)" in the ELBO below means this q(z1|x, z2).
q(z1|x, z2) is parameterised relative to the prior (residual Normal, Sec. 3.2
of NVAE, Vahdat & Kautz 2020): mu_q = mu_p(z2) + d_mu, log_var_q = log_var_p(z2)
+ d_log_var, so an encoder that outputs zeros gives q = p and KL1 = 0, which
keeps the KL of the lower layer small and stable early in training. The shift
is a linear read-out of h (what a one-layer VAE's encoder head computes) plus an
MLP of (h, z2): without the linear path, all the information about x that z1
carries must squeeze through the MLP's top_hidden units, and the HVAE trades
reconstruction for rate against a VAE of the same size (measured without it:
lower KL, worse reconstruction, the same bound; with it the HVAE's bound beats
the VAE's at equal parameter count, benchmarks/vae_results.md).

ELBO (one sample of (z1, z2) from q), as named terms:
    ELBO = E[log p(x|z1)] + E[log p(z1|z2)] + E[log p(z2)] - E[log q(z1|x)] - E[log q(z2|x)]
Training uses the same bound with the two KLs in closed form (both pairs are
diagonal Gaussians once z2 is sampled), which has lower variance:
    ELBO = E[log p(x|z1)] - E_q(z2|x)[KL(q(z1|x,z2) || p(z1|z2))] - KL(q(z2|x) || N(0, I)).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import GenlabError, ParamError
from ..nn.conv import ConvDecoder, ConvEncoder, check_widths
from .base import register
from .vae import (ImageLikelihood, LatentVariableModel, check_kl_options, gaussian_kl, gaussian_log_prob, randn,
                  reparameterize)


@dataclass
class HVAEConfig:
    channels: int = 1
    image_size: int = 28
    z1_dim: int = 32              # bottom latent (decoded into the image)
    z2_dim: int = 16              # top latent (prior N(0, I))
    width: int = 32               # conv channels, as in the VAE
    hidden: int = 256             # conv-net fully connected width, as in the VAE
    top_hidden: int = 128         # width of the MLPs of p(z1|z2) and q(z1|x,z2)
    likelihood: str = "bernoulli"  # "bernoulli" or "gaussian" (see vae.py)
    binarize: bool = False
    kl_weight: float = 1.0        # beta on both KL terms
    kl_warmup_steps: int = 0
    iwae_k: int = 50


class GaussianMLP(nn.Module):
    """in -> hidden -> (mu, log_var) of a diagonal Gaussian over out_dim."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int):
        super().__init__()
        self.fc, self.out = nn.Linear(in_dim, hidden), nn.Linear(hidden, 2 * out_dim)

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, log_var = self.out(F.silu(self.fc(h))).float().chunk(2, dim=1)
        return mu, log_var


@register
class HVAE(LatentVariableModel):
    """Two-layer hierarchical VAE: z2 -> z1 -> x."""

    family = "hvae"
    default_dataset = "fashion_mnist"
    train_defaults = {"lr": 1e-3, "epochs": 10, "warmup_steps": 100}
    Config = HVAEConfig

    def __init__(self, cfg: HVAEConfig):
        super().__init__(cfg)
        for name in ("z1_dim", "z2_dim"):
            if getattr(cfg, name) < 1:
                raise ParamError(name, f"must be >= 1, got {getattr(cfg, name)}")
        check_kl_options(cfg)
        check_widths(top_hidden=cfg.top_hidden)
        self.encoder = ConvEncoder(cfg.channels, cfg.image_size, cfg.hidden, cfg.width, cfg.hidden)
        self.q_z2 = nn.Linear(cfg.hidden, 2 * cfg.z2_dim)
        self.q_z1 = GaussianMLP(cfg.hidden + cfg.z2_dim, cfg.top_hidden, cfg.z1_dim)
        self.q_z1_skip = nn.Linear(cfg.hidden, 2 * cfg.z1_dim)
        self.p_z1 = GaussianMLP(cfg.z2_dim, cfg.top_hidden, cfg.z1_dim)
        self.likelihood = ImageLikelihood(cfg.likelihood, cfg.channels, cfg.binarize)
        self.decoder = ConvDecoder(cfg.z1_dim, cfg.channels, cfg.image_size, cfg.width, cfg.hidden,
                                   out_channels=self.likelihood.out_channels)
        self.register_buffer("kl_step", torch.zeros((), dtype=torch.long))

    # --- the two halves ---------------------------------------------------

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Shared encoder features h of observed images."""
        return F.silu(self.encoder(x))

    def q2(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, log_var = self.q_z2(h).float().chunk(2, dim=1)
        return mu, log_var

    def q1(self, h: torch.Tensor, z2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, log_var) of q(z1|x, z2): the prior's, shifted by what the encoder adds (residual Normal)."""
        d_mu, d_log_var = self.q_z1(torch.cat([h, z2.to(h.dtype)], dim=1))
        skip_mu, skip_log_var = self.q_z1_skip(h).float().chunk(2, dim=1)
        d_mu, d_log_var = d_mu + skip_mu, d_log_var + skip_log_var
        mu_p, log_var_p = self.prior_z1(z2)
        return mu_p + d_mu, log_var_p + d_log_var

    def prior_z1(self, z2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, log_var) of p(z1|z2)."""
        if z2.ndim != 2 or z2.shape[1] != self.cfg.z2_dim:
            raise GenlabError(f"z2 must have shape (N, {self.cfg.z2_dim}), got {tuple(z2.shape)}")
        return self.p_z1(z2)

    def decode(self, z1: torch.Tensor) -> torch.Tensor:
        """Mean image of p(x|z1) in [-1, 1]."""
        return self.likelihood.mean(self.decoder(z1))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Posterior mean of z1 with z2 at its posterior mean (for interpolation and scatter plots)."""
        h = self.features(self.observe(x))
        return self.q1(h, self.q2(h)[0])[0]

    # --- the bound --------------------------------------------------------

    def _pass(self, x: torch.Tensor, generator=None) -> dict[str, torch.Tensor]:
        """One sample of (z2, z1) ~ q and every distribution's parameters along the way."""
        h = self.features(x)
        mu2, lv2 = self.q2(h)
        z2 = reparameterize(mu2, lv2, generator)
        mu1, lv1 = self.q1(h, z2)
        z1 = reparameterize(mu1, lv1, generator)
        mu1p, lv1p = self.prior_z1(z2)
        log_px = self.likelihood.log_prob(self.decoder(z1), x)
        return dict(mu2=mu2, lv2=lv2, z2=z2, mu1=mu1, lv1=lv1, z1=z1, mu1p=mu1p, lv1p=lv1p, log_px=log_px)

    def loss(self, batch):
        x = self.observe(batch["x"])
        p = self._pass(x)
        kl1 = gaussian_kl(p["mu1"], p["lv1"], p["mu1p"], p["lv1p"]).sum(1)
        kl2 = gaussian_kl(p["mu2"], p["lv2"]).sum(1)
        w = self.current_kl_weight()
        self._count_step()
        loss = (-p["log_px"] + w * (kl1 + kl2)).mean()
        return loss, {"recon": -p["log_px"].mean().detach(), "kl_z1": kl1.mean().detach(),
                      "kl_z2": kl2.mean().detach(), "neg_elbo": (kl1 + kl2 - p["log_px"]).mean().detach(),
                      "kl_weight": w.detach()}

    def _named_terms(self, p: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {
            "log_px_z1": p["log_px"],                                 # E[log p(x|z1)]
            "log_pz1_z2": gaussian_log_prob(p["z1"], p["mu1p"], p["lv1p"]),  # E[log p(z1|z2)]
            "log_pz2": gaussian_log_prob(p["z2"]),                   # E[log p(z2)]
            "log_qz1_x": gaussian_log_prob(p["z1"], p["mu1"], p["lv1"]),  # E[log q(z1|x, z2)]
            "log_qz2_x": gaussian_log_prob(p["z2"], p["mu2"], p["lv2"]),  # E[log q(z2|x)]
        }

    def elbo_terms(self, x: torch.Tensor, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Per-image named ELBO terms (one sample), the closed-form KLs, and
        elbo = log p(x|z1) - KL1 - KL2 (the lower-variance estimate) and elbo_mc (sum of named terms)."""
        p = self._pass(self.observe(x), generator)
        t = self._named_terms(p)
        t["kl_z1"] = gaussian_kl(p["mu1"], p["lv1"], p["mu1p"], p["lv1p"]).sum(1)
        t["kl_z2"] = gaussian_kl(p["mu2"], p["lv2"]).sum(1)
        t["elbo_mc"] = t["log_px_z1"] + t["log_pz1_z2"] + t["log_pz2"] - t["log_qz1_x"] - t["log_qz2_x"]
        t["elbo"] = t["log_px_z1"] - t["kl_z1"] - t["kl_z2"]
        return t

    def log_weights(self, x: torch.Tensor, k: int, generator: torch.Generator | None = None,
                    max_batch: int = 4096) -> torch.Tensor:
        """(k, N) log p(x, z1, z2) - log q(z1, z2|x) for k joint samples per image."""
        x = self.observe(x)
        n = x.shape[0]
        h = self.features(x)
        mu2, lv2 = self.q2(h)
        rows, per_chunk = [], max(1, max_batch // n)
        for start in range(0, k, per_chunk):
            m = min(per_chunk, k - start)
            hm, mu2m, lv2m = h.repeat(m, 1), mu2.repeat(m, 1), lv2.repeat(m, 1)
            z2 = reparameterize(mu2m, lv2m, generator)
            mu1, lv1 = self.q1(hm, z2)
            z1 = reparameterize(mu1, lv1, generator)
            mu1p, lv1p = self.prior_z1(z2)
            log_px = self.likelihood.log_prob(self.decoder(z1), x.repeat(m, 1, 1, 1))
            t = self._named_terms(dict(log_px=log_px, z1=z1, z2=z2, mu1=mu1, lv1=lv1, mu1p=mu1p,
                                       lv1p=lv1p, mu2=mu2m, lv2=lv2m))
            log_w = t["log_px_z1"] + t["log_pz1_z2"] + t["log_pz2"] - t["log_qz1_x"] - t["log_qz2_x"]
            rows.append(log_w.reshape(m, n))
        return torch.cat(rows)

    def posterior_stats(self, x: torch.Tensor, generator: torch.Generator | None = None):
        """Posterior means and KL per dim of each layer (z1's KL is against p(z1|z2) at a sampled z2)."""
        h = self.features(self.observe(x))
        mu2, lv2 = self.q2(h)
        z2 = reparameterize(mu2, lv2, generator)
        mu1, lv1 = self.q1(h, z2)
        mu1p, lv1p = self.prior_z1(z2)
        mean1 = self.q1(h, mu2)[0]
        return {"z1": (mean1, gaussian_kl(mu1, lv1, mu1p, lv1p)), "z2": (mu2, gaussian_kl(mu2, lv2))}

    # --- generation -------------------------------------------------------

    def sample_z1(self, z2: torch.Tensor, generator: torch.Generator | None = None,
                  temperature: float = 1.0) -> torch.Tensor:
        """z1 ~ p(z1|z2), its spread scaled by temperature."""
        mu, log_var = self.prior_z1(z2)
        return mu + temperature * torch.exp(0.5 * log_var) * randn(mu.shape, generator, mu.device)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, temperature: float = 1.0, **kwargs):
        """Ancestral sampling z2 -> z1 -> mean of p(x|z1), in [-1, 1]."""
        z2 = randn((n, self.cfg.z2_dim), generator, self.device) * temperature
        return self.decode(self.sample_z1(z2, generator, temperature))

    @torch.no_grad()
    def sample_fixed_z2(self, n_z2: int, n_z1: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """(n_z2 * n_z1) images: row i shares one z2 ~ p(z2); each column redraws z1 ~ p(z1|z2)."""
        z2 = randn((n_z2, self.cfg.z2_dim), generator, self.device).repeat_interleave(n_z1, dim=0)
        return self.decode(self.sample_z1(z2, generator))

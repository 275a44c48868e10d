"""Likelihood bounds of latent-variable models, and posterior-collapse diagnostics.

Numbers are per item (image) in nats, and in bits per dimension:
    bits/dim = nats / (D ln 2),   D = C * H * W.
What a "nat" means depends on the model's likelihood (see models/vae.py):
a Bernoulli on [0, 1] intensities or a discretised Gaussian on 8-bit data.

Models evaluated here provide (see models/vae.py: LatentVariableModel)
    elbo_terms(x, generator) -> dict of (N,) tensors with key "elbo"
    log_weights(x, k, generator) -> (k, N) log p(x, z_i) - log q(z_i | x)
    posterior_stats(x, generator) -> {layer: (posterior mean (N, D), KL per dim (N, D))}
and `device`. Sampling uses a fixed seed, so evaluation is repeatable.
"""

from __future__ import annotations

import math

import torch

from .reconstruction import reconstruction_metrics

LN2 = math.log(2.0)


def bits_per_dim(nats: float | torch.Tensor, num_dims: int):
    """Convert nats per item to bits per dimension."""
    return nats / (num_dims * LN2)


def _batches(model, data, n: int | None, batch_size: int):
    n = len(data) if n is None else min(n, len(data))
    for start in range(0, n, batch_size):
        idx = torch.arange(start, min(start + batch_size, n))
        yield data.batch(idx)["x"].to(model.device)


class eval_mode:
    """`with eval_mode(model):` runs in eval mode and restores the previous mode afterwards."""

    def __init__(self, model):
        self.model = model

    def __enter__(self):
        self.was_training = self.model.training
        self.model.eval()

    def __exit__(self, *exc):
        self.model.train(self.was_training)


def _generator(model, seed: int) -> torch.Generator:
    return torch.Generator(device=model.device).manual_seed(seed)


@torch.no_grad()
def negative_elbo(model, data, n: int | None = None, batch_size: int = 256, seed: int = 0) -> dict[str, float]:
    """-ELBO per item (nats and bits/dim) with the mean of every named ELBO term (one sample of z per item)."""
    sums: dict[str, float] = {}
    count, dims = 0, 0
    g = _generator(model, seed)
    with eval_mode(model):
        for x in _batches(model, data, n, batch_size):
            terms = model.elbo_terms(x, generator=g)
            for key, v in terms.items():
                sums[key] = sums.get(key, 0.0) + v.double().sum().item()
            count, dims = count + x.shape[0], x[0].numel()
    out = {key: v / count for key, v in sums.items()}
    nats = -out.pop("elbo")
    return {"neg_elbo_nats": nats, "neg_elbo_bpd": bits_per_dim(nats, dims), **out}


@torch.no_grad()
def iwae_per_item(model, data, k: int, n: int | None = None, batch_size: int = 64, seed: int = 0) -> torch.Tensor:
    """IWAE_k of each of the first n items (nats, float64): log (1/k) sum_i p(x, z_i) / q(z_i|x)."""
    from ..models.vae import iwae_bound

    out = []
    g = _generator(model, seed)
    with eval_mode(model):
        for x in _batches(model, data, n, batch_size):
            out.append(iwae_bound(model.log_weights(x, k, generator=g)).double().cpu())
    return torch.cat(out)


def negative_iwae(model, data, k: int, n: int | None = None, batch_size: int = 64, seed: int = 0) -> dict[str, float]:
    """-IWAE_k per item (nats, bits/dim): an upper bound on -log p(x), tighter than -ELBO (Burda et al. 2016).

    neg_iwae_se: the standard error of the mean over the items (how much another n items could move it).
    """
    bounds = iwae_per_item(model, data, k, n, batch_size, seed)
    nats = -bounds.mean().item()
    dims = data.x[0].numel()
    se = bounds.std().item() / math.sqrt(len(bounds)) if len(bounds) > 1 else float("nan")
    return {"iwae_k": float(k), "neg_iwae_nats": nats, "neg_iwae_bpd": bits_per_dim(nats, dims), "neg_iwae_se": se}


def active_units(posterior_means: torch.Tensor, threshold: float = 0.01) -> int:
    """Number of latent dims whose posterior mean varies across the data:
    A_u = Cov_x(E_q(u|x)[u]) > threshold (Burda et al. 2016, Sec. 5.2). posterior_means: (N, D)."""
    return int((posterior_means.double().var(dim=0, unbiased=False) > threshold).sum().item())


@torch.no_grad()
def latent_diagnostics(model, data, n: int | None = None, batch_size: int = 256, seed: int = 0,
                       threshold: float = 0.01) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
    """Posterior-collapse diagnostics per stochastic layer.

    Returns (scalars, kl_per_dim): scalars hold, per layer L, `active_units_L`
    and `latent_dims_L`; kl_per_dim[L] is the mean KL of
    each latent dimension over the data (nats; ~0 means that unit collapsed).
    """
    means: dict[str, list] = {}
    kls: dict[str, torch.Tensor] = {}
    count = 0
    g = _generator(model, seed)
    with eval_mode(model):
        for x in _batches(model, data, n, batch_size):
            for layer, (mu, kl) in model.posterior_stats(x, generator=g).items():
                means.setdefault(layer, []).append(mu.double().cpu())
                kls[layer] = kls.get(layer, 0) + kl.double().sum(0).cpu()
            count += x.shape[0]
    scalars, per_dim = {}, {}
    for layer in means:
        per_dim[layer] = (kls[layer] / count).float()
        scalars[f"active_units_{layer}"] = float(active_units(torch.cat(means[layer]), threshold))
        scalars[f"latent_dims_{layer}"] = float(per_dim[layer].numel())
    return scalars, per_dim


def evaluate_latent_model(model, data, n: int | None = None, k: int = 50) -> dict[str, float]:
    """Everything for a VAE-like model on a test split: reconstruction (MSE/PSNR/SSIM),
    -ELBO and -IWAE_k (nats and bits/dim), and KL / active units per layer."""
    out = reconstruction_metrics(model, data, n=n)
    out.update(negative_elbo(model, data, n=n))
    out.update(negative_iwae(model, data, k=k, n=n))
    out.update(latent_diagnostics(model, data, n=n)[0])
    return out

"""The GAN losses, one formula each, next to the papers that wrote them.

Every loss takes the critic's raw outputs ("logits", shape (N,), no sigmoid applied) and
returns a scalar mean over the batch, computed in float32 (float64 stays float64) even when
the critic ran under bf16 autocast. With sigma the logistic sigmoid, D(x) = sigma(logit):

  log D(x)          = -softplus(-logit)
  log (1 - D(x))    = -softplus(logit)

which is how the BCE losses are written: stable for any logit, never log(0).

Losses (`LOSSES`), discriminator side / generator side, both minimised:
  saturating     Goodfellow et al. 2014, Eq. 1, the minimax game as written:
                 D: -E[log D(x)] - E[log(1 - D(G(z)))]      G: E[log(1 - D(G(z)))]
  nonsaturating  the same D; G: -E[log D(G(z))] (Goodfellow 2014, Sec. 3: "rather than training
                 G to minimize log(1 - D(G(z))) we can train G to maximize log D(G(z))")
  lsgan          Mao et al. 2017, Eq. 2 with a = 0, b = c = 1:
                 D: 1/2 E[(D(x) - 1)^2] + 1/2 E[D(G(z))^2]  G: 1/2 E[(D(G(z)) - 1)^2]
  hinge          Lim & Ye 2017 ("Geometric GAN"), as used by Miyato et al. 2018 (SN-GAN):
                 D: E[relu(1 - D(x))] + E[relu(1 + D(G(z)))]  G: -E[D(G(z))]
  wgan, wgan-gp  Arjovsky et al. 2017, Eq. 3 (critic maximises E[D(x)] - E[D(G(z))]):
                 D: E[D(G(z))] - E[D(x)]                     G: -E[D(G(z))]
                 wgan keeps the critic Lipschitz by clipping its weights (`clip_weights_`,
                 Arjovsky Algorithm 1); wgan-gp adds `gradient_penalty` (Gulrajani et al. 2017).

Regularisers the caller weights and adds: `gradient_penalty` (WGAN-GP), `r1_penalty`
(Mescheder et al. 2018) and `feature_matching_loss` (Salimans et al. 2016).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .. import rng
from ..errors import GenlabError, ParamError

LOSSES = ("saturating", "nonsaturating", "lsgan", "hinge", "wgan", "wgan-gp")


def check_loss(name: str) -> None:
    """Raise ParamError("loss", ...) unless `name` is one of LOSSES."""
    if name not in LOSSES:
        raise ParamError("loss", f"unknown {name!r}; choose one of: {', '.join(LOSSES)}")


def _at_least_f32(t: torch.Tensor) -> torch.Tensor:
    """bf16 / f16 -> float32; float32 and float64 stay as they are."""
    return t.to(torch.promote_types(t.dtype, torch.float32))


def d_loss(name: str, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """The discriminator's (critic's) loss for loss `name` (formulas in the module docstring)."""
    check_loss(name)
    real, fake = _at_least_f32(real_logits), _at_least_f32(fake_logits)
    if name in ("saturating", "nonsaturating"):        # BCE with logits: real -> 1, fake -> 0
        return F.softplus(-real).mean() + F.softplus(fake).mean()
    if name == "lsgan":
        return 0.5 * (real - 1).pow(2).mean() + 0.5 * fake.pow(2).mean()
    if name == "hinge":
        return F.relu(1 - real).mean() + F.relu(1 + fake).mean()
    return fake.mean() - real.mean()                   # wgan, wgan-gp


def g_loss(name: str, fake_logits: torch.Tensor) -> torch.Tensor:
    """The generator's loss for loss `name`, from the critic's logits on generated samples."""
    check_loss(name)
    fake = _at_least_f32(fake_logits)
    if name == "saturating":                           # E[log(1 - sigma(l))] = E[-softplus(l)]
        return -F.softplus(fake).mean()
    if name == "nonsaturating":                        # E[-log sigma(l)] = E[softplus(-l)]
        return F.softplus(-fake).mean()
    if name == "lsgan":
        return 0.5 * (fake - 1).pow(2).mean()
    return -fake.mean()                                # hinge, wgan, wgan-gp


def _logits(out) -> torch.Tensor:
    """A critic returns logits (N,) or (logits, features); keep the logits."""
    return out[0] if isinstance(out, (tuple, list)) else out


def _input_grad(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """grad_x of sum_i logit_i, i.e. each sample's own gradient (samples do not interact),
    flattened to (N, -1) in float32 at least, kept in the graph so the penalty can be trained through."""
    (grad,) = torch.autograd.grad(_at_least_f32(logits).sum(), x, create_graph=True)
    return _at_least_f32(grad).flatten(1)


def gradient_penalty(critic, real: torch.Tensor, fake: torch.Tensor, y: torch.Tensor | None = None,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """WGAN-GP's penalty E[(||grad D(x_hat)||_2 - 1)^2] (Gulrajani et al. 2017, Eq. 3, without lambda).

    x_hat = e * real + (1 - e) * fake, one e ~ U[0, 1] per sample (Algorithm 1, line 6), drawn
    with genlab.rng so a CPU `generator` gives the same e on any device. `critic(x_hat, y)` (or
    `critic(x_hat)` when y is None) returns logits (N,) or a tuple (logits, features); only the
    logits are used. `fake` is detached: the penalty trains the critic, not the generator.
    The gradient is taken with create_graph=True so the penalty backpropagates into the critic.
    (The paper's critic has no batch norm, which would make one sample's gradient depend on the
    others; layer norm or none is the usual choice.)
    """
    dtype = torch.promote_types(torch.promote_types(real.dtype, fake.dtype), torch.float32)
    e = rng.rand((real.shape[0],) + (1,) * (real.ndim - 1), generator=generator, device=real.device, dtype=dtype)
    x_hat = (e * real.detach().to(dtype) + (1 - e) * fake.detach().to(dtype)).requires_grad_(True)
    logits = _logits(critic(x_hat) if y is None else critic(x_hat, y))
    grad_norm = _input_grad(logits, x_hat).norm(2, dim=1)
    return (grad_norm - 1).pow(2).mean()


def r1_penalty(real_logits: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """R1: E[||grad_x D(x)||_2^2] on real data (Mescheder et al. 2018, Eq. 9, without gamma / 2).

    Call `real.requires_grad_(True)` before the discriminator sees `real`, then pass its logits
    here; the caller multiplies by gamma / 2 and adds it to the discriminator's loss.
    """
    if not real.requires_grad:
        raise GenlabError("r1_penalty needs the gradient with respect to the real images: call "
                          "real.requires_grad_(True) before the discriminator is run on them")
    return _input_grad(real_logits, real).pow(2).sum(dim=1).mean()


def feature_matching_loss(real_features: torch.Tensor, fake_features: torch.Tensor) -> torch.Tensor:
    """|| E f(x) - E f(G(z)) ||_2^2 (Salimans et al. 2016, Sec. 3.1), f an intermediate layer of D.

    Features are (N, F) (or (N, ...), flattened); the batch mean is taken first, then the squared
    distance. The real features are detached: this is a generator loss, the critic is not trained by it.
    """
    real_mean = _at_least_f32(real_features.detach()).flatten(1).mean(0)
    fake_mean = _at_least_f32(fake_features).flatten(1).mean(0)
    return (real_mean - fake_mean).pow(2).sum()


@torch.no_grad()
def clip_weights_(critic: torch.nn.Module, clip: float = 0.01) -> None:
    """WGAN's weight clipping, in place: every parameter w <- clamp(w, -c, c) (Arjovsky et al. 2017,
    Algorithm 1, line 7, after each critic step; the paper's c = 0.01)."""
    if not clip > 0:
        raise ParamError("clip_value", f"must be > 0, got {clip}")
    for p in critic.parameters():
        p.clamp_(-clip, clip)

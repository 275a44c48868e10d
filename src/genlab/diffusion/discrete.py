"""Diffusion over discrete tokens: D3PM-style corruption, its posteriors, losses and samplers.

Every process here is a D3PM (Austin et al. 2021) whose one-step transition
matrix mixes "keep the token" with "jump to a fixed distribution pi":

    Q_t = alpha_t I + (1 - alpha_t) 1 pi^T             (rows: from-state, cols: to-state)

Because pi^T 1 = 1, products of such matrices keep the same form, so the
t-step marginal has a closed form (Eq. 3 of Austin et al.):

    Q_bar_t = Q_1 Q_2 ... Q_t = a_t I + (1 - a_t) 1 pi^T,   a_t = prod_s alpha_s
    q(x_t | x_0) = Cat(a_t onehot(x_0) + (1 - a_t) pi)

- absorbing ("mask") diffusion: pi = onehot(mask), a token is either itself or [MASK];
- uniform diffusion: pi = uniform over the data tokens, a token is replaced at random.

`a_t` comes from a schedule a(u) on continuous time u in [0, 1] (a(0) = 1, a(1) = 0,
so x at u=1 is pure pi); a T-step chain uses u = t / T. Tokens are integers in
[0, K); the data uses ids [0, D) and the ids >= D (the mask, a BOS) never occur in data.

Public names: `Schedule` / `get_schedule`, `DiscreteProcess` (`Q`, `Q_bar`,
`q_probs`, `q_sample_discrete`, `q_posterior`, `p_posterior`), the losses
`masked_diffusion_loss`, `d3pm_vlb_loss`, `x0_cross_entropy`, `diffusion_loss`,
and the samplers `p_sample_loop` (ancestral) and `maskgit_sample` (confidence-based unmasking).
A denoiser is any callable `denoise(x_t LongTensor N,L, u float N, y LongTensor N or None) ->
logits N,L,D` over the D data tokens ("predict x0", as in D3PM / MDLM).
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

from .. import rng
from ..errors import GenlabError

Denoiser = Callable[[torch.Tensor, torch.Tensor, "torch.Tensor | None"], torch.Tensor]


# --------------------------------------------------------------------------- schedules

class Schedule:
    """Fraction of clean tokens a(u) at continuous time u in [0, 1]; a(0) = 1, a(1) = 0."""

    name = ""

    def alpha(self, u: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def dalpha(self, u: torch.Tensor) -> torch.Tensor:
        """da/du (negative: corruption only grows)."""
        raise NotImplementedError

    def inverse(self, a: torch.Tensor) -> torch.Tensor:
        """The time u at which a(u) = a."""
        raise NotImplementedError


class LinearSchedule(Schedule):
    """a(u) = 1 - u: the expected fraction of masked tokens grows linearly (MDLM's default)."""

    name = "linear"

    def alpha(self, u):
        return (1 - u).clamp(0, 1)

    def dalpha(self, u):
        return -torch.ones_like(u)

    def inverse(self, a):
        return (1 - a).clamp(0, 1)


class CosineSchedule(Schedule):
    """a(u) = cos(pi u / 2): little corruption early, most near the end.

    Not MaskGIT's cosine: MaskGIT keeps a fraction cos(pi r / 2) masked after
    sampling progress r, i.e. a(u) = 1 - sin(pi u / 2); with this schedule the
    maskgit sampler instead reveals most tokens in its first steps.
    """

    name = "cosine"

    def alpha(self, u):
        a = torch.cos(0.5 * math.pi * u).clamp(0, 1)
        return torch.where(u >= 1, torch.zeros_like(a), a)  # cos(pi/2) is 4e-8 in float32, not 0

    def dalpha(self, u):
        return -0.5 * math.pi * torch.sin(0.5 * math.pi * u)

    def inverse(self, a):
        return torch.arccos(a.clamp(0, 1)) * (2 / math.pi)


SCHEDULES = {"linear": LinearSchedule, "cosine": CosineSchedule}


def get_schedule(name: str) -> Schedule:
    if name not in SCHEDULES:
        raise GenlabError(f"unknown corruption schedule '{name}'; choose one of: {', '.join(SCHEDULES)}")
    return SCHEDULES[name]()


# --------------------------------------------------------------------------- the process

PROCESSES = ("absorbing", "uniform")


class DiscreteProcess:
    """A D3PM corruption process over `num_states` tokens.

    kind: "absorbing" (tokens jump to `mask_id`) or "uniform" (tokens jump to a
    uniformly random data token). data_vocab D: the data uses ids [0, D); default
    num_states - 1 (all but the mask). num_steps T: length of the discrete chain
    whose step t sits at time u = t / T.
    """

    def __init__(self, kind: str = "absorbing", num_states: int = 3, data_vocab: int | None = None,
                 mask_id: int | None = None, schedule: str | Schedule = "linear", num_steps: int = 1000):
        if kind not in PROCESSES:
            raise GenlabError(f"unknown discrete process '{kind}'; choose one of: {', '.join(PROCESSES)}")
        self.kind = kind
        self.K = num_states
        self.D = num_states - 1 if data_vocab is None else data_vocab
        self.mask_id = num_states - 1 if mask_id is None else mask_id
        if not 1 <= self.D <= num_states:
            raise GenlabError(f"data_vocab must be in [1, {num_states}], got {self.D}")
        if kind == "absorbing" and not self.D <= self.mask_id < num_states:
            raise GenlabError(f"mask id {self.mask_id} must be a non-data token in [{self.D}, {num_states})")
        if num_steps < 1:
            raise GenlabError(f"num_steps must be at least 1, got {num_steps}")
        self.schedule = get_schedule(schedule) if isinstance(schedule, str) else schedule
        self.T = num_steps
        pi = torch.zeros(num_states, dtype=torch.float64)
        if kind == "absorbing":
            pi[self.mask_id] = 1.0
        else:
            pi[: self.D] = 1.0 / self.D
        self.pi = pi  # the limit distribution q(x_T) (float64 for exact matrix tests)
        self._pi_on: dict = {}

    def pi_on(self, device) -> torch.Tensor:
        """pi as float32 on `device` (cached: samplers ask for it every step)."""
        key = str(device)
        if key not in self._pi_on:
            self._pi_on[key] = self.pi.float().to(device)
        return self._pi_on[key]

    @property
    def absorbing(self) -> bool:
        return self.kind == "absorbing"

    # ---- schedule on the discrete chain
    def _steps(self, t) -> torch.Tensor:
        t = torch.as_tensor(t)
        if t.dtype.is_floating_point:
            raise GenlabError("discrete steps t must be integers in [0, T]; use alpha_at(u) for continuous time")
        if (t < 0).any() or (t > self.T).any():
            raise GenlabError(f"step t must lie in [0, {self.T}], got values in [{int(t.min())}, {int(t.max())}]")
        return t

    def alpha_bar(self, t) -> torch.Tensor:
        """a_t = prod_{s<=t} alpha_s: probability a token is still clean after t steps."""
        return self.schedule.alpha(self._steps(t).double() / self.T)

    def alpha_step(self, t) -> torch.Tensor:
        """alpha_t = a_t / a_{t-1} (t >= 1): probability one step keeps a token."""
        t = self._steps(t)
        if (t < 1).any():
            raise GenlabError("the one-step transition Q_t exists for t >= 1")
        return self.alpha_bar(t) / self.alpha_bar(t - 1)

    def _mix(self, a: torch.Tensor) -> torch.Tensor:
        eye = torch.eye(self.K, dtype=torch.float64)
        return a * eye + (1 - a) * self.pi[None, :].expand(self.K, -1)

    def Q(self, t: int) -> torch.Tensor:
        """One-step transition matrix Q_t[i, j] = q(x_t = j | x_{t-1} = i) (K x K, float64)."""
        return self._mix(self.alpha_step(t).double())

    def Q_bar(self, t: int) -> torch.Tensor:
        """t-step transition matrix Q_bar_t[i, j] = q(x_t = j | x_0 = i) = (Q_1 ... Q_t)[i, j]."""
        return self._mix(self.alpha_bar(t).double())

    # ---- marginals and corruption (alpha form: any time, continuous or discrete)
    def marginal_probs(self, x0: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """q(x_t | x_0) = a onehot(x_0) + (1 - a) pi, for x0 (N, L) and a (N,) -> (N, L, K)."""
        a = a.to(torch.float32).reshape(-1, *([1] * (x0.dim())))
        onehot = F.one_hot(x0, self.K).float()
        return a * onehot + (1 - a) * self.pi_on(x0.device)

    def corrupt(self, x0: torch.Tensor, a: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Sample x_t ~ q(x_t | x_0) given the clean fraction a (N,): keep w.p. a, else draw from pi."""
        a = a.to(x0.device, torch.float32).reshape(-1, *([1] * (x0.dim() - 1)))
        keep = _rand(x0.shape, generator, x0.device) < a
        if self.absorbing:
            noise = torch.full_like(x0, self.mask_id)
        else:
            noise = _randint(self.D, x0.shape, generator, x0.device)
        return torch.where(keep, x0, noise)

    def q_probs(self, x0: torch.Tensor, t) -> torch.Tensor:
        """Closed-form marginal q(x_t | x_0) = onehot(x_0) Q_bar_t, (N, L) -> (N, L, K)."""
        return self.marginal_probs(x0, self._alpha_per_seq(x0, t))

    def q_sample_discrete(self, x0: torch.Tensor, t, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw x_t ~ q(x_t | x_0) after t steps (t: int or LongTensor (N,) in [0, T])."""
        return self.corrupt(x0, self._alpha_per_seq(x0, t), generator)

    def _alpha_per_seq(self, x0, t):
        a = self.alpha_bar(t).to(x0.device, torch.float32)
        return a.expand(x0.shape[0]) if a.dim() == 0 else a

    def alpha_at(self, u: torch.Tensor) -> torch.Tensor:
        """a(u) at continuous time u in [0, 1]."""
        return self.schedule.alpha(u)

    # ---- posteriors
    def posterior_probs(self, x_t: torch.Tensor, x0_probs: torch.Tensor,
                        a_s: torch.Tensor, a_t: torch.Tensor) -> torch.Tensor:
        """q(x_s | x_t, x_0) for s < t, with x_0 given as probabilities (N, L, K).

        Bayes: q(x_s | x_t, x_0) ∝ q(x_t | x_s) q(x_s | x_0), with
        q(x_t | x_s) = r onehot(x_s) + (1 - r) pi, r = a_t / a_s (Eq. 3 of Austin et al.).
        A one-hot x0_probs gives the true posterior; the denoiser's softmax gives
        p_theta(x_s | x_t) (the x0-parameterisation, Eq. 4 of Austin et al.).
        """
        shape = (-1,) + (1,) * (x_t.dim())
        a_s = a_s.to(x_t.device, torch.float32).reshape(shape)
        a_t = a_t.to(x_t.device, torch.float32).reshape(shape)
        r = a_t / a_s.clamp_min(1e-12)
        pi = self.pi_on(x_t.device)
        # likelihood of the observed x_t for every candidate x_s = j: r [j == x_t] + (1 - r) pi[x_t]
        lik = r * F.one_hot(x_t, self.K).float() + (1 - r) * pi[x_t][..., None]
        prior = a_s * x0_probs + (1 - a_s) * pi
        post = lik * prior
        z = post.sum(-1, keepdim=True)
        # z = 0 only for impossible x_t (e.g. a clean token at a = 0): fall back to the prior
        return torch.where(z > 0, post / z.clamp_min(1e-30), prior)

    def q_posterior(self, x_t: torch.Tensor, x0: torch.Tensor, t) -> torch.Tensor:
        """True one-step posterior q(x_{t-1} | x_t, x_0) on the T-step chain, (N, L, K)."""
        t = self._steps(t)
        if (t < 1).any():
            raise GenlabError("q(x_{t-1} | x_t, x_0) needs t >= 1")
        return self.posterior_probs(x_t, F.one_hot(x0, self.K).float(),
                                    self._alpha_per_seq(x0, t - 1), self._alpha_per_seq(x0, t))

    def p_posterior(self, x_t: torch.Tensor, logits: torch.Tensor, a_s: torch.Tensor,
                    a_t: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
        """p_theta(x_s | x_t) from denoiser logits over the D data tokens."""
        return self.posterior_probs(x_t, self.x0_probs(logits, temperature), a_s, a_t)

    def x0_probs(self, logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
        """Softmax over the D data tokens, padded with zeros to all K states (mask, BOS never predicted)."""
        if not 0 < temperature < math.inf:  # also NaN and inf
            raise GenlabError(f"temperature must be positive (and finite), got {temperature}")
        p = torch.softmax(logits.float() / temperature, dim=-1)
        return F.pad(p, (0, self.K - self.D))


# --------------------------------------------------------------------------- losses

def sample_times(n: int, device, generator: torch.Generator | None = None, t_min: float = 0.0) -> torch.Tensor:
    """n times in (t_min, 1], stratified (u_i = (r + i) / n, shuffled): same mean, much less variance.

    The low-discrepancy ("antithetic") sampler of Kingma et al. 2021 / MDLM.
    """
    r = _rand((), generator, device)
    u = (r + torch.arange(n, device=device)) / n
    u = u[rng.randperm(n, generator, device)]
    u = 1 - u  # (0, 1]: never exactly 0, where the ELBO weight is infinite
    return t_min + (1 - t_min) * u


def _token_nll(logits: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
    """-log p_theta(x0 | x_t) per position, (N, L), computed in float32."""
    return F.cross_entropy(logits.float().transpose(1, 2), x0, reduction="none")


def masked_diffusion_loss(process: DiscreteProcess, denoise: Denoiser, x0: torch.Tensor,
                          y: torch.Tensor | None = None, u: torch.Tensor | None = None,
                          num_steps: int | None = None, generator: torch.Generator | None = None,
                          t_min: float = 0.0) -> tuple[torch.Tensor, dict]:
    """Negative ELBO of absorbing diffusion, in nats per sequence (N,).

    Continuous time (num_steps None; Sahoo et al. 2024, MDLM Eq. 10):
        -ELBO = E_u [ -a'(u) / (1 - a(u)) * sum_{l masked} -log p_theta(x0_l | x_u) ]
    Discrete time with T steps (the D3PM bound with t ~ U{1..T}; the KL of each step
    reduces to this weighted cross-entropy because unmasked tokens are copied):
        -ELBO = T E_t [ (a_{t-1} - a_t) / (1 - a_t) * sum_{l masked} -log p_theta(x0_l | x_t) ]
    The prior term KL(q(x_T | x_0) || pi) is 0 because a(1) = 0. u may be given (N,)
    to evaluate at fixed times (then it is rounded to the chain in discrete time).
    """
    if not process.absorbing:
        raise GenlabError("the masked-diffusion ELBO needs the absorbing process; use d3pm_vlb_loss")
    n = x0.shape[0]
    sched = process.schedule
    if num_steps:
        if u is None:
            t = _randint(num_steps, (n,), generator, x0.device) + 1
        else:
            t = (u.to(x0.device) * num_steps).round().long().clamp(1, num_steps)
        u_t = t.float() / num_steps
        a_t, a_s = sched.alpha(u_t), sched.alpha((t - 1).float() / num_steps)
        weight = num_steps * (a_s - a_t) / (1 - a_t).clamp_min(1e-12)
    else:
        u_t = sample_times(n, x0.device, generator, t_min) if u is None else u.to(x0.device, torch.float32)
        a_t = sched.alpha(u_t)
        weight = -sched.dalpha(u_t) / (1 - a_t).clamp_min(1e-12)
    x_t = process.corrupt(x0, a_t, generator)
    masked = x_t == process.mask_id
    nll = _token_nll(denoise(x_t, u_t, y), x0)
    # where(...) rather than a product: 0 * inf at u -> 0 must give 0, not nan
    per_seq = torch.where(masked, nll, torch.zeros_like(nll)).sum(1)
    nelbo = torch.where(masked.any(1), weight * per_seq, torch.zeros_like(per_seq))
    return nelbo, {"x_t": x_t, "u": u_t, "masked": masked, "nll": nll}


def d3pm_vlb_loss(process: DiscreteProcess, denoise: Denoiser, x0: torch.Tensor,
                  y: torch.Tensor | None = None, t: torch.Tensor | None = None,
                  generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict]:
    """Negative ELBO of any D3PM process on its T-step chain, nats per sequence (N,).

    -ELBO = KL(q(x_T|x_0) || pi) + sum_{t>=2} KL(q(x_{t-1}|x_t,x_0) || p(x_{t-1}|x_t)) - log p(x_0|x_1)
    (Eq. 1 of Austin et al.), estimated as T * L_t with one t ~ U{1..T} per sequence.
    The first term is 0 since a_T = 0; at t = 1 the KL against the one-hot q(x_0|x_1, x_0)
    is exactly the reconstruction term -log p(x_0 | x_1).
    """
    n, T = x0.shape[0], process.T
    if t is None:
        t = _randint(T, (n,), generator, x0.device) + 1
    t = process._steps(t).to(x0.device)
    a_t, a_s = process._alpha_per_seq(x0, t), process._alpha_per_seq(x0, t - 1)
    x_t = process.corrupt(x0, a_t, generator)
    u_t = t.float() / T
    logits = denoise(x_t, u_t, y)
    q = process.posterior_probs(x_t, F.one_hot(x0, process.K).float(), a_s, a_t)
    p = process.p_posterior(x_t, logits, a_s, a_t)
    kl = (torch.xlogy(q, q) - q * torch.log(p.clamp_min(1e-30))).sum(-1)  # 0 log 0 = 0
    return T * kl.sum(1), {"x_t": x_t, "u": u_t, "nll": _token_nll(logits, x0), "logits": logits}


def x0_cross_entropy(process: DiscreteProcess, x_t: torch.Tensor, x0: torch.Tensor,
                     nll: torch.Tensor) -> torch.Tensor:
    """The plain "predict x0" objective: mean -log p_theta(x0 | x_t) over corrupted positions.

    Absorbing: the masked positions (0 when nothing is masked, e.g. at t = 0).
    Uniform: every position (the model cannot tell which ones were replaced).
    """
    if process.absorbing:
        masked = (x_t == process.mask_id).float()
        return (nll * masked).sum() / masked.sum().clamp_min(1.0)
    return nll.mean()


def diffusion_loss(process: DiscreteProcess, denoise: Denoiser, x0: torch.Tensor, y: torch.Tensor | None = None,
                   objective: str = "elbo", num_steps: int = 0, ce_weight: float = 0.0,
                   generator: torch.Generator | None = None, t_min: float = 1e-3) -> tuple[torch.Tensor, dict]:
    """Training loss (scalar) and detached stats for a batch of clean tokens x0 (N, L).

    objective "elbo": the negative ELBO per token (masked: MDLM continuous time when
    num_steps == 0, else the T-step bound; uniform: the D3PM bound on the process's
    chain) plus ce_weight * the x0 cross-entropy (D3PM's hybrid loss).
    objective "ce": the unweighted x0 cross-entropy only.
    Stats: "nelbo_bits" (bits per token of the bound) and "ce" (x0 cross-entropy).
    """
    if objective not in ("elbo", "ce"):
        raise GenlabError(f"unknown discrete diffusion objective '{objective}'; choose elbo or ce")
    L = x0.shape[1]
    if process.absorbing:
        nelbo, aux = masked_diffusion_loss(process, denoise, x0, y, num_steps=num_steps or None,
                                           generator=generator, t_min=t_min)
    else:
        nelbo, aux = d3pm_vlb_loss(process, denoise, x0, y, generator=generator)
    ce = x0_cross_entropy(process, aux["x_t"], x0, aux["nll"])
    nelbo_tok = nelbo.mean() / L
    loss = nelbo_tok + ce_weight * ce if objective == "elbo" else ce
    return loss, {"nelbo_bits": nelbo_tok.detach() / math.log(2), "ce": ce.detach()}


# --------------------------------------------------------------------------- samplers

def _start(process: DiscreteProcess, n: int, L: int, device, generator, fixed, fixed_mask):
    """x at u = 1: all masks (absorbing) or uniform noise, with the fixed tokens written in."""
    if process.absorbing:
        x = torch.full((n, L), process.mask_id, dtype=torch.long, device=device)
    else:
        x = _randint(process.D, (n, L), generator, device)
    if fixed is not None:
        fixed, fixed_mask = _check_fixed(process, fixed, fixed_mask, n, L, device)
        x = torch.where(fixed_mask, fixed, x)
    return x, fixed, fixed_mask


def _check_fixed(process, fixed, fixed_mask, n, L, device):
    if fixed_mask is None:
        raise GenlabError("infilling needs fixed_mask (True where a token is given) along with fixed")
    fixed, fixed_mask = fixed.to(device).long(), fixed_mask.to(device).bool()
    if fixed.shape != (n, L) or fixed_mask.shape != (n, L):
        raise GenlabError(f"fixed tokens and mask must have shape ({n}, {L}); got {tuple(fixed.shape)} "
                          f"and {tuple(fixed_mask.shape)}")
    given = fixed[fixed_mask]
    if given.numel() and (given.min() < 0 or given.max() >= process.D):
        raise GenlabError(f"fixed tokens must be data tokens in [0, {process.D}); got values in "
                          f"[{int(given.min())}, {int(given.max())}]")
    return fixed, fixed_mask


@torch.no_grad()
def p_sample_loop(process: DiscreteProcess, denoise: Denoiser, n: int, seq_len: int, steps: int = 64,
                  y: torch.Tensor | None = None, temperature: float = 1.0, device="cpu",
                  generator: torch.Generator | None = None, fixed: torch.Tensor | None = None,
                  fixed_mask: torch.Tensor | None = None, trajectory: bool = False):
    """Ancestral sampling: x_1 ~ pi, then x_s ~ p_theta(x_s | x_t) on the grid u = 1, (S-1)/S, ..., 0.

    The last step (s = 0, a = 1) draws x_0 from the denoiser's prediction, so no
    mask survives. For absorbing diffusion a revealed token is never re-masked (the
    posterior copies it). fixed / fixed_mask (N, L): infilling, the given tokens stay.
    Returns x (N, L), plus the list of intermediate x (S + 1 of them) if trajectory.
    """
    if steps < 1:
        raise GenlabError(f"the number of sampling steps must be at least 1, got {steps}")
    x, fixed, fixed_mask = _start(process, n, seq_len, device, generator, fixed, fixed_mask)
    traj = [x.clone()] if trajectory else None
    sched = process.schedule
    for i in range(steps, 0, -1):
        u_t = torch.full((n,), i / steps, device=device)
        u_s = torch.full((n,), (i - 1) / steps, device=device)
        logits = denoise(x, u_t, y)
        probs = process.p_posterior(x, logits, sched.alpha(u_s), sched.alpha(u_t), temperature)
        if process.absorbing:
            # only masked positions change: draw them, copy the rest (saves nothing in maths, avoids
            # rounding a 1.0 probability of "keep" into an occasional flip)
            x = torch.where(x == process.mask_id, _categorical(probs, generator), x)
        else:
            x = _categorical(probs, generator)
        if fixed is not None:
            x = torch.where(fixed_mask, fixed, x)
        if trajectory:
            traj.append(x.clone())
    return (x, traj) if trajectory else x


@torch.no_grad()
def maskgit_sample(process: DiscreteProcess, denoise: Denoiser, n: int, seq_len: int, steps: int = 8,
                   y: torch.Tensor | None = None, temperature: float = 1.0, choice_temperature: float = 1.0,
                   device="cpu", generator: torch.Generator | None = None, fixed: torch.Tensor | None = None,
                   fixed_mask: torch.Tensor | None = None, trajectory: bool = False):
    """Confidence-based iterative unmasking (Chang et al. 2022, MaskGIT Sec. 3.2).

    Start fully masked; at step i predict every masked token, keep the most confident
    predictions and re-mask the rest so that a fraction 1 - a(u_i) stays masked
    (u_i = 1 - i/S on the process schedule: linear or cosine), at least one token
    is revealed per step and none is left after step S. Confidence is the sampled
    token's probability, plus Gumbel noise annealed by choice_temperature * (1 - i/S).
    """
    if not process.absorbing:
        raise GenlabError("MaskGIT unmasking needs the absorbing (mask) process; use the ancestral sampler")
    if steps < 1:
        raise GenlabError(f"the number of sampling steps must be at least 1, got {steps}")
    x, fixed, fixed_mask = _start(process, n, seq_len, device, generator, fixed, fixed_mask)
    traj = [x.clone()] if trajectory else None
    n_unknown = (x == process.mask_id).sum(1)  # per sequence (infilling fixes some)
    for i in range(1, steps + 1):
        masked = x == process.mask_id
        u_now = process.schedule.inverse(1 - masked.float().mean(1))
        probs = process.x0_probs(denoise(x, u_now, y), temperature)[..., : process.D]
        sampled = _categorical(probs, generator)
        conf = torch.log(probs.gather(-1, sampled[..., None])[..., 0].clamp_min(1e-30))
        anneal = choice_temperature * (1 - i / steps)
        if anneal > 0:
            conf = conf + anneal * _gumbel(conf.shape, generator, device)
        conf = torch.where(masked, conf, torch.full_like(conf, math.inf))  # known tokens are never re-masked
        u_next = torch.full((n,), 1 - i / steps, device=device)
        keep_masked = torch.floor(n_unknown * (1 - process.schedule.alpha(u_next))).long()
        keep_masked = torch.minimum(keep_masked, masked.sum(1) - 1).clamp_min(0)  # reveal >= 1 per step
        if i == steps:
            keep_masked = torch.zeros_like(keep_masked)
        rank = conf.argsort(1).argsort(1)  # 0 = least confident
        remask = rank < keep_masked[:, None]
        x = torch.where(masked & ~remask, sampled, x)
        if trajectory:
            traj.append(x.clone())
    return (x, traj) if trajectory else x


# --------------------------------------------------------------------------- random helpers
# Randomness is drawn where the generator lives and then moved, so a CPU generator
# gives the same samples on every device.

def _rand(shape, generator, device) -> torch.Tensor:
    return rng.rand(shape, generator, device)


def _randint(high, shape, generator, device) -> torch.Tensor:
    return rng.randint(0, high, shape, generator, device)


def _gumbel(shape, generator, device) -> torch.Tensor:
    return -torch.log(-torch.log(_rand(shape, generator, device).clamp(1e-20, 1 - 1e-7)))


def _categorical(probs: torch.Tensor, generator) -> torch.Tensor:
    """One draw per row of probs (..., K) by the Gumbel-max trick (exact, batched, seedable)."""
    g = _gumbel(probs.shape, generator, probs.device)
    logp = torch.log(probs.clamp_min(0))  # -inf where a state is impossible
    return (logp + g).argmax(-1)

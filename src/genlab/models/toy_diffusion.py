"""The `toy-diffusion` family: DDPM on 2-D point clouds with an MLP denoiser.

The course's first diffusion lab. Everything is the image model's maths
(genlab.diffusion: q_sample, diffusion_loss, the ddpm / ddim / dpmpp
samplers), only the network is a time-conditioned MLP (genlab.nn.mlp) and
the data are points of genlab.data.toy2d, so a model trains in seconds on a
CPU and every step of the process can be plotted (genlab.viz.toy2d).

The network predicts v = sqrt(abar) eps - sqrt(1 - abar) x0 by default. For
standardised data the best Gaussian fit of the data has v = 0 at every t, so
the zero-initialised MLP starts there and, away from the training points,
stays near it. An eps-predicting MLP instead extrapolates eps ~ 0 to points
far out in x_T's tails, and the deterministic samplers (DDIM, DPM-Solver++)
then multiply such points by 1 / sqrt(abar_T) on the way down (try
--prediction eps and look at the trajectories).

Sample quality is measured against held-out points with the energy distance
(Szekely & Rizzo 2013), an RBF-kernel MMD and the Chamfer distance; each is
shown next to its floor, the same metric between two real samples of the
same size.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..data.base import TensorDataset
from ..diffusion import ddpm, gaussian, samplers
from ..diffusion.schedules import make_schedule
from ..errors import GenlabError, ParamError
from ..nn.mlp import TimeMLP
from .base import GenerativeModel, register


def energy_distance(x: torch.Tensor, y: torch.Tensor) -> float:
    """Energy distance 2 E|X - Y| - E|X - X'| - E|Y - Y'| (Szekely & Rizzo 2013, V-statistic).

    Zero iff the two distributions are equal; no bandwidth to choose.
    """
    x, y = x.double(), y.double()
    return float(2 * torch.cdist(x, y).mean() - torch.cdist(x, x).mean() - torch.cdist(y, y).mean())


def mmd_rbf(x: torch.Tensor, y: torch.Tensor, bandwidths: tuple = (0.1, 0.2, 0.5, 1.0, 2.0)) -> float:
    """Squared MMD (Gretton et al. 2012) with a sum of RBF kernels exp(-|a - b|^2 / (2 h^2)), V-statistic."""
    x, y = x.double(), y.double()

    def k(a, b):
        d2 = torch.cdist(a, b).pow_(2)
        return sum(float(torch.exp(d2 / (-2 * h * h)).mean()) for h in bandwidths)

    return k(x, x) + k(y, y) - 2 * k(x, y)


def chamfer(x: torch.Tensor, y: torch.Tensor) -> float:
    """Mean distance to the nearest point of the other set, averaged over both directions."""
    d = torch.cdist(x.double(), y.double())
    return float(0.5 * (d.min(1).values.mean() + d.min(0).values.mean()))


def point_metrics(samples: torch.Tensor, reference: torch.Tensor) -> dict[str, float]:
    return {"energy_distance": energy_distance(samples, reference), "mmd": mmd_rbf(samples, reference),
            "chamfer": chamfer(samples, reference)}


@dataclass
class ToyDiffusionConfig:
    dim: int = 2                    # dimension of the points
    hidden: int = 128               # MLP width
    depth: int = 3                  # residual MLP blocks
    time_dim: int = 32              # sinusoidal features of t
    timesteps: int = 100            # T, the number of diffusion steps
    schedule: str = "cosine"        # linear | cosine
    prediction: str = "v"           # eps | x0 | v (v: stable ODE sampling, see the module docstring)
    sampler: str = "ddpm"           # default sampler: ddpm | ddim | dpmpp
    sample_steps: int = 0           # 0: all T for ddpm, the sampler's default otherwise


@register
class ToyDiffusion(GenerativeModel):
    """DDPM on 2-D toy point clouds (toy2d) with an MLP denoiser; trains in seconds."""

    family = "toy-diffusion"
    eval_options = ("sampler", "steps", "guidance", "seed")  # its own metrics are those of its samples
    Config = ToyDiffusionConfig
    data_kind = "points"
    default_dataset = "toy2d"
    train_defaults = {"epochs": 20, "batch_size": 256, "lr": 2e-3, "warmup_steps": 100, "lr_schedule": "cosine",
                      "ema_decay": 0.995, "sample_every": 0, "num_samples": 2000, "log_every": 50}

    def __init__(self, cfg: ToyDiffusionConfig):
        super().__init__(cfg)
        if cfg.prediction not in ("eps", "x0", "v"):
            raise GenlabError(f"unknown prediction target '{cfg.prediction}'; choose eps, x0 or v")
        self.schedule = make_schedule(cfg.schedule, cfg.timesteps)
        # (no betas >= 1 check: make_schedule clamps every schedule's betas at 0.999)
        if cfg.sampler not in samplers.available():
            raise GenlabError(f"unknown sampler '{cfg.sampler}'; choose one of: {', '.join(samplers.available())}")
        if cfg.sample_steps and (cfg.sampler == "ddpm" and cfg.sample_steps != cfg.timesteps
                                 or not 1 <= cfg.sample_steps <= cfg.timesteps):
            raise ParamError("sample_steps", f"{cfg.sample_steps} does not fit sampler {cfg.sampler} with timesteps "
                             f"{cfg.timesteps} (ddpm runs all T steps; ddim/dpmpp take 1..T)")
        self.net = TimeMLP(cfg.dim, cfg.hidden, cfg.depth, cfg.time_dim)

    @property
    def num_classes(self) -> int:
        return 0

    def loss(self, batch):
        x0 = batch["x"]
        if x0.shape[-1] != self.cfg.dim:
            raise ParamError("dim", f"is {self.cfg.dim}, but the data are {x0.shape[-1]}-D points; "
                             f"set it to {x0.shape[-1]}")
        return gaussian.diffusion_loss(self.schedule, self.net, x0, prediction=self.cfg.prediction), {}

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, sampler: str | None = None,
               steps: int | None = None, eta: float = 0.0, spacing: str | None = None,
               x_T: torch.Tensor | None = None, return_intermediates: int = 0, progress=None, y=None,
               guidance: float = 1.0, classifier=None, classifier_scale: float = 1.0):
        """n points (n, dim) from `sampler` with `steps` network calls (no x0 clipping: points are unbounded)."""
        if classifier is not None:
            raise ParamError("classifier", "does not apply: classifier guidance needs an image diffusion checkpoint, "
                             "and the toy diffusion model is unconditional")
        if guidance != 1.0:
            raise ParamError("guidance", "does not apply: the toy diffusion model is unconditional")
        if y is not None:
            raise GenlabError("the toy diffusion model is unconditional: it cannot generate a given class")
        # the configured step count belongs to the configured sampler (as in DiffusionModel.sample)
        steps = steps or (self.cfg.sample_steps if sampler in (None, self.cfg.sampler) else 0) or None
        sampler = sampler or self.cfg.sampler
        kw = dict(prediction=self.cfg.prediction, generator=generator, device=self.device, x_T=x_T,
                  return_intermediates=return_intermediates, progress=progress)
        shape = (n, self.cfg.dim)
        if sampler == "ddpm":
            if steps not in (None, self.schedule.T):
                raise ParamError("steps", f"{steps} does not fit the ddpm sampler, which runs all {self.schedule.T} "
                                 f"steps; use the ddim or dpmpp sampler for {steps} steps")
            if spacing is not None:
                raise ParamError("spacing", "applies to the ddim and dpmpp samplers, not ddpm")
            # the registered ddpm sampler clips x0 to the image range [-1, 1]; points need clip=False
            return ddpm.p_sample_loop(self.schedule, self.net, shape, clip=False, **kw)
        steps = samplers.resolve_steps(sampler, steps, self.schedule.T)
        return samplers.sample(self.schedule, self.net, shape, sampler=sampler, steps=steps, eta=eta, clip=False,
                               spacing=spacing or "uniform", **kw)

    @torch.no_grad()
    def evaluate(self, data: TensorDataset, n: int | None = None, seed: int = 0, **sample_kw) -> dict[str, float]:
        """Energy distance, MMD and Chamfer distance of n samples to n held-out points, and their floors.

        The reference is the first n points of data, the floor_* metrics compare the
        next n points of data with it: what a perfect model scores at this n.
        """
        n = min(n or 1000, len(data) // 2)
        if n < 2:
            raise GenlabError(f"need at least 4 held-out points to evaluate, got {len(data)}")
        ref, other = data.x[:n].float(), data.x[n : 2 * n].float()
        g = torch.Generator(device=self.device).manual_seed(seed)
        out = point_metrics(self.sample(n, generator=g, **sample_kw).cpu(), ref)
        out.update({f"floor_{k}": v for k, v in point_metrics(other, ref).items()})
        return out

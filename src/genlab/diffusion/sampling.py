"""The sampler interface, its registry, and the one loop that runs every sampler.

A sampler is a small object in the style of a diffusers scheduler (one file each:
ddpm.py, ddim.py, dpm_solver.py, euler.py, heun.py, euler_ancestral.py):

    timesteps(T, steps, spacing) -> [t_0, t_1, ...]          which timesteps it visits, T-1 first
    step(denoise, x, t, t_next, state, generator) -> x_next  one update x_t -> x_{t_next}
                                                             (t_next = -1: to clean data)

`denoise(x, t)` returns the network's (x0, eps) estimates at (x, t) and is the only
way a step sees the network, so a step may call it once (DDIM, DPM-Solver++), or
twice (Heun). `state` carries what a step leaves for the next one (the schedule,
the timesteps, a multistep solver's history). A sampler declares `default_steps`
(None: every timestep), the one place the "how many steps" rule lives (resolve_steps).

`sample_loop` owns everything around the steps: drawing x_T (with genlab.rng, so a
CPU generator drives a model on any device), the intermediate frames, the
progress callback (one tick per network call), RePaint resampling for inpainting
(inpaint.py), and DDIM inversion (running the steps forwards in time). Guidance
needs no hook here: the model passed in may already be a guided denoiser
(classifier-free guidance, guidance.classifier_guidance), and the condition `y` is
opaque to the loop (None, a tensor or a dict), handed unchanged to `model(x, t, y)`.
"""

from __future__ import annotations

import torch

from .. import rng
from ..errors import GenlabError, ParamError
from .gaussian import model_x0_eps
from .schedules import NoiseSchedule
from .timesteps import SPACINGS, check_steps, spaced_timesteps

SAMPLERS: dict[str, type["Sampler"]] = {}


class State:
    """What the steps of one run share: the schedule, the timesteps, and any history a sampler keeps."""

    def __init__(self, schedule: NoiseSchedule, timesteps: list[int]):
        self.schedule = schedule
        self.timesteps = timesteps


class Sampler:
    """One reverse-process update rule. Subclasses set `name` and implement `step`."""

    name = ""
    default_steps: int | None = 50   # None: all T timesteps
    spacings = SPACINGS               # () for a sampler that always visits every timestep
    noise = "deterministic"           # how it is refused an eta: "the heun sampler is deterministic; ..."

    def __init__(self, eta: float | None = None):
        if eta:  # eta = 0 / None is "not given" (the CLI's and DiffusionModel.sample's default)
            raise ParamError("eta", f"{eta} applies to the ddim sampler only; the {self.name} sampler is {self.noise}")

    def timesteps(self, T: int, steps: int, spacing: str | None = None) -> list[int]:
        return spaced_timesteps(T, steps, spacing or "uniform")

    def init_state(self, schedule: NoiseSchedule, timesteps: list[int]) -> State:
        return State(schedule, timesteps)

    def step(self, denoise, x: torch.Tensor, t: int, t_next: int, state: State,
             generator: torch.Generator | None = None) -> torch.Tensor:
        """x_t -> x_{t_next} (t_next < t; -1: clean data), seeing the network only through denoise(x, t) -> (x0, eps),
        drawing any noise from `generator` with genlab.rng, keeping any history in `state`."""
        raise NotImplementedError

    def invert_step(self, denoise, x: torch.Tensor, t: int, t_next: int, state: State) -> torch.Tensor:
        """One step forwards in time, t -> t_next > t (t = -1: from clean data), for inversion."""
        raise ParamError("sampler", f"{self.name} cannot be run backwards; invert with the ddim sampler")

    @classmethod
    def network_calls(cls, steps: int) -> int:
        """Network evaluations of a run with `steps` timesteps (for progress bars)."""
        return steps


def register_sampler(cls: type[Sampler]) -> type[Sampler]:
    """Class decorator: make a Sampler subclass available by its `name` (sample(), the CLI's --sampler)."""
    SAMPLERS[cls.name] = cls
    return cls


def sampler_class(name: str) -> type[Sampler]:
    if name not in SAMPLERS:
        raise GenlabError(f"unknown sampler '{name}'; choose one of: {', '.join(SAMPLERS)}")
    return SAMPLERS[name]


def resolve_steps(sampler: str | Sampler | type[Sampler], steps: int | None, T: int) -> int:
    """The number of timesteps a run visits: `steps` if given, else the sampler's default_steps
    (None: all T), never more than the T timesteps the model has."""
    cls = sampler_class(sampler) if isinstance(sampler, str) else sampler
    steps = steps or min(cls.default_steps or T, T)
    check_steps(T, steps)
    return steps


class Denoise:
    """denoise(x, t) -> (x0, eps): one network call at (x_t, t), its output turned into both estimates."""

    def __init__(self, schedule: NoiseSchedule, model, y=None, prediction: str = "eps", clip: bool = True,
                 progress=None):
        self.schedule, self.model, self.y = schedule, model, y
        self.prediction, self.clip, self.progress = prediction, clip, progress

    def __call__(self, x: torch.Tensor, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.model(x, torch.full((x.shape[0],), t, device=x.device, dtype=torch.long), self.y).float()
        if self.progress is not None:
            self.progress(1)
        return model_x0_eps(self.schedule, out, x, t, self.prediction, self.clip)


def frame_steps(num_steps: int, k: int) -> set[int]:
    """Which of the states 0 (x_T) .. num_steps (the result) to keep for k snapshots, evenly spaced."""
    if not k:
        return set()
    return set(torch.linspace(0, num_steps, max(k, 2)).round().long().tolist())


def sample_loop(schedule: NoiseSchedule, model, shape, sampler: Sampler, steps: int | None = None,
                spacing: str | None = None, *, y=None, prediction: str = "eps", clip: bool = True,
                generator: torch.Generator | None = None, device=None, x_T: torch.Tensor | None = None,
                return_intermediates: int = 0, progress=None, repaint=None, invert: bool = False):
    """Run `sampler` from x_T ~ N(0, I) (or the given x_T) down to clean data; returns x0 or (x0, frames).

    return_intermediates=k: also k snapshots evenly spaced over the steps (x_T first, the result last).
    repaint: an inpaint.RePaint (known pixels, mask, resample count) applied at every step.
    invert: run forwards from the clean images x_T to the noise that generates them (DDIM inversion);
    the network's x0 is never clipped there.
    """
    T = schedule.T
    ts = sampler.timesteps(T, resolve_steps(sampler, steps, T), spacing)
    denoise = Denoise(schedule, model, y, prediction, clip and not invert, progress)
    if x_T is None:
        x = rng.randn(shape, generator, device or "cpu")
    else:
        x = x_T.to(device) if device is not None else x_T
    pairs = list(zip(ts, ts[1:] + [-1]))
    if invert:
        x = x.clone()
        pairs = [(t_next, t) for t, t_next in reversed(pairs)]  # -1 -> ts[-1] -> ... -> T-1
    keep = frame_steps(len(pairs), return_intermediates)
    frames = [x.clone()] if return_intermediates else []
    state = sampler.init_state(schedule, ts)
    for i, (t, t_next) in enumerate(pairs):
        if invert:
            x = sampler.invert_step(denoise, x, t, t_next, state)
        elif repaint is not None:
            x = repaint.step(sampler, denoise, x, t, t_next, state, generator)
        else:
            x = sampler.step(denoise, x, t, t_next, state, generator)
        if i + 1 in keep:
            frames.append(x.clone())
    if repaint is not None:
        x = repaint.paste(x)
    return (x, frames) if return_intermediates else x


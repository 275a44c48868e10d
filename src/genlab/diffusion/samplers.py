"""One interface over every sampler: `sample(schedule, model, shape, sampler=..., steps=...)`.

A sampler is a function (schedule, model, shape, *, steps, y, prediction, eta,
generator, device, x_T, return_intermediates, progress) -> x0 or (x0, frames).
`ddpm` is ancestral sampling over all T steps (DDPM, Algorithm 2); faster ones
register themselves here.
"""

from __future__ import annotations

import importlib

from ..errors import GenlabError
from . import gaussian

SAMPLERS: dict = {}
DEFAULT_STEPS = {"ddpm": None}


def register_sampler(name: str, default_steps: int | None = None):
    def deco(fn):
        SAMPLERS[name] = fn
        DEFAULT_STEPS[name] = default_steps
        return fn
    return deco


@register_sampler("ddpm")
def ddpm(schedule, model, shape, *, steps=None, y=None, prediction="eps", eta=1.0, generator=None,
         device="cpu", x_T=None, return_intermediates=0, progress=None, clip=True, spacing=None):
    if steps not in (None, schedule.T):
        raise GenlabError(f"the ddpm sampler runs all {schedule.T} steps; use --sampler ddim or dpmpp "
                          f"for {steps} steps")
    if spacing is not None:
        raise GenlabError("--spacing applies to the ddim and dpmpp samplers, not ddpm")
    return gaussian.p_sample_loop(schedule, model, shape, y=y, prediction=prediction, clip=clip, generator=generator,
                                  device=device, x_T=x_T, return_intermediates=return_intermediates,
                                  progress=progress)


def _load_plugins():
    for mod in ("ddim", "dpm_solver"):
        try:
            importlib.import_module(f"{__package__}.{mod}")
        except ModuleNotFoundError as e:
            if e.name != f"{__package__}.{mod}":
                raise


def available() -> list[str]:
    _load_plugins()
    return list(SAMPLERS)


def sample(schedule, model, shape, sampler: str = "ddpm", steps: int | None = None, **kw):
    _load_plugins()
    if sampler not in SAMPLERS:
        raise GenlabError(f"unknown sampler '{sampler}'; choose one of: {', '.join(SAMPLERS)}")
    steps = steps or (min(DEFAULT_STEPS[sampler], schedule.T) if DEFAULT_STEPS[sampler] else None)
    if steps is not None and not 1 <= steps <= schedule.T:
        raise GenlabError(f"--steps must be between 1 and the model's {schedule.T} timesteps, got {steps}")
    return SAMPLERS[sampler](schedule, model, shape, steps=steps, **kw)

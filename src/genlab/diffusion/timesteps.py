"""Which timesteps a sampler visits: `spaced_timesteps(T, steps, spacing)`, in sampling order.

Timesteps are 0-based (schedules.py); a sampler's last step goes from the last
timestep in the list to clean data (t = -1, abar = 1).

uniform:   tau_i = round(i (T-1) / (S-1)), i = 0..S-1   (DDIM Sec. 4.2, the "linear" sub-sequence;
                                                          diffusers' "linspace")
quadratic: tau_i = round((i sqrt(T-1) / (S-1))^2)       (DDIM Appendix D.2: more steps at low noise)
trailing:  tau_i = round(T - i T / S) - 1                (Lin et al. 2024, "Common Diffusion Noise
                                                          Schedules and Sample Steps are Flawed", Table 2)

uniform and quadratic include t = 0 (the last step starts almost clean); trailing
spaces the steps evenly from t = T-1 and never visits small t, so with few steps
the last one starts from real noise (abar_{T/S-1}) and does a bigger share of the
work, as the model was trained to. All three give every timestep when S = T.
"""

from __future__ import annotations

import math

import torch

from ..errors import GenlabError, ParamError

SPACINGS = ("uniform", "quadratic", "trailing")


def check_steps(T: int, steps: int) -> None:
    if not 1 <= steps <= T:
        raise ParamError("steps", f"must be between 1 and the model's {T} timesteps, got {steps}")


def spaced_timesteps(T: int, steps: int, spacing: str = "uniform") -> list[int]:
    """`steps` distinct timesteps in 0..T-1, in sampling order (T-1 first)."""
    if spacing not in SPACINGS:
        raise GenlabError(f"unknown timestep spacing '{spacing}'; choose one of: {', '.join(SPACINGS)}")
    check_steps(T, steps)
    if spacing == "trailing":
        return ((T - torch.arange(steps, dtype=torch.float64) * (T / steps)).round() - 1).long().tolist()
    if steps == 1:
        return [T - 1]
    grid = torch.linspace(0, 1, steps, dtype=torch.float64)
    ts = ((T - 1) * grid if spacing == "uniform" else (grid * math.sqrt(T - 1)) ** 2).round().long().tolist()
    # rounding can repeat small t (quadratic): push each t above its predecessor and keep room above it
    for i in range(1, steps):
        ts[i] = max(ts[i], ts[i - 1] + 1)
    for i in reversed(range(steps - 1)):
        ts[i] = min(ts[i], ts[i + 1] - 1)
    return ts[::-1]

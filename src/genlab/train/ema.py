"""Exponential moving average of the weights, with a warm-up.

A fixed decay of 0.999 averages over ~1000 steps: on a short run most of that
window is the random initialisation, and EMA samples come out as pure noise (a
common report with small DDPM repos). The warm-up uses
decay_n = min(decay, (1 + n) / (10 + n)), so early on the average tracks the
weights closely and only becomes long once there is a long history.

`networks` restricts the average to some submodules (a GAN averages its
generator, not its discriminator): the copy's other trainable weights simply
follow the model, and frozen ones (a distillation teacher) are left alone.
"""

import copy

import torch
from torch import nn


class EMA:
    def __init__(self, model: nn.Module, decay: float = 0.999, warmup: bool = True, networks: tuple[str, ...] = ()):
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay, self.warmup, self.updates = decay, warmup, 0
        names = [name for name, _ in model.named_parameters()]
        unknown = sorted(set(networks) - {n.split(".")[0] for n in names})
        if unknown:
            raise ValueError(f"EMA networks {unknown} are not submodules with parameters of {type(model).__name__}")
        averaged = [not networks or n.split(".")[0] in networks for n in names]
        trainable = [p.requires_grad for p in model.parameters()]
        ema_params = list(self.model.parameters())
        self._avg = [i for i, a in enumerate(averaged) if a]
        self._follow = [i for i, a in enumerate(averaged) if not a and trainable[i]]
        self._ema_avg = [ema_params[i] for i in self._avg]
        self._ema_follow = [ema_params[i] for i in self._follow]

    def current_decay(self) -> float:
        n = self.updates
        return min(self.decay, (1 + n) / (10 + n)) if self.warmup else self.decay

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        d = self.current_decay()
        cur = [p.detach() for p in model.parameters()]
        torch._foreach_lerp_(self._ema_avg, [cur[i] for i in self._avg], 1 - d)
        if self._follow:
            torch._foreach_copy_(self._ema_follow, [cur[i] for i in self._follow])
        for eb, b in zip(self.model.buffers(), model.buffers()):
            eb.copy_(b)
        self.updates += 1

    def state_dict(self) -> dict:
        return {"updates": self.updates, "decay": self.decay, "warmup": self.warmup}

    def load_state_dict(self, state: dict) -> None:
        self.updates = state["updates"]

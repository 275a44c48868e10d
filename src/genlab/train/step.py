"""What a family's `train_step` is handed: the forward pass, autocast and one optimizer update.

A one-loss family never sees this (its default train_step calls `ctx.forward` and
`ctx.step("model", loss)`). A GAN's step reads, for instance:

    with ctx.autocast():
        d_loss = ...                      # D on real and detached fake images
    ctx.step("discriminator", d_loss)
    if step % n_critic == 0:
        with ctx.autocast():
            g_loss = ...                  # D on fresh fake images
        ctx.step("generator", g_loss)
"""

from __future__ import annotations

import torch

from . import distributed as dist
from .config import TrainConfig
from ..device import autocast


class StepContext:
    def __init__(self, forward, optimizers: dict[str, torch.optim.Optimizer], params: dict[str, list],
                 cfg: TrainConfig, device: torch.device, bf16: bool, sync_grads: bool):
        self.forward = forward          # batch -> (loss, logs): the model's loss, through DDP / compile
        self.optimizers, self.params = optimizers, params
        self.cfg, self.device, self.bf16 = cfg, device, bf16
        self.sync_grads = sync_grads    # average gradients over ranks here (families not wrapped in DDP)

    def autocast(self):
        """bf16 autocast when the run uses it (backward runs outside it, in `step`)."""
        return autocast(self.device, self.bf16)

    def step(self, name: str, loss: torch.Tensor) -> None:
        """Zero optimizer `name`'s gradients, backpropagate `loss`, clip its parameters' norm, step."""
        opt = self.optimizers[name]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        params = self.params[name]
        if self.sync_grads:
            dist.all_reduce_grads(params)
        if self.cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, self.cfg.grad_clip, foreach=True)
        opt.step()

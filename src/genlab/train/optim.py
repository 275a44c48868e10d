"""The optimizers a family declares, and the learning-rate schedule they all follow.

Each optimizer is AdamW with two parameter groups (weight decay on weights, none on
norms and biases). Every group remembers its `base_lr`; before each step the loop sets
lr = base_lr * lr_factor(step): linear warm-up, then constant or cosine decay to 10%.
Setting the rate from the step (as nanoGPT does) instead of keeping a scheduler object
makes resuming exact with nothing to restore but the step.
"""

from __future__ import annotations

import math

import torch

from ..errors import GenlabError
from ..models.base import OptimizerSpec
from .config import TrainConfig


def build_optimizer(groups, lr: float, device: torch.device, betas=(0.9, 0.999)) -> torch.optim.AdamW:
    """AdamW, fused where torch has the kernel (CUDA and CPU; timing: benchmarks/measurements.md), else foreach."""
    try:
        return torch.optim.AdamW(groups, lr=lr, betas=betas, fused=device.type in ("cuda", "cpu"))
    except RuntimeError:
        return torch.optim.AdamW(groups, lr=lr, betas=betas, foreach=True)


def param_groups(params, lr: float, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for p in params:
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)  # no weight decay on norms and biases
    return [{"params": decay, "weight_decay": weight_decay, "base_lr": lr},
            {"params": no_decay, "weight_decay": 0.0, "base_lr": lr}]


def build_optimizers(specs: dict[str, OptimizerSpec], cfg: TrainConfig, device: torch.device):
    """One AdamW per spec; lr / weight decay default to the run's --lr / --weight-decay.

    Returns (optimizers, params): params[name] lists the trainable parameters of each
    in the model's order (the order gradient clipping sums their norms in).
    """
    if not specs:
        raise GenlabError("the model declares no optimizers")
    opts, params = {}, {}
    for name, spec in specs.items():
        params[name] = [p for p in spec.params if p.requires_grad]
        lr, wd = rates({name: spec}, cfg)[name]
        if not params[name]:
            raise GenlabError(f"optimizer '{name}' has no trainable parameters")
        opts[name] = build_optimizer(param_groups(params[name], lr, wd), lr, device, tuple(spec.betas))
    return opts, params


def rates(specs: dict[str, OptimizerSpec], cfg: TrainConfig) -> dict[str, tuple[float, float]]:
    """(base lr, weight decay) of each optimizer for this run's settings."""
    return {name: (cfg.lr if s.lr is None else s.lr, cfg.weight_decay if s.weight_decay is None else s.weight_decay)
            for name, s in specs.items()}


def lr_factor(step: int, cfg: TrainConfig, total_steps: int) -> float:
    """Linear warm-up to the base LR, then constant or cosine decay to 10%."""
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.lr_schedule == "cosine":
        progress = min(1.0, (step - cfg.warmup_steps) / max(1, total_steps - cfg.warmup_steps))
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))
    return 1.0


def set_lr(optimizers: dict[str, torch.optim.Optimizer], factor: float) -> None:
    for opt in optimizers.values():
        for group in opt.param_groups:
            group["lr"] = group["base_lr"] * factor

"""What a model family is: a model, a loss and a sampler. Nothing else.

The one training loop (`genlab.train.loop`) drives any `GenerativeModel`:
it calls `train_step(batch, step, ctx)` to train and `sample(n)` to draw the
grids it saves. A family with one loss implements only `loss(batch)`: the
default `train_step` takes one optimizer step on it. A family with several
networks (a GAN's generator and discriminator, a distilled student beside a
frozen teacher) declares its `optimizers()` by name and writes its own
`train_step`, calling `ctx.step(name, loss)` for each update; `ema_networks`
names the submodules whose weights the EMA averages (a GAN's generator).
A family registers itself with `@register`, so checkpoints (which store the
family name and the config as JSON) can be rebuilt without knowing the class.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar, Iterable

import torch
from torch import nn

from ..errors import GenlabError

MODELS: dict[str, type["GenerativeModel"]] = {}


@dataclass
class OptimizerSpec:
    """One optimizer a family asks the loop for (AdamW; weight decay only on weights with ndim >= 2).

    lr / weight_decay None: the run's --lr / --weight-decay. The loop applies the
    warm-up and LR schedule to every optimizer alike, and saves and resumes each one.
    """

    params: Iterable[nn.Parameter]
    lr: float | None = None
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float | None = None


def register(cls):
    """Class decorator: make a family buildable by name (`build_model`)."""
    MODELS[cls.family] = cls
    return cls


class GenerativeModel(nn.Module):
    """Base class of every trainable family.

    Subclasses set `family` (the CLI name) and `Config` (a dataclass), build
    their networks in `__init__(cfg)`, and implement `loss` and, if they can
    generate, `sample`.
    """

    family: ClassVar[str] = ""
    Config: ClassVar[type] = object
    # kind of data this family trains on: "image", "points" or "tokens"
    data_kind: ClassVar[str] = "image"
    # what `genlab train FAMILY` uses when the user does not say
    default_dataset: ClassVar[str] = "shapes"
    train_defaults: ClassVar[dict] = {}
    # `genlab eval` options that `evaluate` takes (of sampler, steps, guidance, seed)
    eval_options: ClassVar[tuple] = ()
    # submodules (attribute names) whose weights the EMA averages; () = the whole model
    ema_networks: ClassVar[tuple[str, ...]] = ()

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg

    def loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Scalar training loss and a dict of extra detached scalars to log.

        Return tensors, never Python floats: `.item()` would sync the device
        every step. The loop averages and syncs them once per log interval.
        """
        raise NotImplementedError

    def forward(self, batch):
        # forward is the loss, so DistributedDataParallel and torch.compile wrap the model as is
        return self.loss(batch)

    def optimizers(self) -> dict[str, OptimizerSpec]:
        """The optimizers this family trains with, by name (one over every parameter by default)."""
        return {"model": OptimizerSpec(self.parameters())}

    def train_step(self, batch: dict[str, torch.Tensor], step: int, ctx) -> dict[str, torch.Tensor]:
        """One training step; returns the scalars to log (tensors, never floats).

        ctx (genlab.train.step.StepContext) gives `ctx.forward(batch)` (this model's loss,
        through DDP / torch.compile when the loop wraps it), `ctx.autocast()` and
        `ctx.step(name, loss)`: zero the grads of optimizer `name`, backpropagate, clip, step.
        """
        with ctx.autocast():
            loss, logs = ctx.forward(batch)
        ctx.step("model", loss)
        return {"loss": loss, **logs}

    @property
    def custom_step(self) -> bool:
        """True for families that write their own train_step (several networks / optimizers)."""
        return type(self).train_step is not GenerativeModel.train_step

    def set_grad_checkpointing(self, on: bool = True) -> None:
        """Recompute block activations in the backward pass instead of storing them (less memory, more time).

        Sets `grad_checkpoint` on every submodule that has that attribute (the U-Net does).
        """
        blocks = [m for m in self.modules() if hasattr(m, "grad_checkpoint")]
        if not blocks:
            raise GenlabError(f"the {self.family} model has no blocks that support gradient checkpointing; "
                              "train it without it")
        for m in blocks:
            m.grad_checkpoint = on

    @torch.no_grad()
    def preview(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """The samples the training loop saves as grids; families may pick a faster sampler."""
        return self.sample(n, generator=generator)

    def present(self, samples):
        """Samples as a person sees them: images (N,C,H,W), points (N,2) or lines of text (token
        families decode theirs); genlab.viz.samples.save_samples writes whichever it is."""
        return samples

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, **kwargs) -> torch.Tensor:
        """n samples (images as float in [-1, 1], N,C,H,W)."""
        raise GenlabError(f"the {self.family} model cannot generate samples")

    @property
    def can_sample(self) -> bool:
        return type(self).sample is not GenerativeModel.sample

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def config_dict(self) -> dict:
        return dataclasses.asdict(self.cfg)


def config_from_dict(config_cls, d: dict):
    """Build a config dataclass from a dict, rejecting unknown keys by name."""
    names = {f.name for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise GenlabError(f"unknown {config_cls.__name__} option(s): {', '.join(unknown)}; "
                          f"valid: {', '.join(sorted(names))}")
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    # JSON turns tuples into lists; give tuple-typed fields their tuples back
    d = {k: tuple(v) if isinstance(v, list) and isinstance(fields[k].default, tuple) else v for k, v in d.items()}
    return config_cls(**d)

"""What a model family is: a model, a loss and a sampler. Nothing else.

The one training loop (`genlab.train.loop`) drives any `GenerativeModel`:
it calls `loss(batch)` to train and `sample(n)` to draw the grids it saves.
A family registers itself with `@register`, so checkpoints (which store the
family name and the config as JSON) can be rebuilt without knowing the class.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import torch
from torch import nn

from ..errors import GenlabError

MODELS: dict[str, type["GenerativeModel"]] = {}


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

    @torch.no_grad()
    def preview(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """The samples the training loop saves as grids; families may pick a faster sampler."""
        return self.sample(n, generator=generator)

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


def build_model(family: str, cfg: dict | object) -> GenerativeModel:
    from . import load_all  # noqa: F401  (registers every family)

    load_all()
    if family not in MODELS:
        raise GenlabError(f"unknown model family '{family}'; choose one of: {', '.join(sorted(MODELS))}")
    cls = MODELS[family]
    if isinstance(cfg, dict):
        cfg = config_from_dict(cls.Config, cfg)
    return cls(cfg)

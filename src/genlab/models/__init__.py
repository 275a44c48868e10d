"""Model families. Importing a family module registers it (see base.register)."""

import importlib

from ..errors import GenlabError
from .base import MODELS, GenerativeModel, OptimizerSpec, config_from_dict, register  # noqa: F401

# module name per family, imported on first use (`genlab --help` stays fast)
_FAMILY_MODULES = ["diffusion", "classifier", "autoencoder", "vae", "hvae", "discrete", "toy_diffusion",
                   "noisy_classifier", "gan", "toy_gan", "colorize"]


def load_all() -> dict:
    for name in _FAMILY_MODULES:
        importlib.import_module(f"{__name__}.{name}")
    return MODELS


def build_model(family: str, cfg: dict | object) -> GenerativeModel:
    """A model of `family` from its config (a dict, checked against the family's Config, or the dataclass)."""
    load_all()  # registers every family
    if family not in MODELS:
        raise GenlabError(f"unknown model family '{family}'; choose one of: {', '.join(sorted(MODELS))}")
    cls = MODELS[family]
    if isinstance(cfg, dict):
        cfg = config_from_dict(cls.Config, cfg)
    return cls(cfg)

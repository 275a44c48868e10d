"""Model families. Importing a family module registers it (see base.register)."""

import importlib

from .base import MODELS, GenerativeModel, build_model, register  # noqa: F401

# module name per family; a module that is missing is simply not offered
_FAMILY_MODULES = ["diffusion", "classifier", "autoencoder", "vae", "hvae", "discrete", "toy_diffusion",
                  "noisy_classifier"]


def load_all() -> dict:
    for name in _FAMILY_MODULES:
        try:
            importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"{__name__}.{name}":
                raise
    return MODELS

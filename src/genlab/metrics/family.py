"""Each family's own test metrics, by family name: `evaluate(model, data, n)`.

Metrics sit above the models: a model knows its bound's terms (elbo_terms,
log_weights, ...), and the code here turns them into numbers on a test split.
Families whose metrics need nothing outside the model (a classifier's accuracy,
the toy model's sample distances) keep an `evaluate` method, which is used
when the family is not listed here.
"""

from __future__ import annotations

from .colorize import colorization_metrics
from .likelihood import evaluate_latent_model
from .reconstruction import reconstruction_metrics
from .text import discrete_metrics


def _latent(model, data, n: int | None = None) -> dict[str, float]:
    """VAE / HVAE: reconstruction, -ELBO and -IWAE-k (nats, bits/dim), KL diagnostics."""
    return evaluate_latent_model(model, data, n=n, k=model.cfg.iwae_k)


# family -> metrics(model, data, n=None, **options) -> dict of numbers
EVALUATORS = {
    "ae": reconstruction_metrics,
    "vae": _latent,
    "hvae": _latent,
    "discrete": discrete_metrics,
    "colorize": colorization_metrics,
}


def has_metrics(model) -> bool:
    """Whether the family has test metrics of its own (beside FID & co of its samples)."""
    return model.family in EVALUATORS or hasattr(model, "evaluate")


def evaluate(model, data, n: int | None = None, **options) -> dict[str, float]:
    """The family's own metrics of `model` on (the first n items of) `data`; {} for a family with none."""
    if model.family in EVALUATORS:
        return EVALUATORS[model.family](model, data, n=n, **options)
    if hasattr(model, "evaluate"):
        return model.evaluate(data, n=n, **options)
    return {}

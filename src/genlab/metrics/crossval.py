"""k-fold cross-validated accuracy of the classifier family (for datasets with one usable split)."""

from __future__ import annotations

import torch

from ..data.base import TensorDataset
from ..errors import GenlabError
from ..models.base import config_from_dict
from ..models.classifier import Classifier, ClassifierConfig
from ..train import TrainConfig, train


def kfold_accuracy(data: TensorDataset, folds: int = 5, model_options: dict | None = None,
                   train_cfg=None, seed: int = 0) -> dict:
    """k-fold cross-validated test accuracy: train on k-1 folds, test on the held-out one.

    For datasets with a single usable split (offline MNIST: only its 10k test
    images). Folds are a fixed random partition (seed); returns the mean and
    standard deviation over folds, and the per-fold accuracies.
    """
    if data.y is None:
        raise GenlabError(f"dataset {data.name} has no labels to cross-validate a classifier on")
    if not 2 <= folds <= len(data):
        raise GenlabError(f"folds must be between 2 and the dataset size ({len(data)}), got {folds}")
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))
    parts = order.chunk(folds)
    cfg = dict(channels=data.channels, image_size=data.image_size, num_classes=data.num_classes,
               **(model_options or {}))
    accs = []
    for i in range(folds):
        held = parts[i]
        rest = torch.cat([p for j, p in enumerate(parts) if j != i])
        torch.manual_seed(seed + i)
        model = Classifier(config_from_dict(ClassifierConfig, cfg))
        result = train(model, data.subset(rest), train_cfg or TrainConfig(progress=False))
        accs.append(result.sampling_model.evaluate(data.subset(held))["accuracy"])
    acc = torch.tensor(accs, dtype=torch.float64)
    return {"accuracy": acc.mean().item(), "std": acc.std().item() if folds > 1 else 0.0, "folds": accs}

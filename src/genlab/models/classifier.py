"""The `classifier` family: a CNN trained with cross-entropy.

Not a generative model, but it trains with the same loop, and it serves as
the feature network of genlab.metrics (FID/KID/precision/recall on its
penultimate features, conditional accuracy from its predictions). The
network and an explanation of its layers are in genlab.nn.classifier.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..data.base import TensorDataset
from ..errors import GenlabError, ParamError
from ..nn.classifier import CNNClassifier
from .base import GenerativeModel, register


@dataclass
class ClassifierConfig:
    channels: int = 1               # filled from the dataset by the CLI
    image_size: int = 28
    num_classes: int = 10
    width: int = 16                 # channels of the first stage; doubles per stage
    feature_dim: int = 128          # size of the penultimate features (metrics use these)
    dropout: float = 0.2
    label_smoothing: float = 0.0    # cross-entropy target: (1 - e) one-hot + e uniform


@register
class Classifier(GenerativeModel):
    """CNN image classifier (cross-entropy); also the feature network of `genlab eval`.

    `forward(batch)` is the loss, as for every family; `logits(x)` and
    `predict(x)` classify images.
    """

    family = "classifier"
    Config = ClassifierConfig
    data_kind = "image"
    default_dataset = "fashion_mnist"
    # 5 epochs: accuracy and time in benchmarks/measurements.md (BatchNorm makes channels_last pay on CPU)
    train_defaults = {"epochs": 5, "lr": 3e-3, "lr_schedule": "cosine", "warmup_steps": 100,
                      "weight_decay": 0.05, "channels_last": "on", "sample_every": 0}

    def __init__(self, cfg: ClassifierConfig):
        super().__init__(cfg)
        if cfg.num_classes < 2:
            raise GenlabError(f"a classifier needs a labelled dataset with at least 2 classes, "
                              f"got num_classes={cfg.num_classes}")
        if not 0.0 <= cfg.label_smoothing < 1.0:
            raise ParamError("label_smoothing", f"must be in [0, 1), got {cfg.label_smoothing}")
        if not 0.0 <= cfg.dropout < 1.0:
            raise ParamError("dropout", f"must be in [0, 1), got {cfg.dropout}")
        for name in ("width", "feature_dim"):
            if not getattr(cfg, name) >= 1:
                raise ParamError(name, f"must be >= 1, got {getattr(cfg, name)}")
        self.net = CNNClassifier(cfg.channels, cfg.num_classes, cfg.image_size,
                                 cfg.width, cfg.feature_dim, cfg.dropout)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features (N, feature_dim)."""
        return self.net.features(x)

    def loss(self, batch: dict[str, torch.Tensor]):
        if "y" not in batch:
            raise GenlabError("the classifier needs labels; train it on a labelled dataset "
                              "(mnist, fashion_mnist, cifar10, image_folder with class folders)")
        y = batch["y"]
        logits = self.net(batch["x"])
        loss = F.cross_entropy(logits, y, label_smoothing=self.cfg.label_smoothing)
        acc = (logits.argmax(dim=1) == y).float().mean()
        return loss, {"acc": acc.detach()}

    @torch.no_grad()
    def logits(self, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
        """Logits of many images, in eval mode, a batch at a time (on the model's device)."""
        was_training = self.training
        self.eval()
        try:
            out = [self.net(x[i : i + batch_size].to(self.device)).float()
                   for i in range(0, len(x), batch_size)]
        finally:
            self.train(was_training)
        return torch.cat(out) if out else torch.empty(0, self.cfg.num_classes)

    @torch.no_grad()
    def predict(self, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
        """Predicted class (N,) of images in [-1, 1]."""
        return self.logits(x, batch_size).argmax(dim=1)

    @torch.no_grad()
    def evaluate(self, data: TensorDataset, n: int | None = None) -> dict[str, float]:
        """Accuracy and mean cross-entropy on (the first n items of) data."""
        if data.y is None:
            raise GenlabError(f"dataset {data.name} has no labels to evaluate a classifier on")
        if (data.channels, data.image_size) != (self.cfg.channels, self.cfg.image_size):
            raise GenlabError(f"dataset {data.name} has {data.channels}x{data.image_size} px images but the "
                              f"classifier takes {self.cfg.channels}x{self.cfg.image_size}; "
                              f"load it at the classifier's image size")
        n = len(data) if n is None else min(n, len(data))
        sums, count = torch.zeros(2, dtype=torch.float64), 0
        for i in range(0, n, 1000):
            batch = data.batch(torch.arange(i, min(i + 1000, n)))
            logits = self.logits(batch["x"])
            y = batch["y"].to(logits.device)
            sums[0] += (logits.argmax(1) == y).sum().item()
            sums[1] += F.cross_entropy(logits, y, reduction="sum").item()
            count += len(y)
        return {"accuracy": sums[0].item() / count, "loss": sums[1].item() / count}

    @torch.no_grad()
    def confusion_matrix(self, data: TensorDataset, n: int | None = None) -> torch.Tensor:
        """counts[true, predicted] over (the first n items of) data."""
        n = len(data) if n is None else min(n, len(data))
        k = self.cfg.num_classes
        pred = self.predict(data.batch(torch.arange(n))["x"]).cpu()
        return torch.bincount(data.y[:n] * k + pred, minlength=k * k).reshape(k, k)

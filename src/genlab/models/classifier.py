"""The `classifier` family: a CNN trained with cross-entropy.

Not a generative model, but it trains with the same loop, and it serves as
the feature network of genlab.metrics (FID/KID/precision/recall on its
penultimate features, conditional accuracy from its predictions). The
network and an explanation of its layers are in genlab.nn.classifier.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from ..data.base import TensorDataset
from ..errors import GenlabError
from ..nn.classifier import CNNClassifier
from .base import GenerativeModel, config_from_dict, register


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
    # 5 epochs reach ~93% on Fashion-MNIST in under 3 CPU-minutes (BatchNorm makes channels_last pay on CPU)
    train_defaults = {"epochs": 5, "lr": 3e-3, "lr_schedule": "cosine", "warmup_steps": 100,
                      "weight_decay": 0.05, "channels_last": "on", "sample_every": 0}

    def __init__(self, cfg: ClassifierConfig):
        super().__init__(cfg)
        if cfg.num_classes < 2:
            raise GenlabError(f"a classifier needs a labelled dataset with at least 2 classes, "
                              f"got num_classes={cfg.num_classes}")
        if not 0.0 <= cfg.label_smoothing < 1.0:
            raise GenlabError(f"--label-smoothing must be in [0, 1), got {cfg.label_smoothing}")
        if not 0.0 <= cfg.dropout < 1.0:
            raise GenlabError(f"--dropout must be in [0, 1), got {cfg.dropout}")
        if not (cfg.width >= 1 and cfg.feature_dim >= 1):
            raise GenlabError(f"--width and --feature-dim must be >= 1, got {cfg.width} and {cfg.feature_dim}")
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
                              f"load it with the classifier's --image-size")
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

    def save_artifacts(self, data: TensorDataset, out_dir: Path, generator=None) -> list[Path]:
        """confusion.png: where the classifier is wrong, on up to 10,000 items of data."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        if data.y is None:
            return []
        cm = self.confusion_matrix(data, 10_000).numpy()
        k = len(cm)
        names = data.classes if len(data.classes) == k else [str(i) for i in range(k)]
        fig, ax = plt.subplots(figsize=(1.0 + 0.55 * k, 1.0 + 0.5 * k))
        frac = cm / cm.sum(axis=1, keepdims=True).clip(min=1)
        ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
        for i in range(k):
            for j in range(k):  # white text on dark cells only, so every count stays readable
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if frac[i, j] > 0.5 else "black")
        ax.set_xticks(range(k), names, rotation=60, ha="right", fontsize=7)
        ax.set_yticks(range(k), names, fontsize=7)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        acc = cm.trace() / max(cm.sum(), 1)
        ax.set_title(f"{data.name}: accuracy {acc:.2%} on {cm.sum()} images", fontsize=8)
        fig.tight_layout()
        path = Path(out_dir) / "confusion.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120)
        plt.close(fig)
        return [path]


def kfold_accuracy(data: TensorDataset, folds: int = 5, model_options: dict | None = None,
                   train_cfg=None, seed: int = 0) -> dict:
    """k-fold cross-validated test accuracy: train on k-1 folds, test on the held-out one.

    For datasets with a single usable split (offline MNIST: only its 10k test
    images). Folds are a fixed random partition (seed); returns the mean and
    standard deviation over folds, and the per-fold accuracies.
    """
    from ..train import TrainConfig, train

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

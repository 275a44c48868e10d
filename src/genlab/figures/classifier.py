"""Pictures of the classifiers: the confusion matrix, and a noisy classifier's accuracy against t."""

from __future__ import annotations

from pathlib import Path

import torch

from ..data.base import TensorDataset
from ..viz.plots import plt, save_figure


def confusion_figure(model, data: TensorDataset, out_dir: Path, generator=None) -> list[Path]:
    """confusion.png: where the classifier is wrong, on up to 10,000 items of data."""
    if data.y is None:
        return []
    cm = model.confusion_matrix(data, 10_000).numpy()
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
    return [save_figure(fig, Path(out_dir) / "confusion.png", dpi=120)]


def accuracy_vs_t_figure(model, data: TensorDataset, out_dir: Path, generator=None) -> list[Path]:
    """accuracy_vs_t.png: a noisy classifier's test accuracy against the noise level."""
    if data.y is None:
        return []
    T = model.cfg.timesteps
    ts = sorted({min(T - 1, round(f * T)) for f in torch.linspace(0, 1, 11).tolist()})
    acc = model.accuracy_vs_t(data, ts, 1000, generator or torch.Generator().manual_seed(0))
    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=120)
    ax.plot(ts, [acc[t] for t in ts], marker="o")
    ax.axhline(1 / model.cfg.num_classes, ls="--", color="grey", label="chance")
    ax.set_xlabel("timestep t")
    ax.set_ylabel("accuracy on x_t")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(f"noisy classifier on {data.name} ({min(1000, len(data))} test images)", fontsize=9)
    return [save_figure(fig, Path(out_dir) / "accuracy_vs_t.png")]

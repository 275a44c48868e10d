"""Feature networks for the metrics, and a disk cache of real-data features.

FID, KID and precision/recall compare images through the eyes of a network.
genlab's default network is the dataset's own CNN classifier (trained with
`genlab train classifier`): small, trainable offline in minutes, and it knows
what matters in *that* dataset. Numbers are therefore comparable only between
runs that used the same classifier; `FeatureExtractor.hash` (a hash of its
weights) names it, and every cached statistic is keyed by it.

Where the classifier lives: `<GENLAB_HOME or ~/.cache/genlab>/classifiers/
<dataset>-<channels>x<size>/`, a genlab run folder (config.json,
model.safetensors). Real-data features are cached beside it in
`feature_stats/<dataset>-<split>-<C>x<S>-n<n>-<hash>.npz`, so an eval only
runs the network on the generated samples.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..data.base import to_float_image
from ..errors import GenlabError, ParamError
from .extractor import FeatureExtractor
from .fid import feature_stats
from .inception import InceptionFeatures


def genlab_home() -> Path:
    """$GENLAB_HOME, else ~/.cache/genlab: classifiers and feature caches live here."""
    return Path(os.environ.get("GENLAB_HOME") or Path.home() / ".cache" / "genlab").expanduser()


def classifier_dir(dataset: str, channels: int, image_size: int) -> Path:
    """Default location of the feature classifier of a dataset at a given shape."""
    return genlab_home() / "classifiers" / f"{dataset}-{channels}x{image_size}"


def _train_hint(dataset: str, channels: int | None, image_size: int | None) -> str:
    c, s = channels or "C", image_size or "S"
    flags = f" --image-size {image_size}" if image_size else ""
    flags += f" --channels {channels}" if channels else ""
    return (f"train one with `genlab train classifier --dataset {dataset}{flags} "
            f"--out {genlab_home() / 'classifiers' / f'{dataset}-{c}x{s}'}`")


def find_classifier(dataset: str, channels: int | None = None, image_size: int | None = None) -> Path:
    """The run folder of the dataset's feature classifier; GenlabError if there is none.

    With channels/image_size left out, the single classifier of that dataset
    is used (an error if there are several: then say which shape).
    """
    root = genlab_home() / "classifiers"
    if channels is not None and image_size is not None:
        path = classifier_dir(dataset, channels, image_size)
        if not (path / "config.json").exists():
            raise GenlabError(f"no feature classifier for {dataset} at {channels}x{image_size} px "
                              f"(looked in {path}); {_train_hint(dataset, channels, image_size)}")
        return path
    def fits(folder: Path) -> bool:
        shape = _shape_of(folder.name, dataset)
        return (folder / "config.json").exists() and shape is not None and \
            channels in (None, shape[0]) and image_size in (None, shape[1])

    found = sorted(p for p in root.glob(f"{dataset}-*x*") if fits(p))
    if not found:
        raise GenlabError(f"no feature classifier for {dataset} in {root}; "
                          f"{_train_hint(dataset, channels, image_size)}")
    if len(found) > 1:
        shapes = ", ".join(p.name.removeprefix(dataset + "-") for p in found)
        raise GenlabError(f"several feature classifiers for {dataset} ({shapes}); "
                          f"say which with the image size / channels of your samples")
    return found[0]


def _shape_of(folder: str, dataset: str) -> tuple[int, int] | None:
    c, _, s = folder.removeprefix(dataset + "-").partition("x")
    return (int(c), int(s)) if c.isdigit() and s.isdigit() else None


def network_hash(module: torch.nn.Module) -> str:
    """Hash of every parameter and buffer (names, shapes, values): 16 hex digits."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        flat = t.detach().cpu().contiguous().reshape(-1)  # 1-D: 0-d tensors cannot be viewed as bytes
        h.update(flat.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def load_classifier(path: str | Path, device: str | torch.device = "cpu"):
    """Load a classifier run folder (its EMA weights where present), in eval mode."""
    from ..train.checkpoint import sampling_model

    model, _ = sampling_model(Path(path), device, family="classifier")
    return model.eval().requires_grad_(False)


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class ClassifierFeatures(FeatureExtractor):
    """Penultimate features and logits of a genlab classifier."""

    def __init__(self, model, name: str = "classifier"):
        self.model = model.eval()
        self.channels, self.image_size = model.cfg.channels, model.cfg.image_size
        self.hash = network_hash(model)
        self.name = f"{name}[{self.hash[:8]}]"

    def _forward(self, x):
        x = x.to(self.model.device).contiguous(memory_format=torch.channels_last)
        f = self.model.features(x)
        return f, self.model.net.head(f)  # head(features) = logits in eval mode (dropout is off)


def feature_extractor(dataset: str, channels: int | None = None, image_size: int | None = None,
                      path: str | Path | None = None, device: str | torch.device | None = None,
                      network: str = "classifier", inception_weights: str | Path | None = None
                      ) -> FeatureExtractor:
    """The feature network for a dataset.

    network="classifier" (default): the dataset's classifier, from `path` or
    the default location (see `find_classifier`). network="inception": the
    standard FID Inception-v3 (needs torch-fidelity and a local weights file,
    see genlab.metrics.inception).
    """
    device = torch.device(device) if device is not None else default_device()
    if network == "inception":
        return InceptionFeatures(inception_weights, device)
    if network != "classifier":
        raise GenlabError(f"unknown feature network {network!r}; use 'classifier' or 'inception'")
    if path is None:
        from ..data.words import image_token_source

        path = find_classifier(image_token_source(dataset), channels, image_size)
    folder = Path(path)
    model = load_classifier(folder, device).to(memory_format=torch.channels_last)
    return ClassifierFeatures(model, name=f"classifier:{folder.name}")


@dataclass
class RealFeatures:
    """Features of n real images of one split, with their Gaussian statistics."""

    features: np.ndarray   # (n, d) float32
    mu: np.ndarray         # (d,) float64
    sigma: np.ndarray      # (d, d) float64
    path: Path             # the cache file
    cached: bool           # True if read from the cache, False if computed now


def dataset_tag(dataset: str, data_options: dict | None = None) -> str:
    """The dataset's name, plus a short hash of its loader options (levels=8, path=...) when it has any."""
    if not data_options:
        return dataset
    key = json.dumps(sorted((k, str(v)) for k, v in data_options.items()))
    return f"{dataset}-opts{hashlib.sha256(key.encode()).hexdigest()[:8]}"


def stats_cache_path(extractor: FeatureExtractor, dataset: str, split: str, n: int,
                     data_options: dict | None = None) -> Path:
    shape = f"{extractor.channels or 'any'}x{extractor.image_size or 'any'}"
    name = f"{dataset_tag(dataset, data_options)}-{split}-{shape}-n{n}-{extractor.hash}.npz"
    return genlab_home() / "feature_stats" / name


def real_features(extractor: FeatureExtractor, dataset: str, split: str, n: int,
                  data_dir: str | Path | None = None, seed: int = 0,
                  data_options: dict | None = None) -> RealFeatures:
    """Features of n images of a dataset split, computed once and cached on disk.

    The n images are a fixed random subset (seed 0) of the split, not its
    first n: some datasets are stored sorted by class. data_options are the
    dataset's loader options the model was trained with (an image_folder's
    path, an image-token dataset's levels), part of the cache key.
    """
    path = stats_cache_path(extractor, dataset, split, n, data_options)
    if path.exists():
        try:
            with np.load(path) as z:
                return RealFeatures(z["features"], z["mu"], z["sigma"], path, True)
        except (OSError, KeyError, ValueError):
            path.unlink(missing_ok=True)  # a torn or foreign file: recompute below
    from ..data import load_dataset

    data = load_dataset(dataset, split=split, image_size=extractor.image_size,
                        channels=extractor.channels, data_dir=data_dir, **(data_options or {}))
    grid = data.meta.get("grid") if data.kind == "tokens" else None
    if data.kind != "image" and not grid:
        raise GenlabError(f"dataset {dataset} holds {data.kind}, not images: image metrics do not apply")
    if n > len(data):
        raise ParamError("n", f"{n} asks for more images than the {split} split of {dataset} has (only "
                         f"{len(data)}); lower it to at most {len(data)}")
    idx = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:n]
    if grid:  # image tokens (binarised / quantised pixels): real images quantised the same way
        from ..data.words import tokens_to_images

        images = tokens_to_images(data.x[idx], tuple(grid), data.meta["levels"])
    else:
        images = to_float_image(data.x[idx])
    feats, _ = extractor(images)
    mu, sigma = feature_stats(feats)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + f".tmp{os.getpid()}.npz")
    np.savez(tmp, features=feats, mu=mu, sigma=sigma)
    os.replace(tmp, path)  # atomic: a concurrent eval never reads half a file
    return RealFeatures(feats, mu, sigma, path, False)

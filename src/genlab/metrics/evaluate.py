"""The whole evaluation recipe: samples in, numbers with a scale out.

    generated samples --feature net--> features G
    test split (n images, cached)  ---> features T
    train split (n images, cached) ---> features R

    fid, kid, precision, recall  = metric(G vs T)
    floor_fid, floor_kid, ...    = metric(R vs T)

The floor is what a perfect generator (one that reproduces the data
distribution) would score at the same n: FID is biased upwards at finite n
and its scale depends on the feature network, so a number means something
only next to its floor. Datasets without a train split (offline MNIST) use
two disjoint halves of the test split instead, when it is big enough.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

from ..errors import GenlabError, ParamError
from ..fmt import num
from .features import (FeatureExtractor, RealFeatures, dataset_tag, feature_extractor, real_features,
                       stats_cache_path)
from .fid import feature_stats, frechet_distance, kid, precision_recall


def _compare(gen: np.ndarray, mu_g, sigma_g, ref, k: int, kid_subsets: int, kid_subset_size: int) -> dict:
    fid = frechet_distance(mu_g, sigma_g, ref.mu, ref.sigma)
    kid_mean, kid_std = kid(gen, ref.features, kid_subsets, kid_subset_size)
    precision, recall = precision_recall(ref.features, gen, k)
    return dict(fid=fid, kid=kid_mean, kid_std=kid_std, precision=precision, recall=recall)


def evaluate_samples(samples: torch.Tensor, dataset: str, n: int | None = None,
                     labels: torch.Tensor | None = None, *, extractor: FeatureExtractor | None = None,
                     network: str = "classifier", classifier_path: str | Path | None = None,
                     inception_weights: str | Path | None = None, device: str | torch.device | None = None,
                     data_dir: str | Path | None = None, k: int = 3, kid_subsets: int = 100,
                     kid_subset_size: int = 1000, floor: bool = True, data_options: dict | None = None) -> dict:
    """FID, KID, precision, recall of samples ([-1, 1], N,C,H,W) vs the test split.

    n: how many samples (and real images) to use; default all samples.
    labels: the class each sample was asked for (conditional models); adds
    conditional_accuracy, the fraction the dataset's classifier agrees with.
    extractor: a ready FeatureExtractor (else built from network /
    classifier_path / inception_weights, see `feature_extractor`).
    data_options: the dataset's loader options the model was trained with
    (image_folder path, image-token levels), so the real images match.
    Returns a flat dict; `format_metrics` prints it.
    """
    if not isinstance(samples, torch.Tensor) or samples.ndim != 4:
        raise GenlabError(f"samples must be an image tensor N,C,H,W, got "
                          f"{tuple(samples.shape) if isinstance(samples, torch.Tensor) else type(samples).__name__}")
    n = len(samples) if n is None else n
    if n > len(samples):
        raise GenlabError(f"asked for n={n} but only {len(samples)} samples were given")
    if n <= max(k, 1):
        raise ParamError("n", f"must be more than k={k} for the metrics (precision/recall use k neighbours), got {n}")
    samples = samples[:n]
    if not torch.isfinite(samples).all():
        raise GenlabError("the samples contain NaN or inf: the model diverged or its sampler is broken")
    channels, size = samples.shape[1], samples.shape[-1]
    if extractor is None:
        extractor = feature_extractor(dataset, channels, size, path=classifier_path, device=device,
                                      network=network, inception_weights=inception_weights)
    gen, logits = extractor(samples)
    mu_g, sigma_g = feature_stats(gen)
    test = real_features(extractor, dataset, "test", n, data_dir, data_options=data_options)

    out = dict(dataset=dataset, n=n, features=extractor.name)
    out.update(_compare(gen, mu_g, sigma_g, test, k, kid_subsets, kid_subset_size))

    if floor:
        out.update(_floor_metrics(extractor, dataset, n, data_dir, test, k, kid_subsets, kid_subset_size,
                                  data_options))

    if labels is not None:
        labels = torch.as_tensor(labels)[:n].cpu()
        if len(labels) != n:
            raise GenlabError(f"got {len(labels)} labels for {n} samples")
        if logits is None:  # Inception has no idea of the dataset's classes: ask the classifier
            clf = feature_extractor(dataset, channels, size, path=classifier_path, device=device)
            _, logits = clf(samples)
        out["conditional_accuracy"] = float((torch.from_numpy(logits).argmax(1) == labels).float().mean())
    return out


def _floor_metrics(extractor, dataset: str, n: int, data_dir, test, k: int, kid_subsets: int,
                   kid_subset_size: int, data_options: dict | None = None) -> dict:
    """floor_* metrics (real vs test at the same n), cached as JSON beside the features."""
    # v2: the KID spread of whole-set estimates is their jackknife SD (v1 files hold 0 there)
    name = (f"floor-v2-{dataset_tag(dataset, data_options)}-n{n}-k{k}-kid{kid_subsets}x{kid_subset_size}-"
            f"{extractor.hash}.json")
    path = stats_cache_path(extractor, dataset, "test", n).parent / name
    if path.exists():
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            pass  # recompute below
    ref, how = _floor_reference(extractor, dataset, n, data_dir, data_options)
    out = {"floor": how}
    if ref is not None:
        f = _compare(ref.features, ref.mu, ref.sigma, test, k, kid_subsets, kid_subset_size)
        out.update({f"floor_{metric}": v for metric, v in f.items()})
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(out))
        os.replace(tmp, path)
    return out


def _floor_reference(extractor, dataset: str, n: int, data_dir, data_options: dict | None = None):
    """n real images to compare with the test split: the train split, else the test split's other half."""
    try:
        return real_features(extractor, dataset, "train", n, data_dir, data_options=data_options), "train vs test"
    except GenlabError as e:
        reason = str(e)
    try:
        both = real_features(extractor, dataset, "test", 2 * n, data_dir, data_options=data_options)
    except GenlabError:
        return None, f"none ({reason})"
    # the test features above are the first n of the same fixed permutation: take the other n
    other = both.features[n:]
    mu, sigma = feature_stats(other)
    return RealFeatures(other, mu, sigma, both.path, both.cached), "test vs test (no train split)"


@torch.no_grad()
def sample_model(model, n: int, batch_size: int = 250, labels: torch.Tensor | None = None,
                 generator: torch.Generator | None = None, **sample_kwargs) -> torch.Tensor:
    """n samples from a model, a batch at a time, on the CPU. labels go in as `y=` per batch."""
    if not getattr(model, "can_sample", False):
        raise GenlabError(f"the {getattr(model, 'family', '?')} model cannot generate samples to evaluate")
    out = []
    for i in range(0, n, batch_size):
        kw = dict(sample_kwargs)
        if labels is not None:
            kw["y"] = labels[i : i + batch_size].to(model.device)
        out.append(model.sample(min(batch_size, n - i), generator=generator, **kw).float().cpu())
    return torch.cat(out)


def evaluate_model(model, dataset: str, n: int = 5000, batch_size: int = 250, seed: int = 0,
                   conditional: bool | None = None, sample_kwargs: dict | None = None, **eval_kwargs) -> dict:
    """Sample n images from a model and `evaluate_samples` them.

    conditional: ask for balanced labels 0..K-1 and report their accuracy
    (default: when the model has `num_classes` > 0, as conditional diffusion does).
    """
    num_classes = int(getattr(model, "num_classes", 0) or 0)
    conditional = num_classes > 0 if conditional is None else conditional
    if conditional and num_classes <= 0:
        raise GenlabError(f"the {model.family} model is not class-conditional")
    labels = torch.arange(n) % num_classes if conditional else None
    cfg = getattr(model, "cfg", None)
    shape = getattr(cfg, "channels", None), getattr(cfg, "image_size", None)
    if eval_kwargs.get("extractor") is None and None not in shape:
        # find the feature network before sampling: a missing classifier fails in seconds, not after hours
        eval_kwargs["extractor"] = feature_extractor(
            dataset, *shape,
            path=eval_kwargs.pop("classifier_path", None), device=eval_kwargs.get("device"),
            network=eval_kwargs.pop("network", "classifier"),
            inception_weights=eval_kwargs.pop("inception_weights", None))
    g = torch.Generator(device=model.device).manual_seed(seed)
    samples = sample_model(model, n, batch_size, labels, g, **(sample_kwargs or {}))
    return evaluate_samples(samples, dataset, n, labels=labels, **eval_kwargs)


def _num(v, spec: str) -> str:
    return num(v, spec)


def format_metrics(d: dict) -> str:
    """A small table: each metric beside its floor (train vs test at the same n)."""
    head = f"{d.get('dataset', '?')}, n={d.get('n', '?')}, features {d.get('features', '?')}"
    floor_name = d.get("floor", "")
    has_floor = "floor_fid" in d
    rows = [("metric", "samples", f"floor ({floor_name})" if has_floor else "floor")]

    def kid_str(prefix: str) -> str:  # mean ± spread over subsets; the scale is the feature network's
        m, s = d.get(prefix + "kid"), d.get(prefix + "kid_std")
        return "-" if m is None else f"{m:.4g} ± {s or 0:.2g}"

    rows.append(("FID", _num(d.get("fid"), ".3f"), _num(d.get("floor_fid"), ".3f")))
    rows.append(("KID", kid_str(""), kid_str("floor_")))
    rows.append(("precision", _num(d.get("precision"), ".4f"), _num(d.get("floor_precision"), ".4f")))
    rows.append(("recall", _num(d.get("recall"), ".4f"), _num(d.get("floor_recall"), ".4f")))
    if "conditional_accuracy" in d:
        rows.append(("class accuracy", _num(d["conditional_accuracy"], ".4f"), "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = [head] + ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
                      for r in rows]
    if not has_floor and floor_name:
        lines.append(f"floor: {floor_name}")
    return "\n".join(lines)

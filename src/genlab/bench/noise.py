"""FID with its noise: independent draws of the samples, disjoint draws of the real images.

FID at finite n is itself a random number. A table row is therefore scored k times:

    draw i (i = 0..k-1):  n samples with seed + i   vs   test_i (n test images)
    floor draw i:         train_i (n train images)  vs   test_i

where test_0..test_{k-1} (and train_0..) are disjoint subsets of the split. A row
reports the mean and the SD over its k draws; the floor (what a perfect generator
scores at this n) the same over its k draws. Rows of one table share seed + i and
test_i, so two rows' difference is taken draw by draw (paired), and a comparison
becomes a verdict only when the mean difference is more than two standard errors
away from the line it is tested against (`verdict`); otherwise it is "within noise".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from ..errors import GenlabError
from ..metrics.fid import feature_stats, frechet_distance, kid, precision_recall

MIN_DRAWS = 5
Z = 2.0  # a difference counts when |mean| > Z standard errors of the mean (over draws)


def mean_sd(values) -> tuple[float, float]:
    """Mean and sample SD (n - 1); SD is nan for fewer than two values."""
    v = np.asarray(list(values), dtype=np.float64)
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else math.nan


def verdict(margins) -> str:
    """PASS / FAIL / within noise for per-draw margins (positive: the target is met on that draw).

    PASS when the mean margin is above Z standard errors of the mean, FAIL when below -Z,
    else "within noise": the draws cannot tell.
    """
    margins = list(margins)
    mean, sd = mean_sd(margins)
    if math.isnan(sd):
        return "within noise"  # one draw: no measured noise, no verdict
    se = sd / math.sqrt(len(margins))
    if mean > Z * se:
        return "PASS"
    if mean < -Z * se:
        return "FAIL"
    return "within noise"


def check_draws(draws: int) -> None:
    if draws < MIN_DRAWS:
        raise GenlabError(f"--draws must be at least {MIN_DRAWS} (the SD of FID over fewer draws says little), "
                          f"got {draws}")


@dataclass
class RealDraws:
    """k disjoint sets of n real-image features per split, and the floor scored on them."""
    n: int
    test: list              # k arrays (n, d): the test images each draw is scored against
    train: list             # k arrays (n, d): the floor's stand-ins for a perfect generator
    floor_source: str       # "train vs test", or "test vs test (no train split)"
    kid_subsets: int = 100
    k: int = 3              # neighbours for precision / recall
    _floor: dict = field(default_factory=dict)

    @property
    def draws(self) -> int:
        return len(self.test)

    def floor(self) -> dict:
        """floor_fid (mean), floor_fid_sd, floor_fid_draws, floor_precision, ...: train_i vs test_i."""
        if not self._floor:
            per = [compare(tr, te, self.kid_subsets, self.k) for tr, te in zip(self.train, self.test)]
            self._floor = {f"floor_{key}": value for key, value in summarise(per).items()}
            self._floor["floor"] = self.floor_source
        return self._floor


def _load(dataset: str, split: str, extractor, data_dir):
    from ..data import load_dataset

    data = load_dataset(dataset, split=split, image_size=extractor.image_size, channels=extractor.channels,
                        data_dir=data_dir)
    if data.kind != "image":
        raise GenlabError(f"dataset {dataset} holds {data.kind}, not images: FID does not apply")
    return data


def _features(extractor, data, count: int, seed: int) -> np.ndarray:
    """Features of `count` images of a split: a random subset (seed), so that sorted datasets mix."""
    from ..data.base import to_float_image

    if count > len(data):
        raise GenlabError(f"{data.name} has {len(data)} images in that split, too few for the disjoint draws "
                          f"({count} images); lower --n or --draws")
    idx = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:count]
    feats, _ = extractor(to_float_image(data.x[idx]))
    return feats


def real_draws(extractor, dataset: str, n: int, draws: int, data_dir=None, seed: int = 0,
               kid_subsets: int = 100) -> RealDraws:
    """k = draws disjoint test sets of n images, and as many disjoint train sets for the floor.

    A dataset without a train split takes the floor's sets from the rest of the test split.
    """
    test_data = _load(dataset, "test", extractor, data_dir)
    try:
        train_data = _load(dataset, "train", extractor, data_dir)
    except GenlabError:
        train_data = None
    if train_data is not None:
        test = _features(extractor, test_data, draws * n, seed)
        train, source = _features(extractor, train_data, draws * n, seed), "train vs test"
    else:
        both = _features(extractor, test_data, 2 * draws * n, seed)
        test, train, source = both[: draws * n], both[draws * n :], "test vs test (no train split)"
    chunk = lambda f: [f[i * n : (i + 1) * n] for i in range(draws)]  # noqa: E731
    return RealDraws(n, chunk(test), chunk(train), source, kid_subsets=kid_subsets)


def compare(gen: np.ndarray, real: np.ndarray, kid_subsets: int = 100, k: int = 3) -> dict:
    """FID, KID, precision, recall of one feature set against one real set."""
    fid = frechet_distance(*feature_stats(gen), *feature_stats(real))
    kid_mean, _ = kid(gen, real, kid_subsets, min(1000, len(gen)))
    precision, recall = precision_recall(real, gen, k)
    return dict(fid=fid, kid=kid_mean, precision=precision, recall=recall)


def summarise(per_draw: list[dict]) -> dict:
    """Mean of every metric over the draws; FID also with its SD and the draws themselves."""
    out = {}
    for key in per_draw[0]:
        values = [d[key] for d in per_draw]
        out[key] = mean_sd(values)[0]
        if key in ("fid", "conditional_accuracy"):
            out[f"{key}_sd"] = mean_sd(values)[1]
            out[f"{key}_draws"] = values
    return out


def score_draws(extractor, sample_draws: list[torch.Tensor], real: RealDraws, labels=None) -> dict:
    """Metrics of each draw of samples vs its own test set, summarised; with the floor beside them.

    labels: the class each sample of a draw was asked for (the same for every draw) -> the
    classifier's agreement with them, per draw.
    """
    if len(sample_draws) != real.draws:
        raise GenlabError(f"{len(sample_draws)} draws of samples for {real.draws} draws of real images")
    per = []
    for samples, test in zip(sample_draws, real.test):
        if len(samples) != real.n:
            raise GenlabError(f"a draw holds {len(samples)} samples, not n = {real.n}")
        if not torch.isfinite(samples).all():
            raise GenlabError("the samples contain NaN or inf: the model diverged or its sampler is broken")
        gen, logits = extractor(samples)
        m = compare(gen, test, real.kid_subsets, real.k)
        if labels is not None and logits is not None:
            m["conditional_accuracy"] = float((torch.from_numpy(logits).argmax(1) == labels.cpu()).float().mean())
        per.append(m)
    return {**summarise(per), **real.floor(), "n": real.n, "draws": real.draws,
            "features": extractor.name, "features_hash": extractor.hash}


def pm(mean, sd, spec: str = ".1f") -> str:
    """'25.4 ± 4.6' ('-' for a missing mean, no ± for a missing SD)."""
    if mean is None:
        return "-"
    if sd is None or (isinstance(sd, float) and math.isnan(sd)):
        return format(mean, spec)
    return f"{format(mean, spec)} ± {format(sd, spec)}"

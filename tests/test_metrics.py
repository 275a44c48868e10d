"""FID / KID / precision-recall maths, the feature cache, and the eval recipe."""

import os

import numpy as np
import pytest
import torch

from genlab.errors import GenlabError
from genlab.metrics import evaluate as ev
from genlab.metrics import features as feat
from genlab.metrics.fid import (feature_stats, fid_from_features, frechet_distance, kid, knn_radii,
                                mmd2_jackknife_sd, mmd2_unbiased, precision_recall, sqrtm_psd)


def _random_cov(rng, d, rank=None):
    a = rng.normal(size=(d, rank or d))
    return a @ a.T / d + (0 if rank else 0.1 * np.eye(d))


# ---------------------------------------------------------------- FID maths


def _fid_reference_eig(mu1, s1, mu2, s2):
    """Independent route: tr sqrt(S1 S2) = sum of sqrt of the eigenvalues of the
    (non-symmetric) product S1 S2, which are real and >= 0 for PSD S1, S2."""
    ev_ = np.linalg.eigvals(s1 @ s2)
    tr = np.sqrt(np.clip(ev_.real, 0, None)).sum()
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * tr)


def test_frechet_matches_eigen_route_on_fixed_arrays():
    rng = np.random.default_rng(0)
    for d in (1, 5, 32):
        mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
        s1, s2 = _random_cov(rng, d), _random_cov(rng, d)
        assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(_fid_reference_eig(mu1, s1, mu2, s2),
                                                                   rel=1e-9, abs=1e-9)


def test_frechet_matches_scipy_sqrtm():
    from scipy import linalg  # a dev dependency: its absence is a failure, not a skip
    rng = np.random.default_rng(1)
    d = 24
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    s1, s2 = _random_cov(rng, d), _random_cov(rng, d)
    covmean = linalg.sqrtm(s1 @ s2).real  # the pytorch-fid formula
    ref = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * covmean)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(ref, rel=1e-8)


def test_frechet_closed_forms():
    # 1-D: W2^2 between N(m1, a^2) and N(m2, b^2) is (m1 - m2)^2 + (a - b)^2
    assert frechet_distance([1.0], [[4.0]], [-2.0], [[9.0]]) == pytest.approx(9 + 1)
    # diagonal (commuting) covariances: |mu1 - mu2|^2 + sum (sqrt(a_i) - sqrt(b_i))^2
    a, b = np.array([1.0, 4.0, 0.25, 9.0]), np.array([4.0, 1.0, 1.0, 0.0])
    mu = np.array([0.5, 0.0, -1.0, 2.0])
    expect = mu @ mu + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert frechet_distance(mu, np.diag(a), np.zeros(4), np.diag(b)) == pytest.approx(expect)
    # rotating both Gaussians by the same orthogonal matrix changes nothing
    q, _ = np.linalg.qr(np.random.default_rng(2).normal(size=(4, 4)))
    got = frechet_distance(q @ mu, q @ np.diag(a) @ q.T, np.zeros(4), q @ np.diag(b) @ q.T)
    assert got == pytest.approx(expect)


def test_fid_self_is_zero_and_grows_with_shift():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(500, 16))
    assert fid_from_features(x, x) == pytest.approx(0.0, abs=1e-8)
    prev = 0.0
    for shift in (0.1, 0.5, 1.0, 2.0):
        delta = np.full(16, shift)
        fid = fid_from_features(x, x + delta)
        assert fid == pytest.approx(delta @ delta, rel=1e-9)  # a pure shift moves only the mean term
        assert fid > prev
        prev = fid
    # two independent samples of one distribution: small but positive (finite-n bias)
    y = rng.normal(size=(500, 16))
    assert 0 < fid_from_features(x, y) < 2.0 < fid_from_features(x, 1.5 * y)


def test_fid_singular_covariance_is_finite():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(6, 20))  # 6 points in 20-D: rank-5 covariance
    y = rng.normal(size=(6, 20))
    assert fid_from_features(x, x) == pytest.approx(0.0, abs=1e-8)
    v = fid_from_features(x, y)
    assert np.isfinite(v) and v > 0
    s = _random_cov(rng, 10, rank=3)
    r = sqrtm_psd(s)
    np.testing.assert_allclose(r @ r, s, atol=1e-10)


def test_fid_bad_inputs():
    with pytest.raises(GenlabError, match="2-D"):
        fid_from_features(np.zeros(5), np.zeros(5))
    with pytest.raises(GenlabError, match="NaN"):
        fid_from_features(np.full((4, 2), np.nan), np.zeros((4, 2)))
    with pytest.raises(GenlabError, match="shapes do not match"):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))


def test_feature_stats():
    x = np.array([[0.0, 1.0], [2.0, 3.0], [4.0, 8.0]])
    mu, s = feature_stats(x)
    np.testing.assert_allclose(mu, [2.0, 4.0])
    np.testing.assert_allclose(s, np.cov(x.T))


# ---------------------------------------------------------------- KID


def test_mmd_matches_explicit_double_sum():
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(7, 3)), rng.normal(size=(9, 3)) + 0.3
    k = lambda a, b: (a @ b / 3 + 1) ** 3  # noqa: E731
    sxx = sum(k(x[i], x[j]) for i in range(7) for j in range(7) if i != j) / (7 * 6)
    syy = sum(k(y[i], y[j]) for i in range(9) for j in range(9) if i != j) / (9 * 8)
    sxy = sum(k(a, b) for a in x for b in y) / (7 * 9)
    assert mmd2_unbiased(x, y) == pytest.approx(sxx + syy - 2 * sxy, rel=1e-10)


def test_kid_unbiased_on_equal_distributions():
    rng = np.random.default_rng(6)
    vals, biased = [], []
    for _ in range(300):
        x, y = rng.normal(size=(40, 4)), rng.normal(size=(40, 4))
        vals.append(mmd2_unbiased(x, y))
        kxx, kyy, kxy = ((a @ b.T / 4 + 1) ** 3 for a, b in ((x, x), (y, y), (x, y)))
        biased.append(kxx.mean() + kyy.mean() - 2 * kxy.mean())  # V-statistic: keeps i == j
    vals, biased = np.array(vals), np.array(biased)
    se = vals.std() / np.sqrt(len(vals))
    assert abs(vals.mean()) < 3 * se  # zero mean within noise...
    assert (vals < 0).sum() > 50      # ...so individual estimates go negative
    assert biased.mean() > 10 * se    # the biased estimator is clearly positive: the test can tell


def test_kid_detects_shift_and_subsets():
    rng = np.random.default_rng(7)
    x, y = rng.normal(size=(300, 8)), rng.normal(size=(300, 8))
    same, _ = kid(x, y, num_subsets=20, subset_size=100)
    shifted, std = kid(x, y + 1.0, num_subsets=20, subset_size=100)
    assert shifted > 0.05 > abs(same) and std > 0
    assert kid(x, y, num_subsets=3, subset_size=10_000)[0] == pytest.approx(mmd2_unbiased(x, y))  # capped: full sets
    with pytest.raises(GenlabError, match="feature sizes differ"):
        kid(x, y[:, :3])


def test_kid_spread_on_whole_sets_is_the_jackknife_sd():
    rng = np.random.default_rng(8)
    x, y = rng.normal(size=(30, 4)), rng.normal(size=(30, 4)) + 0.3
    # the closed form of the leave-one-pair-out values vs recomputing each one
    loo = np.array([mmd2_unbiased(np.delete(x, i, 0), np.delete(y, i, 0)) for i in range(30)])
    brute = np.sqrt(29 / 30 * ((loo - loo.mean()) ** 2).sum())
    assert mmd2_jackknife_sd(x, y) == pytest.approx(brute, rel=1e-10)
    mean, sd = kid(x, y, num_subsets=5, subset_size=1000)  # every subset would be both whole sets
    assert mean == pytest.approx(mmd2_unbiased(x, y)) and sd == pytest.approx(brute)
    # and it estimates the real spread of the estimate over fresh draws
    draws = [mmd2_unbiased(rng.normal(size=(200, 4)), rng.normal(size=(200, 4)) + 0.3) for _ in range(200)]
    sds = [mmd2_jackknife_sd(rng.normal(size=(200, 4)), rng.normal(size=(200, 4)) + 0.3) for _ in range(20)]
    assert 0.6 < np.mean(sds) / np.std(draws) < 1.6


# ---------------------------------------------------------------- precision / recall


def test_knn_radii_brute_force():
    rng = np.random.default_rng(8)
    x = torch.from_numpy(rng.normal(size=(50, 3)))
    d = torch.cdist(x, x).sort(dim=1).values
    for k in (1, 3):
        torch.testing.assert_close(knn_radii(x, k), d[:, k])


def test_precision_recall_constructed_sets():
    real = np.array([[0.0], [1.0], [2.0], [3.0]])  # k=1: every real ball has radius 1
    fake = np.array([[0.5], [10.0]])                # k=1: both fake balls have radius 9.5
    p, r = precision_recall(real, fake, k=1)
    assert p == 0.5   # 0.5 is inside the real support, 10 is not
    assert r == 1.0   # the outlier's huge ball swallows every real point (why k must be > 1 in practice)

    rng = np.random.default_rng(9)
    a = rng.normal(size=(100, 2))
    b = rng.normal(size=(100, 2)) + 50
    real = np.concatenate([a, b])
    p, r = precision_recall(real, a, k=3)  # a generator that only makes one of the two modes
    assert p == 1.0 and r == 0.5
    assert precision_recall(real, real, k=3) == (1.0, 1.0)
    assert precision_recall(a, a + 1000, k=3) == (0.0, 0.0)


def test_precision_recall_bad_inputs():
    with pytest.raises(GenlabError, match="more than 3 points"):
        precision_recall(np.zeros((3, 2)), np.zeros((10, 2)), k=3)


# ---------------------------------------------------------------- feature network + cache


class TinyFeatures(feat.FeatureExtractor):
    """A stand-in feature network: a random linear map of the pixels."""

    def __init__(self, seed=0, channels=3, size=16):
        self.net = torch.nn.Linear(channels * size * size, 8)
        torch.nn.init.normal_(self.net.weight, generator=torch.Generator().manual_seed(seed))
        self.channels, self.image_size = channels, size
        self.hash = feat.network_hash(self.net)
        self.name = f"tiny[{self.hash[:8]}]"

    def _forward(self, x):
        return self.net(x.flatten(1)), None




@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("GENLAB_HOME", str(tmp_path))
    return tmp_path


def test_cache_hit_and_invalidation(home):
    ext = TinyFeatures(seed=0)
    first = feat.real_features(ext, "shapes", "test", 64)
    assert not first.cached and first.path.exists() and first.features.shape == (64, 8)
    again = feat.real_features(ext, "shapes", "test", 64)
    assert again.cached and again.path == first.path
    np.testing.assert_array_equal(again.features, first.features)
    np.testing.assert_allclose(again.mu, first.features.astype(np.float64).mean(0))
    # a different n, split or network is a different entry
    assert not feat.real_features(ext, "shapes", "test", 32).cached
    assert not feat.real_features(ext, "shapes", "train", 64).cached
    other = TinyFeatures(seed=1)
    assert other.hash != ext.hash
    changed = feat.real_features(other, "shapes", "test", 64)
    assert not changed.cached and changed.path != first.path
    assert not np.allclose(changed.features, first.features)
    # a corrupt cache file is recomputed, not trusted
    first.path.write_bytes(b"not an npz")
    assert not feat.real_features(ext, "shapes", "test", 64).cached
    with pytest.raises(GenlabError, match="only 2000"):
        feat.real_features(ext, "shapes", "test", 5000)


def test_network_hash_tracks_weights_and_buffers():
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2))
    h = feat.network_hash(net)
    assert h == feat.network_hash(net) and len(h) == 16
    net[1].running_mean += 1  # a buffer, not a parameter, still changes the features
    assert feat.network_hash(net) != h


def test_missing_classifier_says_how_to_train(home):
    with pytest.raises(GenlabError, match="genlab train classifier --dataset fashion_mnist"):
        feat.feature_extractor("fashion_mnist", 1, 28, device="cpu")
    with pytest.raises(GenlabError, match="genlab train classifier"):
        feat.find_classifier("cifar10")


def test_extractor_rejects_wrong_shape():
    with pytest.raises(GenlabError, match="takes 3x16x16"):
        TinyFeatures()(torch.zeros(2, 1, 28, 28))


def test_evaluate_samples_with_floor_and_format(home):
    ext = TinyFeatures(size=16)
    from genlab.data import load_dataset, to_float_image

    good = to_float_image(load_dataset("shapes", "train", image_size=16, n=300, seed=5).x)
    bad = torch.rand(300, 3, 16, 16) * 2 - 1
    m_good = ev.evaluate_samples(good, "shapes", n=200, extractor=ext, kid_subsets=10)
    m_bad = ev.evaluate_samples(bad, "shapes", n=200, extractor=ext, kid_subsets=10)
    assert m_good["floor"] == "train vs test" and m_good["floor_fid"] == m_bad["floor_fid"]
    assert m_good["fid"] < m_bad["fid"] and m_good["kid"] < m_bad["kid"]
    floors = list((home / "feature_stats").glob("floor-v2-shapes-n200-*.json"))
    assert len(floors) == 1  # computed once, then read back: both evals saw the same floor
    assert m_good["precision"] > m_bad["precision"]
    text = ev.format_metrics(m_good)
    assert "FID" in text and "floor (train vs test)" in text and "n=200" in text
    with pytest.raises(GenlabError, match="only 300 samples"):
        ev.evaluate_samples(good, "shapes", n=301, extractor=ext)
    with pytest.raises(GenlabError, match="NaN"):
        ev.evaluate_samples(torch.full((10, 3, 16, 16), float("nan")), "shapes", extractor=ext)


def test_floor_falls_back_to_test_halves_without_a_train_split(home, monkeypatch):
    from genlab.data import load_dataset, to_float_image

    real_load = load_dataset

    def no_train(name, split="train", **kw):
        if split == "train":
            raise GenlabError("no train split here")
        return real_load(name, split, **kw)

    monkeypatch.setattr("genlab.data.load_dataset", no_train)
    ext = TinyFeatures(size=16)
    x = to_float_image(load_dataset("shapes", "train", image_size=16, n=100).x)
    m = ev.evaluate_samples(x, "shapes", n=100, extractor=ext, kid_subsets=5)
    assert m["floor"] == "test vs test (no train split)" and m["floor_fid"] > 0
    # 2 x 1500 > the 2000 test images: no floor at all, and the table says why
    m = ev.evaluate_samples(torch.cat([x] * 15), "shapes", n=1500, extractor=ext, kid_subsets=2)
    assert m["floor"].startswith("none (no train split here)") and "floor_fid" not in m
    assert "floor: none" in ev.format_metrics(m)


def test_format_metrics_without_floor():
    text = ev.format_metrics({"dataset": "d", "n": 10, "features": "f", "fid": 1.5, "kid": 0.002,
                              "kid_std": 0.001, "precision": 0.5, "recall": 0.25, "floor": "none (no data)",
                              "conditional_accuracy": 0.9})
    assert "1.500" in text and "0.002 ± 0.001" in text and "class accuracy" in text and "floor: none" in text


# ---------------------------------------------------------------- optional Inception


def test_inception_needs_local_weights(monkeypatch, tmp_path):
    from genlab.metrics import inception

    monkeypatch.delenv(inception.WEIGHTS_ENV, raising=False)
    with pytest.raises(GenlabError, match="GENLAB_INCEPTION_WEIGHTS"):
        feat.feature_extractor("cifar10", network="inception", device="cpu")
    with pytest.raises(GenlabError, match="does not exist"):
        inception.InceptionFeatures(tmp_path / "nope.pth")
    fake = tmp_path / "weights.pth"
    fake.write_bytes(b"x")
    try:
        import torch_fidelity  # noqa: F401
    except ImportError:
        with pytest.raises(GenlabError, match="torch-fidelity"):
            inception.InceptionFeatures(fake)
    else:
        with pytest.raises(GenlabError, match="could not load Inception weights"):
            inception.InceptionFeatures(fake)
    with pytest.raises(GenlabError, match="unknown feature network"):
        feat.feature_extractor("cifar10", network="vgg", device="cpu")


def test_default_home(monkeypatch):
    monkeypatch.delenv("GENLAB_HOME", raising=False)
    assert str(feat.genlab_home()) == os.path.expanduser("~/.cache/genlab")
    assert feat.classifier_dir("cifar10", 3, 32).name == "cifar10-3x32"


# ---------------------------------------------------------------- classifier found by dataset name


def test_evaluate_samples_finds_the_dataset_classifier(home, one_thread):
    """A classifier saved where `genlab train classifier --out` would put it is found by name."""
    from genlab.data import load_dataset, to_float_image
    from genlab.models.classifier import Classifier, ClassifierConfig
    from genlab.train.checkpoint import save_checkpoint

    torch.manual_seed(0)
    train = load_dataset("shapes", "train", image_size=16, n=600, channels=1)
    model = Classifier(ClassifierConfig(channels=1, image_size=16, num_classes=6, width=4, feature_dim=16))
    opt = torch.optim.AdamW(model.parameters(), 3e-3)
    for step in range(60):
        loss, _ = model.loss(train.batch(torch.randint(0, 600, (64,))))
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    save_checkpoint(feat.classifier_dir("shapes", 1, 16), model)

    real = load_dataset("shapes", "train", image_size=16, n=200, channels=1, seed=3)
    images = to_float_image(real.x)
    m = ev.evaluate_samples(images, "shapes", labels=real.y, device="cpu", kid_subsets=5)
    assert m["features"].startswith("classifier:shapes-1x16[")
    assert m["conditional_accuracy"] == pytest.approx(model.evaluate(real)["accuracy"])
    assert m["fid"] < 10 * m["floor_fid"] + 1e-3  # real images score like the floor
    wrong = ev.evaluate_samples(images, "shapes", labels=(real.y + 1) % 6, device="cpu", kid_subsets=5)
    assert wrong["conditional_accuracy"] < m["conditional_accuracy"]
    # the feature cache now holds test and train features for this network
    assert len(list((home / "feature_stats").glob("shapes-*-1x16-n200-*.npz"))) == 2
    with pytest.raises(GenlabError, match="takes 1x16x16"):
        ev.evaluate_samples(torch.zeros(10, 1, 28, 28), "shapes", device="cpu",
                            classifier_path=feat.classifier_dir("shapes", 1, 16))

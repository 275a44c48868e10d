"""Distances between two sets of feature vectors: FID, KID, precision/recall.

All three compare features of real images (rows of an (n, d) array) with
features of generated ones. None of them knows about images or networks; see
`features.py` for where the features come from and `evaluate.py` for the
whole recipe.

FID (Heusel et al. 2017) fits a Gaussian to each set and reports the squared
2-Wasserstein (Frechet) distance between the two Gaussians:

    FID = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2))        (Eq. 6)

KID (Binkowski et al. 2018) is the squared maximum mean discrepancy with the
cubic polynomial kernel k(x, y) = (x.y / d + 1)^3, estimated without bias,
averaged over random subsets. Unlike FID it has an unbiased estimator, so it
is comparable across sample sizes and can come out slightly negative.

Improved precision and recall (Kynkaanniemi et al. 2019) estimate each
distribution's support as the union of balls around its points, each ball
reaching to the point's k-th nearest neighbour. Precision: the fraction of
generated points inside the real support (fidelity). Recall: the fraction of
real points inside the generated support (coverage).
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import GenlabError


def _as_2d_float64(f, name: str) -> np.ndarray:
    f = f.detach().cpu().numpy() if isinstance(f, torch.Tensor) else np.asarray(f)
    if f.ndim != 2:
        raise GenlabError(f"{name} must be a 2-D array (n, d) of features, got shape {f.shape}")
    if not np.isfinite(f).all():
        raise GenlabError(f"{name} contains NaN or inf: the samples or the feature network are broken")
    return f.astype(np.float64)


def feature_stats(f) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (unbiased, n-1) covariance of features f (n, d), in float64."""
    f = _as_2d_float64(f, "features")
    if len(f) < 2:
        raise GenlabError("need at least 2 feature vectors to estimate a covariance")
    return f.mean(axis=0), np.cov(f, rowvar=False).reshape(f.shape[1], f.shape[1])


def sqrtm_psd(a: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix via eigh.

    Tiny negative eigenvalues (round-off in a singular covariance) are
    clipped to 0 instead of producing the complex numbers a general sqrtm
    would.
    """
    a = (a + a.T) / 2
    w, v = np.linalg.eigh(a)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """Squared Frechet distance between N(mu1, sigma1) and N(mu2, sigma2).

    tr((S1 S2)^(1/2)) is computed as tr((A S2 A)^(1/2)) with A = S1^(1/2):
    A S2 A is similar to S1 S2 (same eigenvalues) but symmetric PSD, so its
    eigenvalues come out real and non-negative even when S1 S2 is singular,
    where the usual scipy.linalg.sqrtm(S1 @ S2) route needs an epsilon hack.
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    s1, s2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != mu1.shape * 2:
        raise GenlabError(f"Gaussian shapes do not match: mu {mu1.shape} vs {mu2.shape}, "
                          f"sigma {s1.shape} vs {s2.shape}")
    a = sqrtm_psd(s1)
    m = a @ s2 @ a
    eig = np.linalg.eigvalsh((m + m.T) / 2)
    tr_covmean = np.sqrt(np.clip(eig, 0, None)).sum()
    diff = mu1 - mu2
    return float(max(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * tr_covmean, 0.0))


def fid_from_features(f1, f2) -> float:
    """FID between two feature sets (n1, d) and (n2, d)."""
    return frechet_distance(*feature_stats(f1), *feature_stats(f2))


def polynomial_kernel(x: np.ndarray, y: np.ndarray, degree: int = 3, coef0: float = 1.0) -> np.ndarray:
    """k(x, y) = (x.y / d + coef0)^degree, the kernel of KID."""
    return (x @ y.T / x.shape[1] + coef0) ** degree


def mmd2_unbiased(x: np.ndarray, y: np.ndarray, degree: int = 3, coef0: float = 1.0) -> float:
    """Unbiased MMD^2 (Gretton et al. 2012, Eq. 3): within-set sums skip i == j."""
    m, n = len(x), len(y)
    kxx = polynomial_kernel(x, x, degree, coef0)
    kyy = polynomial_kernel(y, y, degree, coef0)
    kxy = polynomial_kernel(x, y, degree, coef0)
    sxx = (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
    syy = (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
    return float(sxx + syy - 2 * kxy.mean())


def mmd2_jackknife_sd(x: np.ndarray, y: np.ndarray, degree: int = 3, coef0: float = 1.0) -> float:
    """Jackknife estimate of the sampling SD of mmd2_unbiased(x, y), for len(x) == len(y) = n.

    Leaves out one pair (x_i, y_i) at a time; each leave-one-out MMD^2 comes from
    the kernel sums minus row i, so all n of them cost one set of kernel matrices:
        var = (n - 1) / n * sum_i (theta_(-i) - mean theta_(-.))^2     (Efron & Stein 1981)
    """
    n = len(x)
    if len(y) != n or n < 3:
        raise GenlabError("the jackknife SD needs two sets of the same size >= 3")
    kxx, kyy = polynomial_kernel(x, x, degree, coef0), polynomial_kernel(y, y, degree, coef0)
    kxy = polynomial_kernel(x, y, degree, coef0)
    np.fill_diagonal(kxx, 0.0)
    np.fill_diagonal(kyy, 0.0)
    # without pair i: the within-set sums lose row and column i; the cross sum loses row i and column i
    sxx = (kxx.sum() - 2 * kxx.sum(1)) / ((n - 1) * (n - 2))
    syy = (kyy.sum() - 2 * kyy.sum(1)) / ((n - 1) * (n - 2))
    sxy = (kxy.sum() - kxy.sum(1) - kxy.sum(0) + np.diag(kxy)) / (n - 1) ** 2
    theta = sxx + syy - 2 * sxy
    return float(np.sqrt((n - 1) / n * ((theta - theta.mean()) ** 2).sum()))


def kid(f1, f2, num_subsets: int = 100, subset_size: int = 1000, degree: int = 3,
        coef0: float = 1.0, seed: int = 0) -> tuple[float, float]:
    """KID: unbiased MMD^2 averaged over random subsets. Returns (mean, std).

    subset_size is capped at the size of the smaller set; the std is over
    subsets (the spread of the estimate, not its standard error). When every
    subset would be both whole sets (equal sizes <= subset_size), there is one
    estimate, and the std is its jackknife SD instead of a meaningless 0.
    """
    x, y = _as_2d_float64(f1, "features 1"), _as_2d_float64(f2, "features 2")
    if x.shape[1] != y.shape[1]:
        raise GenlabError(f"feature sizes differ: {x.shape[1]} vs {y.shape[1]}")
    size = min(subset_size, len(x), len(y))
    if size < 2:
        raise GenlabError("KID needs at least 2 feature vectors in each set")
    if size == len(x) == len(y) and size >= 3:
        return mmd2_unbiased(x, y, degree, coef0), mmd2_jackknife_sd(x, y, degree, coef0)
    rng = np.random.default_rng(seed)
    vals = np.array([mmd2_unbiased(x[rng.choice(len(x), size, replace=False)],
                                   y[rng.choice(len(y), size, replace=False)], degree, coef0)
                     for _ in range(num_subsets)])
    return float(vals.mean()), float(vals.std())


def knn_radii(f: torch.Tensor, k: int) -> torch.Tensor:
    """Distance from each point to its k-th nearest neighbour (itself excluded)."""
    if len(f) <= k:
        raise GenlabError(f"precision/recall with k={k} needs more than {k} points, got {len(f)}")
    out = []
    for i in range(0, len(f), 2048):
        d = torch.cdist(f[i : i + 2048], f)
        # the smallest distance is each point to itself (0); the (k+1)-th smallest is the k-th neighbour
        out.append(d.kthvalue(k + 1, dim=1).values)
    return torch.cat(out)


def _coverage(points: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor) -> float:
    """Fraction of points inside at least one ball (centre, radius)."""
    inside = torch.zeros(len(points), dtype=torch.bool)
    for i in range(0, len(points), 2048):
        d = torch.cdist(points[i : i + 2048], centres)
        inside[i : i + 2048] = (d <= radii[None, :]).any(dim=1)
    return inside.float().mean().item()


def precision_recall(real, fake, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkaanniemi et al. 2019, Eq. 1-2)."""
    r = torch.from_numpy(_as_2d_float64(real, "real features"))
    g = torch.from_numpy(_as_2d_float64(fake, "generated features"))
    if r.shape[1] != g.shape[1]:
        raise GenlabError(f"feature sizes differ: {r.shape[1]} vs {g.shape[1]}")
    precision = _coverage(g, r, knn_radii(r, k))
    recall = _coverage(r, g, knn_radii(g, k))
    return precision, recall

"""How close a reconstruction is to its input: MSE, PSNR and SSIM.

All three take two image batches (N, C, H, W) in the same range and return
one value per image; `data_range` is max - min of that range (2.0 for
genlab's [-1, 1] images, 1.0 for [0, 1], 255 for 8-bit). Dataset numbers are
means of the per-image values. `reconstruction_metrics` reports MSE on the
[0, 1] scale (the number usually quoted); PSNR and SSIM do not depend on the
scale as long as data_range matches it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def mse(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean squared error per image, (N,)."""
    return (x.float() - y.float()).pow(2).reshape(x.shape[0], -1).mean(1)


def psnr(x: torch.Tensor, y: torch.Tensor, data_range: float = 2.0) -> torch.Tensor:
    """Peak signal-to-noise ratio per image in dB: 10 log10(data_range^2 / MSE).
    A perfect copy is capped at 10 log10(data_range^2 / 1e-10) instead of +inf."""
    return 10 * torch.log10(data_range**2 / mse(x, y).clamp_min(1e-10))


def _gaussian_window(size: int, sigma: float, device) -> torch.Tensor:
    r = torch.arange(size, device=device, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-r.pow(2) / (2 * sigma**2))
    g = g / g.sum()
    return torch.outer(g, g)


def ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 2.0, window_size: int = 11,
         sigma: float = 1.5) -> torch.Tensor:
    """Structural similarity per image (Wang et al. 2004, Eq. 13), (N,).

    Local means, variances and covariance are weighted by an 11x11 Gaussian
    window (sigma 1.5) over the 'valid' positions only, C1 = (0.01 L)^2,
    C2 = (0.03 L)^2 with L = data_range; the SSIM map is averaged over
    positions and channels. The same choices as scikit-image's
    structural_similarity(gaussian_weights=True, use_sample_covariance=False).
    Images smaller than the window use a window as large as the image.
    """
    x, y = x.double(), y.double()
    c = x.shape[1]
    size = min(window_size, x.shape[-1], x.shape[-2])
    w = _gaussian_window(size, sigma, x.device).expand(c, 1, size, size)

    def filt(t):
        return F.conv2d(t, w, groups=c)

    mu_x, mu_y = filt(x), filt(y)
    var_x = filt(x * x) - mu_x.pow(2)
    var_y = filt(y * y) - mu_y.pow(2)
    cov = filt(x * y) - mu_x * mu_y
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x.pow(2) + mu_y.pow(2) + c1) * (var_x + var_y + c2))
    return s.reshape(s.shape[0], -1).mean(1).float()


@torch.no_grad()
def reconstruction_metrics(model, data, n: int | None = None, batch_size: int = 256) -> dict[str, float]:
    """Mean MSE (on [0, 1]), PSNR and SSIM of `model.reconstruct` over the first n items of `data`.

    The reference is the data as the model sees it (`model.observe`, e.g.
    binarised). Also reports `mse_mean_image`: the MSE of always answering the
    mean image of these items, the baseline any useful model must beat.
    """
    was_training = model.training
    model.eval()
    n = len(data) if n is None else min(n, len(data))
    totals = {"mse": 0.0, "psnr": 0.0, "ssim": 0.0}
    sum_x = sum_x2 = None
    for start in range(0, n, batch_size):
        idx = torch.arange(start, min(start + batch_size, n))
        x = model.observe(data.batch(idx)["x"].to(model.device)).float()
        x01, r01 = (x + 1) * 0.5, (model.reconstruct(x).float() + 1) * 0.5
        totals["mse"] += mse(x01, r01).sum().item()
        totals["psnr"] += psnr(x01, r01, data_range=1.0).sum().item()
        totals["ssim"] += ssim(x01, r01, data_range=1.0).sum().item()
        bx, bx2 = x01.double().sum(0), x01.double().pow(2).sum(0)
        sum_x, sum_x2 = (bx, bx2) if sum_x is None else (sum_x + bx, sum_x2 + bx2)
    model.train(was_training)
    out = {k: v / n for k, v in totals.items()}
    # E||x - mean||^2 per pixel = E[x^2] - mean^2, averaged over pixels
    mean = sum_x / n
    out["mse_mean_image"] = (sum_x2 / n - mean.pow(2)).mean().item()
    return out

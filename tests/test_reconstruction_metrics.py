"""MSE / PSNR / SSIM against closed forms and a direct implementation of Wang et al. (2004)."""

import math

import numpy as np
import pytest
import torch

from genlab.data.base import TensorDataset, to_uint8_image
from genlab.metrics.reconstruction import mse, psnr, reconstruction_metrics, ssim


def test_mse_and_psnr_known_values():
    x = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 0.8
    y = x + 0.1                                       # every pixel off by 0.1 -> MSE 0.01 -> 20 dB
    torch.testing.assert_close(mse(x, y), torch.full((3,), 0.01))
    torch.testing.assert_close(psnr(x, y, data_range=1.0), torch.full((3,), 20.0))
    # the same images on genlab's [-1, 1] scale: MSE x4, PSNR unchanged with data_range=2
    torch.testing.assert_close(mse(2 * x - 1, 2 * y - 1), torch.full((3,), 0.04))
    torch.testing.assert_close(psnr(2 * x - 1, 2 * y - 1), torch.full((3,), 20.0))
    # 8-bit range, off by one grey level: 10 log10(255^2) = 48.13 dB
    assert psnr(x * 255, x * 255 + 1, data_range=255.0)[0].item() == pytest.approx(20 * math.log10(255), abs=1e-3)
    assert psnr(x, x, data_range=1.0)[0].item() == pytest.approx(100.0)  # capped, not inf


def test_ssim_of_constant_images_is_the_luminance_term():
    # no variance anywhere: the contrast-structure factor is C2/C2 = 1, SSIM = (2ab + C1) / (a^2 + b^2 + C1)
    a, b = 0.2, 0.7
    c1 = 0.01**2
    x, y = torch.full((1, 1, 16, 16), a), torch.full((1, 1, 16, 16), b)
    expected = (2 * a * b + c1) / (a * a + b * b + c1)
    assert ssim(x, y, data_range=1.0).item() == pytest.approx(expected, rel=1e-6)
    assert ssim(x, x, data_range=1.0).item() == pytest.approx(1.0)


def _ssim_reference(x: np.ndarray, y: np.ndarray, data_range: float) -> float:
    """Eq. 13 of Wang et al. 2004 written out window by window (11x11 Gaussian, sigma 1.5, valid positions)."""
    r = np.arange(11) - 5.0
    g = np.exp(-r**2 / (2 * 1.5**2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    vals = []
    for i in range(x.shape[0] - 10):
        for j in range(x.shape[1] - 10):
            px, py = x[i : i + 11, j : j + 11], y[i : i + 11, j : j + 11]
            mx, my = (w * px).sum(), (w * py).sum()
            vx, vy = (w * (px - mx) ** 2).sum(), (w * (py - my) ** 2).sum()
            cxy = (w * (px - mx) * (py - my)).sum()
            vals.append((2 * mx * my + c1) * (2 * cxy + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2)))
    return float(np.mean(vals))


def test_ssim_matches_windowwise_reference():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(2, 3, 20, 20, generator=g)
    y = (x + 0.15 * torch.randn(2, 3, 20, 20, generator=g)).clamp(0, 1)
    got = ssim(x, y, data_range=1.0)
    for n in range(2):
        ref = np.mean([_ssim_reference(x[n, c].double().numpy(), y[n, c].double().numpy(), 1.0) for c in range(3)])
        assert got[n].item() == pytest.approx(ref, abs=1e-5)


def test_ssim_properties():
    g = torch.Generator().manual_seed(2)
    x = torch.rand(4, 1, 28, 28, generator=g) * 2 - 1
    noise = torch.randn(4, 1, 28, 28, generator=g)
    s_small, s_big = ssim(x, (x + 0.05 * noise).clamp(-1, 1)), ssim(x, (x + 0.5 * noise).clamp(-1, 1))
    assert (s_small > s_big).all() and (s_small < 1).all()
    torch.testing.assert_close(ssim(x, x + 0.3 * noise), ssim(x + 0.3 * noise, x))    # symmetric
    # only the ratio of pixel values to data_range matters
    torch.testing.assert_close(ssim(x, x + 0.3 * noise), ssim(127.5 * x, 127.5 * (x + 0.3 * noise), data_range=255.0))
    # the photographic negative: same local means, structure anti-correlated -> SSIM near -1
    x01 = (x + 1) / 2
    assert (ssim(x01, 1 - x01, data_range=1.0) < -0.9).all()


class _Identity(torch.nn.Module):
    """Reconstructs perfectly, or returns a fixed image."""

    def __init__(self, constant=None):
        super().__init__()
        self.p = torch.nn.Parameter(torch.zeros(()))
        self.constant = constant

    device = property(lambda self: self.p.device)

    def observe(self, x):
        return x

    def reconstruct(self, x):
        return x.clone() if self.constant is None else self.constant.expand_as(x)


def test_reconstruction_metrics_over_a_dataset():
    x = to_uint8_image(torch.rand(50, 1, 12, 12, generator=torch.Generator().manual_seed(3)) * 2 - 1)
    data = TensorDataset("t", "image", {"x": x})
    perfect = reconstruction_metrics(_Identity(), data, batch_size=16)
    assert perfect["mse"] == 0 and perfect["ssim"] == pytest.approx(1.0) and perfect["psnr"] == pytest.approx(100)
    # the mean-image baseline is the per-pixel variance of the data on the [0, 1] scale
    x01 = x.double() / 255
    assert perfect["mse_mean_image"] == pytest.approx(x01.var(0, unbiased=False).mean().item(), rel=1e-6)
    # a model that always answers the mean image scores exactly that baseline
    mean_img = (x01.mean(0, keepdim=True) * 2 - 1).float()
    m = reconstruction_metrics(_Identity(mean_img), data, n=50, batch_size=16)
    assert m["mse"] == pytest.approx(m["mse_mean_image"], rel=1e-4)
    assert reconstruction_metrics(_Identity(), data, n=7)["mse_mean_image"] == pytest.approx(
        x01[:7].var(0, unbiased=False).mean().item(), rel=1e-6)

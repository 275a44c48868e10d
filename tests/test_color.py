"""genlab.color: Lab against scikit-image, BT.601 luma against PIL, colourfulness against its closed form."""

import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from genlab.color import colourfulness, lab_to_rgb, rgb_to_gray, rgb_to_lab


def rgb_batch(n=4, size=6, seed=0):
    """Random sRGB colours in [0, 1] (float64) plus the corners of the cube and a near-black ramp
    (the linear pieces of the sRGB and Lab curves)."""
    x = torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    corners = torch.tensor([[r, g, b] for r in (0, 1) for g in (0, 1) for b in (0, 1)], dtype=torch.float64)
    x[0, :, 0, :6] = corners[:6].T
    x[0, :, 1, :2] = corners[6:].T
    x[1, :, 0, :] = torch.linspace(0, 0.05, size, dtype=torch.float64)  # around the 0.04045 threshold
    return x


def test_rgb_to_lab_matches_scikit_image():
    skimage = pytest.importorskip("skimage.color")
    x = rgb_batch()
    ours = rgb_to_lab(x).permute(0, 2, 3, 1).numpy()
    ref = skimage.rgb2lab(x.permute(0, 2, 3, 1).numpy())
    # scikit-image rounds the CIE constants (0.008856, 7.787); genlab uses the exact 6/29 ones
    np.testing.assert_allclose(ours, ref, atol=5e-4, rtol=0)
    assert ours[0, 1, 1, 0] == pytest.approx(100.0, abs=1e-2) and abs(ours[0, 0, 0]).max() < 1e-6  # white, black


def test_lab_to_rgb_matches_scikit_image_also_out_of_gamut():
    skimage = pytest.importorskip("skimage.color")
    g = torch.Generator().manual_seed(1)
    lab = torch.cat([torch.rand(3, 1, 8, 8, generator=g, dtype=torch.float64) * 100,
                     torch.randn(3, 2, 8, 8, generator=g, dtype=torch.float64) * 70], dim=1)  # many outside sRGB
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scikit-image warns about the negative Z values it clips
        ref = skimage.lab2rgb(lab.permute(0, 2, 3, 1).numpy())
    np.testing.assert_allclose(lab_to_rgb(lab).permute(0, 2, 3, 1).numpy(), ref, atol=1e-4, rtol=0)


def test_lab_round_trip_is_exact_and_batched():
    x = rgb_batch(seed=2)
    lab = rgb_to_lab(x)
    torch.testing.assert_close(lab_to_rgb(lab), x, atol=1e-10, rtol=0)
    torch.testing.assert_close(rgb_to_lab(x[2]), lab[2])                    # (3,H,W) as one of a batch
    assert rgb_to_lab(x.float()).dtype == torch.float32
    lab_f = rgb_to_lab(x.float())
    torch.testing.assert_close(lab_to_rgb(lab_f), x.float(), atol=2e-5, rtol=0)  # float32 precision
    with torch.autocast("cpu", dtype=torch.bfloat16):  # training under bf16 autocast: the colour maths stay fp32
        assert torch.equal(rgb_to_lab(x.float()), lab_f) and rgb_to_gray(x.float()).dtype == torch.float32


def test_gradients_are_finite_everywhere():
    """The model trains through lab conversions: black, white and out-of-gamut values must not give NaN."""
    x = rgb_batch(seed=3).requires_grad_(True)
    rgb_to_lab(x).sum().backward()
    assert torch.isfinite(x.grad).all()
    lab = torch.tensor([[[[0.0]], [[120.0]], [[-150.0]]], [[[100.0]], [[0.0]], [[0.0]]]],
                       dtype=torch.float64, requires_grad=True)
    lab_to_rgb(lab).sum().backward()
    assert torch.isfinite(lab.grad).all()


def test_gray_is_bt601_luma_as_pil_computes_it():
    rgb = (torch.rand(1, 3, 9, 11, generator=torch.Generator().manual_seed(4)) * 255).round().to(torch.uint8)
    pil = np.asarray(Image.fromarray(rgb[0].permute(1, 2, 0).numpy()).convert("L"), dtype=np.float64)
    ours = rgb_to_gray(rgb.double())[0, 0].numpy()
    assert np.abs(ours - pil).max() <= 0.5 + 1e-9  # PIL rounds to integers
    x = rgb.double() / 127.5 - 1  # the same formula on [-1, 1] images: weights sum to 1
    torch.testing.assert_close(rgb_to_gray(x), rgb_to_gray(rgb.double()) / 127.5 - 1)


def test_colourfulness_closed_forms_and_a_reference_implementation():
    def solid(r, g, b):
        return (torch.tensor([r, g, b], dtype=torch.float64) / 127.5 - 1).view(1, 3, 1, 1).expand(1, 3, 4, 4)

    assert colourfulness(solid(90, 90, 90)).item() == pytest.approx(0.0, abs=1e-9)  # grey: no colour
    # pure red: rg = 255, yb = 127.5 everywhere, no spread: M = 0.3 sqrt(255^2 + 127.5^2)
    assert colourfulness(solid(255, 0, 0)).item() == pytest.approx(0.3 * np.hypot(255, 127.5))
    half = torch.cat([solid(255, 0, 0)[..., :2], solid(0, 255, 0)[..., 2:]], dim=-1)
    # half red, half green: sd_rg = 255, mean_rg = 0, yb = 127.5 everywhere
    assert colourfulness(half).item() == pytest.approx(255 + 0.3 * 127.5)
    # the usual numpy implementation (Hasler & Suesstrunk's M with population SDs)
    imgs = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(5), dtype=torch.float64) * 2 - 1
    for img, m in zip(imgs, colourfulness(imgs)):
        r, g, b = ((img.numpy() + 1) * 127.5)
        rg, yb = r - g, 0.5 * (r + g) - b
        ref = np.sqrt(rg.std() ** 2 + yb.std() ** 2) + 0.3 * np.sqrt(rg.mean() ** 2 + yb.mean() ** 2)
        assert m.item() == pytest.approx(ref)


def test_wrong_shapes_say_what_is_expected():
    with pytest.raises(ValueError, match="expects 3 channels"):
        rgb_to_lab(torch.zeros(2, 1, 4, 4))
    with pytest.raises(ValueError, match="a batch N,3,H,W"):
        colourfulness(torch.zeros(3, 4, 4))

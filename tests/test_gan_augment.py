"""DiffAugment: each transform does what Zhao et al. 2020 describe, differentiably and reproducibly."""

import pytest
import torch

from genlab.errors import ParamError
from genlab.gan import POLICIES, diff_augment
from genlab.gan.augment import brightness, contrast, cutout, saturation, translation


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def images(n=8, c=3, size=16, seed=0):
    return torch.rand(n, c, size, size, generator=gen(seed)) * 2 - 1


@pytest.mark.parametrize("c", [1, 3])
def test_every_policy_keeps_shape_and_dtype_and_lets_gradients_through(c):
    assert POLICIES == ("color", "translation", "cutout")
    for policy in (*POLICIES, "color,translation,cutout"):
        x = images(c=c).requires_grad_(True)
        out = diff_augment(x, policy, generator=gen(1))
        assert out.shape == x.shape and out.dtype == x.dtype and torch.isfinite(out).all()
        # colour changes values by bounded amounts; translation and cutout only move values or write zeros
        # (|x| <= 1; + brightness -> 1.5; saturation |g + s (x - g)| <= 1.5 + 2 * 3 = 7.5; contrast -> 7.5 + 1.5 * 15)
        bound = 1 if policy in ("translation", "cutout") else 7.5 + 1.5 * 15
        assert out.abs().max() <= bound
        out.pow(2).sum().backward()
        assert x.grad is not None and x.grad.abs().sum() > 0


def test_color_transforms_in_closed_form():
    x = images(n=6)
    b = brightness(x, gen(2)) - x                        # one offset per image, in [-0.5, 0.5]
    assert torch.allclose(b, b[:, :1, :1, :1].expand_as(b), atol=1e-6) and b.abs().max() <= 0.5
    assert b[:, 0, 0, 0].unique().numel() == 6            # drawn per sample
    grey = x.mean(1, keepdim=True)                       # saturation: scales colour about each pixel's grey
    s = (saturation(x, gen(3)) - grey) / (x - grey)
    assert torch.allclose(s, s[:, :1, :1, :1].expand_as(s), atol=1e-3) and 0 <= s.min() and s.max() <= 2
    assert torch.equal(saturation(x[:, :1], gen(3)), x[:, :1])   # identity for one channel
    mean = x.mean((1, 2, 3), keepdim=True)              # contrast: scales about the image mean, in [0.5, 1.5]
    k = (contrast(x, gen(4)) - mean) / (x - mean)
    assert torch.allclose(k, k[:, :1, :1, :1].expand_as(k), atol=1e-3) and 0.5 <= k.min() and k.max() <= 1.5
    assert torch.allclose(contrast(x, gen(4)).mean((1, 2, 3)), x.mean((1, 2, 3)), atol=1e-6)


def shifted(img, dy, dx):
    """An independent shift by slicing: out[i, j] = img[i - dy, j - dx], zero where that is outside."""
    out = torch.zeros_like(img)
    h, w = img.shape[-2:]
    out[..., max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        img[..., max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
    return out


def test_translation_shifts_by_at_most_an_eighth_and_pads_with_zeros():
    n, size = 64, 16                                    # shifts of up to round(16 / 8) = 2 pixels
    x = images(n=n, c=2, size=size)
    out = translation(x, gen(5))
    seen = set()
    for i in range(n):
        matches = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3) if torch.equal(out[i], shifted(x[i], dy, dx))]
        assert len(matches) == 1, f"image {i} is no shift of at most 2 pixels"
        seen.add(matches[0])
    assert {dy for dy, _ in seen} == {dx for _, dx in seen} == {-2, -1, 0, 1, 2}
    ones = translation(torch.ones(n, 1, 28, 28), gen(6))             # round(28 / 8) = 4 (3.5 rounds up)
    kept = ones.sum((1, 2, 3))
    assert set(ones.unique().tolist()) == {0.0, 1.0}
    assert kept.min() >= (28 - 4) ** 2 and (kept < 28 * 28).any()


def test_cutout_zeros_a_half_size_square_a_quarter_of_the_image():
    for size in (16, 28):
        x = torch.ones(32, 3, size, size, requires_grad=True)
        out = cutout(x, gen(7))
        zero = out[:, 0] == 0
        assert torch.equal(zero.float().mean((1, 2)), torch.full((32,), 0.25))       # exactly 1/4 per image
        assert torch.equal(out[:, 1] == 0, zero) and torch.equal(out[:, 2] == 0, zero)  # all channels alike
        rows, cols = zero.any(2).sum(1), zero.any(1).sum(1)                             # a square of side/2
        assert torch.equal(rows, torch.full((32,), size // 2)) and torch.equal(cols, rows)
        out.sum().backward()                                # the gradient is 0 in the square, 1 outside
        assert torch.equal(x.grad[:, 0] == 0, zero)
        assert len({tuple(z.nonzero()[0].tolist()) for z in zero}) > 1   # placed per sample


def test_the_same_seed_gives_the_same_augmentation():
    x = images()
    a, b = diff_augment(x, generator=gen(9)), diff_augment(x, generator=gen(9))
    assert torch.equal(a, b) and not torch.equal(a, diff_augment(x, generator=gen(10)))


def test_policy_strings_and_unknown_names():
    x = images(n=2)
    assert torch.equal(diff_augment(x, "", generator=gen()), x)              # no augmentation
    g = gen(1)                                           # the policy's transforms in order, on one stream
    assert torch.equal(diff_augment(x, " translation , cutout", generator=gen(1)), cutout(translation(x, g), g))
    with pytest.raises(ParamError) as e:
        diff_augment(x, "color,flip")
    assert e.value.param == "diffaugment"
    assert str(e.value) == ("diffaugment unknown policy 'flip'; choose a comma-separated list of: "
                            "color, translation, cutout (or '' for none)")


def test_bf16_images_stay_bf16():
    out = diff_augment(images(n=2).bfloat16(), generator=gen())
    assert out.dtype == torch.bfloat16 and torch.isfinite(out.float()).all()

"""Colour spaces and a colourfulness measure, in torch, batched (channels at dim -3).

    rgb_to_gray   ITU-R BT.601 luma Y' = 0.299 R' + 0.587 G' + 0.114 B' of the gamma-encoded
                  values (what PIL's convert("L") and the course's Grayscale use). The weights sum
                  to 1, so the formula is the same on [0, 1], [-1, 1] or [0, 255] images.
    rgb_to_lab    sRGB (IEC 61966-2-1, values in [0, 1]) -> CIE L*a*b* under the D65 white:
    lab_to_rgb    decode the sRGB gamma, linear RGB -> XYZ (the sRGB matrix), then
                      L* = 116 f(Y/Yn) - 16,  a* = 500 (f(X/Xn) - f(Y/Yn)),  b* = 200 (f(Y/Yn) - f(Z/Zn))
                  with f(t) = t^(1/3) for t > (6/29)^3, else t / (3 (6/29)^2) + 4/29 (CIE 15:2004,
                  the exact constants) and the inverse of each step on the way back. L* lies in
                  [0, 100]; a*, b* of sRGB colours within about [-86, 98] and [-108, 95].
                  The matrix and white point are scikit-image's (rgb2lab / lab2rgb); the tests
                  compare with it. lab_to_rgb clips to [0, 1] (a Lab colour may lie outside sRGB).
    colourfulness Hasler & Suesstrunk 2003, "Measuring colourfulness in natural images", the
                  metric they recommend, on the opponent channels of the 0..255 RGB values:
                      rg = R - G,  yb = (R + G) / 2 - B
                      M  = sqrt(sd_rg^2 + sd_yb^2) + 0.3 sqrt(mean_rg^2 + mean_yb^2)
                  per image (sd, mean over its pixels); 0 for a grey image. Their scale: 15 slightly,
                  33 moderately, 45 averagely, 59 quite, 82 highly, 109 extremely colourful.
"""

from __future__ import annotations

import torch

# ITU-R BT.601 luma weights of R', G', B'
LUMA = (0.299, 0.587, 0.114)
# sRGB (linear) -> CIE XYZ, and the D65 reference white (scikit-image's values)
XYZ_FROM_RGB = ((0.412453, 0.357580, 0.180423),
                (0.212671, 0.715160, 0.072169),
                (0.019334, 0.119193, 0.950227))
WHITE_D65 = (0.95047, 1.0, 1.08883)
RGB_FROM_XYZ = torch.linalg.inv(torch.tensor(XYZ_FROM_RGB, dtype=torch.float64))
_DELTA = 6 / 29


def _check(x: torch.Tensor, channels: int, what: str) -> None:
    if x.ndim < 3 or x.shape[-3] != channels:
        raise ValueError(f"{what} expects {channels} channels at dim -3 (C,H,W or N,C,H,W), got shape "
                         f"{tuple(x.shape)}")


def _float(x: torch.Tensor) -> torch.Tensor:
    return x if x.dtype == torch.float64 else x.float()


def rgb_to_gray(x: torch.Tensor) -> torch.Tensor:
    """(..., 3, H, W) -> (..., 1, H, W): BT.601 luma, in the input's range."""
    _check(x, 3, "rgb_to_gray")
    return _matrix((LUMA,), _float(x))


def _matrix(m, x: torch.Tensor) -> torch.Tensor:
    """Apply a (d, 3) matrix to the channels (dim -3): out_d = sum_c m[d, c] x_c.

    Written as elementwise products and a sum, not a matmul, so that bf16 autocast
    (which lowers matmuls, not elementwise ops) leaves the colour maths in float32."""
    m = torch.as_tensor(m, dtype=x.dtype, device=x.device)
    return (m[:, :, None, None] * x.unsqueeze(-4)).sum(-3)


def _white(x: torch.Tensor) -> torch.Tensor:
    return torch.tensor(WHITE_D65, dtype=x.dtype, device=x.device)[:, None, None]


def srgb_to_linear(c: torch.Tensor) -> torch.Tensor:
    """The sRGB decoding: c / 12.92 up to 0.04045, ((c + 0.055) / 1.055)^2.4 above."""
    return torch.where(c > 0.04045, ((c.clamp_min(0.04045) + 0.055) / 1.055) ** 2.4, c / 12.92)


def linear_to_srgb(c: torch.Tensor) -> torch.Tensor:
    """The sRGB encoding, the inverse of srgb_to_linear."""
    return torch.where(c > 0.0031308, 1.055 * c.clamp_min(0.0031308) ** (1 / 2.4) - 0.055, 12.92 * c)


def _f(t: torch.Tensor) -> torch.Tensor:
    return torch.where(t > _DELTA**3, t.clamp_min(_DELTA**3) ** (1 / 3), t / (3 * _DELTA**2) + 4 / 29)


def _f_inv(u: torch.Tensor) -> torch.Tensor:
    return torch.where(u > _DELTA, u**3, 3 * _DELTA**2 * (u - 4 / 29))


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """sRGB in [0, 1], (..., 3, H, W) -> L*a*b* (..., 3, H, W) (D65; formulas in the module docstring)."""
    _check(rgb, 3, "rgb_to_lab")
    xyz = _matrix(XYZ_FROM_RGB, srgb_to_linear(_float(rgb))) / _white(_float(rgb))
    fx, fy, fz = _f(xyz).unbind(-3)
    return torch.stack([116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)], dim=-3)


def lab_to_rgb(lab: torch.Tensor, clip: bool = True) -> torch.Tensor:
    """L*a*b* (..., 3, H, W) -> sRGB (..., 3, H, W), clipped to [0, 1] unless clip=False.

    As scikit-image's lab2rgb, f(Z/Zn) is floored at 0 (a b* too large for its L*)."""
    _check(lab, 3, "lab_to_rgb")
    lab = _float(lab)
    L, a, b = lab.unbind(-3)
    fy = (L + 16) / 116
    f = torch.stack([fy + a / 500, fy, (fy - b / 200).clamp_min(0)], dim=-3)
    xyz = _f_inv(f) * _white(lab)
    rgb = linear_to_srgb(_matrix(RGB_FROM_XYZ.to(lab.dtype), xyz))
    return rgb.clamp(0, 1) if clip else rgb


def colourfulness(images: torch.Tensor) -> torch.Tensor:
    """Hasler & Suesstrunk's M per image (N,) of RGB images (N, 3, H, W) in [-1, 1]."""
    _check(images, 3, "colourfulness")
    if images.ndim != 4:
        raise ValueError(f"colourfulness expects a batch N,3,H,W, got shape {tuple(images.shape)}")
    r, g, b = ((_float(images).clamp(-1, 1) + 1) * 127.5).unbind(1)   # the paper's 0..255 scale
    rg, yb = (r - g).flatten(1), (0.5 * (r + g) - b).flatten(1)
    sd = (rg.var(1, unbiased=False) + yb.var(1, unbiased=False)).sqrt()
    mean = (rg.mean(1) ** 2 + yb.mean(1) ** 2).sqrt()
    return sd + 0.3 * mean

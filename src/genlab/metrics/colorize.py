"""A colouriser's numbers on a test split: how close, and how colourful.

For each test image x (RGB in [-1, 1]) the model colourises its grey version; the output is
compared with x by PSNR and SSIM (genlab.metrics.reconstruction, on [0, 1]), and the
colourfulness M (Hasler & Suesstrunk 2003, genlab.color) of the outputs is set beside that of
the real images. Two references come with them: the grey input itself shown as an RGB image
(the PSNR/SSIM of adding no colour at all) and the real images' colourfulness. An MSE-trained
colouriser typically beats the grey input on PSNR while its colourfulness stays far below the
real images': the desaturated average the course's lesson is about.
"""

from __future__ import annotations

import torch

from ..color import colourfulness
from .reconstruction import psnr, ssim


@torch.no_grad()
def per_image(model, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Colourise RGB images x (N,3,H,W) in [-1, 1]; per-image numbers (N,) and the pictures.

    Returns gray (N,1,H,W), output (N,3,H,W) and psnr, ssim, colourfulness, colourfulness_real,
    psnr_gray, ssim_gray (the grey input as an RGB image against x).
    """
    x = x.to(model.device).float()
    gray = model.gray(x)
    out = model.colorize(gray).float()
    x01, out01, gray01 = (x + 1) / 2, (out + 1) / 2, ((gray + 1) / 2).expand_as(x)
    return {"gray": gray, "output": out,
            "psnr": psnr(out01, x01, data_range=1.0), "ssim": ssim(out01, x01, data_range=1.0),
            "colourfulness": colourfulness(out), "colourfulness_real": colourfulness(x),
            "psnr_gray": psnr(gray01, x01, data_range=1.0), "ssim_gray": ssim(gray01, x01, data_range=1.0)}


@torch.no_grad()
def colorization_metrics(model, data, n: int | None = None, batch_size: int = 250) -> dict[str, float]:
    """Means over the first n test images of `per_image`'s numbers (psnr, ssim, colourfulness, ...)."""
    was_training = model.training
    model.eval()
    n = len(data) if n is None else min(n, len(data))
    sums: dict[str, float] = {}
    try:
        for start in range(0, n, batch_size):
            x = data.batch(torch.arange(start, min(start + batch_size, n)))["x"]
            for k, v in per_image(model, x).items():
                if v.ndim == 1:
                    sums[k] = sums.get(k, 0.0) + float(v.double().sum())
    finally:
        model.train(was_training)
    return {"n": n, **{k: v / n for k, v in sums.items()}}

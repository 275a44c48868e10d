"""The colourisation panel the course shows: grayscale input | generated | real target, one test image a row.

Beside each row its PSNR / SSIM against the real image and the colourfulness M (Hasler &
Suesstrunk 2003) of the output and of the real image; above the panel the means and, only when
the measured colourfulness of the outputs is well below the real images' (under DESATURATED of
it), the failure it shows: the loss averaged the colours a grey value could have, and where the
mean chroma of the outputs points to orange-yellow hues, the brown/sepia cast of that average.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..color import colourfulness, rgb_to_lab
from ..metrics.colorize import per_image
from ..pixels import to_uint8_image

DESATURATED = 0.6        # outputs less colourful than this fraction of the real images' count as desaturated
BROWN_HUES = (30.0, 90.0)  # hue angle (degrees, atan2(b*, a*)) of the mean output chroma read as brown / sepia


# CIE Lab hue angles (degrees) of the names used for a cast: upper bounds, going round from magenta-red
HUE_NAMES = ((15, "red-magenta"), (30, "red"), (70, "orange-brown"), (100, "yellow"), (140, "olive / yellow-green"),
             (200, "green"), (250, "cyan"), (300, "blue"), (345, "purple"), (360, "red-magenta"))


def hue_name(degrees: float) -> str:
    """A name for a Lab hue angle atan2(b*, a*) (only to describe a measured cast in words)."""
    return next(name for bound, name in HUE_NAMES if degrees % 360 <= bound)


def diagnosis(outputs: torch.Tensor, real: torch.Tensor, loss: str = "") -> str:
    """One line on the colours of `outputs` vs `real` (RGB, N,3,H,W in [-1, 1]), from measurements only."""
    m_out, m_real = float(colourfulness(outputs).mean()), float(colourfulness(real).mean())
    ratio = m_out / m_real if m_real > 0 else math.inf
    line = f"colourfulness {m_out:.1f} (real {m_real:.1f})"
    if ratio >= DESATURATED:
        return line
    a, b = (float(v) for v in rgb_to_lab((outputs.float().clamp(-1, 1) + 1) / 2)[:, 1:].mean((0, 2, 3)))
    hue = math.degrees(math.atan2(b, a))
    cast = f"; mean chroma a* {a:+.1f}, b* {b:+.1f}, hue {hue:.0f} deg: {hue_name(hue)}"
    if BROWN_HUES[0] <= hue <= BROWN_HUES[1] and math.hypot(a, b) > 1:
        cast += ", the brown/sepia average"
    why = f"the {loss.upper()} loss averages" if loss else "the outputs average"
    return (f"desaturated: colourfulness {m_out:.1f}, {ratio:.0%} of the real images' {m_real:.1f} "
            f"({why} the colours a grey value could have){cast}")


def _image(ax, img: torch.Tensor) -> None:
    arr = to_uint8_image(img.cpu())
    arr = arr.expand(3, -1, -1) if arr.shape[0] == 1 else arr
    ax.imshow(arr.permute(1, 2, 0).numpy(), interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


@torch.no_grad()
def colorize_panel(model, x: torch.Tensor, path: str | Path, title: str = "") -> tuple[Path, dict]:
    """The panel for real RGB images x (N,3,H,W in [-1, 1]); returns its path and the per-image numbers."""
    r = {k: v.cpu() for k, v in per_image(model, x).items()}
    x, n = x.cpu().float(), len(x)
    fig = Figure(figsize=(6.2, 0.25 + 1.0 * n), dpi=120)
    FigureCanvasAgg(fig)
    axes = fig.subplots(n, 3, squeeze=False)
    for i in range(n):
        for j, img in enumerate((r["gray"][i], r["output"][i], x[i])):
            _image(axes[i, j], img)
        axes[i, 2].text(1.08, 0.5, f"PSNR {r['psnr'][i]:.1f} dB\nSSIM {r['ssim'][i]:.3f}\n"
                        f"M {r['colourfulness'][i]:.0f} / {r['colourfulness_real'][i]:.0f}",
                        transform=axes[i, 2].transAxes, va="center", fontsize=7)
    for ax, name in zip(axes[0], ("grayscale input", "generated", "real target")):
        ax.set_title(name, fontsize=8)
    means = (f"mean PSNR {r['psnr'].mean():.2f} dB, SSIM {r['ssim'].mean():.3f} (grey input: "
             f"{r['psnr_gray'].mean():.2f} dB, {r['ssim_gray'].mean():.3f})")
    lines = [t for t in (title, means, diagnosis(r["output"], x, model.cfg.loss)) if t]
    fig.suptitle("\n".join(lines), fontsize=7, wrap=True)
    fig.tight_layout(rect=(0, 0, 0.82, 1))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, bbox_inches="tight")
    return path, r


def colorize_artifacts(model, data, out_dir: Path, generator: torch.Generator | None = None) -> list[Path]:
    """After training: the panel of the first `panel_images` test images (the same images every run)."""
    n = min(model.cfg.panel_images, len(data))
    x = data.batch(torch.arange(n))["x"]
    path, _ = colorize_panel(model, x, Path(out_dir) / "colorize_panel.png")
    return [path]

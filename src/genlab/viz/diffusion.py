"""Pictures of the diffusion processes: forward panels, schedules, denoising strips."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from ..data.base import to_uint8_image  # noqa: E402
from ..diffusion.gaussian import q_sample  # noqa: E402
from ..diffusion.schedules import NoiseSchedule, make_schedule  # noqa: E402
from .plots import save_figure  # noqa: E402


def forward_panel(schedule: NoiseSchedule, x0: torch.Tensor, timesteps: list[int], path: str | Path,
                  generator: torch.Generator | None = None) -> Path:
    """Rows = images, columns = x_t at the given t, all with the same noise per image (Eq. 4)."""
    noise = torch.randn(x0.shape, generator=generator)
    n, cols = x0.shape[0], len(timesteps)
    fig, axes = plt.subplots(n, cols, figsize=(1.3 * cols, 1.3 * n + 0.4), dpi=110, squeeze=False)
    for j, t in enumerate(timesteps):
        xt = q_sample(schedule, x0, torch.full((n,), t, dtype=torch.long), noise)
        ab = float(schedule.alphas_cumprod[t])
        for i in range(n):
            img = to_uint8_image(xt[i]).permute(1, 2, 0).numpy()
            ax = axes[i, j]
            ax.imshow(img.squeeze(-1) if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=255)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(f"t={t}\n$\\bar\\alpha$={ab:.3f}", fontsize=8)
    return save_figure(fig, path)


def schedule_plot(T: int, path: str | Path) -> Path:
    """alpha_bar_t and log-SNR of the linear and cosine schedules side by side."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.3), dpi=120)
    for name in ("linear", "cosine"):
        s = make_schedule(name, T)
        t = torch.arange(T)
        a.plot(t, s.alphas_cumprod, label=name)
        b.plot(t, torch.log(s.snr()), label=name)
    a.set_title(r"$\bar\alpha_t$ (signal kept)")
    b.set_title(r"log SNR$_t$ = log $\bar\alpha_t / (1-\bar\alpha_t)$")
    for ax in (a, b):
        ax.set_xlabel("t")
        ax.grid(alpha=0.3)
        ax.legend()
    return save_figure(fig, path)

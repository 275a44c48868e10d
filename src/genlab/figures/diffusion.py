"""Pictures of Gaussian diffusion: forward panels, schedules, and a trained DDPM's strip and GIF."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from ..diffusion.gaussian import q_sample  # noqa: E402
from ..diffusion.schedules import NoiseSchedule, make_schedule  # noqa: E402
from ..pixels import to_uint8_image  # noqa: E402
from ..rng import randn  # noqa: E402
from ..viz.grid import save_gif, save_strip  # noqa: E402
from ..viz.plots import save_figure  # noqa: E402


def forward_panel(schedule: NoiseSchedule, x0: torch.Tensor, timesteps: list[int], path: str | Path,
                  generator: torch.Generator | None = None) -> Path:
    """Rows = images, columns = x_t at the given t, all with the same noise per image (Eq. 4)."""
    noise = randn(x0.shape, generator, device=x0.device)
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


def ddpm_artifacts(model, data, out_dir: Path, generator: torch.Generator | None = None) -> list[Path]:
    """Forward-process panel, denoising strip and reverse-process GIF of a trained DDPM in its run folder."""
    out_dir = Path(out_dir)
    g = generator or torch.Generator().manual_seed(0)
    T = model.cfg.timesteps
    ts = sorted({min(T - 1, round(f * T)) for f in (0, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0)})
    x0 = data.batch(torch.arange(min(6, len(data))))["x"]
    paths = [forward_panel(model.schedule, x0, ts, out_dir / "forward_process.png", g)]
    y = torch.arange(16) % model.num_classes if model.num_classes else None
    images, frames = model.sample(16, generator=g, y=y, return_intermediates=40)
    idx = torch.linspace(0, len(frames) - 1, 11).round().long()
    rows = [torch.stack([frames[int(j)][i] for j in idx]) for i in range(8)]
    paths.append(save_strip(rows, out_dir / "denoising_strip.png"))
    paths.append(save_gif(frames, out_dir / "reverse_process.gif", nrow=4))
    return paths

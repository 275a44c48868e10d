"""Pictures of diffusion on 2-D point clouds (the toy-diffusion family).

data.png               the held-out points
forward_process.png    x_t ~ q(x_t | x_0) at several t (DDPM Eq. 4): the cloud dissolves into N(0, I)
samples_vs_data.png    samples beside held-out points, with the sample-fit metrics
reverse_trajectories.png  paths of single points from x_T to x_0 under the sampler
reverse_process.gif    the whole cloud, step by step
quality_vs_steps.png   energy distance against the number of sampling steps, per sampler
t_sweep.png            (visualize toy-t-sweep) models trained with different T, sampled ancestrally
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from ..diffusion.gaussian import q_sample  # noqa: E402
from ..models import build_model  # noqa: E402
from ..models.toy_diffusion import energy_distance, point_metrics  # noqa: E402
from ..rng import randn  # noqa: E402
from ..train import train  # noqa: E402
from ..viz.plots import save_figure  # noqa: E402
from ..viz.points import _style, points_gif, scatter_plot, trajectory_plot  # noqa: E402

def forward_plot(schedule, x0: torch.Tensor, timesteps: list[int], path: str | Path,
                 generator: torch.Generator | None = None) -> Path:
    """x_t of the same points at several t, one panel each, with the same noise per point (Eq. 4)."""
    noise = randn(x0.shape, generator, device=x0.device)
    fig, axes = plt.subplots(1, len(timesteps), figsize=(2.0 * len(timesteps), 2.3), dpi=110, squeeze=False)
    for ax, t in zip(axes[0], timesteps):
        xt = q_sample(schedule, x0, torch.full((len(x0),), t, dtype=torch.long), noise)
        ax.scatter(xt[:, 0], xt[:, 1], s=1, alpha=0.4, linewidths=0)
        _style(ax, f"t={t}  abar={float(schedule.alphas_cumprod[t]):.3f}")
    return save_figure(fig, path)


def samples_vs_data_plot(samples: torch.Tensor, data: torch.Tensor, path: str | Path,
                         metrics: dict | None = None) -> Path:
    fig, axes = plt.subplots(1, 3, figsize=(9, 3.5), dpi=110)
    s, d = samples.cpu().float(), data.cpu().float()
    axes[0].scatter(d[:, 0], d[:, 1], s=1, alpha=0.5, color="tab:grey", linewidths=0)
    _style(axes[0], f"held-out data ({len(d)})")
    axes[1].scatter(s[:, 0], s[:, 1], s=1, alpha=0.5, color="tab:blue", linewidths=0)
    _style(axes[1], f"samples ({len(s)})")
    axes[2].scatter(d[:, 0], d[:, 1], s=1, alpha=0.4, color="tab:grey", linewidths=0, label="data")
    axes[2].scatter(s[:, 0], s[:, 1], s=1, alpha=0.4, color="tab:blue", linewidths=0, label="samples")
    title = "overlay"
    if metrics:
        title = (f"energy dist {metrics['energy_distance']:.4f} (floor {metrics.get('floor_energy_distance', 0):.4f})"
                 f"\nchamfer {metrics['chamfer']:.3f} (floor {metrics.get('floor_chamfer', 0):.3f})")
    _style(axes[2], title)
    return save_figure(fig, path)


def quality_vs_steps(model, test: torch.Tensor, steps: list[int] | None = None, n: int = 1000,
                     seed: int = 0) -> list[dict]:
    """Energy distance / MMD / Chamfer of n samples vs test points for each sampler and step count.

    Rows: ddim (eta = 0), ddim eta = 1 (ancestral on the sub-sequence), dpmpp at each
    number of steps; ddpm (all T steps) once.
    """
    T = model.schedule.T
    steps = sorted({s for s in (steps or [1, 2, 5, 10, 20, 50, 100, 200, 500]) if 1 <= s <= T} | {T})
    ref = test[:n].float().cpu()
    rows = []
    runs = [("ddim", 0.0, "ddim (eta=0)"), ("ddim", 1.0, "ddim (eta=1)"), ("dpmpp", 0.0, "dpm-solver++ 2M")]
    for sampler, eta, label in runs:
        for s in steps:
            g = torch.Generator(device=model.device).manual_seed(seed)
            x = model.sample(len(ref), generator=g, sampler=sampler, steps=s, eta=eta).cpu()
            rows.append({"sampler": label, "steps": s, **point_metrics(x, ref)})
    g = torch.Generator(device=model.device).manual_seed(seed)
    rows.append({"sampler": "ddpm", "steps": T, **point_metrics(model.sample(len(ref), generator=g, sampler="ddpm")
                                                              .cpu(), ref)})
    return rows


def quality_plot(rows: list[dict], path: str | Path, floor: float | None = None, metric: str = "energy_distance",
                 xlabel: str = "sampling steps (network calls)", title: str | None = None) -> Path:
    fig, ax = plt.subplots(figsize=(5.2, 3.6), dpi=120)
    for name in dict.fromkeys(r["sampler"] for r in rows):
        rs = [r for r in rows if r["sampler"] == name]
        if len(rs) == 1:
            ax.scatter([rs[0]["steps"]], [rs[0][metric]], marker="*", s=90, zorder=3, label=name, color="black")
        else:
            ax.plot([r["steps"] for r in rs], [r[metric] for r in rs], marker="o", ms=3, label=name)
    if floor is not None:
        ax.axhline(floor, ls="--", color="grey", lw=1, label="floor (data vs data)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(metric.replace("_", " "))
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    if title:
        ax.set_title(title, fontsize=9)
    return save_figure(fig, path)


def toy_artifacts(model, data, out_dir: Path, generator: torch.Generator, n: int = 1000) -> list[Path]:
    """Every toy-diffusion picture of a trained model, from held-out points `data` (a TensorDataset)."""
    out_dir = Path(out_dir)
    test = data.x.float()
    T = model.schedule.T
    paths = [scatter_plot(test, out_dir / "data.png", title=f"{data.meta.get('shape', data.name)}: "
                                                             f"{len(test)} held-out points", color="tab:grey")]
    ts = sorted({min(T - 1, round(f * (T - 1))) for f in (0, 0.1, 0.25, 0.5, 0.75, 1.0)})
    paths.append(forward_plot(model.schedule, test[:n], ts, out_dir / "forward_process.png", generator))
    samples, frames = model.sample(n, generator=generator, return_intermediates=min(T + 1, 41))
    samples, frames = samples.cpu(), [f.cpu() for f in frames]
    ref, other = test[:n], test[n : 2 * n]
    metrics = point_metrics(samples, ref)
    floor = point_metrics(other, ref) if len(other) == len(ref) else {}
    metrics.update({f"floor_{k}": v for k, v in floor.items()})
    paths.append(samples_vs_data_plot(samples, ref, out_dir / "samples_vs_data.png", metrics))
    # the same x_T through the stochastic sampler and through the probability-flow ODE (DDIM, eta = 0)
    steps = min(50, T)
    _, ode = model.sample(48, x_T=frames[0][:48].to(model.device), sampler="ddim", steps=steps,
                          return_intermediates=steps + 1)
    panels = [(frames, f"{model.cfg.sampler}: reverse trajectories"),
              ([f.cpu() for f in ode], f"ddim, eta = 0 ({steps} steps): ODE trajectories")]
    paths.append(trajectory_plot(panels, out_dir / "reverse_trajectories.png", data=ref))
    paths.append(points_gif(frames, out_dir / "reverse_process.gif", data=ref))
    nq = min(n, len(test) // 2, 500)
    rows = quality_vs_steps(model, test, n=nq)
    paths.append(quality_plot(rows, out_dir / "quality_vs_steps.png", energy_floor(test, nq),
                              title=f"sample quality vs steps (T = {T})"))
    return paths


def energy_floor(points: torch.Tensor, n: int) -> float | None:
    """What a perfect model scores: the energy distance of held-out draws of n points to the first n.

    At the curves' own n (the V-statistic's bias grows as 1/n), averaged over every disjoint draw
    the points allow (one draw is noisy enough for a good model to land below it).
    """
    draws = [energy_distance(points[k * n : (k + 1) * n], points[:n]) for k in range(1, len(points) // n)]
    return sum(draws) / len(draws) if draws else None


def t_sweep(train_data, test_data, Ts: list[int], train_cfg, model_options: dict | None = None,
            n: int = 1000) -> list[dict]:
    """Train one toy model per T (same budget) and score ancestral DDPM samples: quality vs T."""
    ref = test_data.x[:n].float()
    rows = []
    for T in Ts:
        torch.manual_seed(train_cfg.seed)
        model = build_model("toy-diffusion", dict(model_options or {}, timesteps=T))
        result = train(model, train_data, train_cfg)
        m = result.sampling_model.eval()
        x = m.sample(len(ref), generator=torch.Generator().manual_seed(0), sampler="ddpm").cpu()
        rows.append({"sampler": "ddpm (ancestral, all T)", "steps": T, **point_metrics(x, ref)})
    return rows

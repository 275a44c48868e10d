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
from PIL import Image  # noqa: E402

from ..diffusion.gaussian import q_sample  # noqa: E402
from ..errors import GenlabError  # noqa: E402
from .plots import save_figure  # noqa: E402

LIM = 3.0  # toy2d data are standardised: +-3 shows every shape and most of N(0, I)


def _style(ax, title: str | None = None, lim: float = LIM) -> None:
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=8)


def scatter_plot(points: torch.Tensor, path: str | Path, title: str | None = None,
                 color: str = "tab:blue") -> Path:
    """One scatter plot of (N, 2) points."""
    p = points.detach().cpu().float()
    fig, ax = plt.subplots(figsize=(3.6, 3.6), dpi=120)
    ax.scatter(p[:, 0], p[:, 1], s=2, alpha=0.5, color=color, linewidths=0)
    _style(ax, title)
    return save_figure(fig, path)


def forward_plot(schedule, x0: torch.Tensor, timesteps: list[int], path: str | Path,
                 generator: torch.Generator | None = None) -> Path:
    """x_t of the same points at several t, one panel each, with the same noise per point (Eq. 4)."""
    noise = torch.randn(x0.shape, generator=generator)
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


def trajectory_plot(panels: list[tuple[list[torch.Tensor], str]], path: str | Path, k: int = 48,
                    data: torch.Tensor | None = None) -> Path:
    """One panel per (frames, title): paths of the first k points from x_T (black) to x_0 (coloured)."""
    fig, axes = plt.subplots(1, len(panels), figsize=(4.0 * len(panels), 4.2), dpi=110, squeeze=False)
    colors = plt.cm.viridis(torch.linspace(0, 1, k).numpy())
    for ax, (frames, title) in zip(axes[0], panels):
        pts = torch.stack([f[:k].cpu().float() for f in frames])  # (F, k, 2)
        if data is not None:
            d = data.cpu().float()
            ax.scatter(d[:, 0], d[:, 1], s=1, alpha=0.15, color="tab:grey", linewidths=0)
        for i in range(pts.shape[1]):
            ax.plot(pts[:, i, 0], pts[:, i, 1], lw=0.6, alpha=0.7, color=colors[i])
        ax.scatter(pts[0, :, 0], pts[0, :, 1], s=6, color="black", alpha=0.5, label="x_T")
        ax.scatter(pts[-1, :, 0], pts[-1, :, 1], s=10, color=colors[: pts.shape[1]], edgecolors="black",
                   linewidths=0.3, label="x_0")
        ax.legend(fontsize=7, loc="upper right")
        _style(ax, title)
    return save_figure(fig, path)


def _raster(points: torch.Tensor, size: int, lim: float = LIM) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel rows and columns of points in [-lim, lim]^2 on a size x size canvas (y up)."""
    p = points.detach().cpu().float()
    col = ((p[:, 0] + lim) / (2 * lim) * (size - 1)).round().long()
    row = ((lim - p[:, 1]) / (2 * lim) * (size - 1)).round().long()
    keep = (col >= 0) & (col < size) & (row >= 0) & (row < size)
    return row[keep], col[keep]


def points_gif(frames: list[torch.Tensor], path: str | Path, data: torch.Tensor | None = None,
               size: int = 256, duration_ms: int = 80, hold_last_ms: int = 1500) -> Path:
    """Animate the point cloud through the frames: blue points over the data in light grey (+-3 shown)."""
    background = torch.full((size, size, 3), 255, dtype=torch.uint8)
    if data is not None:
        r, c = _raster(data, size)
        background[r, c] = torch.tensor([200, 200, 200], dtype=torch.uint8)
    pics = []
    for f in frames:
        img = background.clone()
        r, c = _raster(f, size)
        for dr in (0, 1):  # 2 x 2 pixel dots
            for dc in (0, 1):
                img[(r + dr).clamp(max=size - 1), (c + dc).clamp(max=size - 1)] = torch.tensor([31, 119, 180],
                                                                                              dtype=torch.uint8)
        pics.append(Image.fromarray(img.numpy()))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    durations = [duration_ms] * (len(pics) - 1) + [hold_last_ms]
    pics[0].save(path, save_all=True, append_images=pics[1:], duration=durations, loop=0)
    return path


def quality_vs_steps(model, test: torch.Tensor, steps: list[int] | None = None, n: int = 1000,
                     seed: int = 0) -> list[dict]:
    """Energy distance / MMD / Chamfer of n samples vs test points for each sampler and step count.

    Rows: ddim (eta = 0), ddim eta = 1 (ancestral on the sub-sequence), dpmpp at each
    number of steps; ddpm (all T steps) once.
    """
    from ..models.toy_diffusion import point_metrics

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
    from ..models.toy_diffusion import point_metrics

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
    from ..models.toy_diffusion import energy_distance

    draws = [energy_distance(points[k * n : (k + 1) * n], points[:n]) for k in range(1, len(points) // n)]
    return sum(draws) / len(draws) if draws else None


def t_sweep(train_data, test_data, Ts: list[int], train_cfg, model_options: dict | None = None,
            n: int = 1000) -> list[dict]:
    """Train one toy model per T (same budget) and score ancestral DDPM samples: quality vs T."""
    from ..models import build_model
    from ..models.toy_diffusion import point_metrics
    from ..train import train

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


# ----------------------------------------------------------------------------- genlab visualize
def add_visualize_parser(kinds, name: str, help_text: str) -> None:
    from ..cli.common import add_data_flags

    p = kinds.add_parser(name, help=help_text)
    p.add_argument("--seed", type=int, default=0)
    if name == "toy-forward":
        add_data_flags(p, "toy2d")
        p.add_argument("--T", type=int, default=100, help="number of diffusion steps")
        p.add_argument("--schedule", default="cosine", help="linear | cosine")
        p.add_argument("--out", default="toy_forward.png")
        p.set_defaults(func=_run_forward)
    elif name == "toy-diffusion":
        add_data_flags(p, "the checkpoint's")
        p.add_argument("--checkpoint", required=True, help="run folder written by `genlab train toy-diffusion`")
        p.add_argument("--out", default=None, help="output folder (default: <checkpoint>/pictures)")
        p.set_defaults(func=_run_checkpoint)
    elif name == "toy-t-sweep":
        add_data_flags(p, "toy2d")
        p.add_argument("--Ts", default="5,10,20,50,100,200", help="comma-separated numbers of diffusion steps T")
        p.add_argument("--epochs", type=int, default=20, help="training epochs per model")
        p.add_argument("--max-steps", type=int, default=0, help="cap on training steps per model (0: none)")
        p.add_argument("--schedule", default="cosine", help="linear | cosine")
        p.add_argument("--batch-size", type=int, default=256, help="training batch size per model")
        p.add_argument("--out", default="toy_t_sweep", help="folder for t_sweep.png")
        p.set_defaults(func=_run_t_sweep)
    else:
        raise GenlabError(f"genlab.viz.toy2d has no picture '{name}'")


def _points(args, split: str, default_shape: str | None = None):
    from ..cli.common import load_data

    over = {"shape": default_shape} if default_shape and not any(o.startswith("shape=") for o in args.data_opt) else {}
    data = load_data(args, args.dataset or "toy2d", split, **over)
    if data.kind != "points":
        raise GenlabError(f"dataset {data.name} holds {data.kind}, not points; use toy2d")
    return data


def _run_forward(args) -> int:
    from ..diffusion.schedules import make_schedule

    s = make_schedule(args.schedule, args.T)
    data = _points(args, "test")
    ts = sorted({min(args.T - 1, round(f * (args.T - 1))) for f in (0, 0.1, 0.25, 0.5, 0.75, 1.0)})
    print(f"wrote {forward_plot(s, data.x.float(), ts, args.out, torch.Generator().manual_seed(args.seed))}")
    return 0


def _run_checkpoint(args) -> int:
    from ..train.checkpoint import sampling_model

    model, config = sampling_model(args.checkpoint, "cpu", family="toy-diffusion")
    shape = config.get("data", {}).get("options", {}).get("shape")
    data = _points(args, "test", shape)
    out = Path(args.out or Path(args.checkpoint) / "pictures")
    for p in toy_artifacts(model, data, out, torch.Generator().manual_seed(args.seed)):
        print(f"wrote {p}")
    return 0


def _run_t_sweep(args) -> int:
    from ..models.toy_diffusion import ToyDiffusion
    from ..train import TrainConfig

    try:
        Ts = [int(v) for v in args.Ts.split(",") if v.strip()]
    except ValueError as e:
        raise GenlabError(f"--Ts expects comma-separated integers, got '{args.Ts}'") from e
    if not Ts or min(Ts) < 2:
        raise GenlabError(f"--Ts needs numbers of steps >= 2, got '{args.Ts}'")
    train_data, test = _points(args, "train"), _points(args, "test")
    cfg = TrainConfig(**{**ToyDiffusion.train_defaults, "epochs": args.epochs, "max_steps": args.max_steps,
                         "batch_size": args.batch_size,
                         "seed": args.seed, "progress": False, "device": "cpu"})
    out = Path(args.out)
    rows = t_sweep(train_data, test, Ts, cfg, {"schedule": args.schedule})
    floor = energy_floor(test.x.float(), 1000)  # t_sweep scores n = 1000 samples against test[:1000]
    for r in rows:
        print(f"T={r['steps']:5d}  energy distance {r['energy_distance']:.4f}  chamfer {r['chamfer']:.4f}")
    path = quality_plot(rows, out / "t_sweep.png", floor, xlabel="diffusion steps T (training and sampling)",
                        title="ancestral DDPM: quality vs T")
    print(f"wrote {path}")
    return 0

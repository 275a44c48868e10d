"""`genlab visualize WHAT`: pictures that explain a process or a trained model."""

from __future__ import annotations

import importlib
from pathlib import Path

import torch

from ..diffusion.schedules import make_schedule
from ..errors import GenlabError
from ..viz.diffusion import forward_panel, schedule_plot
from .common import add_data_flags, generator, load_data

# extra `visualize` kinds contributed by model families: name -> (module, help)
EXTRA_KINDS = {
    "reconstructions": ("genlab.viz.latent", "AE/VAE/HVAE: inputs above their reconstructions"),
    "interpolation": ("genlab.viz.latent", "AE/VAE/HVAE: decoded latent interpolation between test images"),
    "latent-scatter": ("genlab.viz.latent", "AE/VAE/HVAE: latent means coloured by class (PCA when >2-D)"),
    "prior-samples": ("genlab.viz.latent", "VAE/HVAE: samples from the prior"),
    "kl-per-dim": ("genlab.viz.latent", "VAE/HVAE: KL per latent dimension (posterior collapse)"),
    "kl-sweep": ("genlab.viz.latent", "VAE: train at several KL weights (or compare vae/hvae --checkpoints a,b)"),
    "hvae-layers": ("genlab.viz.latent", "HVAE: the z2-fixed grid (z2 per row, z1 resampled)"),
    "class-grid": ("genlab.viz.samplers", "conditional diffusion: one row of samples per class"),
    "guidance-sweep": ("genlab.viz.samplers", "conditional diffusion: samples at several guidance scales"),
    "sampler-grid": ("genlab.viz.samplers", "diffusion: ddpm/ddim/dpmpp from the same initial noise"),
    "ddim-interpolation": ("genlab.viz.samplers", "diffusion: DDIM decodes of slerp between two noises"),
    "inversion": ("genlab.viz.samplers", "diffusion: image -> DDIM inversion -> the same image"),
    "inpainting": ("genlab.viz.samplers", "diffusion: fill a masked region (replacement / RePaint)"),
    "guidance-curve": ("genlab.viz.samplers", "conditional diffusion: FID / accuracy / precision-recall vs guidance"),
    "toy-forward": ("genlab.viz.toy2d", "toy 2-D data through the forward process"),
    "toy-diffusion": ("genlab.viz.toy2d", "toy 2-D diffusion: samples vs data and reverse trajectories"),
    "toy-t-sweep": ("genlab.viz.toy2d", "toy 2-D diffusion: sample quality vs number of steps T"),
    "discrete-forward": ("genlab.viz.discrete", "discrete diffusion: one sequence through the forward process"),
    "discrete-reverse": ("genlab.viz.discrete", "discrete diffusion: the reverse process step by step"),
}


def _timesteps(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError as e:
        raise GenlabError(f"--timesteps expects comma-separated integers, got '{text}'") from e


def add_parser(sub) -> None:
    p = sub.add_parser("visualize", help="draw the forward process, schedules, reconstructions, ...")
    kinds = p.add_subparsers(dest="what", metavar="WHAT", required=True)

    f = kinds.add_parser("forward", help="x_t of a few images at chosen timesteps (Eq. 4 of DDPM)")
    add_data_flags(f, "shapes")
    f.add_argument("--timesteps", default="0,50,100,200,400,600,800,999")
    f.add_argument("--T", type=int, default=1000, help="number of diffusion steps")
    f.add_argument("--schedule", default="cosine", help="linear | cosine")
    f.add_argument("--num-images", type=int, default=6)
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--out", default="forward_process.png")
    f.set_defaults(func=run_forward)

    s = kinds.add_parser("schedules", help="alpha_bar and log-SNR of the linear and cosine schedules")
    s.add_argument("--T", type=int, default=1000)
    s.add_argument("--out", default="schedules.png")
    s.set_defaults(func=lambda a: print(f"wrote {schedule_plot(a.T, a.out)}") or 0)

    for name, (module, help_text) in EXTRA_KINDS.items():
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError:
            continue
        adder = getattr(mod, "add_visualize_parser", None)
        if adder is not None:
            adder(kinds, name, help_text)


def run_forward(args) -> int:
    s = make_schedule(args.schedule, args.T)
    ts = _timesteps(args.timesteps)
    bad = [t for t in ts if not 0 <= t < args.T]
    if bad:
        raise GenlabError(f"--timesteps {bad} outside 0..{args.T - 1}")
    data = load_data(args, args.dataset or "shapes", "test")
    if data.kind != "image":
        raise GenlabError(f"dataset {data.name} holds {data.kind}, not images")
    g = generator(args.seed)
    idx = torch.randperm(len(data), generator=g)[: args.num_images]
    x0 = data.batch(idx)["x"]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    print(f"wrote {forward_panel(s, x0, ts, args.out, g)}")
    return 0

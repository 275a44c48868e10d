"""`genlab visualize WHAT`: pictures that explain a process or a trained model."""

from __future__ import annotations

from pathlib import Path

import torch

from ..diffusion.schedules import make_schedule
from ..errors import GenlabError
from ..figures.diffusion import forward_panel, schedule_plot
from . import visualize_discrete, visualize_gan, visualize_latent, visualize_samplers, visualize_toy2d
from .common import add_data_flags, generator, load_data

# the other kinds, one module each: name -> help text in module.KINDS, parser from module.add_visualize_parser
KIND_MODULES = (visualize_latent, visualize_samplers, visualize_gan, visualize_toy2d, visualize_discrete)


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

    for module in KIND_MODULES:
        for name, help_text in module.KINDS.items():
            module.add_visualize_parser(kinds, name, help_text)


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

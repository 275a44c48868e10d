"""`genlab visualize gan-interpolation | gan-class-grid | toy-gan`: pictures of a trained GAN run folder."""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import GenlabError
from ..figures.gan import class_grid, interpolation_figure, interpolation_gif, toy_gan_artifacts
from ..train.checkpoint import sampling_model
from .common import add_data_flags, load_data, positive

KINDS = {
    "gan-interpolation": "GAN: G(slerp(z0, z1, a)) walks in the latent space, a picture and a GIF",
    "gan-class-grid": "conditional GAN: one row per class, one z per column",
    "toy-gan": "toy 2-D GAN: samples over the data, modes covered and high-quality fraction",
}


def add_visualize_parser(kinds, name: str, help_text: str) -> None:
    p = kinds.add_parser(name, help=help_text)
    p.add_argument("--checkpoint", required=True, help="run folder written by `genlab train gan` / `toy-gan`")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="output folder (default: <checkpoint>/pictures)")
    if name == "gan-interpolation":
        p.add_argument("--pairs", type=positive(), default=6, help="rows of the picture (pairs of latents)")
        p.add_argument("--frames", type=positive(), default=9, help="points along each walk")
    elif name == "gan-class-grid":
        p.add_argument("--per-class", type=positive(), default=10, help="columns (one z each)")
    else:
        add_data_flags(p, "the checkpoint's")
    p.set_defaults(func=_run, kind=name)


def _run(args) -> int:
    family = "toy-gan" if args.kind == "toy-gan" else "gan"
    model, config = sampling_model(args.checkpoint, "cpu", family=family)
    out = Path(args.out or Path(args.checkpoint) / "pictures")
    out.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(args.seed)
    if args.kind == "gan-interpolation":
        paths = [interpolation_figure(model, out / "interpolation.png", args.pairs, args.frames, g),
                 interpolation_gif(model, out / "interpolation.gif", generator=torch.Generator().manual_seed(args.seed))]
    elif args.kind == "gan-class-grid":
        if not model.num_classes:
            raise GenlabError(f"{args.checkpoint} holds an unconditional GAN: it has no classes to put in rows "
                              "(train with --conditional)")
        paths = [class_grid(model, out / "class_grid.png", args.per_class, g,
                            config.get("data", {}).get("classes"))]
    else:
        shape = config.get("data", {}).get("options", {}).get("shape")
        over = {"shape": shape} if shape and not any(o.startswith("shape=") for o in args.data_opt) else {}
        paths = toy_gan_artifacts(model, load_data(args, args.dataset or "toy2d", "test", **over), out, g)
    for p in paths:
        print(f"wrote {p}")
    return 0

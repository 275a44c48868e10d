"""`genlab demo` (what `make demo` runs): `genlab run-all --preset quick` into artifacts/, then where to look."""

from __future__ import annotations

import argparse

from .common import positive


def add_parser(sub) -> None:
    p = sub.add_parser("demo", help="the ~7-10 minute demo: run-all --preset quick on shapes into artifacts/",
                       description="Train every model family for a few minutes on the procedural shapes "
                                   "dataset (no download), replacing an earlier demo in --out, and say "
                                   "which files to open.")
    p.add_argument("--out", default="artifacts", help="output folder (default: artifacts)")
    p.add_argument("--dataset", default=None, help="shapes (default) or fashion_mnist")
    p.add_argument("--data-dir", default=None, help="folder holding local dataset copies (or $GENLAB_DATA_DIR)")
    p.add_argument("--minutes-scale", type=positive(float), default=1.0, metavar="F",
                   help="multiply every time and step budget by F (default: 1)")
    p.add_argument("--device", default="auto")
    p.add_argument("--resume", action="store_true", help="continue an interrupted demo instead of replacing it")
    p.set_defaults(func=run)


def run(args) -> int:
    from . import run_all

    ns = argparse.Namespace(preset="quick", dataset=args.dataset, out=args.out, data_dir=args.data_dir, only=None,
                            minutes_scale=args.minutes_scale, overwrite=not args.resume, resume=args.resume,
                            device=args.device, seed=0, threads=None)
    command = "genlab demo" + (f" --out {args.out}" if args.out != "artifacts" else "")
    run_all.run(ns, command=command)
    out = args.out.rstrip("/")
    print("\nwhere to look:")
    for path, what in ((f"{out}/results.md", "the report: every model's numbers and pictures"),
                       (f"{out}/ddpm/samples_grid.png", "DDPM samples, one row per shape class"),
                       (f"{out}/ddpm/reverse_process.gif", "the reverse process, noise to image"),
                       (f"{out}/sweep/kl_sweep.png", "what the VAE's KL weight changes"),
                       (f"{out}/vae/reconstructions.png", "VAE reconstructions of test images")):
        print(f"  {path:<34} {what}")
    return 0

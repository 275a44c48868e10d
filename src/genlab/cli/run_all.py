"""`genlab run-all`: train the classifier, AE, VAE, HVAE and DDPM with one preset; write results.md.

    genlab run-all                                  # --preset quick on shapes: ~7 min on 2 CPU cores
    genlab run-all --preset quick --dataset fashion_mnist
    genlab run-all --preset full                    # Fashion-MNIST, full runs (use a GPU)
    genlab run-all --only ddpm --overwrite          # retrain one stage, keep the other rows
    genlab run-all --minutes-scale 2                # every time and step budget doubled
    genlab run-all --resume                         # continue an interrupted run: finished stages are kept

The work is in genlab.lab; this module only parses flags.
"""

from __future__ import annotations

import argparse
import shlex
import sys

from .common import positive


def add_parser(sub) -> None:
    from ..lab import PUBLIC_PRESETS, STAGES

    p = sub.add_parser("run-all", help="the lab run: train every family with one preset and write results.md",
                       description="Train the classifier, AE, VAE, HVAE and DDPM (plus a VAE KL-weight sweep) "
                                   "with one preset through the one training loop, evaluate each on the test "
                                   "split and write <out>/results.md with the numbers and pictures.")
    add_run_all_flags(p, PUBLIC_PRESETS, STAGES)
    p.set_defaults(func=run)


def add_run_all_flags(p: argparse.ArgumentParser, presets, stages) -> None:
    p.add_argument("--preset", default="quick", metavar="NAME",
                   help=f"{' | '.join(presets)}: quick = minutes on a CPU (shapes by default), "
                        "full = real numbers on Fashion-MNIST (default: quick)")
    p.add_argument("--dataset", default=None,
                   help="dataset to train on (default: shapes for quick, fashion_mnist for full)")
    p.add_argument("--out", default="artifacts", help="output folder: run folders, pictures, results.md "
                                                      "(default: artifacts)")
    p.add_argument("--data-dir", default=None, help="folder holding local dataset copies (or $GENLAB_DATA_DIR)")
    p.add_argument("--only", default=None, metavar="STAGES",
                   help=f"comma-separated stages to run, from {','.join(stages)} (default: all); the report "
                        "keeps the rows of stages run earlier into --out")
    p.add_argument("--minutes-scale", type=positive(float), default=1.0, metavar="F",
                   help="multiply every stage's time and step budget by F (default: 1)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the stage folders of an earlier run in --out")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run in --out: keep finished stages, continue a stage's checkpoint")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | mps (default: auto)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=positive(), default=None,
                   help="torch CPU threads (default: torch's choice, all cores)")


def run(args, command: str | None = None) -> int:
    import torch

    from ..lab import Lab, make_preset, parse_only

    if args.threads:
        torch.set_num_threads(args.threads)
    preset = make_preset(args.preset, args.dataset)
    only = parse_only(args.only)
    if command is None and sys.argv[1:2] == ["run-all"]:
        command = "genlab " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    lab = Lab(preset, out=args.out, data_dir=args.data_dir, device=args.device, seed=args.seed,
              minutes_scale=args.minutes_scale, overwrite=args.overwrite, command=command,
              resume=args.resume)
    path = lab.run(only)
    print(f"results: {path}")
    return 0

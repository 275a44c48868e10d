"""`genlab sweep`: train a grid of option values, one normal run folder per cell; tabulate and plot them.

    genlab sweep --config base.json --grid "lr=1e-3,3e-4" --grid "timesteps=200,1000" --out runs/sw
    genlab sweep --family toy-diffusion --grid lr=1e-3,3e-3 --max-minutes 1 --dry-run   # list the cells
    genlab sweep ... (the same command again)     # continue: finished cells are skipped

The work is in genlab.lab.sweep; this module only parses flags.
"""

from __future__ import annotations

import argparse
import shlex
import sys

from .common import add_data_flags, positive


def _at_least_zero(text: str) -> int:
    try:
        v = int(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected an integer, got '{text}'") from e
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return v


def add_parser(sub) -> None:
    p = sub.add_parser("sweep", help="train a grid of option values (one run folder each); table and plots",
                       description="Train one run per combination of --grid values (sequentially, each a normal "
                                   "`genlab train` run folder under --out), score each with `genlab eval`, and "
                                   "write <out>/results.md, results.csv and one plot per swept option. Rerunning "
                                   "the same command skips finished cells and continues an interrupted one.")
    p.add_argument("--config", default=None,
                   help="base JSON/TOML config: option -> value, plus \"family\" (an \"out\" in it is ignored)")
    p.add_argument("--family", default=None, help="the model family (default: the config file's \"family\")")
    p.add_argument("--grid", action="append", default=[], metavar="NAME=V1,V2",
                   help="an option and its values, repeatable (a grid over every combination). NAME: a model or "
                        "training option of the family, or dataset. Values parse to the option's type; separate "
                        "them with ';' when they hold commas, e.g. channel_mult=1,2;1,2,2")
    p.add_argument("--out", default=None, help="sweep folder (default: runs/sweep-<family>)")
    p.add_argument("--max-minutes", type=positive(float), default=0.0, metavar="M",
                   help="training time budget per cell (default: the config's, else none)")
    p.add_argument("--metrics", default="all", choices=("all", "model", "samples", "none"),
                   help="model: the family's own metrics; samples: FID & co (needs --fid-n); all: whichever apply")
    p.add_argument("--eval-n", type=positive(), default=1000, help="held-out items for the family's own metrics")
    p.add_argument("--fid-n", type=_at_least_zero, default=0, help="samples per cell for FID & co (0: no FID)")
    p.add_argument("--classifier", default=None, help="FID feature classifier run folder (default: by dataset)")
    p.add_argument("--dry-run", action="store_true", help="list the cells and what a run would do; train nothing")
    p.add_argument("--overwrite", action="store_true", help="replace a different sweep in --out (its own files only)")
    add_data_flags(p, "the config file's, else the family's")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..lab.sweep import Scoring, Sweep

    command = None
    if sys.argv[1:2] == ["sweep"]:
        command = "genlab " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    data = {k: getattr(args, k) for k in ("dataset", "data_path", "image_size", "channels", "subset", "data_opt")}
    sweep = Sweep(args.family, args.config, args.grid, args.out, data=data, data_dir=args.data_dir,
                  max_minutes=args.max_minutes, command=command or "",
                  scoring=Scoring(args.metrics, args.eval_n, args.fid_n, args.classifier))
    if args.dry_run:
        sweep.check_out(args.overwrite, dry_run=True)
        print(f"{sweep.family}: {len(sweep.cells)} cells into {sweep.out}")
        print("\n".join(f"  {line}" for line in sweep.plan(args.overwrite)))
        return 0
    return sweep.run(args.overwrite)

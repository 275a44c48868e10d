"""`genlab bench`: speed table (and, with --quality, FID after a time budget) -> benchmarks/results.md.

    genlab bench                          # speed: train step fp32 vs fast path vs diffusers, MFU, sampling
    genlab bench --quick                  # the same table at tiny sizes (CI, seconds)
    genlab bench --quality --minutes 30   # default Fashion-MNIST recipe for 30 min -> FID vs floor + grid
    genlab bench --quality --config configs/fashion_mnist_cpu.json   # the same for a recipe of one's own
    genlab bench --precision              # time fp32 vs bf16 (+ channels_last) here -> genlab/precision.json

Each part rewrites only its own section of <out>/results.md; --precision writes this device kind's
entry of the table `precision auto` follows (genlab.device).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from ..errors import GenlabError
from .common import positive


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="speed and quality benchmark -> benchmarks/results.md",
                       description="Measure the training loop (fp32 eager vs the fast path vs diffusers, "
                                   "FLOP/s vs the measured matmul peak) and sampling; or, with --quality, "
                                   "what the default recipe reaches in a time budget. A benchmark, not a test: "
                                   "run it on a quiet machine.")
    p.add_argument("--out", default="benchmarks", help="folder for results.md (and the quality sample grid)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | mps")
    p.add_argument("--quick", action="store_true", help="tiny sizes and few steps (CI): still the full table")
    p.add_argument("--threads", type=positive(), default=None, help="CPU threads for torch (default: torch's)")
    p.add_argument("--model", action="append", default=[], metavar="KEY=VALUE",
                   help="U-Net/diffusion option instead of the default, e.g. --model num_res_blocks=1 "
                        "--model channel_mult=1,2,2 --model attn_resolutions= (repeatable; speed and quality)")
    g = p.add_argument_group("speed")
    g.add_argument("--batch-size", type=positive(), default=None, help="training batch (default: 128 CPU, 512 GPU)")
    g.add_argument("--steps", type=positive(), default=None, help="timed steps per repeat")
    g.add_argument("--repeats", type=positive(), default=None, help="timings per path (the minimum counts)")
    g.add_argument("--compile", choices=("auto", "on", "off"), default="auto",
                   help="also time the fast path under torch.compile (auto: on, off with --quick)")
    g.add_argument("--no-diffusers", action="store_true", help="skip the diffusers.UNet2DModel rows")
    g.add_argument("--no-sampling", action="store_true", help="skip the sampling rows")
    g.add_argument("--sample-n", type=positive(), default=None, help="images per sampling run (default 64)")
    q = p.add_argument_group("quality")
    q.add_argument("--quality", action="store_true",
                   help="train the default Fashion-MNIST diffusion recipe (or --config's) for --minutes, "
                        "then FID vs floor")
    q.add_argument("--config", default="",
                   help="a `genlab train diffusion --config` file: measure its recipe (dataset, model and training "
                        "options) instead of the default; --minutes, --device and the seed (0) stay the bench's")
    q.add_argument("--minutes", type=positive(float), default=30.0, help="training time budget")
    q.add_argument("--n", type=positive(), default=2000,
                   help="samples per draw for FID/KID/precision/recall (default 2000; results.md's lines use 1000)")
    q.add_argument("--draws", type=positive(), default=5,
                   help="independent draws of --n samples (at least 5): FID is reported as mean ± SD over them, "
                        "the floor as mean ± SD over as many disjoint train/test draws")
    q.add_argument("--sampler", default="auto",
                   help="auto (the --config recipe's sampler, else ddim-50) | ddpm | ddim | dpmpp")
    q.add_argument("--sample-steps", type=int, default=0, help="sampler network calls (0: 50, or all T for ddpm)")
    q.add_argument("--sample-bf16", action="store_true", help="run the sampler's network in bf16 autocast")
    q.add_argument("--run-dir", default="", help="training run folder (default: runs/bench_quality/<minutes>min-<time>)")
    q.add_argument("--data-dir", default="", help="folder with local dataset copies (or $GENLAB_DATA_DIR)")
    r = p.add_argument_group("precision")
    r.add_argument("--precision", action="store_true",
                   help="time a training step and sampler network calls of the default U-Net in fp32 and bf16, "
                        "NCHW and channels_last, and write what is faster into the table `precision auto` follows "
                        "(--batch-size, --steps, --repeats, --sample-n, --model and --quick apply)")
    r.add_argument("--table", default="", help="precision table to update (default: genlab/precision.json)")
    p.set_defaults(func=run)


def model_options(items: list[str]) -> dict:
    """--model KEY=VALUE pairs as DiffusionConfig overrides (tuples as comma lists)."""
    import dataclasses

    from ..models.diffusion import DiffusionConfig

    fields = {f.name: f.default for f in dataclasses.fields(DiffusionConfig)}
    out = {}
    for item in items:
        key, eq, text = item.partition("=")
        key = key.strip().replace("-", "_")
        if not eq or key not in fields:
            raise GenlabError(f"--model expects KEY=VALUE with KEY one of {', '.join(fields)}; got '{item}'")
        default, text = fields[key], text.strip()
        try:
            if isinstance(default, tuple):
                out[key] = tuple(int(v) for v in text.split(",") if v.strip())
            elif isinstance(default, bool):
                out[key] = {"true": True, "1": True, "false": False, "0": False}[text.lower()]
            else:
                out[key] = type(default)(text)
        except (ValueError, KeyError) as e:
            raise GenlabError(f"--model {key}: cannot read '{text}' as {type(default).__name__}") from e
    return out


# flags of one mode and their defaults: giving one in the other mode is an error, not silently ignored
SPEED_ONLY = {"batch_size": None, "steps": None, "repeats": None, "compile": "auto", "no_diffusers": False,
              "no_sampling": False, "sample_n": None}
QUALITY_ONLY = {"minutes": 30.0, "n": 2000, "sampler": "auto", "sample_steps": 0, "sample_bf16": False,
                "run_dir": "", "data_dir": "", "draws": 5}
# --precision times the same model as the speed table and takes these of its flags
PRECISION_TAKES = ("batch_size", "steps", "repeats", "sample_n")

# the bench owns these: every recipe gets the same budget, seed and device, and no mid-run grids
BENCH_OWNED = {"epochs", "max_minutes", "max_steps", "sample_every", "device", "seed", "out"}


def recipe_options(path: str) -> tuple[str | None, dict, dict, str]:
    """A `genlab train FAMILY --config` file as (dataset, model options, TrainConfig options, family).

    The family is the file's "family" key (diffusion when it has none).
    """
    import dataclasses

    from ..models import load_all
    from ..train import TrainConfig
    from .options import load_config_file

    file_cfg = load_config_file(path)
    dataset, family = file_cfg.pop("dataset", None), file_cfg.pop("family", "diffusion")
    if family not in ("diffusion", "gan"):
        raise GenlabError(f"config file {path}: the quality bench measures diffusion and gan recipes, not '{family}'")
    config_cls = load_all()[family].Config
    model_fields = {f.name for f in dataclasses.fields(config_cls)}
    train_fields = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(file_cfg) - model_fields - train_fields - BENCH_OWNED)
    if unknown:
        raise GenlabError(f"config file {path}: {', '.join(unknown)} are not {family} model or training options; "
                          f"the quality bench takes the dataset, model and training options of a recipe")
    as_tuple = {f.name for f in dataclasses.fields(config_cls) if isinstance(f.default, tuple)}
    model = {k: tuple(v) if k in as_tuple else v for k, v in file_cfg.items() if k in model_fields}
    train = {k: v for k, v in file_cfg.items() if k in train_fields and k not in BENCH_OWNED}
    return dataset, model, train, family


def command_line(args) -> str:
    """The speed flags that were given, to print above the table."""
    flags = [("--quick", args.quick), ("--no-diffusers", args.no_diffusers), ("--no-sampling", args.no_sampling)]
    parts = ["genlab bench"] + [f for f, on in flags if on] + [f"--model {m}" for m in args.model]
    for name in ("device", "threads", "batch_size", "steps", "repeats", "compile", "sample_n"):
        v = getattr(args, name)
        if v is not None and v != "auto":
            parts.append(f"--{name.replace('_', '-')} {v}")
    return " ".join(parts)


def run(args) -> int:
    threads = torch.get_num_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        return _run(args)
    finally:
        torch.set_num_threads(threads)  # main() may be called in-process (tests): leave torch as it was


def _run_precision(args) -> int:
    """`genlab bench --precision`: measure, then write this device kind's entry of the precision table."""
    from ..bench.precision import PrecisionConfig, quick_precision_config, run_precision

    if args.quality:
        raise GenlabError("--precision and --quality are separate runs; give one of them")
    options = {**QUALITY_ONLY, **{k: v for k, v in SPEED_ONLY.items() if k not in PRECISION_TAKES}}
    given = [f"--{k.replace('_', '-')}" for k, default in options.items() if getattr(args, k) != default]
    given += ["--config"] * bool(args.config)
    if given:
        raise GenlabError(f"{', '.join(given)}: not options of `genlab bench --precision`; leave them out")
    if args.quick and not args.table:
        raise GenlabError("--precision --quick times a tiny model, whose numbers do not belong in the committed "
                          "table; give --table FILE")
    cfg = quick_precision_config(args.device, args.table) if args.quick else \
        PrecisionConfig(device=args.device, table=args.table)
    overrides = {"batch_size": args.batch_size, "steps": args.steps, "repeats": args.repeats,
                 "sample_n": args.sample_n}
    cfg = replace(cfg, **{k: v for k, v in overrides.items() if v is not None})
    if args.model:
        cfg = replace(cfg, model={**cfg.model, **model_options(args.model)})
    cfg = replace(cfg, command=" ".join(["genlab bench --precision"] + ["--quick"] * args.quick
                                        + [f"--model {m}" for m in args.model]
                                        + [f"--{k.replace('_', '-')} {v}" for k, v in overrides.items()
                                           if v is not None]))
    result = run_precision(cfg)
    print()
    print(result["markdown"])
    return 0


def _run(args) -> int:
    from ..bench import QualityConfig, SpeedConfig, quick_config, run_quality, run_speed, write_section
    from ..bench.quality import section_name

    out = Path(args.out)
    results = out / "results.md"
    if args.precision:
        return _run_precision(args)
    if args.table:
        raise GenlabError("--table names the precision table of a `genlab bench --precision` run; add --precision")
    if args.config and not args.quality:
        raise GenlabError("--config names the recipe of a --quality run; the speed table times the default U-Net "
                          "(change it with --model KEY=VALUE)")
    other = QUALITY_ONLY if not args.quality else SPEED_ONLY
    given = [f"--{k.replace('_', '-')}" for k, default in other.items() if getattr(args, k) != default]
    if given and not args.quality:
        raise GenlabError(f"{', '.join(given)}: option(s) of `genlab bench --quality`, which the speed table does "
                          "not use; add --quality or leave them out")
    if given:
        raise GenlabError(f"{', '.join(given)}: option(s) of the speed table, which `genlab bench --quality` does "
                          "not use; leave them out")
    if args.quality:
        if args.quick:
            raise GenlabError("--quality and --quick do not mix: a quick quality run is --quality --minutes 0.5 --n 200")
        dataset, recipe_model, recipe_train, family = (recipe_options(args.config) if args.config
                                                       else (None, {}, {}, "diffusion"))
        cfg = QualityConfig(minutes=args.minutes, n=args.n, draws=args.draws, sampler=args.sampler,
                            steps=args.sample_steps,
                            device=args.device, run_dir=args.run_dir, data_dir=args.data_dir,
                            model=model_options(args.model), sample_bf16=args.sample_bf16, recipe=args.config,
                            recipe_model=recipe_model, train=recipe_train, family=family,
                            **({"dataset": dataset} if dataset else {}))
        result = run_quality(cfg, out)
        name = section_name(cfg)
    else:
        cfg = quick_config(args.device) if args.quick else SpeedConfig(device=args.device)
        if args.model:
            cfg = replace(cfg, model={**cfg.model, **model_options(args.model)})
        overrides = {"batch_size": args.batch_size, "steps": args.steps, "repeats": args.repeats,
                     "sample_n": args.sample_n}
        cfg = replace(cfg, **{k: v for k, v in overrides.items() if v is not None})
        if args.compile != "auto":
            cfg = replace(cfg, compile=args.compile == "on")
        if args.no_diffusers:
            cfg = replace(cfg, diffusers=False)
        if args.no_sampling:
            cfg = replace(cfg, sample_precisions=())
        cfg = replace(cfg, command=command_line(args))
        result = run_speed(cfg)
        name = "speed"
    print()
    print(result["markdown"])
    write_section(results, name, result["markdown"])
    print(f"wrote {results}")
    return 0

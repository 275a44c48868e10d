"""`genlab train FAMILY`: any model family, one loop, flags from config dataclasses."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ..errors import GenlabError
from ..figures.artifacts import has_artifacts, save_artifacts
from ..models import load_all
from ..train import TrainConfig, train
from ..train.checkpoint import WEIGHTS, read_config
from ..train.loop import check_config
from .common import add_data_flags, load_data
from .options import DATA_FILLED, add_dataclass_flags, load_config_file, merge


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="train a model (diffusion, classifier, ae, vae, hvae, discrete, ...)",
                       description="Train a model family with the one genlab training loop.")
    fam = p.add_subparsers(dest="family", metavar="FAMILY", required=True)
    for name, cls in sorted(load_all().items()):
        fp = fam.add_parser(name, help=(cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else name)
        add_data_flags(fp, cls.default_dataset)
        fp.add_argument("--out", default=None, help="run folder (default: runs/<family>-<dataset>)")
        fp.add_argument("--resume", action="store_true", help="continue the run in --out where it stopped")
        fp.add_argument("--config", default=None, help="JSON/TOML file of option -> value (flags override it)")
        fp.set_defaults(model_fields=add_dataclass_flags(fp, cls.Config, f"{name} model"),
                        train_fields=add_dataclass_flags(fp, TrainConfig, "training", skip=(),
                                                         defaults=cls.train_defaults),
                        func=run)


def check_idle_options(cls, args, file_cfg: dict) -> None:
    """Training options this family has no use for may be off (0, --no-hflip), not on: they would do nothing."""
    from ..models.base import GenerativeModel

    why = {} if cls.data_kind == "image" else {"hflip": f"it mirrors images and {args.family} trains on "
                                                        f"{cls.data_kind}"}
    if cls.sample is GenerativeModel.sample:
        why.update(dict.fromkeys(("num_samples", "sample_every"), f"the {args.family} model makes no samples"))
    for name, reason in why.items():
        if getattr(args, name, None) or file_cfg.get(name):
            raise GenlabError(f"--{name.replace('_', '-')} does nothing here ({reason}); leave it out")


def fill_from_data(model_cfg: dict, config_cls, data) -> dict:
    """Set the config fields that describe the data (channels, image size, classes, vocab)."""
    fields = {f.name for f in dataclasses.fields(config_cls)}
    facts = {"channels": data.channels, "image_size": data.image_size, "num_classes": data.num_classes,
             **{k: data.meta[k] for k in DATA_FILLED[3:] if k in data.meta}}
    for k in DATA_FILLED:
        if k in fields and k in facts and facts[k]:
            model_cfg[k] = facts[k]
    return model_cfg


def run(args) -> int:
    from ..models import MODELS, build_model

    cls = MODELS[args.family]
    file_cfg = load_config_file(args.config)
    family = file_cfg.pop("family", args.family)  # a recipe may say which family it is for
    if family != args.family:
        raise GenlabError(f"config file {args.config} is a recipe for `genlab train {family}`, not {args.family}")
    args.out = args.out or file_cfg.pop("out", None)
    stored = read_config(args.out or f"runs/{args.family}-{args.dataset or cls.default_dataset}") if args.resume else {}
    if stored and stored["family"] != args.family:
        raise GenlabError(f"--resume: {args.out} holds a '{stored['family']}' run; continue it with "
                          f"`genlab train {stored['family']} --out {args.out} --resume`")
    args.dataset = (args.dataset or file_cfg.pop("dataset", None) or stored.get("data", {}).get("name")
                    or cls.default_dataset)
    unknown = set(file_cfg) - set(args.model_fields) - set(args.train_fields)
    if unknown:
        raise GenlabError(f"config file {args.config}: unknown option(s) {', '.join(sorted(unknown))}")
    out = Path(args.out or f"runs/{args.family}-{args.dataset}")
    model_base, train_base = {}, dict(cls.train_defaults)
    if args.resume:
        # a resumed run keeps its stored options; flags given now override the training ones
        known = {f.name for f in dataclasses.fields(TrainConfig)}  # a run of another genlab version may have more
        model_base = stored["model"]
        train_base = {**train_base, **{k: v for k, v in stored.get("train", {}).items() if k in known}}
        if args.dataset == stored.get("data", {}).get("name"):
            resume_data_flags(args, stored)
    check_idle_options(cls, args, file_cfg)
    train_cfg = TrainConfig(**merge(TrainConfig, args.train_fields, args, file_cfg, train_base))
    check_config(train_cfg)
    data = load_data(args, args.dataset, "train")
    model_cfg = fill_from_data(merge(cls.Config, args.model_fields, args, file_cfg, model_base), cls.Config, data)
    model = build_model(args.family, model_cfg)
    if not args.resume:  # a stored run keeps its architecture
        check_attention(model_cfg, cls.Config)  # after the model's own checks (image size vs halvings, ...)
    n_params = sum(p.numel() for p in model.parameters())
    shape = f" of {data.channels}x{data.image_size}x{data.image_size}" if data.kind == "image" else ""
    print(f"{args.family}: {n_params / 1e6:.2f}M parameters; {data.name}: {len(data)} items{shape}; run folder {out}")
    if not args.resume and (out / WEIGHTS).exists():  # train() says so too, in Python's words
        raise GenlabError(f"{out} already holds a trained run; pass --resume to continue it or choose another --out")
    result = train(model, data, train_cfg, out, resume=args.resume, meta={"subset": args.subset})
    if result.stopped == "interrupted":
        return 130
    eval_and_artifacts(result, args, out)
    print(f"done: {result.steps} steps in {result.seconds / 60:.1f} min; see {out}")
    return 0


def check_attention(model_cfg: dict, config_cls) -> None:
    """--attn-resolutions that match no feature map of the U-Net / classifier would be silently ignored."""
    defaults = {f.name: f.default for f in dataclasses.fields(config_cls)}
    attn, mult, size = (model_cfg.get(k, defaults.get(k)) for k in ("attn_resolutions", "channel_mult", "image_size"))
    if not attn or not mult or not size:
        return
    sizes = [size // 2 ** i for i in range(len(mult))]
    unknown = [r for r in attn if r not in sizes]
    if unknown:
        hint = ",".join(str(r) for r in sizes[1:] if r <= 16) or str(sizes[-1])
        raise GenlabError(f"--attn-resolutions {','.join(map(str, unknown))} matches no feature map of this "
                          f"{size}x{size} model (its sizes: {','.join(map(str, sizes))}); "
                          f"pass e.g. --attn-resolutions {hint}")


def resume_data_flags(args, stored: dict) -> None:
    """Data flags not given again on --resume: those of the stored run (same images, same batches)."""
    opts = dict(stored.get("data", {}).get("options", {}))
    size, channels, path = opts.pop("image_size", None), opts.pop("channels", None), opts.pop("path", None)
    args.image_size, args.channels = args.image_size or size, args.channels or channels
    args.data_path, args.subset = args.data_path or path, args.subset or stored.get("subset")
    given = {item.split("=", 1)[0].strip() for item in args.data_opt}
    args.data_opt = args.data_opt + [f"{k}={v}" for k, v in opts.items() if k not in given]


def eval_and_artifacts(result, args, out: Path) -> None:
    """After training: the family's own pictures (reconstructions, strips, GIFs, ...)."""
    from ..train import distributed as dist

    model = result.sampling_model
    if not dist.is_main() or not has_artifacts(model):
        return
    try:
        test = load_data(args, args.dataset, "test")
    except GenlabError:
        test = load_data(args, args.dataset, "train")
    for p in save_artifacts(model.eval(), test, out):
        print(f"wrote {p}")

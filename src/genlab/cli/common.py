"""Pieces several commands share: data flags, device, seeds, run folders."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from ..errors import GenlabError


def add_data_flags(p: argparse.ArgumentParser, dataset_default: str | None = None) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--dataset", default=None,
                   help=f"dataset name, see `genlab datasets` (default: {dataset_default or 'none'})")
    g.add_argument("--data-dir", default=None, help="folder holding local dataset copies (or $GENLAB_DATA_DIR)")
    g.add_argument("--data-path", default=None, help="image_folder: a folder or .zip with one sub-folder per class")
    g.add_argument("--image-size", type=int, default=None, help="resize/crop images to this size")
    g.add_argument("--channels", type=int, default=None, choices=(1, 3), help="1 = grey, 3 = RGB")
    g.add_argument("--subset", type=int, default=None, help="use only the first N items (quick experiments)")
    g.add_argument("--data-opt", action="append", default=[], metavar="KEY=VALUE",
                   help="extra dataset option, e.g. --data-opt shape=moons")


def _parse_value(v: str):
    for kind in (int, float):
        try:
            return kind(v)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(v.lower(), v)


def data_options(args) -> dict:
    opts = {}
    for item in args.data_opt:
        if "=" not in item:
            raise GenlabError(f"--data-opt expects KEY=VALUE, got '{item}'")
        k, v = item.split("=", 1)
        opts[k.strip()] = _parse_value(v.strip())
    if args.data_path:
        opts["path"] = args.data_path
    return opts


def load_data(args, name: str, split: str = "train", **overrides):
    from ..data import load_dataset

    kw = dict(image_size=args.image_size, data_dir=args.data_dir, channels=args.channels, **data_options(args))
    kw.update({k: v for k, v in overrides.items() if v is not None})
    kw = {k: v for k, v in kw.items() if v is not None}
    data = load_dataset(name, split=split, **kw)
    data.meta.setdefault("options", {k: v for k, v in kw.items() if k not in ("data_dir",)})
    if args.subset:
        if args.subset <= 0:
            raise GenlabError(f"--subset must be positive, got {args.subset}")
        data = data.subset(slice(0, args.subset))
    return data


def positive(kind=int):
    def parse(text):
        try:
            v = kind(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(f"expected a number, got '{text}'") from e
        if v <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return v
    return parse


def output_path(out: str | None, checkpoint: str, default: str, folder: bool = False) -> Path:
    """--out, or `default` inside the checkpoint's run folder (also for --checkpoint run/model.safetensors).

    folder=True creates it now, before any long sampling, so that a path that cannot be
    written fails at once instead of after the work.
    """
    run = Path(checkpoint)
    path = Path(out) if out else (run.parent if run.is_file() else run) / default
    return make_folder(path) if folder else path


def make_folder(path: str | Path) -> Path:
    """mkdir -p, with one line saying what to do when it cannot be made (a file in the way, no permission)."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise GenlabError(f"cannot create the output folder {path} ({e.strerror}); pass another --out") from e
    return path


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)

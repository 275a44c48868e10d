"""Dataclass fields as command-line flags, and config files.

Every field of a family's Config and of TrainConfig becomes `--field-name`;
flags default to None so that we know which ones the user set, and values
are merged as: dataclass default < config file < command line.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import re
from pathlib import Path

from ..errors import GenlabError

# filled from the dataset, never from flags
DATA_FILLED = ("channels", "image_size", "num_classes", "vocab_size", "seq_len", "data_vocab", "mask_id", "grid",
               "alphabet")


def _tuple_of_ints(text: str) -> tuple:
    try:
        return tuple(int(v) for v in text.replace(" ", "").split(",") if v)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got '{text}'") from e


def field_comments(cls) -> dict[str, str]:
    """The `# comment` after each field in the dataclass source: the flag's help text."""
    try:
        src = inspect.getsource(cls)
    except (OSError, TypeError):
        return {}
    return dict(re.findall(r"^\s+(\w+)\s*:[^#\n]*#\s*(.+)$", src, flags=re.M))


def add_dataclass_flags(parser: argparse.ArgumentParser, cls, title: str, skip=DATA_FILLED, defaults=None) -> list[str]:
    """Add one flag per field of dataclass `cls`; returns the field names added."""
    group = parser.add_argument_group(title)
    names = []
    defaults = defaults or {}
    comments = field_comments(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        default = defaults.get(f.name, f.default)
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        about = comments.get(f.name, "").replace("%", "%%")
        about = f"{about} " if about else ""
        kind = type(default)
        if kind is bool:
            group.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None,
                               help=f"{about}(default: {shown})")
        elif kind is tuple:
            group.add_argument(flag, dest=f.name, type=_tuple_of_ints, default=None, metavar="N,N",
                               help=f"{about}(default: {shown or 'none'})")
        else:
            group.add_argument(flag, dest=f.name, type=kind, default=None,
                               metavar=kind.__name__.upper(), help=f"{about}(default: {shown})")
        names.append(f.name)
    return names


def load_config_file(path: str | None) -> dict:
    """A flat JSON (or TOML) file of option names -> values, e.g. {"epochs": 5, "schedule": "linear"}."""
    if not path:
        return {}
    p = Path(path)
    if not p.exists():
        raise GenlabError(f"config file {p} does not exist")
    try:
        if p.suffix == ".toml":
            import tomllib
            data = tomllib.loads(p.read_text())
        else:
            data = json.loads(p.read_text())
    except Exception as e:  # json and toml raise different types
        raise GenlabError(f"config file {p} could not be parsed: {e}") from e
    if not isinstance(data, dict):
        raise GenlabError(f"config file {p} must hold a mapping of option names to values")
    return {k.replace("-", "_"): v for k, v in data.items()}


def _file_value(cls, name: str, v):
    """A config-file value checked against the field's type, as its flag would parse it."""
    field = {f.name: f for f in dataclasses.fields(cls)}[name]
    kind = type(field.default)
    if isinstance(v, list):
        v = tuple(v)
    ok = (isinstance(v, kind) and (kind is bool or not isinstance(v, bool))
          or kind is float and isinstance(v, int) and not isinstance(v, bool)
          or field.default is None or field.default is dataclasses.MISSING)
    if not ok:
        raise GenlabError(f"config file: option {name} must be {kind.__name__}, got {v!r} "
                          f"(e.g. {name} = {field.default!r})")
    return float(v) if kind is float else v


def merge(cls, names: list[str], args: argparse.Namespace, file_cfg: dict, defaults: dict | None = None) -> dict:
    """Field values for `cls`: defaults, then the config file, then flags the user set."""
    out = dict(defaults or {})
    for n in names:
        if n in file_cfg:
            out[n] = _file_value(cls, n, file_cfg[n])
        if getattr(args, n, None) is not None:
            out[n] = getattr(args, n)
    return out

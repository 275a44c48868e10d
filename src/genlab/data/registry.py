"""The dataset registry: names -> loaders, plus what every loader gets for free.

A loader is a function `loader(split=..., data_dir=..., **its own options)`
returning a TensorDataset. It may also take `image_size`, `channels` and `n`
to handle them natively (shapes renders at any size, image_folder resizes
with PIL); whatever it does not take, `load_dataset` does afterwards in a
generic way: bilinear antialiased resize + centre crop, grey<->RGB, first n.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from ..errors import GenlabError
from .base import TensorDataset


@dataclass
class DatasetInfo:
    """A registered dataset.

    locate(data_dir) -> (path, status) says where its files are, for
    `genlab datasets`; built-in procedural data answers ("", "built-in").
    """

    name: str
    loader: Callable[..., TensorDataset]
    description: str = ""
    kind: str = "image"
    splits: tuple[str, ...] = ("train", "test")
    locate: Callable[[str | Path | None], tuple[str, str]] | None = None
    params: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        self.params = dict(inspect.signature(self.loader).parameters)

    @property
    def takes_any_option(self) -> bool:
        return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in self.params.values())

    def accepts(self, option: str) -> bool:
        return option in self.params or self.takes_any_option

    @property
    def options(self) -> list[str]:
        """Loader-specific options (what `load_dataset(name, **opts)` may pass)."""
        common = {"split", "data_dir", "image_size", "channels", "n"}
        return [k for k, p in self.params.items()
                if k not in common and p.kind is not inspect.Parameter.VAR_KEYWORD]


DATASETS: dict[str, DatasetInfo] = {}


def register_dataset(name: str, loader: Callable | None = None, description: str = "", kind: str = "image",
                     splits: tuple[str, ...] = ("train", "test"), locate: Callable | None = None):
    """Make `load_dataset(name)` call `loader`. Works as a call or as a decorator:

        register_dataset("words", load_words, "English words as letter tokens", kind="tokens")

        @register_dataset("words", description="...", kind="tokens")
        def load_words(split="train", data_dir=None, n=None, seq_len=12): ...
    """
    def add(fn):
        DATASETS[name] = DatasetInfo(name, fn, description, kind, tuple(splits), locate)
        return fn

    return add if loader is None else add(loader)


def load_dataset(name: str, split: str = "train", image_size: int | None = None, data_dir: str | Path | None = None,
                 channels: int | None = None, n: int | None = None, **opts) -> TensorDataset:
    """Load a registered dataset as in-memory tensors.

    image_size: square side in pixels (image kinds); channels: 1 (grey) or 3 (RGB);
    n: at most this many items; data_dir: where to look for / put files
    (default $GENLAB_DATA_DIR, then the download cache); opts: loader options
    such as path=... (image_folder) or shape=... (toy2d).
    """
    info = DATASETS.get(name)
    if info is None:
        raise GenlabError(f"unknown dataset {name!r}; valid names: {', '.join(sorted(DATASETS))}")
    if split not in info.splits:
        raise GenlabError(f"dataset {name} has no split {split!r}; use one of {', '.join(info.splits)}")
    unknown = sorted(k for k in opts if not info.accepts(k))
    if unknown:
        valid = ", ".join(info.options) or "none"
        raise GenlabError(f"unknown option(s) for dataset {name}: {', '.join(unknown)}; valid: {valid}")
    for key, value in (("image_size", image_size), ("channels", channels)):
        if value is not None and info.kind != "image" and not info.accepts(key):
            raise GenlabError(f"dataset {name} holds {info.kind}, not images: drop {key}")
    if image_size is not None and (not isinstance(image_size, int) or image_size < 1):
        raise GenlabError(f"image_size must be a positive integer, got {image_size!r}")
    if channels not in (None, 1, 3):
        raise GenlabError(f"channels must be 1 (grey) or 3 (RGB), got {channels!r}")
    if n is not None and (not isinstance(n, int) or n < 1):
        raise GenlabError(f"n must be a positive integer, got {n!r}")

    kwargs = dict(opts, split=split)
    for key, value in (("data_dir", data_dir), ("image_size", image_size), ("channels", channels), ("n", n)):
        if value is not None and info.accepts(key):
            kwargs[key] = value
    data = info.loader(**kwargs)

    # generic fallbacks for whatever the loader did not do itself
    if n is not None and len(data) > n:
        data = data.subset(slice(0, n))
    if data.kind == "image":
        if image_size is not None and data.x.shape[-2:] != (image_size, image_size):
            data.meta["resized"] = f"{tuple(data.x.shape[-2:])} -> {image_size} (bilinear, antialiased)"
            data.tensors["x"] = resize_images(data.x, image_size)
        if channels is not None and data.channels != channels:
            data.tensors["x"] = convert_channels(data.x, channels)
    data.name = name
    data.meta.setdefault("split", split)
    return data


def resize_images(x: torch.Tensor, size: int, chunk: int = 4096) -> torch.Tensor:
    """uint8 N,C,H,W -> N,C,size,size: scale the shorter side to `size` (bilinear,
    antialiased when shrinking) and centre-crop the longer one."""
    h, w = x.shape[-2:]
    scale = size / min(h, w)
    new_h, new_w = max(size, round(h * scale)), max(size, round(w * scale))
    top, left = (new_h - size) // 2, (new_w - size) // 2
    out = torch.empty(x.shape[0], x.shape[1], size, size, dtype=torch.uint8)
    for i in range(0, x.shape[0], chunk):
        y = F.interpolate(x[i : i + chunk].float(), size=(new_h, new_w), mode="bilinear",
                          align_corners=False, antialias=True)
        out[i : i + chunk] = y[..., top : top + size, left : left + size].round_().clamp_(0, 255).to(torch.uint8)
    return out


# ITU-R BT.601 luma, the weights PIL's convert("L") uses
_LUMA = torch.tensor([0.299, 0.587, 0.114])


def convert_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    """uint8 N,C,H,W grey<->RGB: 1->3 repeats the grey plane, 3->1 takes luma."""
    if x.shape[1] == channels:
        return x
    if channels == 3 and x.shape[1] == 1:
        return x.expand(-1, 3, -1, -1).contiguous()
    if channels == 1 and x.shape[1] == 3:
        grey = torch.einsum("nchw,c->nhw", x.float(), _LUMA)
        return grey.round_().clamp_(0, 255).to(torch.uint8).unsqueeze(1)
    raise GenlabError(f"cannot convert {x.shape[1]}-channel images to {channels} channels")


def list_datasets(data_dir: str | Path | None = None) -> list[dict]:
    """One row per registered dataset: name, kind, description, path, status."""
    rows = []
    for name in sorted(DATASETS):
        info = DATASETS[name]
        path, status = info.locate(data_dir) if info.locate else ("", "built-in")
        rows.append(dict(name=name, kind=info.kind, description=info.description,
                         path=str(path), status=status))
    return rows


def format_datasets_table(rows: list[dict]) -> str:
    """A plain-text table of `list_datasets()` rows (what `genlab datasets` prints)."""
    cols = [("name", "NAME"), ("kind", "KIND"), ("status", "STATUS"), ("path", "WHERE"),
            ("description", "DESCRIPTION")]
    cells = [[h for _, h in cols]] + [[str(r.get(k, "")) or "-" for k, _ in cols] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cols) - 1)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[-1] for row in cells]
    return "\n".join(line.rstrip() for line in lines)

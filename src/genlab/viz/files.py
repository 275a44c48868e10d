"""Samples as files the tools people already trust can read.

- `save_image_files(images, folder, ...)`: one PNG per image (000000.png, 000001.png, ...; grey
  images 8-bit L, colour RGB), the folder layout clean-fid, torch-fidelity and pytorch-fid score,
  then `samples.csv` (index, file, class, prompt, seed), written last so that an interrupted run
  never leaves a CSV listing images that are not there.
- `save_npz(samples, path)`: images (float N,C,H,W in [-1, 1]) -> uint8 N,H,W,C, channel-last, under
  the key `arr_0` (`np.savez(path, arr_0=...)`), the batch the guided-diffusion evaluator reads
  (openai/guided-diffusion, evaluations/evaluator.py); points (float N,D) -> float32 N,D.
- `check_new_folder` / `check_new_file`: refuse to replace earlier results unless asked to.

Every file is written to a temporary name and renamed into place, so none is ever half written.
"""

from __future__ import annotations

import csv
import io
import os
import re
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..errors import GenlabError
from ..pixels import to_uint8_image

CSV_NAME = "samples.csv"
CSV_COLUMNS = ("index", "file", "class", "prompt", "seed")
_CHANNELS = (1, 3, 4)  # PNG modes L, RGB, RGBA
_NUMBERED = re.compile(r"^\.?\d{6,}\.png(\.tmp)?$")  # the names save_image_files writes (and their temporaries)


def check_new_folder(folder: str | Path, overwrite: bool, flag: str = "--save-images") -> Path:
    """The folder, created; GenlabError if it is a file, or holds files and `overwrite` is off."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise GenlabError(f"{flag} {folder} is a file, not a folder; choose a folder name")
    if folder.is_dir() and any(folder.iterdir()) and not overwrite:
        raise GenlabError(f"{flag} {folder} is not empty; pass --overwrite to replace the images there, "
                          f"or choose another folder")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def check_new_file(path: str | Path, overwrite: bool, flag: str = "--npz") -> Path:
    """The path, its folder created; GenlabError if it is a folder, or exists and `overwrite` is off."""
    path = Path(path)
    if path.is_dir():
        raise GenlabError(f"{flag} {path} is a folder; give a file name, e.g. {path / 'samples.npz'}")
    if path.exists() and not overwrite:
        raise GenlabError(f"{flag} {path} already exists; pass --overwrite to replace it, or choose another name")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _replace(data, path: Path) -> Path:
    """Write `data` (bytes, or a function writing to an open binary file) to `path` through a temporary
    name in the same folder, so that no half-written file ever carries the name."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        if isinstance(data, bytes):
            f.write(data)
        else:
            data(f)
    os.replace(tmp, path)
    return path


def _png_bytes(pixels: np.ndarray) -> bytes:
    """One H,W,C uint8 image -> PNG bytes (1 channel: 8-bit grey)."""
    c = pixels.shape[-1]
    if c not in _CHANNELS:
        raise GenlabError(f"cannot write {c}-channel images as PNG (1, 3 or 4 channels); use --npz instead")
    buf = io.BytesIO()
    Image.fromarray(pixels[..., 0] if c == 1 else pixels).save(buf, format="PNG")  # uint8: L, RGB or RGBA
    return buf.getvalue()


def channel_last_uint8(images: torch.Tensor) -> np.ndarray:
    """Images in [-1, 1] (N,C,H,W) -> uint8 N,H,W,C (grey stays N,H,W,1)."""
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        raise GenlabError(f"expected images shaped N,C,H,W, got {getattr(images, 'shape', type(images).__name__)}")
    return to_uint8_image(images.detach().cpu()).permute(0, 2, 3, 1).contiguous().numpy()


def save_image_files(images: torch.Tensor, folder: str | Path, labels: list[int] | None = None,
                     prompts: list[str] | None = None, seed: int | None = None) -> list[Path]:
    """One numbered PNG per image in `folder`, then samples.csv; returns the PNG paths and the CSV's.

    Numbered PNGs of an earlier, larger run in the same folder are removed, so the folder holds
    exactly these images (other files are left alone).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    pixels = channel_last_uint8(images)
    n = len(pixels)
    for name, values in (("labels", labels), ("prompts", prompts)):
        if values is not None and len(values) != n:
            raise GenlabError(f"{len(values)} {name} for {n} images")
    (folder / CSV_NAME).unlink(missing_ok=True)  # no CSV describes the folder while it changes
    width = max(6, len(str(n - 1)))
    names = [f"{i:0{width}d}.png" for i in range(n)]
    paths = [_replace(_png_bytes(p), folder / name) for p, name in zip(pixels, names)]
    keep = set(names)
    for old in folder.iterdir():
        if _NUMBERED.match(old.name) and old.name not in keep:
            old.unlink()
    rows = [(i, names[i], "" if labels is None else int(labels[i]), "" if prompts is None else prompts[i],
             "" if seed is None else seed) for i in range(n)]
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    writer.writerows(rows)
    return paths + [_replace(text.getvalue().encode(), folder / CSV_NAME)]


def save_npz(samples: torch.Tensor, path: str | Path) -> Path:
    """Images -> uint8 N,H,W,C; points -> float32 N,D; saved under `arr_0` (see the module docstring)."""
    if isinstance(samples, torch.Tensor) and samples.dim() == 2 and samples.dtype.is_floating_point:
        arr = samples.detach().cpu().float().numpy()
    else:
        arr = channel_last_uint8(samples)
    return _replace(lambda f: np.savez(f, arr_0=arr), Path(path))

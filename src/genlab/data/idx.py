"""MNIST and Fashion-MNIST from the official IDX files.

IDX format (LeCun et al.): two zero bytes, a type code (0x08 = uint8), the
number of dimensions, one big-endian uint32 per dimension, then the raw
values. Images are 28x28 grey. Every file is checked against the SHA-256 of
its decompressed payload, which holds for the official .gz files and for any
re-compressed or uncompressed copy of them (the shared Fashion-MNIST copy is
re-gzipped), once per process.

image_size between 29 and 32 pads with black borders (28 -> 32 is the usual
way to give MNIST a power-of-two size without touching the digits); other
sizes are resized by `load_dataset`.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import DataError, GenlabError
from .base import TensorDataset
from .download import (FIX_HINT, RemoteFile, download_root, fetch, find_file, hash_bytes, is_verified,
                       mark_verified, offline, search_roots)
from .registry import register_dataset

SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


@dataclass(frozen=True)
class IdxFile:
    archive_sha256: str  # of the official .gz
    payload_sha256: str  # of the decompressed IDX bytes


@dataclass(frozen=True)
class IdxDataset:
    name: str
    title: str
    folders: tuple[str, ...]  # accepted folder names under a data root; the first gets downloads
    mirrors: tuple[str, ...]  # base URLs, tried in order
    files: dict[str, IdxFile]
    classes: tuple[str, ...]

    def remote(self, stem: str) -> RemoteFile:
        name = stem + ".gz"
        return RemoteFile(name, tuple(m + name for m in self.mirrors), sha256=self.files[stem].archive_sha256)


MNIST = IdxDataset(
    name="mnist", title="MNIST",
    folders=("mnist", "MNIST", "MNIST/raw"),
    # yann.lecun.com often refuses downloads now; the PyTorch mirror serves the same bytes
    mirrors=("https://ossci-datasets.s3.amazonaws.com/mnist/", "https://yann.lecun.com/exdb/mnist/"),
    files={
        "train-images-idx3-ubyte": IdxFile("440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
                                           "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"),
        "train-labels-idx1-ubyte": IdxFile("3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
                                           "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"),
        "t10k-images-idx3-ubyte": IdxFile("8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
                                          "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"),
        "t10k-labels-idx1-ubyte": IdxFile("f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
                                          "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"),
    },
    classes=tuple(str(d) for d in range(10)),
)

FASHION_MNIST = IdxDataset(
    name="fashion_mnist", title="Fashion-MNIST",
    folders=("fashion-mnist", "fashion_mnist", "FashionMNIST", "FashionMNIST/raw"),
    mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
    files={
        "train-images-idx3-ubyte": IdxFile("3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
                                           "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"),
        "train-labels-idx1-ubyte": IdxFile("a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
                                           "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"),
        "t10k-images-idx3-ubyte": IdxFile("346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
                                          "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"),
        "t10k-labels-idx1-ubyte": IdxFile("67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
                                          "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"),
    },
    classes=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
             "Ankle boot"),
)


def read_idx(path: Path, payload_sha256: str | None = None) -> np.ndarray:
    """The array in an IDX file (.gz or plain), checked against its payload SHA-256."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"cannot read {path} ({e.strerror}); check its permissions, or {FIX_HINT}") from None
    if path.suffix == ".gz":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise DataError(f"{path} is not a readable gzip file ({e}); it is probably truncated or "
                            f"corrupt: {FIX_HINT}") from None
    if payload_sha256 and not is_verified(path, payload_sha256):
        got = hash_bytes(raw)
        if got != payload_sha256:
            raise DataError(f"checksum mismatch for {path}: decompressed sha256 {got}, expected "
                            f"{payload_sha256} (corrupt or not the official file); {FIX_HINT}")
        mark_verified(path, payload_sha256)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"{path} is not a uint8 IDX file (bad header); {FIX_HINT}")
    ndim = raw[3]
    header = 4 + 4 * ndim
    dims = struct.unpack(f">{ndim}I", raw[4:header]) if len(raw) >= header else ()
    if len(dims) != ndim or len(raw) != header + int(np.prod(dims)):
        raise DataError(f"{path} is truncated: its header promises shape {dims} but it holds "
                        f"{len(raw) - header} values; {FIX_HINT}")
    return np.frombuffer(raw, np.uint8, offset=header).reshape(dims).copy()


def load_idx(spec: IdxDataset, split: str = "train", data_dir=None, image_size: int | None = None,
             download: bool | None = None) -> TensorDataset:
    """A split of an IDX dataset (downloaded if missing and allowed)."""
    if split not in SPLIT_FILES:
        raise GenlabError(f"{spec.name} has splits train and test, not {split!r}")
    download_ok = (not offline()) if download is None else download
    paths = []
    for stem in SPLIT_FILES[split]:
        try:
            paths.append(fetch(spec.remote(stem), spec.folders, data_dir, download_ok,
                               local_names=(stem + ".gz", stem)))
        except DataError as e:
            raise _explain_missing_split(spec, split, data_dir, download_ok, e) from None
    images = read_idx(paths[0], spec.files[SPLIT_FILES[split][0]].payload_sha256)
    labels = read_idx(paths[1], spec.files[SPLIT_FILES[split][1]].payload_sha256)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels) or labels.max() >= len(spec.classes):
        raise DataError(f"{paths[0].name} and {paths[1].name} in {paths[0].parent} do not belong together "
                        f"(shapes {images.shape}, {labels.shape}); {FIX_HINT}")
    x = torch.from_numpy(images).unsqueeze(1)
    if image_size is not None and 28 < image_size <= 32:
        extra = image_size - 28
        x = F.pad(x, (extra // 2, extra - extra // 2, extra // 2, extra - extra // 2))
    return TensorDataset(spec.name, "image", {"x": x, "y": torch.from_numpy(labels.astype(np.int64))},
                         classes=list(spec.classes), meta={"source": str(paths[0].parent)})


def _explain_missing_split(spec: IdxDataset, split: str, data_dir, download_ok: bool, error: DataError):
    """Turn 'file not found' into 'this folder only holds the other split' where that is the case."""
    other = "test" if split == "train" else "train"
    images = _image_files(spec, data_dir)
    found = images[other]
    if found is None or images[split] is not None:
        return error
    files = " and ".join(s + ".gz" for s in SPLIT_FILES[split])
    head = f"{spec.title} {split} split not found in {found.parent} (only the {other} split is there)"
    if download_ok:  # a download was tried and failed: keep its reason
        return DataError(f"{head}; {error}; or use split='{other}'")
    dest = download_root(data_dir) / spec.folders[0]
    return DataError(f"{head}; download it with load_dataset('{spec.name}', split='{split}', download=True) "
                     f"or by unsetting GENLAB_OFFLINE (needs internet; files go to {dest}), or place {files} "
                     f"from {spec.mirrors[0]} in {found.parent}, or use split='{other}'")


def _image_files(spec: IdxDataset, data_dir) -> dict[str, Path | None]:
    """The local images file of each split, or None."""
    roots = search_roots(data_dir)
    return {split: find_file((images + ".gz", images), spec.folders, roots)
            for split, (images, _) in SPLIT_FILES.items()}


def _damaged(spec: IdxDataset, split: str, data_dir) -> str | None:
    """Why a split found on disk cannot be loaded (a missing labels file, a failed checksum), or None."""
    for stem in SPLIT_FILES[split]:
        path = find_file((stem + ".gz", stem), spec.folders, search_roots(data_dir))
        if path is None:
            return f"{stem}.gz missing"
        try:
            read_idx(path, spec.files[stem].payload_sha256)
        except DataError:
            return f"{path.name} corrupt"
    return None


def locate_idx(spec: IdxDataset, data_dir=None) -> tuple[str, str]:
    have = _image_files(spec, data_dir)
    will = f"will download from {spec.mirrors[0]}" if not offline() else "downloads off: GENLAB_OFFLINE"
    damaged = [f"{split} split: {why}" for split in SPLIT_FILES if have[split]
               for why in [_damaged(spec, split, data_dir)] if why]
    if damaged:
        where = have["train"] or have["test"]
        return str(where.parent), f"unusable ({'; '.join(damaged)}): replace the file(s)"
    if have["train"] and have["test"]:
        return str(have["train"].parent), "found"
    if have["train"] or have["test"]:
        split, path = ("train", have["train"]) if have["train"] else ("test", have["test"])
        return str(path.parent), f"found: {split} split only (other {will})"
    return str(download_root(data_dir) / spec.folders[0]), f"missing ({will})"


def load_mnist(split="train", data_dir=None, image_size=None, download=None) -> TensorDataset:
    return load_idx(MNIST, split, data_dir, image_size, download)


def load_fashion_mnist(split="train", data_dir=None, image_size=None, download=None) -> TensorDataset:
    return load_idx(FASHION_MNIST, split, data_dir, image_size, download)


register_dataset("mnist", load_mnist, "handwritten digits, 28x28 grey, 10 classes (60k/10k)",
                 locate=lambda d: locate_idx(MNIST, d))
register_dataset("fashion_mnist", load_fashion_mnist, "Zalando clothing, 28x28 grey, 10 classes (60k/10k)",
                 locate=lambda d: locate_idx(FASHION_MNIST, d))

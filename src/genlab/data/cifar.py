"""CIFAR-10 from the official python archive (Krizhevsky 2009).

cifar-10-python.tar.gz holds pickled dicts data_batch_1..5 (train, 10k each)
and test_batch: "data" is uint8 (10000, 3072), each row the R, G and B
planes of a 32x32 image; "labels" a list of ints. The archive is read in
place (no extraction) after its SHA-256 is checked; an already extracted
`cifar-10-batches-py/` folder (as torchvision leaves it) is read too.

The pickles are loaded with an unpickler that builds numpy arrays and
nothing else, so a tampered file cannot run code.

Fallback: with no official copy but a `cifar10-jpg/<split>.zip` (the JPEG
re-encoded subset in the shared datasets folder) that subset is loaded via
image_folder, and meta["source"] says so. Pass download=True to fetch the
official archive instead.
"""

from __future__ import annotations

import io
import pickle
import tarfile
import zlib
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError, GenlabError
from .base import TensorDataset
from .download import FIX_HINT, RemoteFile, download_root, fetch, find_file, offline, search_roots, verify_file
from .image_folder import load_image_folder
from .registry import register_dataset

ARCHIVE = RemoteFile("cifar-10-python.tar.gz", ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",),
                     sha256="6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
                     md5="c58f30108f718f92721af3b95e74349a")
FOLDERS = ("cifar10", "cifar-10", "CIFAR10", "")  # "" = the data root itself (torchvision's layout)
EXTRACTED = "cifar-10-batches-py"
SUBSET_FOLDER = "cifar10-jpg"
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
BATCHES = {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)}


class _ArrayUnpickler(pickle.Unpickler):
    """Allows exactly the globals a CIFAR batch needs: numpy array reconstruction."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def read_batch(data: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 N,3,32,32, labels int64 N) from one pickled batch."""
    try:
        # latin1 turns the Python 2 byte strings of the official pickles into numpy buffers
        batch = _ArrayUnpickler(io.BytesIO(data), encoding="latin1").load()
        x = np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        y = np.asarray(batch["labels"], dtype=np.int64)
    except (pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError, AttributeError) as e:
        raise DataError(f"{where} is not a CIFAR-10 batch ({type(e).__name__}: {e}); {FIX_HINT}") from None
    if len(x) != len(y) or y.min(initial=0) < 0 or y.max(initial=0) >= len(CLASSES):
        raise DataError(f"{where} has {len(x)} images but {len(y)} labels in range "
                        f"[{y.min(initial=0)}, {y.max(initial=0)}]; {FIX_HINT}")
    return x, y


def read_archive(path: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    wanted = {f"{EXTRACTED}/{b}": b for b in BATCHES[split]}
    found = {}
    try:
        with tarfile.open(path, "r:gz") as tar:
            for member in tar:
                if member.name in wanted:
                    found[wanted[member.name]] = read_batch(tar.extractfile(member).read(), f"{path}:{member.name}")
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        raise DataError(f"{path} is not a readable tar.gz ({e}); it is probably truncated: {FIX_HINT}") from None
    missing = [b for b in BATCHES[split] if b not in found]
    if missing:
        raise DataError(f"{path} lacks {', '.join(missing)}: not the official archive; {FIX_HINT}")
    return _concat([found[b] for b in BATCHES[split]])


def read_extracted(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    parts = []
    for b in BATCHES[split]:
        if not (folder / b).is_file():
            raise DataError(f"{folder / b} is missing; re-extract {ARCHIVE.name} there or delete {folder} "
                            f"so the archive is used")
        parts.append(read_batch((folder / b).read_bytes(), str(folder / b)))
    return _concat(parts)


def _concat(parts):
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def load_cifar10(split: str = "train", data_dir=None, image_size: int | None = None,
                 download: bool | None = None) -> TensorDataset:
    """CIFAR-10: an extracted folder, the archive, the JPEG subset, or a download (in that order).

    download=True skips the JPEG subset and downloads the official archive when it is missing.
    """
    if split not in BATCHES:
        raise GenlabError(f"cifar10 has splits train and test, not {split!r}")
    roots = search_roots(data_dir)
    extracted = find_file((EXTRACTED,), FOLDERS, roots)
    if extracted is not None and extracted.is_dir():
        x, y = read_extracted(extracted, split)
        source = f"{extracted} (extracted official batches)"
    else:
        archive = find_file((ARCHIVE.name,), FOLDERS, roots)
        subset = find_file((f"{split}.zip",), (SUBSET_FOLDER,), roots)
        if archive is None and subset is not None and download is not True:
            return load_jpeg_subset(subset, split, image_size)
        archive = archive or fetch(ARCHIVE, FOLDERS, data_dir, download)
        verify_file(archive, ARCHIVE)
        x, y = read_archive(archive, split)
        source = str(archive)
    return TensorDataset("cifar10", "image", {"x": torch.from_numpy(x), "y": torch.from_numpy(y)},
                         classes=list(CLASSES), meta={"source": source})


def load_jpeg_subset(zip_path: Path, split: str, image_size: int | None = None) -> TensorDataset:
    # the folder, not the zip: its <split>.zip is the split (a zip alone would count as "no test part")
    data = load_image_folder(zip_path.parent, split, image_size=image_size or 32, channels=3)
    if data.classes != list(CLASSES):
        raise DataError(f"{zip_path} has classes {data.classes}, not the CIFAR-10 ones; {FIX_HINT}")
    data.name = "cifar10"
    data.meta["source"] = (f"{zip_path} (JPEG-encoded CIFAR-10 subset, {len(data)} images, not the official "
                           f"archive; put {ARCHIVE.name} in the data dir or pass download=True for the full set)")
    return data


def locate_cifar10(data_dir=None) -> tuple[str, str]:
    roots = search_roots(data_dir)
    official = find_file((EXTRACTED,), FOLDERS, roots) or find_file((ARCHIVE.name,), FOLDERS, roots)
    if official is not None:
        return str(official), "found"
    will = f"will download from {ARCHIVE.urls[0]}" if not offline() else "downloads off: GENLAB_OFFLINE"
    subset = find_file(("train.zip", "test.zip"), (SUBSET_FOLDER,), roots)
    if subset is not None:
        return str(subset.parent), "found: JPEG subset, not the official archive"
    return str(download_root(data_dir) / FOLDERS[0]), f"missing ({will})"


register_dataset("cifar10", load_cifar10, "32x32 colour photos, 10 classes (50k/10k)", locate=locate_cifar10)

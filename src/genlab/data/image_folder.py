"""Your own images: a folder or a .zip with one sub-folder per class.

    my_images/            my_images.zip
      cats/001.png          cats/001.jpg
      dogs/xyz.jpg          dogs/...

Classes are the sub-folder names, sorted; a folder with no sub-folders is one
class. Each image is scaled (shorter side to image_size, bicubic) and centre-
cropped with PIL. Transparent images are composited on white.

Decoding thousands of JPEGs costs seconds, so the decoded arrays are cached
as an .npz in the download cache, keyed by the source's path, size and
modification times and the requested size/channels: any change re-decodes.
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..errors import DataError, GenlabError
from .base import TensorDataset
from .download import cache_dir
from .registry import register_dataset

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
CACHE_VERSION = 2  # 2: class-interleaved order, 16-bit images scaled to 8 bits
# what a broken or foreign file makes PIL / zipfile raise
_READ_ERRORS = (OSError, ValueError, SyntaxError, EOFError, zipfile.BadZipFile, zlib.error,
                Image.DecompressionBombError)


def load_image_folder(path: str | Path | None = None, split: str = "train", image_size: int | None = None,
                      channels: int = 3, cache: bool = True) -> TensorDataset:
    """Images under `path` (a folder or .zip), labelled by sub-folder.

    If `path` holds `<split>.zip` or a `<split>/` folder (e.g. train.zip and
    test.zip), that is used; otherwise every split is all the images, and a test
    split says so (a warning, and meta["note"]), since its metrics are then not
    held-out ones. image_size defaults to the first image's shorter side.
    """
    if path is None:
        raise GenlabError("image_folder needs path=<folder or .zip of images with one sub-folder per class>")
    root = Path(path).expanduser()
    path = _split_source(root, split)
    note = None
    if split != "train" and path == root:
        note = (f"{root} has no {split}/ or {split}.zip part: its '{split}' split is the training images, "
                "so metrics on it are not on held-out data")
        warnings.warn(note, stacklevel=2)
    if channels not in (1, 3):
        raise GenlabError(f"channels must be 1 or 3, got {channels}")
    reader = _ZipImages(path) if path.suffix.lower() == ".zip" else _DirImages(path)
    members = sorted(reader.members)
    if not members:
        raise DataError(f"no images ({', '.join(sorted(IMAGE_EXTENSIONS))}) found in {path}")
    labels_of, classes, prefix = _classes(members, path)
    empty = _empty_class_folders(reader.folders, prefix, classes)
    if empty:
        # they would silently renumber the classes (and differ between a train/ and a test/ part)
        warnings.warn(f"{path}: class folder(s) {', '.join(empty)} hold no images and are left out; the "
                      f"labels 0..{len(classes) - 1} are {', '.join(classes)}", stacklevel=2)
    # interleave the classes (a0 b0 c0 a1 b1 ...) so that "the first N items" (--subset, n=, the
    # first-n test metrics) cover every class instead of the alphabetically first one
    seen, rank = {}, {}
    for m in members:
        rank[m] = seen[labels_of[m]] = seen.get(labels_of[m], -1) + 1
    members.sort(key=lambda m: (rank[m], labels_of[m], m))

    cache_file = None
    if cache:
        key = f"{path.resolve()}|{reader.fingerprint()}|{image_size}|{channels}|{CACHE_VERSION}"
        cache_file = cache_dir() / "image_folder" / f"{path.stem}-{hashlib.sha1(key.encode()).hexdigest()[:16]}.npz"
        hit = _read_cache(cache_file, len(members), classes)
        if hit is not None:
            return _dataset(hit[0], hit[1], classes, path, cache_file, note)

    size = image_size
    x = None
    for i, member in enumerate(members):
        img = decode_image(reader.read(member), f"{path}:{member}" if reader.is_zip else str(path / member),
                           channels)
        if size is None:
            size = min(img.size)
        arr = np.asarray(fit_square(img, size))
        if x is None:
            x = np.empty((len(members), size, size, channels), np.uint8)
        x[i] = arr.reshape(size, size, channels)
    x = x.transpose(0, 3, 1, 2).copy()
    y = np.array([labels_of[m] for m in members], np.int64)
    if cache_file is not None:
        _write_cache(cache_file, x, y, classes)
    return _dataset(x, y, classes, path, cache_file, note)


def decode_image(data: bytes, where: str, channels: int = 3) -> Image.Image:
    """A fully decoded PIL image in mode RGB (channels=3) or L (channels=1)."""
    try:
        img = Image.open(io.BytesIO(data))
        img.load()
        if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
            # 16/32-bit grey: PIL's convert() clips at 255 (a 16-bit PNG turns white); scale to 8 bits
            a = np.asarray(img, dtype=np.float64)
            img = Image.fromarray(np.round(a / (65535.0 if img.mode.startswith("I;16") or a.max() > 255 else 255.0)
                                           * 255).clip(0, 255).astype(np.uint8), "L")
        if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
            rgba = img.convert("RGBA")
            img = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
        return img.convert("RGB" if channels == 3 else "L")
    except _READ_ERRORS as e:
        raise DataError(f"cannot read image {where} ({type(e).__name__}: {e}); delete or replace that "
                        f"file") from None


def fit_square(img: Image.Image, size: int) -> Image.Image:
    """Scale the shorter side to `size` (bicubic) and centre-crop to size x size."""
    w, h = img.size
    if (w, h) != (size, size):
        scale = size / min(w, h)
        w, h = max(size, round(w * scale)), max(size, round(h * scale))
        img = img.resize((w, h), Image.BICUBIC)
    left, top = (w - size) // 2, (h - size) // 2
    return img.crop((left, top, left + size, top + size))


def _split_source(path: Path, split: str) -> Path:
    if not path.exists():
        raise DataError(f"image folder {path} does not exist; pass path=<folder or .zip of images>")
    if path.is_dir():
        for candidate in (path / f"{split}.zip", path / split):
            if candidate.exists():
                return candidate
    return path


class _DirImages:
    is_zip = False

    def __init__(self, root: Path):
        self.root = root
        found = [(p.relative_to(root).as_posix(), p) for p in root.rglob("*")]
        self.members = [m for m, p in found if p.suffix.lower() in IMAGE_EXTENSIONS and not _hidden(m) and p.is_file()]
        self.folders = {m for m, p in found if p.is_dir()}

    def read(self, member: str) -> bytes:
        return (self.root / member).read_bytes()

    def fingerprint(self) -> str:
        h = hashlib.sha1()
        for m in sorted(self.members):
            st = (self.root / m).stat()
            h.update(f"{m}|{st.st_size}|{st.st_mtime_ns}\n".encode())
        return h.hexdigest()


class _ZipImages:
    is_zip = True

    def __init__(self, path: Path):
        self.path = path
        try:
            self.zip = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError) as e:
            raise DataError(f"{path} is not a readable zip file ({e}); it is probably truncated: "
                            f"download it again or point path= at a good copy") from None
        self.members = [i.filename for i in self.zip.infolist() if not i.is_dir()
                        and Path(i.filename).suffix.lower() in IMAGE_EXTENSIONS and not _hidden(i.filename)]
        # zips need not hold entries for folders: every parent of every entry is one
        names = [i.filename.rstrip("/").split("/") for i in self.zip.infolist()]
        self.folders = {"/".join(n[:k]) for n in names for k in range(1, len(n))}
        self.folders |= {i.filename.rstrip("/") for i in self.zip.infolist() if i.is_dir()}

    def read(self, member: str) -> bytes:
        try:
            return self.zip.read(member)
        except _READ_ERRORS as e:
            raise DataError(f"cannot read image {self.path}:{member} from the zip ({e}); the archive is "
                            f"corrupt: download it again or point path= at a good copy") from None

    def fingerprint(self) -> str:
        st = self.path.stat()
        return f"{st.st_size}|{st.st_mtime_ns}"


def _hidden(member: str) -> bool:
    return any(part.startswith(".") or part == "__MACOSX" for part in member.split("/"))


def _classes(members: list[str], path: Path) -> tuple[dict[str, int], list[str], list[str]]:
    """Label per member from its first folder; single wrapping folders are skipped (returned as the prefix)."""
    parts, prefix = [m.split("/") for m in members], []
    while all(len(p) >= 3 for p in parts) and len({p[0] for p in parts}) == 1:
        prefix.append(parts[0][0])
        parts = [p[1:] for p in parts]
    loose = [m for m, p in zip(members, parts) if len(p) == 1]
    if len(loose) == len(members):
        return {m: 0 for m in members}, [path.stem], prefix
    if loose:
        raise DataError(f"{path} has images both in class sub-folders and at the top level (e.g. {loose[0]}); "
                        f"move the loose images into a class folder")
    classes = sorted({p[0] for p in parts})
    index = {c: i for i, c in enumerate(classes)}
    return {m: index[p[0]] for m, p in zip(members, parts)}, classes, prefix


def _empty_class_folders(folders: set[str], prefix: list[str], classes: list[str]) -> list[str]:
    """Folders beside the class folders that hold no images (hidden ones aside)."""
    level = {f.split("/")[len(prefix)] for f in folders
             if f.split("/")[:len(prefix)] == prefix and len(f.split("/")) > len(prefix)}
    if len(classes) == 1 and not level & set(classes):  # loose images: no class folders at all
        return []
    return sorted(c for c in level - set(classes) if not _hidden(c))


def _read_cache(file: Path, n: int, classes: list[str]):
    """(x, y) from a cache file that matches, else None (a broken cache is simply rebuilt)."""
    try:
        with np.load(file, allow_pickle=False) as z:
            x, y, cached_classes = z["x"], z["y"], z["classes"].tolist()
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError):
        return None
    if len(x) != n or len(y) != n or cached_classes != classes:
        return None
    return x, y


def _write_cache(file: Path, x: np.ndarray, y: np.ndarray, classes: list[str]) -> None:
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        tmp = file.with_name(f"{file.stem}.{os.getpid()}.tmp.npz")
        np.savez(tmp, x=x, y=y, classes=np.array(classes))
        os.replace(tmp, file)
    except OSError:
        pass  # a read-only cache only costs speed


def _dataset(x, y, classes, path: Path, cache_file: Path | None, note: str | None = None) -> TensorDataset:
    meta = {"source": str(path), **({"note": note} if note else {})}
    if cache_file is not None:
        meta["cache"] = str(cache_file)
    return TensorDataset("image_folder", "image", {"x": torch.from_numpy(x), "y": torch.from_numpy(y)},
                         classes=list(classes), meta=meta)


register_dataset("image_folder", load_image_folder,
                 "your images: path=<folder or .zip> with one sub-folder per class",
                 locate=lambda d: ("", "needs path=<folder or .zip>"))

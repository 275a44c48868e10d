"""Finding dataset files on disk, and fetching them with checksums when they are not.

Where files are looked for, in order:
  1. the `data_dir` argument (CLI `--data-dir`), else $GENLAB_DATA_DIR;
  2. the download cache, $GENLAB_CACHE or ~/.cache/genlab/data.
Downloads go to `data_dir` when one was given, else to the cache, so a
read-only shared copy (GENLAB_DATA_DIR) is never written to.

Downloading is on unless GENLAB_OFFLINE=1 (what the tests set) or a loader
gets `download=False`. Every file is checked against a published checksum
before it is used; a mismatch is an error, never a warning, so nothing
silently trains on a corrupt or foreign file.
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError

FIX_HINT = ("delete it so that it is downloaded again, or point --data-dir / GENLAB_DATA_DIR "
            "at a folder with a good copy")


@dataclass(frozen=True)
class RemoteFile:
    """One file of a public dataset: where it comes from and what it must hash to.

    sha256/md5: checksum of the file as published (the .gz or .tar.gz bytes);
    either is enough to verify a download.
    """

    name: str
    urls: tuple[str, ...]
    sha256: str = ""
    md5: str = ""


def cache_dir() -> Path:
    """Where downloads go when no data_dir is given."""
    env = os.environ.get("GENLAB_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "genlab" / "data"


def offline() -> bool:
    """True when GENLAB_OFFLINE is set to anything but "" or "0"."""
    return os.environ.get("GENLAB_OFFLINE", "") not in ("", "0")


def search_roots(data_dir: str | Path | None = None) -> list[Path]:
    """Folders that may hold dataset folders, most specific first."""
    first = data_dir if data_dir is not None else os.environ.get("GENLAB_DATA_DIR")
    roots = [Path(first).expanduser()] if first else []
    roots.append(cache_dir())
    unique = []
    for r in roots:
        if r not in unique:
            unique.append(r)
    return unique


def download_root(data_dir: str | Path | None = None) -> Path:
    """Where a download is written: the explicit data_dir, else the cache."""
    return Path(data_dir).expanduser() if data_dir is not None else cache_dir()


def find_file(names: tuple[str, ...], folders: tuple[str, ...], roots: list[Path]) -> Path | None:
    """First existing <root>/<folder>/<name>, trying roots, then folders, then names."""
    for root in roots:
        for folder in folders:
            for name in names:
                p = root / folder / name
                if p.exists():
                    return p
    return None


def hash_bytes(data: bytes, algorithm: str = "sha256") -> str:
    return hashlib.new(algorithm, data).hexdigest()


def hash_file(path: Path, algorithm: str = "sha256") -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# Files already verified in this process, keyed so that a changed file is checked again.
_VERIFIED: set[tuple] = set()


def file_key(path: Path) -> tuple:
    st = path.stat()
    return (str(path.resolve()), st.st_size, st.st_mtime_ns)


def is_verified(path: Path, expected: str) -> bool:
    return (*file_key(path), expected) in _VERIFIED


def mark_verified(path: Path, expected: str) -> None:
    _VERIFIED.add((*file_key(path), expected))


def verify_file(path: Path, remote: RemoteFile) -> None:
    """Check a whole file against its published checksum (memoised per process)."""
    algorithm, expected = ("sha256", remote.sha256) if remote.sha256 else ("md5", remote.md5)
    if not expected or is_verified(path, expected):
        return
    got = hash_file(path, algorithm)
    if got != expected:
        raise DataError(f"checksum mismatch for {path}: {algorithm} {got}, expected {expected} "
                        f"(corrupt or not the official file); {FIX_HINT}")
    mark_verified(path, expected)


def download(remote: RemoteFile, dest_dir: Path) -> Path:
    """Fetch `remote` into dest_dir, verifying its checksum; DataError if every mirror fails."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / remote.name
    part = dest.with_name(dest.name + ".part")
    algorithm, expected = ("sha256", remote.sha256) if remote.sha256 else ("md5", remote.md5)
    failures = []
    for url in remote.urls:
        print(f"genlab: downloading {url} -> {dest}", flush=True)
        h = hashlib.new(algorithm)
        try:
            request = urllib.request.Request(url, headers={"User-Agent": "genlab"})
            with urllib.request.urlopen(request, timeout=30) as response, open(part, "wb") as f:
                for chunk in iter(lambda: response.read(1 << 20), b""):
                    h.update(chunk)
                    f.write(chunk)
        except (urllib.error.URLError, OSError) as e:
            failures.append(f"{url} ({getattr(e, 'reason', e)})")
            part.unlink(missing_ok=True)
            continue
        if expected and h.hexdigest() != expected:
            failures.append(f"{url} (checksum mismatch: {algorithm} {h.hexdigest()}, expected {expected})")
            part.unlink(missing_ok=True)
            continue
        os.replace(part, dest)
        mark_verified(dest, expected)
        return dest
    raise DataError(f"could not download {remote.name}: tried {'; '.join(failures)}. "
                    f"Download it yourself and place it in {dest_dir}, or point --data-dir / "
                    f"GENLAB_DATA_DIR at a folder that has it")


def fetch(remote: RemoteFile, folders: tuple[str, ...], data_dir=None, download_ok: bool | None = None,
          local_names: tuple[str, ...] | None = None) -> Path:
    """Path of `remote`: an existing local copy, else a verified download.

    folders: accepted folder names under each search root ("" = the root itself);
    the first one is where a download goes. local_names: accepted file names
    (default: remote.name). The caller verifies local copies (their bytes may
    differ from the published file, e.g. a re-gzipped IDX file).
    """
    found = find_file(local_names or (remote.name,), folders, search_roots(data_dir))
    if found is not None:
        return found
    dest_dir = download_root(data_dir) / folders[0]
    searched = ", ".join(str(r / folders[0]) for r in search_roots(data_dir))
    if download_ok is None:
        download_ok = not offline()
    if not download_ok:
        why = "GENLAB_OFFLINE is set" if offline() else "download=False"
        raise DataError(f"{remote.name} not found (looked in {searched}) and downloading is off ({why}). "
                        f"Download {remote.urls[0]} and place it in {dest_dir}, or point --data-dir / "
                        f"GENLAB_DATA_DIR at a folder that has {folders[0]}/{remote.name}")
    return download(remote, dest_dir)

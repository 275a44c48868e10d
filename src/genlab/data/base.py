"""In-memory datasets and a batch loader with no per-sample Python.

Every dataset in genlab is small enough to live in memory as tensors, so a
dataset is a dict of tensors that share their first dimension plus a little
metadata. Images are stored as uint8 (N, C, H, W) and turned into floats in
[-1, 1] a whole batch at a time, which keeps the data pipeline far faster than
the model on any machine we target.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..errors import ParamError
from ..pixels import to_float_image, to_uint8_image  # noqa: F401  (re-exported: genlab.data.base)


@dataclass
class TensorDataset:
    """Tensors sharing their first dimension, plus what a model needs to know.

    kind: "image" (x: uint8 N,C,H,W), "points" (x: float N,D) or
          "tokens" (x: int64 N,L).
    tensors: "x" always; "y" (int64 labels) where the data has classes.
    captions: one string per item where the data has them.
    meta: free-form facts (vocab, pad id, source path, ...).
    """

    name: str
    kind: str
    tensors: dict[str, torch.Tensor]
    classes: list[str] = field(default_factory=list)
    captions: list[str] | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        n = {k: v.shape[0] for k, v in self.tensors.items()}
        if len(set(n.values())) > 1:
            raise ValueError(f"tensors of different lengths in dataset {self.name}: {n}")
        if self.kind == "image" and self.x.dtype != torch.uint8:
            raise ValueError("image datasets store uint8 pixels")

    @property
    def x(self) -> torch.Tensor:
        return self.tensors["x"]

    @property
    def y(self) -> torch.Tensor | None:
        return self.tensors.get("y")

    def __len__(self) -> int:
        return self.x.shape[0]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def channels(self) -> int:
        return self.x.shape[1] if self.kind == "image" else 0

    @property
    def image_size(self) -> int:
        return self.x.shape[-1] if self.kind == "image" else 0

    def subset(self, index: torch.Tensor | slice) -> "TensorDataset":
        caps = None
        if self.captions is not None:
            idx = range(len(self))[index] if isinstance(index, slice) else index.tolist()
            caps = [self.captions[i] for i in idx]
        return TensorDataset(self.name, self.kind, {k: v[index] for k, v in self.tensors.items()},
                             self.classes, caps, dict(self.meta))

    def __getitem__(self, i: int):
        """(x, y) for one item, x decoded like a batch (images in [-1, 1])."""
        x = decode(self.kind, self.x[i : i + 1])[0]
        y = self.y[i] if self.y is not None else torch.tensor(-1)
        return x, y

    def batch(self, index: torch.Tensor) -> dict[str, torch.Tensor]:
        out = {k: v[index] for k, v in self.tensors.items()}
        out["x"] = decode(self.kind, out["x"])
        if "image" in out:  # an image condition (InstructPix2Pix, Pix2Pix) is stored and decoded like x
            out["image"] = decode("image", out["image"])
        return out


def decode(kind: str, x: torch.Tensor) -> torch.Tensor:
    return to_float_image(x) if kind == "image" and x.dtype == torch.uint8 else x


class BatchLoader:
    """Yields dict batches from a TensorDataset: one gather per batch, no workers.

    Shuffling uses its own generator, seeded per epoch, so a resumed run sees
    exactly the batches the uninterrupted run would have seen.
    `hflip` mirrors half of each image batch (augmentation for natural images).
    `rank`/`world_size` give each data-parallel process its own slice.
    """

    def __init__(self, data: TensorDataset, batch_size: int, shuffle: bool = True,
                 drop_last: bool = True, seed: int = 0, hflip: bool = False,
                 device: torch.device | str = "cpu", rank: int = 0, world_size: int = 1):
        if batch_size <= 0:
            raise ParamError("batch_size", f"must be positive, got {batch_size}")
        self.data, self.batch_size, self.shuffle = data, batch_size, shuffle
        self.drop_last, self.seed, self.hflip = drop_last, seed, hflip
        self.device, self.rank, self.world_size = torch.device(device), rank, world_size
        self.epoch = 0
        n = len(data) // world_size
        if n == 0 or (drop_last and n < batch_size):
            raise ParamError("batch_size", f"{batch_size} is too large: dataset {data.name} has {len(data)} items, "
                             f"fewer than one batch of {batch_size} per process; lower it")

    def __len__(self) -> int:
        n = len(self.data) // self.world_size
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        return self.iter_from(0)

    def iter_from(self, start: int):
        """Batches of the current epoch from batch index `start` on (used to resume mid-epoch)."""
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        n = len(self.data)
        order = torch.randperm(n, generator=g) if self.shuffle else torch.arange(n)
        flips = torch.rand(len(self), self.batch_size, generator=g) < 0.5  # drawn up front: resumable
        per = n // self.world_size
        order = order[self.rank * per : (self.rank + 1) * per]
        for b in range(start, len(self)):
            idx = order[b * self.batch_size : (b + 1) * self.batch_size]
            batch = self.data.batch(idx)
            if self.hflip and self.data.kind == "image":
                flip = flips[b, : len(idx), None, None, None]
                for k in ("x", "image") if "image" in batch else ("x",):  # an image condition flips with x
                    batch[k] = torch.where(flip, batch[k].flip(-1), batch[k])
            yield {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}

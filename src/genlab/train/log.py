"""The loss log: device-side sums of every named scalar, read once per log interval, and loss.csv.

The hot path never calls `.item()`: `add` sums tensors on the device and
`mean` syncs them (and averages over ranks) once, every `log_every` steps.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..errors import GenlabError
from ..viz.plots import plot_loss
from . import distributed as dist


class Accumulator:
    """Sums of the logged scalars since the last read; a name missing on some steps (a generator
    updated every n_critic steps) is averaged over the steps that logged it."""

    def __init__(self):
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}

    def add(self, logs: dict[str, torch.Tensor]) -> None:
        for k, v in logs.items():
            v = v.detach().float()
            self.sums[k] = self.sums[k] + v if k in self.sums else v.clone()
            self.counts[k] = self.counts.get(k, 0) + 1

    def __bool__(self) -> bool:
        return bool(self.sums)

    def mean(self) -> dict[str, float]:
        """The means since the last read (one device sync, averaged over ranks); resets the sums."""
        names = list(self.sums)
        values = torch.stack([self.sums[k] / self.counts[k] for k in names])
        values = dist.all_reduce_mean(values).tolist()
        self.sums, self.counts = {}, {}
        return dict(zip(names, values))


def check_finite(values: dict[str, float], step: int, epoch: int, where: str) -> None:
    for name, v in values.items():
        if not math.isfinite(v):
            raise GenlabError(f"the {name} became {v} at step {step} (epoch {epoch}){where}. "
                              "Try a lower --lr, --grad-clip 1.0 or --precision fp32")


class LossLog:
    """loss.csv in the run folder: one row per log interval (rank 0 only), and its plot loss.png."""

    def __init__(self, path: Path | None, resume_step: int):
        self.path, self.rows = path, []
        if path is not None and path.exists() and resume_step > 0:
            try:
                with open(path) as f:  # drop rows written after the checkpoint we resume from
                    self.rows = [r for r in csv.DictReader(f) if int(r["step"]) <= resume_step]
            except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError, csv.Error) as e:
                # the log is a by-product: keep the damaged file aside and go on with a new one
                path.replace(path.with_name(path.name + ".damaged"))
                self.rows = []
                tqdm.write(f"{path} is unreadable ({e}); kept as {path.name}.damaged, a new log starts here")

    def add(self, row: dict) -> None:
        self.rows.append({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})

    def flush(self) -> None:
        if self.path is None or not self.rows:
            return
        keys = list(dict.fromkeys(k for r in self.rows for k in r))
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=keys)
            w.writeheader()
            w.writerows(self.rows)
        tmp.replace(self.path)
        plot_loss(self.path, self.path.with_suffix(".png"))

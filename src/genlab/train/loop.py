"""The one training loop. Every model family trains here.

A family supplies `train_step` (by default: one optimizer step on `loss(batch)`)
and `sample(n)`; this loop supplies the rest: AdamW per declared optimizer with
warm-up and LR schedule, gradient clipping, EMA, bf16 autocast, channels_last,
optional torch.compile and gradient checkpointing, a time budget, loss logs and
plots, sample grids, atomic checkpoints with exact resume, NaN detection and
DDP under torchrun.

    run = Run(model, data, cfg, out_dir, resume)     # set up, or resume from the run folder
    for each epoch, for each batch:
        logs = model.train_step(batch, step, ctx)    # the family's update(s)
        ema.update(model); log; check the budgets
        (checkpoint and sample grid every few epochs)
    checkpoint; final sample grid
"""

from __future__ import annotations

import math
import random
import signal
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..data.base import BatchLoader, TensorDataset
from ..errors import GenlabError, ParamError
from ..viz.samples import save_samples
from . import distributed as dist
from .checkpoint import WEIGHTS, nonfinite, save_checkpoint
from .config import TrainConfig
from ..device import pick_device, use_bf16, use_channels_last
from .ema import EMA
from .log import Accumulator, LossLog, check_finite
from .optim import build_optimizers, lr_factor, set_lr
from .state import RunState, resume_run, rng_state, training_state
from .step import StepContext

__all__ = ["TrainResult", "train", "check_config", "lr_factor"]


@dataclass
class TrainResult:
    model: torch.nn.Module
    ema: torch.nn.Module | None
    history: list[dict] = field(default_factory=list)
    out_dir: Path | None = None
    stopped: str = "done"           # done | time | steps | interrupted
    steps: int = 0
    seconds: float = 0.0

    @property
    def sampling_model(self):
        return self.ema if self.ema is not None else self.model


def train(model, data: TensorDataset, cfg: TrainConfig | None = None, out_dir: str | Path | None = None,
          resume: bool = False, meta: dict | None = None) -> TrainResult:
    """Train `model` (a GenerativeModel) on `data`; write the run folder `out_dir` (if given).

    resume=True continues the checkpoint in out_dir exactly where it stopped
    (same batches, same noise, same optimizer states).
    """
    return Run(model, data, cfg or TrainConfig(), out_dir, resume, meta).fit()


def check_config(cfg: TrainConfig) -> None:
    """ParamError naming the first bad field (the CLI words it as its flag: epochs -> --epochs)."""
    if cfg.epochs <= 0:
        raise ParamError("epochs", f"must be at least 1, got {cfg.epochs}")
    if cfg.batch_size <= 0:
        raise ParamError("batch_size", f"must be positive, got {cfg.batch_size}")
    if not cfg.lr > 0:
        raise ParamError("lr", f"must be positive, got {cfg.lr}")
    if cfg.lr_schedule not in ("constant", "cosine"):
        raise ParamError("lr_schedule", f"'{cfg.lr_schedule}' is unknown; choose constant or cosine")
    if not 0 <= cfg.ema_decay < 1:
        raise ParamError("ema_decay", f"must be in [0, 1), got {cfg.ema_decay}")
    if cfg.channels_last not in ("auto", "on", "off"):
        raise ParamError("channels_last", f"must be auto, on or off, got {cfg.channels_last}")
    for name in ("max_minutes", "max_steps"):
        if getattr(cfg, name) < 0:
            raise ParamError(name, f"must be >= 0 (0: no limit), got {getattr(cfg, name)}")
    if cfg.log_every <= 0:
        raise ParamError("log_every", f"must be at least 1, got {cfg.log_every}")
    if cfg.num_samples < 0:
        raise ParamError("num_samples", f"must be >= 0 (0: no sample grids), got {cfg.num_samples}")


def check_inputs(model, data: TensorDataset, cfg: TrainConfig, out: Path | None, resume: bool) -> None:
    check_config(cfg)
    if out is not None and not resume and (out / WEIGHTS).exists():
        raise GenlabError(f"{out} already holds a trained run; resume it (resume=True) or choose another folder")
    if data.kind != model.data_kind:
        raise GenlabError(f"the {model.family} model trains on {model.data_kind} data, but dataset "
                          f"{data.name} holds {data.kind}")
    if cfg.hflip and data.kind != "image":
        raise ParamError("hflip", f"mirrors images; dataset {data.name} holds {data.kind}")


def make_run_folder(out: Path) -> None:
    """Fail now, not after an epoch of training, when the run folder cannot be written."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test.tmp"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:  # --out names a file, or a folder that cannot be made or written (read-only)
        raise ParamError("out", f"{out}: cannot write the run folder there ({e.strerror}); choose another folder") from e


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def data_meta(data: TensorDataset) -> dict:
    return {"name": data.name, "kind": data.kind, "classes": data.classes,
            "channels": data.channels, "image_size": data.image_size,
            "options": data.meta.get("options", {})}


def wrap(model, cfg: TrainConfig, device: torch.device, world: int):
    """The forward the loop calls: the model's loss, under DDP and torch.compile when asked.

    A family with its own train_step is not wrapped in DDP (it calls its networks
    directly): its gradients are averaged over ranks in StepContext.step instead.
    """
    if model.custom_step:
        if cfg.compile:
            for child in model.children():  # in place: parameter names, and so checkpoints, stay the same
                child.compile()
        return model
    net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    return torch.compile(net) if cfg.compile else net


class _InterruptFlag:
    """Ctrl-C / SIGTERM finish the current step, then stop with a checkpoint; a second one aborts."""

    def __init__(self):
        self.flag, self.previous = False, {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum, frame):
        if self.flag:
            raise KeyboardInterrupt
        self.flag = True

    def restore(self):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


class Run:
    """One training run: set-up (or resume) in __init__, then `fit`."""

    def __init__(self, model, data: TensorDataset, cfg: TrainConfig, out_dir, resume: bool, meta: dict | None):
        self.out = Path(out_dir) if out_dir is not None else None
        check_inputs(model, data, cfg, self.out, resume)
        self.model, self.cfg = model, cfg
        self.device = pick_device(cfg.device)
        self.rank, world = dist.setup(self.device)
        self.main = self.rank == 0
        seed_everything(cfg.seed + self.rank)
        bf16 = use_bf16(cfg.precision, self.device)
        self.channels_last = data.kind == "image" and use_channels_last(cfg.channels_last, self.device)
        model.to(self.device, memory_format=torch.channels_last) if self.channels_last else model.to(self.device)
        if cfg.grad_checkpoint:
            model.set_grad_checkpointing(True)
        self.loader = BatchLoader(data, cfg.batch_size, seed=cfg.seed, hflip=cfg.hflip, device=self.device,
                                  rank=self.rank, world_size=world)
        self.total_steps = cfg.epochs * len(self.loader)
        if cfg.max_steps:
            self.total_steps = min(self.total_steps, cfg.max_steps)
        self.optimizers, params = build_optimizers(model.optimizers(), cfg, self.device)
        self.ema = EMA(model, cfg.ema_decay, cfg.ema_warmup, model.ema_networks) if cfg.ema_decay > 0 else None
        self.state = (resume_run(self.out, model, self.optimizers, self.ema, cfg, self.rank) if resume
                      else RunState())
        self.ctx = StepContext(wrap(model, cfg, self.device, world), self.optimizers, params, cfg, self.device,
                               bf16, sync_grads=model.custom_step and world > 1)
        self.log = LossLog(self.out / "loss.csv" if (self.out is not None and self.main) else None,
                           self.state.step if resume else 0)
        self.meta = {"train": asdict(cfg), "data": data_meta(data), **(meta or {})}
        if self.out is not None and self.main:
            make_run_folder(self.out)
        self.gen = torch.Generator(device="cpu").manual_seed(cfg.seed)  # sample grids: the same noise every time
        self.acc = Accumulator()
        self.start_time, self.first_step = time.time(), self.state.step

    def elapsed(self) -> float:
        return self.state.seconds_before + time.time() - self.start_time

    def fit(self) -> TrainResult:
        cfg, s = self.cfg, self.state
        stopped = self.spent_budget() if s.step > 0 else "done"  # a resumed run that had used its budget
        # under a time budget the step total is unknown until the rate is measured (a few steps in)
        self.bar = tqdm(total=None if cfg.max_minutes else self.total_steps, initial=s.step, unit="step",
                        disable=not (cfg.progress and self.main), dynamic_ncols=True, mininterval=1.0)
        interrupted = _InterruptFlag()
        self.model.train()
        try:
            while s.epoch < cfg.epochs and stopped == "done":
                self.loader.set_epoch(s.epoch)
                for batch in self.loader.iter_from(s.batch_in_epoch):
                    self.train_batch(batch)
                    stopped = self.spent_budget()
                    if stopped == "done" and interrupted.flag:
                        stopped = "interrupted"
                    if stopped != "done":
                        break
                else:
                    self.end_epoch()
            self.checkpoint()
            if stopped != "interrupted":
                self.save_samples("samples.png")
        except BaseException:
            try:  # keep the rows logged so far, but never hide the error that stopped training
                self.log.flush()
            except Exception:
                pass
            raise
        else:
            self.log.flush()
        finally:
            interrupted.restore()
            self.bar.close()
        return self.finish(stopped)

    def train_batch(self, batch: dict) -> None:
        """One step: the family's update(s), the EMA, the log; then the progress bar's estimate."""
        s, cfg = self.state, self.cfg
        if self.channels_last:
            batch["x"] = batch["x"].contiguous(memory_format=torch.channels_last)
        set_lr(self.optimizers, lr_factor(s.step, cfg, self.total_steps))
        self.acc.add(self.model.train_step(batch, s.step, self.ctx))
        if self.ema is not None:
            self.ema.update(self.model)
        s.step, s.batch_in_epoch = s.step + 1, s.batch_in_epoch + 1
        self.bar.update(1)
        if s.step % cfg.log_every == 0:
            self.flush_log()
        if cfg.max_minutes and (s.step % cfg.log_every == 0 or s.step == self.first_step + 10):
            # the bar's total: the steps the time budget allows at the rate so far
            rate = (s.step - self.first_step) / (time.time() - self.start_time)
            self.bar.total = min(self.total_steps, s.step + int(rate * (60 * cfg.max_minutes - self.elapsed())) + 1)
            self.bar.refresh()

    def end_epoch(self) -> None:
        s, cfg = self.state, self.cfg
        s.epoch, s.batch_in_epoch = s.epoch + 1, 0
        if cfg.checkpoint_every and s.epoch % cfg.checkpoint_every == 0:
            self.checkpoint()
        if cfg.sample_every and s.epoch % cfg.sample_every == 0 and s.epoch < cfg.epochs:
            self.save_samples(f"samples/epoch_{s.epoch:03d}.png")

    def spent_budget(self) -> str:
        """'steps' or 'time' once a budget is used up (also right at the start of a resumed run), else 'done'."""
        if self.cfg.max_steps and self.state.step >= self.cfg.max_steps:
            return "steps"
        if self.cfg.max_minutes and self.elapsed() >= 60 * self.cfg.max_minutes:
            return "time"
        return "done"

    def flush_log(self) -> None:
        if not self.acc:
            return
        s = self.state
        values = self.acc.mean()
        saved = self.out is not None and (self.out / WEIGHTS).exists()
        where = (f"; the last good checkpoint in {self.out} is kept" if saved
                 else "; no checkpoint was written yet" if self.out is not None else "")
        if not all(math.isfinite(v) for v in values.values()):
            where = self.blown_networks() + where
        check_finite(values, s.step, s.epoch + (s.batch_in_epoch > 0), where)  # at an epoch's end epoch counts it
        factor = lr_factor(s.step, self.cfg, self.total_steps)  # the rate(s) the next step uses
        lrs = {("lr" if len(self.optimizers) == 1 else f"lr_{k}"): o.param_groups[0]["base_lr"] * factor
               for k, o in self.optimizers.items()}
        self.log.add({"step": s.step, "epoch": round(s.epoch + s.batch_in_epoch / len(self.loader), 3), **values,
                      **lrs, "seconds": round(self.elapsed(), 2)})
        self.bar.set_postfix({k: f"{v:.4f}" for k, v in list(values.items())[:3]}, refresh=False)

    def checkpoint(self) -> None:
        self.flush_log()
        if self.out is None:
            return
        if nonfinite(self.model.named_parameters()):
            raise GenlabError(f"the weights became inf/NaN at step {self.state.step}{self.blown_networks()}; not "
                              f"saving them over the checkpoint in {self.out}. Try a lower --lr, --grad-clip 1.0 or "
                              "--precision fp32")
        rng = rng_state()  # every rank takes part: it gathers each rank's noise stream
        if not self.main:
            return
        state = {**training_state(self.state, self.elapsed(), self.optimizers, self.ema), "rng": rng}
        save_checkpoint(self.out, self.model, self.ema.model if self.ema else None, state, self.meta)
        self.log.flush()

    def blown_networks(self) -> str:
        """'; inf/NaN weights in: generator' for the networks (top-level submodules) whose weights diverged."""
        if len(self.optimizers) < 2:  # one network: nothing to tell apart
            return ""
        broken = sorted({name.split(".")[0] for name in nonfinite(self.model.named_parameters())})
        return f"; inf/NaN weights in: {', '.join(broken)}" if broken else ""

    def save_samples(self, name: str) -> None:
        sampler = self.ema.model if self.ema else self.model
        if self.out is None or not self.main or not sampler.can_sample or self.cfg.num_samples == 0:
            return
        sampler.eval()
        imgs = sampler.preview(self.cfg.num_samples, generator=self.gen)
        save_samples(sampler.present(imgs), self.out / name)  # images, points or text (words -> .txt)
        self.model.train()

    def finish(self, stopped: str) -> TrainResult:
        s, cfg = self.state, self.cfg
        if self.main and stopped != "done":
            why = {"time": f"time budget of {cfg.max_minutes:g} min reached",
                   "steps": f"step budget of {cfg.max_steps} reached",
                   "interrupted": "interrupted (Ctrl-C / SIGTERM)"}[stopped]
            saved = "; checkpoint saved, continue with --resume" if self.out is not None else ""
            tqdm.write(f"stopped at step {s.step} (epoch {s.epoch + 1}): {why}{saved}")
        dist.barrier()
        return TrainResult(self.model, self.ema.model if self.ema else None, [dict(r) for r in self.log.rows],
                           self.out, stopped, s.step, self.elapsed())

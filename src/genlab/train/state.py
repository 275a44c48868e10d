"""Where a run is (step, epoch, batch, time, random streams), and restoring it on --resume.

An exact resume needs every optimizer's moments, the EMA's counter, the
position in the epoch (the loader replays the same shuffled order) and the
random streams of torch (per rank), Python and NumPy: resuming then gives the
same weights, bit for bit, as a run that was never stopped.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..errors import GenlabError, ParamError
from . import distributed as dist
from .checkpoint import EMA_WEIGHTS, STATE, load_checkpoint
from .config import TrainConfig
from .optim import rates


@dataclass
class RunState:
    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    seconds_before: float = 0.0     # training time of the runs this one resumes


def rng_state() -> dict:
    """Every rank's torch stream (a collective call) and this process's Python and NumPy streams."""
    return {"torch": dist.all_gather_object(torch.get_rng_state()), "python": random.getstate(),
            "numpy": np.random.get_state()}


def set_rng_state(rng: dict, rank: int) -> None:
    if rank < len(rng["torch"]):  # a rank the saving run did not have keeps its fresh seed
        torch.set_rng_state(rng["torch"][rank])
    random.setstate(rng["python"])
    np.random.set_state(rng["numpy"])


def training_state(run: RunState, seconds: float, optimizers: dict, ema) -> dict:
    """What state.pt holds (besides the RNG streams)."""
    return {"optimizers": {k: o.state_dict() for k, o in optimizers.items()},
            "ema": ema.state_dict() if ema else None, "step": run.step, "epoch": run.epoch,
            "batch_in_epoch": run.batch_in_epoch, "seconds": seconds}


def check_same_model(out: Path, stored: dict, model) -> None:
    stored, now = json.loads(json.dumps(stored)), json.loads(json.dumps(model.config_dict()))
    if stored != now:
        diff = ", ".join(f"{k} {stored.get(k)} (now {now.get(k)})" for k in sorted(set(stored) | set(now))
                         if stored.get(k) != now.get(k))
        raise GenlabError(f"cannot resume: the model options differ from the run in {out}: {diff}; resume with the "
                          "same options (they are in its config.json)")


def resume_run(out: Path | None, model, optimizers: dict, ema, cfg: TrainConfig, rank: int) -> RunState:
    """Load the checkpoint in `out` into model, optimizers and EMA; return where the run stopped."""
    if out is None or not (out / STATE).exists():
        raise ParamError("resume", f"finds no run in {out}: it has no {STATE}; start a new run instead")
    saved, saved_ema, config, state = load_checkpoint(out, "cpu", with_state=True)
    check_same_model(out, config["model"], model)
    model.load_state_dict(saved.state_dict())
    if ema is not None and saved_ema is not None:
        ema.model.load_state_dict(saved_ema.state_dict())
        ema.load_state_dict(state["ema"])
    elif ema is not None:  # ema.safetensors lost: average from the resumed weights, not the fresh init
        ema.model.load_state_dict(saved.state_dict())
        tqdm.write(f"{out} has no {EMA_WEIGHTS}: the EMA restarts from the resumed weights")
    load_optimizers(optimizers, state, model, cfg)
    set_rng_state(state["rng"], rank)
    return RunState(state["step"], state["epoch"], state["batch_in_epoch"], state.get("seconds", 0.0))


def load_optimizers(optimizers: dict, state: dict, model, cfg: TrainConfig) -> None:
    """Each optimizer's moments from the checkpoint; its rates from this run's settings (--lr given on
    --resume counts). Checkpoints of genlab before multi-optimizer families hold one 'optimizer'."""
    saved = state.get("optimizers") or {"model": state["optimizer"]}
    if set(saved) != set(optimizers):
        raise GenlabError(f"cannot resume: the checkpoint has optimizers {sorted(saved)}, the model now "
                          f"{sorted(optimizers)}; it was written by another version of this family")
    legacy_lr = state.get("scheduler", {}).get("base_lrs", [None])[0]
    now = rates(model.optimizers(), cfg)
    for name, opt in optimizers.items():
        opt.load_state_dict(saved[name])
        lr, wd = now[name]
        old_lr, old_wd = opt.param_groups[0].get("base_lr", legacy_lr), opt.param_groups[0]["weight_decay"]
        if (old_lr, old_wd) != (lr, wd):
            who = "" if len(optimizers) == 1 else f" ({name})"
            tqdm.write(f"--resume{who}: lr {old_lr:g} -> {lr:g}, weight decay {old_wd:g} -> {wd:g}")
        for group, decay in zip(opt.param_groups, (wd, 0.0)):
            group.update(base_lr=lr, weight_decay=decay)

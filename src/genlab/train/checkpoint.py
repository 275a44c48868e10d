"""Checkpoints: safetensors weights + JSON config + a torch file of training state.

A run folder holds
  config.json        family, model config, train config, data description
  model.safetensors  the trained weights
  ema.safetensors    the EMA weights (what sampling uses, when present)
  state.pt           optimizer, EMA counter, step/epoch, RNG states, history
Files are written to temporary names first and renamed only once all of
them are on disk, so a full disk or a kill mid-write leaves the previous
checkpoint intact.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .. import __version__
from ..errors import CheckpointError, GenlabError

CONFIG, WEIGHTS, EMA_WEIGHTS, STATE = "config.json", "model.safetensors", "ema.safetensors", "state.pt"


def _tensors(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    # safetensors refuses shared storage and non-contiguous views; clone to plain tensors
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in module.state_dict().items()}


def save_checkpoint(out_dir: str | Path, model, ema_model=None, state: dict | None = None,
                    meta: dict | None = None) -> Path:
    """Write a checkpoint of `model` (a GenerativeModel) into out_dir atomically."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = {"genlab_version": __version__, "family": model.family, "model": model.config_dict(), **(meta or {})}
    files = {CONFIG: lambda p: p.write_text(json.dumps(config, indent=2)),
             WEIGHTS: lambda p: save_file(_tensors(model), str(p))}
    if ema_model is not None:
        files[EMA_WEIGHTS] = lambda p: save_file(_tensors(ema_model), str(p))
    if state is not None:
        files[STATE] = lambda p: torch.save(state, p)
    tmp = {name: out / f".{name}.tmp" for name in files}
    try:
        for name, write in files.items():
            write(tmp[name])
    except (OSError, RuntimeError, SafetensorError) as e:  # torch.save and safetensors report I/O errors without errno
        for p in tmp.values():
            with contextlib.suppress(OSError):  # a read-only folder refuses even this
                p.unlink(missing_ok=True)
        if _disk_full(e, out):
            why, fix = "the disk is full", "free some space"
        else:
            why, fix = str(e), "make the folder writable (or fix the error above)"
        raise GenlabError(f"could not write a checkpoint to {out}: {why}. The previous checkpoint there is "
                          f"intact; {fix} and continue with --resume") from e
    for name, p in tmp.items():
        os.replace(p, out / name)
    return out


def _disk_full(e: BaseException | None, folder: Path) -> bool:
    """ENOSPC / EDQUOT anywhere in the exception chain, or (torch.save gives only 'unexpected pos') no space left."""
    while e is not None:
        if getattr(e, "errno", None) in (errno.ENOSPC, errno.EDQUOT) or "No space left" in str(e):
            return True
        e = e.__context__
    try:
        return shutil.disk_usage(folder).free < (1 << 20)
    except OSError:
        return False


def read_config(path: str | Path) -> dict:
    path = Path(path)
    run = path.parent if path.is_file() else path
    cfg_file = run / CONFIG
    if not run.exists():
        raise CheckpointError(f"checkpoint {path} does not exist; pass a run folder written by `genlab train`")
    if not cfg_file.exists():
        raise CheckpointError(f"{run} is not a genlab checkpoint (no {CONFIG}); pass the run folder written by "
                              "`genlab train --out`")
    try:
        config = json.loads(cfg_file.read_text())
        config["family"], config["model"]
        if not isinstance(config["model"], dict):
            raise TypeError("'model' is not a JSON object")
    except OSError as e:
        raise CheckpointError(f"cannot read {cfg_file} ({e.strerror}); check its permissions") from e
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as e:
        raise CheckpointError(f"{cfg_file} is corrupt ({e}); re-train or restore it from a backup") from e
    return config


def nonfinite(named_tensors) -> list[str]:
    """Names of the floating-point tensors (of (name, tensor) pairs) that hold inf or NaN."""
    return [k for k, w in named_tensors if w.is_floating_point() and not bool(torch.isfinite(w).all())]


def _load_weights(module, file: Path) -> None:
    try:
        weights = load_file(str(file))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{file} is corrupt or truncated ({e}); re-train or restore the run folder") from e
    broken = nonfinite(weights.items())
    if broken:  # a run that diverged before genlab stopped saving such weights: its samples would be blank
        raise CheckpointError(f"{file} holds inf/NaN weights ({broken[0]}, {len(broken)} tensor(s) in all): the "
                              "run diverged; re-train with a lower --lr or restore an earlier copy of the run")
    try:
        missing, unexpected = module.load_state_dict(weights, strict=False)
    except RuntimeError as e:  # strict=False still raises on size mismatches
        detail = " ".join(str(e).split("\n", 1)[-1].split())[:160]  # the first size mismatch, on one line
        raise CheckpointError(f"{file} does not match its config.json ({detail} ...); the run folder was "
                              "modified — re-train it") from e
    if missing or unexpected:
        raise CheckpointError(f"{file} does not match its config.json (missing: {missing[:3]}, unexpected: "
                              f"{unexpected[:3]}); the run folder was modified, or an older genlab wrote it "
                              "(e.g. an HVAE from before q(z1|x,z2) gained its linear read-out) — re-train it")


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu", family: str | None = None,
                    with_state: bool = False):
    """(model, ema_model or None, config, state or None) from a run folder.

    `family` (e.g. "diffusion") rejects a checkpoint of another family with a clear message.
    """
    from ..models import build_model

    config = read_config(path)
    run = Path(path) if Path(path).is_dir() else Path(path).parent
    if family is not None and config["family"] not in ((family,) if isinstance(family, str) else family):
        raise CheckpointError(f"{run} holds a '{config['family']}' model, but this command needs a "
                              f"{family if isinstance(family, str) else ' or '.join(family)} model")
    if not (run / WEIGHTS).exists():
        raise CheckpointError(f"{run} has no {WEIGHTS}: the run never saved weights (was it interrupted "
                              "before its first checkpoint?)")
    try:
        model = build_model(config["family"], config["model"])
    except (TypeError, ValueError, AttributeError) as e:  # GenlabError (unknown option, ...) passes through
        raise CheckpointError(f"{run / CONFIG} holds model options that build no model ({e}); it was edited "
                              "by hand — restore it or re-train") from e
    _load_weights(model, run / WEIGHTS)
    ema = None
    if (run / EMA_WEIGHTS).exists():
        ema = build_model(config["family"], config["model"])
        _load_weights(ema, run / EMA_WEIGHTS)
        ema = ema.to(device).eval()
    state = None
    if with_state and (run / STATE).exists():
        try:
            state = torch.load(run / STATE, map_location="cpu", weights_only=False)
        except PermissionError as e:
            raise CheckpointError(f"cannot read {run / STATE} ({e.strerror}); check its permissions "
                                  "(the file itself may be fine: do not delete it)") from e
        except Exception as e:  # pickle/zip errors come in many types
            raise CheckpointError(f"{run / STATE} is corrupt ({e}); delete it to restart training from "
                                  "the saved weights, or re-train") from e
    return model.to(device), ema, config, state


def sampling_model(path: str | Path, device="cpu", family=None):
    """The model to sample from: EMA weights when the run has them."""
    model, ema, config, _ = load_checkpoint(path, device, family)
    return (ema if ema is not None else model).eval(), config

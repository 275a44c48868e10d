"""`genlab bench --precision`: measure what `precision auto` should pick on this device, and record it.

    training   one optimisation step of the default U-Net (speed.TrainStep, exactly as the loop
               runs it) in fp32 and bf16 autocast, each NCHW and channels_last
    sampling   the sampler's network calls (no grad, eval mode, the model's own CPU micro-batches)
               on a batch of noisy images, in the same four ways

Each way is timed `repeats` times, interleaved, and the minimum counts. A way other than
fp32 NCHW is chosen only when it is at least `margin` faster than fp32 NCHW, the choice
that is always correct. Ways with bf16 are not timed where the device has no bf16 units
(a CPU without AVX-512 BF16 / AMX emulates it, ~20x slower). The result becomes this
device kind's entry in genlab/precision.json (see genlab.device), with the
numbers, the command and the date.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import torch

from ..errors import GenlabError
from ..train.config import TrainConfig
from ..device import (PRECISION_TABLE, autocast, device_kind, hardware_bf16, load_precision_table,
                            pick_device)
from .speed import SpeedConfig, TrainStep, genlab_model, machine_info, synthetic_images, timed

WAYS = [(False, False), (True, False), (False, True), (True, True)]  # (bf16, channels_last)


@dataclass
class PrecisionConfig:
    device: str = "auto"
    batch_size: int = 0             # training batch (0: 128 on CPU, 256 on GPUs)
    sample_n: int = 0               # images per sampling network call (0: 250 on CPU, 256 on GPUs)
    model: dict = field(default_factory=dict)   # DiffusionConfig overrides (default: the default U-Net)
    warmup: int = 1                 # untimed steps / calls per way
    steps: int = 3                  # training steps per timing
    calls: int = 3                  # sampler network calls per timing
    repeats: int = 3                # timings per way; the minimum counts
    margin: float = 0.05            # a way beats fp32 NCHW only when this much faster
    table: str = ""                 # the table to update (default: genlab/precision.json)
    command: str = "genlab bench --precision"


def quick_precision_config(device: str = "auto", table: str = "") -> PrecisionConfig:
    """Tiny sizes: the whole measurement in seconds (tests, CI)."""
    return PrecisionConfig(device=device, batch_size=8, sample_n=8, steps=1, calls=1, repeats=1, table=table,
                           model=dict(base_width=8, channel_mult=(1, 2), num_res_blocks=1, attn_resolutions=()),
                           command="genlab bench --precision --quick")


def way_name(bf16: bool, channels_last: bool) -> str:
    return " + ".join(["bf16" if bf16 else "fp32"] + ["channels_last"] * channels_last)


def train_timer(cfg: PrecisionConfig, device: torch.device, batch: int, bf16: bool, channels_last: bool):
    """() -> one training step of the loop, in this way."""
    data = synthetic_images(4 * batch, 1, 28)
    tcfg = TrainConfig(batch_size=batch, device=str(device), progress=False,
                       precision="bf16" if bf16 else "fp32", channels_last="on" if channels_last else "off")
    torch.manual_seed(0)
    return TrainStep(genlab_model(SpeedConfig(model=cfg.model)), data, tcfg, device)


def sample_timer(cfg: PrecisionConfig, device: torch.device, n: int, bf16: bool, channels_last: bool):
    """() -> `calls` sampler network calls on n images, in this way."""
    torch.manual_seed(0)
    model = genlab_model(SpeedConfig(model=cfg.model)).to(device).eval()
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model.to(memory_format=fmt)
    net = model.denoiser(bf16=False)  # fp32 inside; the autocast below makes it bf16
    x = torch.randn(n, model.cfg.channels, model.cfg.image_size, model.cfg.image_size, device=device)
    x = x.contiguous(memory_format=fmt)
    t = torch.randint(0, model.cfg.timesteps, (n,), device=device)

    @torch.no_grad()
    def run():
        with autocast(device, bf16):
            for _ in range(cfg.calls):
                net(x, t)
    return run


def time_ways(make, ways: list[tuple[bool, bool]], cfg: PrecisionConfig, device: torch.device) -> dict:
    """Best seconds per call of each way's timer, repeats interleaved across the ways."""
    timers = {w: make(*w) for w in ways}
    for fn in timers.values():
        for _ in range(cfg.warmup):
            fn()
    best = {w: float("inf") for w in ways}
    for _ in range(cfg.repeats):
        for w, fn in timers.items():
            best[w] = min(best[w], timed(fn, device))
    return best


def choose(seconds: dict, margin: float) -> tuple[bool, bool]:
    """The fastest way, if it beats fp32 NCHW by more than `margin`; else fp32 NCHW."""
    base = seconds[(False, False)]
    fastest = min(seconds, key=seconds.get)
    return fastest if seconds[fastest] < (1 - margin) * base else (False, False)


def entry(seconds: dict, cfg: PrecisionConfig, what: str, machine: str, skipped: str) -> dict:
    bf16, channels_last = choose(seconds, cfg.margin)
    base = seconds[(False, False)]
    speeds = ", ".join(f"{way_name(*w)} {base / s:.2f}x" for w, s in seconds.items())
    return {"bf16": bf16, "channels_last": channels_last,
            "measured": f"{what}; speed vs fp32 NCHW (min of {cfg.repeats} timings): {speeds}{skipped}",
            "seconds": {way_name(*w): round(s, 6) for w, s in seconds.items()},
            "command": cfg.command, "date": date.today().isoformat(), "machine": machine}


def write_entry(path: str | Path, kind: str, value: dict) -> Path:
    """Set table[kind] = value in the JSON file (atomically), keeping the other device kinds."""
    path = Path(path)
    table = load_precision_table(path)
    table[kind] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(table, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
    return path


def run_precision(cfg: PrecisionConfig, log=print) -> dict:
    """Time the four ways for training and sampling, pick, and write this device kind's entry."""
    for name in ("steps", "calls", "repeats"):
        if getattr(cfg, name) < 1:
            raise GenlabError(f"bench --precision: {name} must be at least 1, got {getattr(cfg, name)}")
    if not 0 <= cfg.margin < 1:
        raise GenlabError(f"bench --precision: margin must be in [0, 1), got {cfg.margin}")
    device = pick_device(cfg.device)
    kind, machine = device_kind(device), machine_info(device)
    gpu = device.type != "cpu"
    batch, n = cfg.batch_size or (256 if gpu else 128), cfg.sample_n or (256 if gpu else 250)
    ways = WAYS if hardware_bf16(device) else [w for w in WAYS if not w[0]]
    skipped = "" if len(ways) == len(WAYS) else "; bf16 not timed: no native bf16 on this device (emulated)"
    log(f"bench --precision on {machine} (kind {kind}): {len(ways)} ways, {cfg.repeats} timings each")
    model_note = ("U-Net with " + ", ".join(f"{k}={v}" for k, v in cfg.model.items())) if cfg.model else "default U-Net"
    steps = {"train": cfg.steps, "sample": cfg.calls}
    train_s = time_ways(lambda b, c: _per(train_timer(cfg, device, batch, b, c), steps["train"]), ways, cfg, device)
    log("  training: " + ", ".join(f"{way_name(*w)} {s * 1000 / cfg.steps:.1f} ms/step" for w, s in train_s.items()))
    sample_s = time_ways(lambda b, c: sample_timer(cfg, device, n, b, c), ways, cfg, device)
    log("  sampling: " + ", ".join(f"{way_name(*w)} {s * 1000 / cfg.calls:.1f} ms/call" for w, s in sample_s.items()))
    value = {"train": entry(train_s, cfg, f"{model_note}, training step at batch {batch}", machine, skipped),
             "sample": entry(sample_s, cfg, f"{model_note}, sampler network calls on {n} images", machine, skipped)}
    path = write_entry(cfg.table or PRECISION_TABLE, kind, value)
    return dict(kind=kind, entry=value, path=path, markdown=precision_markdown(kind, value, path))


def _per(step, count: int):
    """A timer that runs the training step `count` times."""
    def run():
        for _ in range(count):
            step()
    return run


def precision_markdown(kind: str, value: dict, path: Path) -> str:
    lines = [f"## Precision choice for {kind}", "", f"written to {path}", ""]
    for task, e in value.items():
        way = way_name(e["bf16"], e["channels_last"])
        lines.append(f"- {task}: {way} ({e['measured']})")
    return "\n".join(lines) + "\n"

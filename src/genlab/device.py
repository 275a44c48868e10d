"""Device and precision choice, in one place.

`--precision auto` and `--channels-last auto` do what was MEASURED faster on this
kind of device, not what the hardware merely supports: precision.json beside this
file maps a device kind to the choice for training and for sampling, each with the
numbers, command and date that decided it:

    {"cuda:NVIDIA H200": {"train":  {"bf16": false, "channels_last": false, "measured": "...", "date": ...},
                          "sample": {...}},
     "cpu:avx512_bf16": ..., "cpu:avx2": ...}

A device kind is "cuda:<device name>", "cpu:<vector unit>" (amx_bf16 or avx512_bf16
from /proc/cpuinfo's flags, else torch's CPU capability: avx2, avx512, default, ...)
or the device type (mps). A kind that is not in the table runs fp32 without
channels_last, which is always correct. `genlab bench --precision` times the
default U-Net on this device and writes its entry (genlab/bench/precision.py).
"""

from __future__ import annotations

import json
import os
from contextlib import nullcontext
from pathlib import Path

import torch

from .errors import GenlabError, ParamError

PRECISION_TABLE = Path(__file__).with_name("precision.json")
TASKS = ("train", "sample")
FP32 = {"bf16": False, "channels_last": False}  # what an unmeasured device kind gets


def pick_device(name: str = "auto") -> torch.device:
    """auto: CUDA, then Apple MPS, then CPU."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ParamError("device", "cuda was requested but no CUDA GPU is visible; use cpu")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ParamError("device", "mps was requested but Apple MPS is not available; use cpu")
    try:
        return torch.device(name)
    except RuntimeError as e:
        raise GenlabError(f"unknown device '{name}'; use auto, cpu, cuda or mps") from e


def cpu_has_bf16() -> bool:
    """True when the CPU has native bf16 matmul units (AVX-512 BF16 / AMX)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def hardware_bf16(device: torch.device) -> bool:
    """The device has native bf16 units (whether they make genlab faster is the table's question)."""
    device = torch.device(device)
    return (device.type == "cuda" and torch.cuda.is_bf16_supported()) or (device.type == "cpu" and cpu_has_bf16())


def cpu_flags(cpuinfo: str | None = None) -> set[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where there is none, e.g. macOS)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return set()
    for line in cpuinfo.splitlines():
        if line.startswith(("flags", "Features")):
            return set(line.split(":", 1)[1].split())
    return set()


def cpu_kind(flags: set[str] | None = None) -> str:
    """The CPU's vector unit as far as bf16 is concerned: amx_bf16, avx512_bf16, else torch's capability."""
    flags = cpu_flags() if flags is None else flags
    for native in ("amx_bf16", "avx512_bf16"):
        if native in flags:
            return native
    return torch.backends.cpu.get_cpu_capability().lower()  # avx2, avx512, default, sve256, ...


def device_kind(device: torch.device) -> str:
    """The key of this device in the precision table: "cuda:NVIDIA H200", "cpu:avx2", "mps", ..."""
    device = torch.device(device)
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    if device.type == "cpu":
        return f"cpu:{cpu_kind()}"
    return device.type


def load_precision_table(path: str | Path | None = None) -> dict:
    """The table of measured choices (an empty table when the file does not exist)."""
    path = Path(path or PRECISION_TABLE)
    if not path.exists():
        return {}
    try:
        table = json.loads(path.read_text())
    except ValueError as e:
        raise GenlabError(f"the precision table {path} is not valid JSON ({e}); "
                          "re-measure it with `genlab bench --precision`") from e
    if not isinstance(table, dict):
        raise GenlabError(f"the precision table {path} must map device kinds to entries")
    return table


def measured_choice(device: torch.device, task: str = "train", table: dict | None = None) -> dict:
    """{"bf16": ..., "channels_last": ...} measured fastest for this device kind and task; fp32 if unmeasured."""
    if task not in TASKS:
        raise GenlabError(f"unknown task '{task}'; the precision table has {', '.join(TASKS)}")
    table = load_precision_table() if table is None else table
    entry = table.get(device_kind(device), {}).get(task)
    if not isinstance(entry, dict):
        return dict(FP32)
    return {k: bool(entry.get(k, False)) for k in FP32}


def use_bf16(precision: str, device: torch.device, task: str = "train") -> bool:
    """fp32 / bf16 as asked; auto: what the precision table measured faster for this device kind and task."""
    if precision not in ("auto", "bf16", "fp32"):
        raise GenlabError(f"unknown precision '{precision}'; choose auto, bf16 or fp32")
    if precision == "fp32":
        return False
    device = torch.device(device)
    if precision == "bf16":
        if not hardware_bf16(device) and device.type != "cpu":  # a CPU emulates bf16 (slowly)
            raise ParamError("precision", f"bf16 is not supported on {device}; use fp32")
        return True
    return measured_choice(device, task)["bf16"] and hardware_bf16(device)


def autocast(device: torch.device, enabled: bool):
    return torch.autocast(device.type, dtype=torch.bfloat16) if enabled else nullcontext()


def use_channels_last(setting: str, device: torch.device, task: str = "train") -> bool:
    """on / off as asked; auto: what the precision table measured faster for this device kind and task."""
    if setting not in ("auto", "on", "off"):
        raise GenlabError(f"unknown channels_last setting '{setting}'; choose auto, on or off")
    if setting != "auto":
        return setting == "on"
    return measured_choice(device, task)["channels_last"]

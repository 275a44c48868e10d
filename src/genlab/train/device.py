"""Device and precision choice, in one place."""

from __future__ import annotations

import os
from contextlib import nullcontext

import torch

from ..errors import GenlabError


def pick_device(name: str = "auto") -> torch.device:
    """auto: CUDA, then Apple MPS, then CPU."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise GenlabError("--device cuda was requested but no CUDA GPU is visible; use --device cpu")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise GenlabError("--device mps was requested but Apple MPS is not available; use --device cpu")
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


def use_bf16(precision: str, device: torch.device) -> bool:
    if precision not in ("auto", "bf16", "fp32"):
        raise GenlabError(f"unknown precision '{precision}'; choose auto, bf16 or fp32")
    if precision == "fp32":
        return False
    supported = (device.type == "cuda" and torch.cuda.is_bf16_supported()) or (device.type == "cpu" and cpu_has_bf16())
    if precision == "bf16" and not supported and device.type != "cpu":
        raise GenlabError(f"bf16 is not supported on {device}; use --precision fp32")
    return supported if precision == "auto" else True


def autocast(device: torch.device, enabled: bool):
    return torch.autocast(device.type, dtype=torch.bfloat16) if enabled else nullcontext()


def use_channels_last(setting: str, device: torch.device) -> bool:
    """channels_last pays on GPUs; on CPU, GroupNorm in channels_last is several times
    slower than the convolutions it saves (measured: benchmarks/results.md), so auto is off there."""
    return setting == "on" or (setting == "auto" and device.type == "cuda")

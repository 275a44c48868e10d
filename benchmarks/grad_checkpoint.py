"""What gradient checkpointing (--grad-checkpoint) saves and costs, on the default U-Net.

    python benchmarks/grad_checkpoint.py [--batch 64] [--reps 10] [--device auto] [--out benchmarks/grad_checkpoint.md]

Memory is measured two ways:
  * activations kept for backward: the bytes of every tensor autograd saves during
    the forward pass (a saved_tensors_hooks count, deduplicated by storage). It is the
    same on every device, and it is what checkpointing trades for time;
  * on CUDA also the peak allocated memory of a training step (torch.cuda.max_memory_allocated).
Time: the median of `reps` forward+backward+AdamW steps after two warm-up steps.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import date
from pathlib import Path

import torch

from genlab.bench.speed import machine_info
from genlab.models import build_model
from genlab.device import pick_device


def saved_activation_bytes(model, batch) -> int:
    seen: dict[tuple, int] = {}

    def pack(t):
        if t.device.type != "meta":
            key = (t.untyped_storage().data_ptr(), t.device.type)
            seen[key] = max(seen.get(key, 0), t.untyped_storage().nbytes())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss, _ = model(batch)
    loss.backward()
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    return sum(n for (ptr, _), n in seen.items() if ptr not in params)  # weights are stored anyway


def step_seconds(model, batch, reps: int) -> list[float]:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    times = []
    for i in range(reps + 2):
        sync(batch["x"].device)
        t0 = time.perf_counter()
        loss, _ = model(batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sync(batch["x"].device)
        if i >= 2:
            times.append(time.perf_counter() - t0)
    return times


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def measure(batch_size: int, reps: int, device: torch.device) -> list[dict]:
    rows = []
    for on in (False, True):
        torch.manual_seed(0)
        model = build_model("diffusion", {}).to(device).train()
        model.set_grad_checkpointing(on)
        x = torch.rand(batch_size, 1, 28, 28, device=device) * 2 - 1
        batch = {"x": x}
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        act = saved_activation_bytes(model, batch)
        peak = torch.cuda.max_memory_allocated() if device.type == "cuda" else None
        times = step_seconds(model, batch, reps)
        rows.append({"checkpointing": on, "activations_MiB": act / 2**20,
                     "peak_MiB": None if peak is None else peak / 2**20,
                     "step_ms": 1000 * statistics.median(times), "step_ms_iqr": 1000 * (
                         statistics.quantiles(times, n=4)[2] - statistics.quantiles(times, n=4)[0])})
    return rows


def markdown(rows: list[dict], args, device) -> str:
    off, on = rows
    lines = [f"# Gradient checkpointing of the default U-Net ({date.today().isoformat()})", "",
             f"Command: `python benchmarks/grad_checkpoint.py --batch {args.batch} --reps {args.reps} "
             f"--device {args.device}`", f"Machine: {machine_info(device)}", "",
             "| --grad-checkpoint | activations kept for backward | peak CUDA memory | step time (median, IQR) |",
             "|---|---|---|---|"]
    for r in rows:
        peak = "n/a (CPU)" if r["peak_MiB"] is None else f"{r['peak_MiB']:.0f} MiB"
        lines.append(f"| {'on' if r['checkpointing'] else 'off'} | {r['activations_MiB']:.1f} MiB | {peak} | "
                     f"{r['step_ms']:.1f} ms ({r['step_ms_iqr']:.1f}) |")
    lines += ["", f"Checkpointing keeps {on['activations_MiB'] / off['activations_MiB']:.0%} of the activation "
              f"memory and takes {on['step_ms'] / off['step_ms']:.2f}x the time per step at batch {args.batch}."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--reps", type=int, default=10)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default=None, help="write the markdown table here (default: print only)")
    args = p.parse_args(argv)
    if args.batch < 1 or args.reps < 2:
        p.error("--batch must be >= 1 and --reps >= 2")
    device = pick_device(args.device)
    md = markdown(measure(args.batch, args.reps, device), args, device)
    print(md)
    if args.out:
        Path(args.out).write_text(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())

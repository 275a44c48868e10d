"""How many images per network call a sampler should send on this machine.

A sampler calls the U-Net on the whole batch at every step. On a CPU a large batch's
activations fall out of the cache, so slicing it into micro-batches can be faster
(genlab's denoiser does this: models/diffusion.py, CPU_MICRO_BATCH). This prints
milliseconds per image per network call (the cost of one sampler step) for a few
micro-batch sizes, on the model of configs/fashion_mnist_cond_cpu.json (random
weights: speed does not depend on them) or on a run folder. Run it on a quiet machine.

    python benchmarks/sampler_micro_batch.py --threads 2
    python benchmarks/sampler_micro_batch.py --checkpoint runs/fmnist_cond_cpu --batch 250 --guidance 2
"""

from __future__ import annotations

import argparse
import json
from dataclasses import fields
from pathlib import Path

import torch

from genlab.bench.speed import machine_info, timed
from genlab.models import build_model
from genlab.models.diffusion import DiffusionConfig
from genlab.train.checkpoint import sampling_model
from genlab.device import pick_device

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "fashion_mnist_cond_cpu.json"


def micro_sizes(text: str) -> list[int]:
    try:
        sizes = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 0:
        raise argparse.ArgumentTypeError(f"expected sizes like 0,32,64 (0: the whole batch), got '{text}'")
    return sizes


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default=None, help="diffusion run folder (default: the CPU config, untrained)")
    p.add_argument("--batch", type=int, default=250, help="images per sample() call")
    p.add_argument("--micro", type=micro_sizes, default="0,16,32,64,128",
                   help="micro-batch sizes to time (0: the whole batch)")
    p.add_argument("--steps", type=int, default=10, help="network calls per timing")
    p.add_argument("--guidance", type=float, default=1.0)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--device", default="auto")
    args = p.parse_args(argv)
    if min(args.batch, args.steps, args.repeats) < 1:
        p.error("--batch, --steps and --repeats must be at least 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    if args.checkpoint:
        model, _ = sampling_model(args.checkpoint, device, family="diffusion")
    else:
        names = {f.name for f in fields(DiffusionConfig)}
        cfg = {k: v for k, v in json.loads(CONFIG.read_text()).items() if k in names}
        model = build_model("diffusion", {**cfg, "num_classes": 10}).to(device).eval()
    if args.guidance != 1.0 and not model.num_classes:
        p.error("--guidance needs a class-conditional checkpoint; this one is unconditional")
    y = torch.arange(args.batch, device=device) % model.num_classes if model.num_classes else None
    x = torch.randn(args.batch, model.cfg.channels, model.cfg.image_size, model.cfg.image_size, device=device)
    t = torch.full((args.batch,), model.schedule.T // 2, device=device)
    print(f"{sum(q.numel() for q in model.parameters()) / 1e6:.2f}M parameters, batch {args.batch}, "
          f"w = {args.guidance:g}; {machine_info(device)}")
    print("| micro-batch | ms per image per network call |\n|---|---|")
    with torch.no_grad():
        for micro in args.micro:
            fn = model.denoiser(args.guidance, micro_batch=micro)
            fn(x, t, y)  # warm-up: the first call of a shape builds the backend's kernels
            best = min(timed(lambda: fn(x, t, y), device, args.steps) for _ in range(args.repeats))
            print(f"| {micro or 'whole batch'} | {best * 1000 / args.batch:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

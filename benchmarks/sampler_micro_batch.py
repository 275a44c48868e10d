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
import platform
import time
from dataclasses import fields
from pathlib import Path

import torch

from genlab.models import build_model
from genlab.models.diffusion import DiffusionConfig
from genlab.train.checkpoint import sampling_model
from genlab.train.device import pick_device

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "fashion_mnist_cond_cpu.json"


def seconds(fn, repeats: int) -> float:
    fn()  # warm-up: the first call of a shape builds the backend's kernels
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default=None, help="diffusion run folder (default: the CPU config, untrained)")
    p.add_argument("--batch", type=int, default=250, help="images per sample() call")
    p.add_argument("--micro", default="0,16,32,64,128", help="micro-batch sizes to time (0: the whole batch)")
    p.add_argument("--steps", type=int, default=10, help="network calls per timing")
    p.add_argument("--guidance", type=float, default=1.0)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--device", default="auto")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    if args.checkpoint:
        model, _ = sampling_model(args.checkpoint, device, family="diffusion")
    else:
        names = {f.name for f in fields(DiffusionConfig)}
        cfg = {k: v for k, v in json.loads(CONFIG.read_text()).items() if k in names}
        model = build_model("diffusion", {**cfg, "num_classes": 10}).to(device).eval()
    y = torch.arange(args.batch, device=device) % 10 if model.num_classes else None
    print(f"{sum(q.numel() for q in model.parameters()) / 1e6:.2f}M parameters, batch {args.batch}, "
          f"w = {args.guidance:g}; {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} thread(s), torch {torch.__version__}")
    print("| micro-batch | ms per image per network call |\n|---|---|")
    for micro in (int(m) for m in args.micro.split(",")):
        x_T = torch.randn(args.batch, model.cfg.channels, model.cfg.image_size, model.cfg.image_size, device=device)
        fn = model.denoiser(args.guidance, micro_batch=micro)

        def run():
            with torch.no_grad():
                t = torch.full((args.batch,), model.schedule.T // 2, device=device)
                for _ in range(args.steps):
                    fn(x_T, t, y)
            if device.type == "cuda":
                torch.cuda.synchronize(device)

        s = seconds(run, args.repeats)
        print(f"| {micro or 'whole batch'} | {s * 1000 / args.batch / args.steps:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Discrete diffusion on image tokens: binarised Fashion-MNIST, class-conditional.

Trains a masked (absorbing) discrete diffusion model on the binary token grids
of the Fashion-MNIST train split (14 x 14 = 196 tokens by default: a
Transformer over 784 positions costs ~10x more per image, too much for a few
CPU-minutes) for a time budget with the ordinary training loop, then reports

- bits per token (negative ELBO, MDLM continuous-time bound) on test grids, next
  to the unigram reference (each pixel an independent coin with the train
  split's frequency of "on") and a per-position reference (pixel i a coin with
  its own train frequency): what a model that ignores neighbours can do;
- for the ancestral and MaskGIT samplers and several numbers of steps: FID,
  precision, recall and conditional accuracy of samples through the
  Fashion-MNIST classifier's features, against *binarised* test images, beside
  the floor (binarised train vs binarised test), with the sampling time;
- a sample grid (one row per class) written beside the report.

    python benchmarks/discrete_images.py --minutes 10
    python benchmarks/discrete_images.py --minutes 1 --n 100 --steps 8 --out /tmp/d.md   # a smoke run

Needs the Fashion-MNIST feature classifier at the same size (`genlab train
classifier --dataset fashion_mnist --image-size 14 --out ~/.cache/genlab/
classifiers/fashion_mnist-1x14`, ~2 min). Writes its section of benchmarks/discrete_results.md
(the words sections are kept) unless --out says otherwise.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time
from pathlib import Path

import torch

from genlab.bench import write_section
from genlab.data import load_dataset
from genlab.metrics.evaluate import evaluate_samples
from genlab.models.discrete import DiscreteDiffusion, config_for_data
from genlab.train import TrainConfig, train
from genlab.train.checkpoint import sampling_model
from genlab.device import pick_device
from genlab.viz.grid import save_grid

REPO = Path(__file__).resolve().parents[1]
DATASET = "fashion_mnist-binary"


def coin_bits(p: torch.Tensor, x: torch.Tensor) -> float:
    """Bits per token of binary grids x under independent coins with P(on) = p (per position or scalar)."""
    p = p.clamp(1e-4, 1 - 1e-4)
    return float(-(x * p.log2() + (1 - x) * (1 - p).log2()).mean())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0, help="training time budget")
    ap.add_argument("--image-size", type=int, default=14, help="images are resized to this, then binarised")
    ap.add_argument("--dim", type=int, default=96)
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--n", type=int, default=500, help="samples per row (and real images) for FID & co")
    ap.add_argument("--steps", type=int, nargs="+", default=[4, 16])
    ap.add_argument("--guidance", type=float, default=2.0, help="classifier-free guidance scale of the samples")
    ap.add_argument("--test-n", type=int, default=2000, help="test grids for the bits/token")
    ap.add_argument("--run-dir", default=str(REPO / "runs" / "bench_discrete_images"))
    ap.add_argument("--reuse", action="store_true", help="evaluate the model already trained in --run-dir")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "discrete_results.md"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    os.environ.setdefault("GENLAB_DATA_DIR", str(REPO.parent / "shared" / "datasets"))

    size = dict(image_size=args.image_size)
    train_set, test_set = load_dataset(DATASET, split="train", **size), load_dataset(DATASET, split="test", **size)
    model = DiscreteDiffusion(config_for_data(train_set, conditional=True, dim=args.dim, depth=args.depth, heads=4))
    run_dir = Path(args.run_dir)
    if args.reuse:
        net, _ = sampling_model(run_dir, pick_device(args.device), family="discrete")
        last = (run_dir / "loss.csv").read_text().strip().splitlines()[-1].split(",")
        steps_done, train_seconds = int(last[0]), float(last[-1])
    else:
        if (run_dir / "model.safetensors").exists():
            import shutil

            shutil.rmtree(run_dir)
        cfg = TrainConfig(epochs=1000, batch_size=args.batch_size, lr=args.lr, warmup_steps=200, ema_decay=0.999,
                          max_minutes=args.minutes, sample_every=0, log_every=50, device=args.device,
                          progress=False)
        result = train(model, train_set, cfg, run_dir)
        net, steps_done, train_seconds = result.sampling_model.eval(), result.steps, result.seconds

    params = sum(p.numel() for p in net.parameters())  # of the model evaluated (--reuse: the one on disk)

    # likelihood: the model's bound vs coins that ignore the neighbours
    t0 = time.time()
    x, y = test_set.x[: args.test_n], test_set.y[: args.test_n]
    g = torch.Generator().manual_seed(0)
    nats = torch.cat([net.nelbo(x[i:i + 250], y[i:i + 250], passes=2, generator=g).cpu()
                      for i in range(0, len(x), 250)])
    L = x.shape[1]
    bits, se = float(nats.mean() / (L * math.log(2))), float(nats.std() / math.sqrt(len(nats)) / (L * math.log(2)))
    on = train_set.x.float()
    refs = [("unigram (one coin for every pixel)", coin_bits(on.mean(), x.float())),
            ("per-position coins (pixel i: its own train frequency)", coin_bits(on.mean(0), x.float()))]
    eval_s = time.time() - t0

    # samples: FID & co vs binarised test images, per sampler and steps
    labels = torch.arange(args.n) % 10
    rows = []
    for sampler in ("maskgit", "ancestral"):
        for steps in args.steps:
            g = torch.Generator().manual_seed(0)
            t0 = time.time()
            imgs = torch.cat([net.sample(len(lab), g, y=lab, sampler=sampler, steps=steps, guidance=args.guidance)
                              for lab in labels.split(250)])
            seconds = time.time() - t0
            m = evaluate_samples(imgs, DATASET, args.n, labels=labels, kid_subsets=20)
            rows.append(dict(sampler=sampler, steps=steps, seconds=seconds, **m))
            print(f"{sampler} {steps}: FID {m['fid']:.2f} (floor {m['floor_fid']:.2f}), precision "
                  f"{m['precision']:.3f}, recall {m['recall']:.3f}, accuracy {m['conditional_accuracy']:.3f}, "
                  f"{seconds:.0f} s", flush=True)
    best = min(rows, key=lambda r: r["fid"])
    g = torch.Generator().manual_seed(1)
    grid = net.sample(100, g, y=torch.arange(100) // 10, sampler=best["sampler"], steps=best["steps"],
                      guidance=args.guidance)
    picture = Path(args.out).with_name("discrete_images_samples.png")
    save_grid(grid, picture, nrow=10)

    lines = ["# Discrete diffusion on image tokens (binarised Fashion-MNIST, class-conditional)", "",
             f"Generated by `python benchmarks/discrete_images.py {' '.join(sys.argv[1:])}` on "
             f"{platform.machine()} with {args.threads} CPU thread(s) (device {next(net.parameters()).device}).", "",
             f"- data: {len(train_set)} train / {len(test_set)} test images at {args.image_size} x {args.image_size}, "
             f"each a grid of {L} binary tokens (pixel >= 128), plus the class label",
             f"- model: bidirectional Transformer over the {L} positions, dim {net.cfg.dim}, depth {net.cfg.depth}, "
             f"{params / 1e6:.2f} M parameters, absorbing process, MDLM bound; label dropout 0.1 for guidance",
             f"- training: {steps_done} steps of batch {args.batch_size} in {train_seconds / 60:.1f} min "
             f"({steps_done * args.batch_size / len(train_set):.2f} epochs), lr {args.lr:g}, EMA 0.999", "",
             "## Held-out likelihood (bits per pixel token, lower is better)", "",
             "| model | bits/token |", "|---|---|",
             f"| discrete diffusion (-ELBO given the label, 2 time samples/image) | {bits:.4f} ± {se:.4f} |"]
    lines += [f"| {name} | {b:.4f} |" for name, b in refs]
    lines += ["", f"(on the first {len(x)} test grids; evaluation took {eval_s:.0f} s)", "",
              f"## Samples vs number of steps (guidance {args.guidance:g})", "",
              f"{args.n} samples per row with balanced labels; FID / precision / recall on the features of the "
              f"Fashion-MNIST classifier at {args.image_size} px against {args.n} binarised test images; "
              f"floor = {args.n} binarised train vs the same test images; accuracy: the classifier agrees with "
              "the requested class.", "",
              "| sampler | steps | FID | floor | precision | recall | cond. acc. | seconds |",
              "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['sampler']} | {r['steps']} | {r['fid']:.2f} | {r['floor_fid']:.2f} | {r['precision']:.3f} | "
              f"{r['recall']:.3f} | {r['conditional_accuracy']:.3f} | {r['seconds']:.0f} |" for r in rows]
    lines += ["", f"Samples ({best['sampler']}, {best['steps']} steps, one row per class): "
              f"![samples]({picture.name})", ""]
    text = "\n".join(lines)
    write_section(args.out, "image-tokens", text, title="# Discrete diffusion benchmarks")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

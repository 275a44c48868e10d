"""CIFAR-10 colourisation: the course's MSE encoder-decoder against a Lab U-Net, with and without a PatchGAN.

Trains, with the one genlab training loop, on the CIFAR-10 train split (the offline 10k-image
subset, or the full 50k when the official archive is present):

    course-recipe   configs/colorize_course.json exactly: 10 epochs (capped by --minutes too)
    course-mse      the same network and recipe, trained for --minutes (the same budget as the others)
    unet-lab        a U-Net predicting a*, b* from L* (L1 loss), --minutes
    unet-lab-gan    the same + a PatchGAN (loss + 0.01 x nonsaturating GAN loss, Pix2Pix's lambda = 100)

then measures on the test split: PSNR, SSIM (means over every test image, with the standard
error), colourfulness M (Hasler & Suesstrunk 2003) of the outputs beside the real images', and FID
of colourised vs real images with its noise: the test images are split into --draws disjoint
sets of --n; draw i scores the colourised set i against the real set i+1 (other images, so a
perfect colouriser scores the floor: real set i against real set i+1). FID features are genlab's
CIFAR-10 feature classifier (trained here first for --classifier-minutes when GENLAB_HOME has
none). Writes benchmarks/colorize.md (--out) and one panel per model beside it.

    python benchmarks/colorize.py --minutes 30                     # the report (about 2 hours)
    python benchmarks/colorize.py --minutes 0.3 --out /tmp/c/colorize.md --runs /tmp/c/runs   # a dry run
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from genlab.bench.noise import compare, mean_sd, pm, verdict
from genlab.color import colourfulness
from genlab.data import load_dataset
from genlab.errors import GenlabError
from genlab.figures.colorize import colorize_panel
from genlab.fmt import md_table, num
from genlab.metrics.colorize import per_image
from genlab.metrics.features import classifier_dir, feature_extractor
from genlab.models import build_model
from genlab.train import TrainConfig, train
from genlab.train.checkpoint import WEIGHTS, sampling_model

ROOT = Path(__file__).resolve().parents[1]
COURSE = {k: v for k, v in json.loads((ROOT / "configs" / "colorize_course.json").read_text()).items()
          if k != "dataset"}
UNET_TRAIN = dict(lr=5e-4, warmup_steps=200, ema_decay=0.999, weight_decay=0.0, grad_clip=1.0, batch_size=64)
# key -> (what it is, model options, training options, time-limited beyond its epochs)
MODELS = {
    "course-recipe": ("the course recipe, 10 epochs", {}, {}, False),
    "course-mse": ("the course network and recipe, --minutes", {}, {"epochs": 10**6}, True),
    "unet-lab": ("U-Net, a*b* from L*, L1", dict(arch="unet", space="lab", loss="l1"), UNET_TRAIN, True),
    "unet-lab-gan": ("U-Net, a*b* from L*, L1 + 0.01 PatchGAN (nonsaturating)",
                     dict(arch="unet", space="lab", loss="l1", adversarial=0.01), UNET_TRAIN, True),
}
BASELINE = "course-mse"


def split_options(options: dict) -> tuple[dict, dict]:
    """A flat options dict (as a config file holds it) -> (model options, training options)."""
    model_fields = set(build_model("colorize", {}).config_dict())
    return ({k: v for k, v in options.items() if k in model_fields},
            {k: v for k, v in options.items() if k not in model_fields})


def train_model(key: str, args, data) -> tuple[torch.nn.Module, dict]:
    """Train (or, with --reuse, load) one model; its sampling model and a summary of the run."""
    _, model_opts, train_opts, budget = MODELS[key]
    course_model, course_train = split_options(COURSE)
    run = Path(args.runs) / key
    if (run / WEIGHTS).exists():
        if not args.reuse:
            raise GenlabError(f"{run} already holds a trained run; pass --reuse to measure it again, or another --runs")
        model, _ = sampling_model(run, args.device, family="colorize")
        rows = [json.loads(line) for line in (run / "summary.jsonl").read_text().splitlines()]
        return model, rows[-1]
    cfg = TrainConfig(**{**course_train, **train_opts, "device": args.device, "progress": not args.quiet,
                         "max_minutes": args.minutes, "log_every": 50, "checkpoint_every": 0})
    torch.manual_seed(args.seed)
    model = build_model("colorize", {**course_model, **model_opts, "channels": 3, "image_size": data.image_size})
    start = time.time()
    result = train(model, data, cfg, run)
    summary = dict(key=key, steps=result.steps, minutes=result.seconds / 60, stopped=result.stopped,
                   epochs=result.steps / math.ceil(len(data) / cfg.batch_size), params=sum(
                       p.numel() for p in model.net.parameters()), budget=budget, wall=time.time() - start)
    with (run / "summary.jsonl").open("a") as f:
        f.write(json.dumps(summary) + "\n")
    return result.sampling_model.eval(), summary


@torch.no_grad()
def measure(model, x: torch.Tensor, batch: int = 500) -> dict[str, torch.Tensor]:
    """Per-image numbers and the colourised images of all test images x."""
    parts = [{k: v.cpu() for k, v in per_image(model, x[i : i + batch]).items()} for i in range(0, len(x), batch)]
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


def fid_draws(extractor, images: torch.Tensor, real_feats: list, draw_idx: list) -> list[float]:
    """FID of images[draw i] against the real features of draw i + 1 (unpaired: other test images)."""
    k = len(draw_idx)
    return [compare(extractor(images[idx])[0], real_feats[(i + 1) % k], kid_subsets=10)["fid"]
            for i, idx in enumerate(draw_idx)]


def se(values: torch.Tensor) -> float:
    return float(values.double().std() / math.sqrt(len(values)))


def ensure_classifier(args, device) -> None:
    """Train genlab's CIFAR-10 feature classifier when GENLAB_HOME has none (FID needs it)."""
    folder = classifier_dir("cifar10", 3, 32)
    if (folder / "config.json").exists():
        return
    print(f"no CIFAR-10 feature classifier in {folder}: training one for {args.classifier_minutes} min")
    data = load_dataset("cifar10", split="train")
    model = build_model("classifier", dict(channels=3, image_size=32, num_classes=10))
    defaults = type(model).train_defaults
    train(model, data, TrainConfig(**{**defaults, "epochs": 50, "max_minutes": args.classifier_minutes,
                                      "device": str(device), "progress": not args.quiet, "sample_every": 0,
                                      "num_samples": 0}), folder)


def targets(rows: dict, per: dict, fids: dict) -> list[str]:
    """The issue's three targets for the best non-baseline model (lowest mean FID), each with a verdict."""
    best = min((k for k in rows if k not in (BASELINE, "course-recipe", "grey input")), key=lambda k: np.mean(fids[k]))
    fid_margin = [b - m for b, m in zip(fids[BASELINE], fids[best])]
    colour = (per[best]["colourfulness"] - per[BASELINE]["colourfulness"]).tolist()
    psnr_margin = (1.0 + per[best]["psnr"] - per[BASELINE]["psnr"]).tolist()   # > 0: within 1 dB (or better)
    return [f"Best model by FID: **{best}**, compared with {BASELINE} draw by draw (FID) or image by image "
            "(colourfulness, PSNR): PASS / FAIL when the mean margin is more than 2 standard errors from 0, "
            "else within noise.", "",
            f"- FID lower than the baseline's by more than the noise: baseline - best = "
            f"{pm(*mean_sd(fid_margin), '.2f')} (mean ± SD over draws) -> **{verdict(fid_margin)}**",
            f"- colourfulness higher: best - baseline = {pm(np.mean(colour), se(torch.tensor(colour)), '.2f')} "
            f"(± SE) -> **{verdict(colour)}**",
            f"- PSNR within 1 dB of the baseline's: best - baseline = "
            f"{pm(np.mean(psnr_margin) - 1, se(torch.tensor(psnr_margin)), '.2f')} dB (± SE), target > -1 dB "
            f"-> **{verdict(psnr_margin)}**"]


def report(args, rows: dict, per: dict, fids: dict, floor: list, info: dict, panels: dict) -> str:
    header = ["model", "what", "steps (epochs)", "minutes", "stopped by", "PSNR dB", "SSIM", "colourfulness", "FID",
              "floor"]
    lines = []
    real_m = per["grey input"]["colourfulness_real"]
    for key, s in rows.items():
        p = per[key]
        trained = ((f"{s['steps']} ({s['epochs']:.1f})", num(s["minutes"], ".1f"),
                    "epochs" if s["stopped"] == "done" else s["stopped"]) if "steps" in s else ("-", "-", "-"))
        lines.append([key, s["what"], *trained, pm(float(p["psnr"].mean()), se(p["psnr"]), ".2f"),
                      pm(float(p["ssim"].mean()), se(p["ssim"]), ".3f"),
                      pm(float(p["colourfulness"].mean()), se(p["colourfulness"]), ".2f"),
                      pm(*mean_sd(fids[key]), ".2f"), pm(*mean_sd(floor), ".2f")])
    text = ["# CIFAR-10 colourisation: the course's MSE network, a Lab U-Net, + PatchGAN", "",
            f"Measured {datetime.date.today().isoformat()} on {info['machine']} with", "",
            f"    {info['command']}", "",
            f"Data: {info['source']}. Train split: {info['train']} images; measured on {info['test']} test images. "
            f"Budget per model: {args.minutes:g} min of training on {info['threads']} thread(s) of {info['device']}. "
            f"The course recipe (`configs/colorize_course.json`) is plain Adam: genlab's AdamW with weight decay 0, "
            f"no warm-up, a constant LR 1e-3, no gradient clipping and no EMA; batch 64 (the course's test batch of "
            f"10 is the panel). The U-Nets: LR {UNET_TRAIN['lr']:g}, warm-up {UNET_TRAIN['warmup_steps']} steps, "
            f"EMA {UNET_TRAIN['ema_decay']}, clipping {UNET_TRAIN['grad_clip']}.", "",
            md_table(header, lines), "",
            f"PSNR / SSIM: mean ± standard error over all {info['test']} test images (RGB on [0, 1]); colourfulness: "
            f"mean ± SE of M per image, the real test images' is {float(real_m.mean()):.1f} ± {se(real_m):.1f}. "
            f"FID: mean ± SD over {args.draws} draws of n = {args.n} colourised test images, each against "
            f"{args.n} *other* real test images; the floor is real vs real at the same n (what a perfect "
            f"colouriser scores). FID at n = {args.n} is noisy and biased upwards: compare rows only "
            f"through the verdicts below, never single numbers, and not with FIDs at another n. Features: "
            f"{info['features']} (genlab's CIFAR-10 classifier, not Inception: the scale is its own). "
            f"'grey input' is the input shown as an RGB image: adding no colour at all.", "",
            *targets(rows, per, fids), "",
            "Panels (grayscale input | generated | real target, the first 10 test images):", ""]
    text += [f"- {key}: `{path.name}`" for key, path in panels.items()]
    return "\n".join(text) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=30.0, help="training budget per model")
    p.add_argument("--runs", default="runs/colorize-bench", help="folder of the training runs")
    p.add_argument("--reuse", action="store_true", help="measure runs already in --runs instead of failing")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "colorize.md"))
    p.add_argument("--n", type=int, default=1000, help="images per FID draw")
    p.add_argument("--draws", type=int, default=5, help="disjoint FID draws (n x draws <= test images)")
    p.add_argument("--eval-n", type=int, default=0, help="measure on the first N test images only (0: all)")
    p.add_argument("--classifier-minutes", type=float, default=10.0, help="training of a missing FID classifier")
    p.add_argument("--models", default=",".join(MODELS), help="comma-separated subset of " + ", ".join(MODELS))
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    keys = [k.strip() for k in args.models.split(",") if k.strip()]
    if BASELINE not in keys or not set(keys) <= set(MODELS) or len(set(keys) - {BASELINE, "course-recipe"}) < 1:
        p.error(f"--models must name {BASELINE} and at least one other of: {', '.join(MODELS)}")
    out = Path(args.out)
    train_data, test = load_dataset("cifar10", split="train"), load_dataset("cifar10", split="test")
    if args.eval_n:
        test = test.subset(slice(0, args.eval_n))
    if args.n * args.draws > len(test):
        p.error(f"--n x --draws = {args.n * args.draws} is more than the {len(test)} test images measured")
    ensure_classifier(args, torch.device(args.device))
    extractor = feature_extractor("cifar10", 3, 32, device=args.device)
    x = test.batch(torch.arange(len(test)))["x"]
    order = torch.randperm(len(test), generator=torch.Generator().manual_seed(args.seed))
    draw_idx = [order[i * args.n : (i + 1) * args.n] for i in range(args.draws)]
    real_feats = [extractor(x[idx])[0] for idx in draw_idx]
    floor = [compare(real_feats[i], real_feats[(i + 1) % args.draws], kid_subsets=10)["fid"]
             for i in range(args.draws)]
    rows, per, fids, panels = {}, {}, {}, {}
    for key in keys:
        model, summary = train_model(key, args, train_data)
        per[key] = measure(model, x)
        fids[key] = fid_draws(extractor, per[key]["output"], real_feats, draw_idx)
        rows[key] = {**summary, "what": MODELS[key][0]}
        panels[key], _ = colorize_panel(model, x[:10], out.with_name(f"colorize_{key}.png"), title=key)
        print(f"{key}: PSNR {per[key]['psnr'].mean():.2f} dB, colourfulness {per[key]['colourfulness'].mean():.1f}, "
              f"FID {np.mean(fids[key]):.2f}")
    g = per[keys[0]]
    grey = g["gray"].expand(-1, 3, -1, -1)
    per["grey input"] = {"psnr": g["psnr_gray"], "ssim": g["ssim_gray"], "colourfulness": colourfulness(grey),
                         "colourfulness_real": g["colourfulness_real"]}
    fids["grey input"] = fid_draws(extractor, grey, real_feats, draw_idx)
    rows["grey input"] = {"what": "the input as an RGB image"}
    info = dict(command="python benchmarks/colorize.py " + " ".join(argv if argv is not None else sys.argv[1:]),
                machine=f"{platform.machine()} {platform.processor() or platform.system()}",
                threads=torch.get_num_threads(), device=args.device, train=len(train_data), test=len(test),
                source=train_data.meta.get("source", "official archive"), features=extractor.name)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report(args, rows, per, fids, floor, info, panels))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Quality vs speed of the diffusion samplers on one class-conditional Fashion-MNIST model.

For one trained checkpoint (train it with configs/fashion_mnist_cond_cpu.json on a CPU: 24,000
steps, ~80 min with bf16 autocast, ~1.8 h in fp32 on an AVX-512 CPU; or configs/fashion_mnist_cond.json on a GPU):

    sampler x steps  (DDPM all T, DDIM 10/25/50/100, DPM-Solver++(2M) 10/20)
        -> FID, precision, recall, conditional accuracy, seconds per 1,000 images
    DDIM 50 with eta = 0.5 and 1 (how much fresh noise per step buys)
    classifier-free guidance scales (DDIM 50 and DPM-Solver++ 20 at w = 0, 1, 2, 3, 4)
        -> the same metrics: the guidance trade-off, also drawn as a curve (<out>_guidance.png)

Every row samples n images with balanced labels 0..9 from the same seed. FID etc.
use genlab's Fashion-MNIST feature classifier (genlab.metrics; ~/.cache/genlab/
classifiers/fashion_mnist-1x28) against n test images, beside the floor (n train
vs n test images). Prints a markdown table, writes it to --out and checks the
targets (on the eta = 0 DDIM rows):

    DDIM-50 FID within 10% of DDPM-1000's at >= 20x less time
    DPM-Solver++ 20 steps no worse than DDIM-50
    conditional accuracy >= 90% at some guidance scale in [2, 4]

    python benchmarks/sampler_table.py --checkpoint RUN --n 500 --batch-size 250 --scales 0,1,2 --threads 2   # the report
    python benchmarks/sampler_table.py --quick --threads 1                         # a tiny model, ~3 CPU-minutes
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

from genlab.data import load_dataset
from genlab.metrics import evaluate_samples
from genlab.models import build_model
from genlab.train import TrainConfig, train
from genlab.train.checkpoint import sampling_model
from genlab.train.device import pick_device
from genlab.viz.samplers import guidance_curve_plot

ROWS = [("ddpm", None), ("ddim", 10), ("ddim", 25), ("ddim", 50), ("ddim", 100), ("dpmpp", 10), ("dpmpp", 20)]
GUIDED = [("ddim", 50), ("dpmpp", 20)]
ETA_ROWS = [("ddim", 50, 0.5), ("ddim", 50, 1.0)]  # stochastic DDIM: sigma_t(eta) of DDIM Eq. 16
QUICK_MODEL = dict(channels=1, image_size=28, base_width=8, channel_mult=(1, 2), num_res_blocks=1,
                   attn_resolutions=(), timesteps=1000, schedule="cosine", conditional=True, num_classes=10)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def draw(model, n: int, batch_size: int, seed: int, labels, **kw) -> tuple[torch.Tensor, float]:
    """n samples (balanced labels) and the wall-clock seconds they took."""
    g = torch.Generator(device=model.device).manual_seed(seed)
    out = []
    # untimed: the first network call of a batch shape builds the backend's kernels
    warm_y = labels[:batch_size].to(model.device) if labels is not None else None
    model.sample(min(batch_size, n), y=warm_y, **{**kw, "sampler": "ddim", "steps": 1, "eta": 0.0})
    sync(model.device)
    t0 = time.perf_counter()
    for i in range(0, n, batch_size):
        y = labels[i : i + batch_size].to(model.device) if labels is not None else None
        out.append(model.sample(min(batch_size, n - i), generator=g, y=y, **kw).float().cpu())
    sync(model.device)
    return torch.cat(out), time.perf_counter() - t0


def default_eta(sampler: str) -> float:
    """The noise a sampler adds: ancestral DDPM is DDIM's eta = 1; the ODE samplers add none."""
    return 1.0 if sampler == "ddpm" else 0.0


def row_eta(r: dict) -> float:
    return r.get("eta", default_eta(r["sampler"]))  # rows written before the eta column have the default


def measure(model, args, labels, sampler: str, steps, guidance: float, eta: float) -> dict:
    kw = dict(sampler=sampler, steps=steps)
    if guidance != 1.0:
        kw["guidance"] = guidance
    if sampler == "ddim":
        kw["eta"] = eta
    samples, seconds = draw(model, args.n, args.batch_size, args.seed, labels, **kw)
    m = evaluate_samples(samples, "fashion_mnist", args.n, labels=labels, device=model.device,
                         kid_subsets=args.kid_subsets, kid_subset_size=min(1000, args.n))
    row = dict(sampler=sampler, steps=steps or model.schedule.T, guidance=guidance, eta=eta,
               seconds_per_1000=seconds * 1000 / args.n, **{k: m.get(k) for k in (
                   "fid", "floor_fid", "kid", "precision", "recall", "conditional_accuracy")})
    print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}), flush=True)
    return row


def quick_checkpoint(args, device) -> Path:
    """A tiny conditional model trained for a few hundred steps (enough to prove the script runs)."""
    run = Path(tempfile.mkdtemp(prefix="sampler-table-")) / "tiny"
    data = load_dataset("fashion_mnist", split="train", n=4096)
    torch.manual_seed(args.seed)
    model = build_model("diffusion", QUICK_MODEL)
    print(f"--quick: training a tiny conditional model ({sum(p.numel() for p in model.parameters()) / 1e6:.2f}M "
          f"parameters) for {args.quick_steps} steps into {run}", flush=True)
    train(model, data, TrainConfig(epochs=100, max_steps=args.quick_steps, batch_size=64, lr=2e-3, warmup_steps=50,
                                   device=str(device), sample_every=0, progress=False), run)
    return run


def weights_hash(run: str) -> str:
    """What the rows were measured on: the sampled weights (EMA if the run has them), not the folder name."""
    folder = Path(run)
    weights = folder / "ema.safetensors" if (folder / "ema.safetensors").exists() else folder / "model.safetensors"
    return hashlib.sha256(weights.read_bytes()).hexdigest()[:16]


def trained_for(run: str) -> tuple[int, float] | None:
    """(optimizer steps, minutes) of the checkpoint, from the last line of its loss.csv."""
    log = Path(run, "loss.csv")
    if not log.exists():
        return None
    last = log.read_text().strip().splitlines()[-1].split(",")
    return int(last[0]), float(last[-1]) / 60


def training_summary(run: str, config: dict) -> str:
    """How the checkpoint was trained, from its run folder (config.json and loss.csv)."""
    t = config.get("train", {})
    trained = trained_for(run)
    done = f"{trained[0]} steps in {trained[1]:.1f} min, " if trained else ""
    return (f"{done}batch {t.get('batch_size')}, lr {t.get('lr')} ({t.get('lr_schedule', 'constant')}), "
            f"precision {t.get('precision', 'auto')}, EMA {t.get('ema_decay')}, "
            f"{config.get('model', {}).get('weighting', 'none')} loss weighting; the samples use the EMA weights")


def fmt(v, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def markdown(rows: list[dict], guided: list[dict], targets: list[str], args, info: dict) -> str:
    base = next((r for r in rows if r["sampler"] == "ddpm"), None)
    best = min(rows + guided, key=lambda r: r["fid"])
    head = "| sampler | steps | eta | w | FID | floor | precision | recall | cond. acc. | s / 1000 images | speed-up |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows + guided:
        speed = base["seconds_per_1000"] / r["seconds_per_1000"] if base else None
        lines.append(f"| {r['sampler']} | {r['steps']} | {row_eta(r):g} | {r['guidance']:g} | {fmt(r['fid'], '.3f')} | "
                     f"{fmt(r['floor_fid'], '.3f')} | {fmt(r['precision'], '.3f')} | {fmt(r['recall'], '.3f')} | "
                     f"{fmt(r['conditional_accuracy'], '.3f')} | {r['seconds_per_1000']:.1f} | "
                     f"{fmt(speed, '.1f')}x |")
    return "\n".join([
        "# Diffusion samplers: quality vs speed (Fashion-MNIST, class-conditional)",
        "",
        f"`{info['command']}`",
        "",
        f"Checkpoint {info['checkpoint']} ({info['params'] / 1e6:.2f}M parameters, T = {info['T']}, "
        f"{info['schedule']} schedule, {info['prediction']}-prediction); {args.n} samples per row with balanced "
        f"labels, batch {args.batch_size}, seed {args.seed}; device {info['device']}, torch {torch.__version__}, "
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} CPU thread(s).",
        "",
        f"Training: {info['training']}.",
        "",
        "FID / precision / recall: genlab's Fashion-MNIST classifier features, samples vs the test split; "
        "floor = train vs test images at the same n (what a perfect model scores). Conditional accuracy: the "
        "classifier agrees with the requested label. w: classifier-free guidance scale (1 = plain conditional). "
        "Seconds are wall clock for sampling only.",
        "",
        *lines,
        "",
        "\n\n".join(observations(rows, guided, best, args.n, info.get("history", []))),
        "",
        "Targets:",
        "",
        *[f"- {t}" for t in targets],
        "",
        f"Guidance curve: ![guidance curve]({Path(info['curve']).name})" if info["curve"].endswith(".png")
        else f"Guidance curve: {info['curve']}",
        "",
    ])


def observations(rows: list[dict], guided: list[dict], best: dict, n: int, history: list[dict]) -> list[str]:
    """What the table shows, read off its rows (so the words follow the numbers of each run)."""
    out = [f"Best FID: {best['fid']:.3f} ({best['sampler']}-{best['steps']}, w = {best['guidance']:g}). With {n} "
           "samples per row, FID differences of a few points are within sampling noise; read trends."]
    ddpm = next((r for r in rows if r["sampler"] == "ddpm"), None)
    ode = sorted((r for r in rows if r["sampler"] == "ddim" and row_eta(r) == 0), key=lambda r: r["steps"])
    if ddpm and len(ode) > 1:
        trend = ", ".join(f"{r['steps']} steps {r['fid']:.1f}" for r in ode)
        out.append(f"At w = 1, DDIM (eta = 0) FID by steps: {trend}; DDPM-{ddpm['steps']}: {ddpm['fid']:.1f}. "
                   "The deterministic samplers (DDIM, DPM-Solver++) follow the probability-flow ODE and carry "
                   "the network's errors to the end of the chain; DDPM's fresh noise at every step corrects "
                   "them. The closer an ODE sampler gets to the exact ODE (more steps), the more of those errors "
                   "show when the network is still rough (a short CPU run).")
        noisy = sorted((r for r in rows if r["sampler"] == "ddim" and r["steps"] == 50), key=row_eta)
        if len(noisy) > 1:
            out.append("DDIM-50 by eta (the fresh noise of Eq. 16; eta = 0 is the ODE, eta = 1 DDPM's variance "
                       "on 50 steps): " + ", ".join(f"eta {row_eta(r):g} FID {r['fid']:.1f}" for r in noisy) + ".")
        fast = [r for r in guided if r["guidance"] not in (0.0, 1.0) and r["fid"] < ddpm["fid"]]
        if fast:
            r = min(fast, key=lambda r: r["seconds_per_1000"])
            out.append(f"With guidance the fast samplers beat DDPM-{ddpm['steps']}: {r['sampler']}-{r['steps']} "
                       f"at w = {r['guidance']:g} scores FID {r['fid']:.1f} with conditional accuracy "
                       f"{r['conditional_accuracy']:.3f}, {ddpm['seconds_per_1000'] / r['seconds_per_1000']:.1f}x "
                       "faster.")
    out += training_length(rows, history)
    return out


def training_length(rows: list[dict], history: list[dict]) -> list[str]:
    """The same rows measured on earlier checkpoints of the run (kept in the rows file): what more training did."""
    pick = [("ddpm", 1000), ("ddim", 10), ("ddim", 50), ("dpmpp", 20)]
    by_steps: dict[int, dict] = {}
    for r in history + rows:
        if r.get("train_steps") and r["guidance"] == 1.0 and row_eta(r) == default_eta(r["sampler"]):
            by_steps.setdefault(r["train_steps"], {})[(r["sampler"], r["steps"])] = r
    if len(by_steps) < 2:
        return []
    head = "| training steps | minutes | " + " | ".join(f"{s}-{k}" for s, k in pick) + " |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for steps, got in sorted(by_steps.items()):
        minutes = next(iter(got.values())).get("train_minutes")
        lines.append(f"| {steps} | {fmt(minutes, '.0f')} | "
                     + " | ".join(fmt(got[k]["fid"], ".1f") if k in got else "-" for k in pick) + " |")
    return ["FID at w = 1 on earlier checkpoints of the same run (same n, seed and batch):\n\n" + "\n".join(lines)]


def check_targets(rows: list[dict], guided: list[dict]) -> list[str]:
    def find(sampler, steps, w=1.0):
        return next((r for r in rows + guided if r["sampler"] == sampler and r["steps"] == steps
                     and r["guidance"] == w and row_eta(r) == default_eta(sampler)), None)

    out = []
    ddpm = next((r for r in rows if r["sampler"] == "ddpm"), None)
    d50, p20 = find("ddim", 50), find("dpmpp", 20)  # eta = 0: the deterministic DDIM the targets name
    if ddpm and d50:
        speed = ddpm["seconds_per_1000"] / d50["seconds_per_1000"]
        ok = d50["fid"] <= 1.1 * ddpm["fid"] and speed >= 20
        out.append(f"{'PASS' if ok else 'FAIL'}: DDIM-50 FID {d50['fid']:.3f} vs DDPM-{ddpm['steps']} "
                   f"{ddpm['fid']:.3f} (within 10%: <= {1.1 * ddpm['fid']:.3f}) at {speed:.1f}x less time (>= 20x)")
    if d50 and p20:
        ok = p20["fid"] <= d50["fid"]
        out.append(f"{'PASS' if ok else 'FAIL'}: DPM-Solver++ 20 FID {p20['fid']:.3f} <= DDIM-50 {d50['fid']:.3f}")
    accs = [(r["conditional_accuracy"], r) for r in guided if 2 <= r["guidance"] <= 4
            and r["conditional_accuracy"] is not None]
    if accs:
        best, r = max(accs, key=lambda a: a[0])
        out.append(f"{'PASS' if best >= 0.9 else 'FAIL'}: conditional accuracy with CFG in [2, 4]: best "
                   f"{best:.3f} ({r['sampler']} {r['steps']}, w = {r['guidance']:g}; target >= 0.9)")
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default=None, help="class-conditional fashion_mnist diffusion run folder")
    p.add_argument("--n", type=int, default=1000, help="samples per row (and real images for the metrics)")
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--scales", default="0,1,2,3,4", help="classifier-free guidance scales of the guidance rows")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--kid-subsets", type=int, default=100)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--quick", action="store_true",
                   help="small n, no checkpoint needed: trains a tiny model first (proves the script works)")
    p.add_argument("--quick-steps", type=int, default=200, help="--quick: training steps of the tiny model")
    p.add_argument("--out", default=None, help="markdown file (default: benchmarks/sampler_table.md; "
                                               "with --quick a temporary folder)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    command = "python benchmarks/sampler_table.py " + " ".join(argv if argv is not None else sys.argv[1:])
    device = pick_device(args.device)
    if args.quick:
        args.n = min(args.n, 50)
        args.batch_size = min(args.batch_size, 50)
        args.kid_subsets = min(args.kid_subsets, 10)
    if args.checkpoint is None:
        if not args.quick:
            raise SystemExit("pass --checkpoint (a class-conditional fashion_mnist run), or --quick")
        args.checkpoint = str(quick_checkpoint(args, device))
    out = Path(args.out or (Path(tempfile.mkdtemp(prefix="sampler-table-")) / "sampler_table.md" if args.quick
                            else Path(__file__).with_name("sampler_table.md")))
    model, config = sampling_model(args.checkpoint, device, family="diffusion")
    if config.get("data", {}).get("name") != "fashion_mnist" or (model.cfg.channels, model.cfg.image_size) != (1, 28):
        raise SystemExit(f"{args.checkpoint} is not a 1x28x28 fashion_mnist model")
    labels = torch.arange(args.n) % 10 if model.num_classes else None
    info = dict(command=command, checkpoint=args.checkpoint, params=sum(p.numel() for p in model.parameters()),
                training=training_summary(args.checkpoint, config),
                T=model.schedule.T, schedule=model.cfg.schedule, prediction=model.cfg.prediction, device=str(device))

    # each finished row is kept in <out>.rows.jsonl, so an interrupted run picks up where it stopped
    done_file = out.with_name(out.stem + ".rows.jsonl")
    key = dict(weights=weights_hash(args.checkpoint), n=args.n, seed=args.seed, batch_size=args.batch_size,
               threads=torch.get_num_threads())
    trained = trained_for(args.checkpoint)
    done, history = {}, []
    if done_file.exists() and not args.quick:
        for line in done_file.read_text().splitlines():
            r = json.loads(line)
            if all(r.get(k) == v for k, v in key.items()):
                done[(r["sampler"], r["steps"], r["guidance"], row_eta(r))] = r
            elif all(r.get(k) == key[k] for k in ("n", "seed", "batch_size")):
                history.append(r)  # the same rows on other weights (earlier checkpoints)
    info["history"] = history

    def row(sampler, steps, w, eta):
        r = done.get((sampler, steps or model.schedule.T, w, eta))
        if r is None:
            r = measure(model, args, labels, sampler, steps, w, eta)
            if trained:
                r.update(train_steps=trained[0], train_minutes=round(trained[1], 1))
            out.parent.mkdir(parents=True, exist_ok=True)
            with done_file.open("a") as f:
                f.write(json.dumps({**r, **key}) + "\n")
        return r

    scales = [float(v) for v in args.scales.split(",") if v.strip()]
    todo = [(s, k, 1.0, default_eta(s)) for s, k in ROWS if k is None or k <= model.schedule.T]
    todo += [(s, k, 1.0, eta) for s, k, eta in ETA_ROWS if k <= model.schedule.T]
    if model.num_classes:
        todo += [(s, k, w, default_eta(s)) for s, k in GUIDED for w in scales if w != 1.0]

    def cost(t):  # network calls per image; guidance other than 0 or 1 runs the network twice
        return (t[1] or model.schedule.T) * (1 + (t[2] not in (0.0, 1.0)))

    results = {t: row(*t) for t in sorted(todo, key=cost)}  # cheapest first: DDPM-1000 holds back nothing
    rows = [results[t] for t in todo if t[2] == 1.0]
    guided = [results[t] for t in todo if t[2] != 1.0]
    if model.num_classes:
        curve_rows = sorted(guided + [r for r in rows if (r["sampler"], r["steps"]) in GUIDED
                                      and row_eta(r) == default_eta(r["sampler"])],
                            key=lambda r: (r["sampler"], r["guidance"]))
        info["curve"] = str(guidance_curve_plot(curve_rows, out.with_name(out.stem + "_guidance.png"),
                                                f"fashion_mnist, {args.n} samples per point"))
    else:
        info["curve"] = "none (unconditional checkpoint)"
    text = markdown(rows, guided, check_targets(rows, guided), args, info)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

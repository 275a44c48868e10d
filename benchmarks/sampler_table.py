"""Quality vs speed of the diffusion samplers on one class-conditional Fashion-MNIST model.

For one trained checkpoint (train it with configs/fashion_mnist_cond_cpu.json on a CPU: 24,000
steps, ~80 min with bf16 autocast, ~1.8 h in fp32 on an AVX-512 CPU; or configs/fashion_mnist_cond.json on a GPU):

    sampler x steps  (DDPM all T, DDIM 10/25/50/100, DPM-Solver++(2M) 10/20)
        -> FID, precision, recall, conditional accuracy, seconds per 1,000 images
    DDIM 50 with eta = 0.5 and 1 (how much fresh noise per step buys)
    classifier-free guidance scales (DDIM 50 and DPM-Solver++ 20 at w = 0, 1, 2, 3, 4)
        -> the same metrics: the guidance trade-off, also drawn as a curve (<out>_guidance.png)

Every row samples --draws (>= 5) independent draws of n images with balanced labels 0..9,
draw i from seed + i. FID etc. use genlab's Fashion-MNIST feature classifier (genlab.metrics;
~/.cache/genlab/classifiers/fashion_mnist-1x28): draw i against test set i, beside the floor
(train set i vs test set i), the sets disjoint (genlab.bench.noise). Each number is the mean
over the draws, FID with its SD. Prints a markdown table, writes it to --out and checks the
targets (on the eta = 0 DDIM rows), each PASS or FAIL only when the paired difference over
the draws is beyond two standard errors, else "within noise":

    DDIM-50 FID within 10% of DDPM-1000's at >= 20x less time
    DPM-Solver++ 20 steps no worse than DDIM-50
    conditional accuracy >= 90% at some guidance scale in [2, 4]

    python benchmarks/sampler_table.py --checkpoint RUN --n 500 --batch-size 250 --scales 0,1,2 --threads 2   # the report
    python benchmarks/sampler_table.py --quick --threads 1                         # a tiny model, a few CPU-minutes
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

from genlab.bench.noise import MIN_DRAWS, mean_sd, pm, real_draws, score_draws, verdict
from genlab.data import load_dataset
from genlab.device import pick_device
from genlab.figures.samplers import guidance_curve_plot
from genlab.fmt import num
from genlab.metrics.features import feature_extractor
from genlab.models import build_model
from genlab.train import TrainConfig, train
from genlab.train.checkpoint import sampling_model

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
    """n samples (balanced labels) from `seed`, and the wall-clock seconds they took."""
    g = torch.Generator().manual_seed(seed)  # a CPU generator: the same images on every device (genlab.rng)
    out = []
    sync(model.device)
    t0 = time.perf_counter()
    for i in range(0, n, batch_size):
        y = labels[i : i + batch_size].to(model.device) if labels is not None else None
        out.append(model.sample(min(batch_size, n - i), generator=g, y=y, **kw).float().cpu())
    sync(model.device)
    return torch.cat(out), time.perf_counter() - t0


def warm_up(model, batch_size: int, labels) -> None:
    """Untimed: the first network call of a batch shape builds the backend's kernels."""
    y = labels[:batch_size].to(model.device) if labels is not None else None
    model.sample(min(batch_size, len(labels) if labels is not None else batch_size), y=y,
                 sampler="ddim", steps=1, eta=0.0)
    sync(model.device)


def default_eta(sampler: str) -> float:
    """The noise a sampler adds: ancestral DDPM is DDIM's eta = 1; the ODE samplers add none."""
    return 1.0 if sampler == "ddpm" else 0.0


def row_eta(r: dict) -> float:
    return r.get("eta", default_eta(r["sampler"]))  # rows written before the eta column have the default


def measure(model, args, labels, real, extractor, sampler: str, steps, guidance: float, eta: float) -> dict:
    """One row: --draws independent draws of n samples, each scored against its own test set."""
    kw = dict(sampler=sampler, steps=steps)
    if guidance != 1.0:
        kw["guidance"] = guidance
    if sampler == "ddim":
        kw["eta"] = eta
    warm_up(model, args.batch_size, labels)
    samples, seconds = zip(*(draw(model, args.n, args.batch_size, args.seed + i, labels, **kw)
                             for i in range(args.draws)))
    m = score_draws(extractor, list(samples), real, labels=labels)
    per_1000 = [s * 1000 / args.n for s in seconds]
    row = dict(sampler=sampler, steps=steps or model.schedule.T, guidance=guidance, eta=eta,
               seconds_per_1000=mean_sd(per_1000)[0], seconds_per_1000_draws=per_1000,
               **{k: m.get(k) for k in ("fid", "fid_sd", "fid_draws", "floor_fid", "floor_fid_sd", "floor_fid_draws",
                                        "kid", "precision", "recall", "conditional_accuracy",
                                        "conditional_accuracy_draws")})
    print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()
                      if not k.endswith("_draws")}), flush=True)
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


def load_rows(done_file: Path, key: dict) -> tuple[dict, list[dict]]:
    """Finished rows of this exact measurement (same weights, feature network, n, draws, seed, batch,
    threads), and the history: the same rows on other weights (earlier checkpoints) scored the same way.
    Rows scored with another feature network (or written before it was recorded) are never used."""
    done, history = {}, []
    if not done_file.exists():
        return done, history
    same_scoring = ("features", "n", "draws", "seed", "batch_size")
    for line in done_file.read_text().splitlines():
        r = json.loads(line)
        if all(r.get(k) == v for k, v in key.items()):
            done[(r["sampler"], r["steps"], r["guidance"], row_eta(r))] = r
        elif all(r.get(k) == key[k] for k in same_scoring):
            history.append(r)
    return done, history


def name(r: dict) -> str:
    eta = "" if row_eta(r) == default_eta(r["sampler"]) else f" (eta {row_eta(r):g})"
    w = "" if r["guidance"] == 1.0 else f" at w = {r['guidance']:g}"
    label = {"ddpm": "DDPM", "ddim": "DDIM", "dpmpp": "DPM++"}.get(r["sampler"], r["sampler"])
    return f"{label}-{r['steps']}{eta}{w}"


def paired(a: dict, b: dict, key: str = "fid") -> list[float] | None:
    """Draw-by-draw differences a - b (same seeds, same test sets), or None without per-draw values."""
    da, db = a.get(f"{key}_draws"), b.get(f"{key}_draws")
    if not da or not db or len(da) != len(db):
        return None
    return [x - y for x, y in zip(da, db)]


def versus(a: dict, b: dict) -> str:
    """'DDIM-50 vs DDPM-1000: +3.1 ± 0.8 (paired over 5 draws): higher' from the numbers only."""
    d = paired(a, b)
    if d is None:
        return f"{name(a)} vs {name(b)}: noise not measured"
    mean, sd = mean_sd(d)
    se = sd / len(d) ** 0.5
    word = {"PASS": "lower", "FAIL": "higher", "within noise": "within noise"}[verdict([-x for x in d])]
    return f"{name(a)} vs {name(b)}: {mean:+.1f} (SE {se:.1f} over {len(d)} paired draws): {word}"


def markdown(rows: list[dict], guided: list[dict], targets: list[str], args, info: dict) -> str:
    base = next((r for r in rows if r["sampler"] == "ddpm"), None)
    head = "| sampler | steps | eta | w | FID (mean ± SD) | precision | recall | cond. acc. | s / 1000 images | speed-up |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows + guided:
        speed = base["seconds_per_1000"] / r["seconds_per_1000"] if base else None
        lines.append(f"| {r['sampler']} | {r['steps']} | {row_eta(r):g} | {r['guidance']:g} | "
                     f"{pm(r['fid'], r.get('fid_sd'), '.2f')} | {num(r['precision'], '.3f')} | "
                     f"{num(r['recall'], '.3f')} | {num(r['conditional_accuracy'], '.3f')} | "
                     f"{r['seconds_per_1000']:.1f} | {num(speed, '.1f')}x |")
    first = (rows + guided)[0]
    return "\n".join([
        "# Diffusion samplers: quality vs speed (Fashion-MNIST, class-conditional)",
        "",
        f"`{info['command']}`",
        "",
        f"Checkpoint {info['checkpoint']} ({info['params'] / 1e6:.2f}M parameters, T = {info['T']}, "
        f"{info['schedule']} schedule, {info['prediction']}-prediction); {args.draws} independent draws of "
        f"{args.n} samples per row with balanced labels (draw i from seed {args.seed} + i), batch {args.batch_size}; "
        f"device {info['device']}, torch {torch.__version__}, {platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} CPU thread(s).",
        "",
        f"Training: {info['training']}.",
        "",
        f"FID / precision / recall: features of {info['features']}; draw i against test set i ({args.n} test "
        "images), the sets disjoint. Each number is the mean over the draws; FID ± its SD over them. "
        f"Floor (what a perfect model scores at this n: train set i vs test set i): FID "
        f"{pm(first['floor_fid'], first.get('floor_fid_sd'), '.2f')} over {args.draws} disjoint draws "
        f"(from {min(first['floor_fid_draws']):.2f} to {max(first['floor_fid_draws']):.2f}). Conditional "
        "accuracy: the classifier agrees with the requested label. w: classifier-free guidance scale "
        "(1 = plain conditional). Seconds: wall clock for sampling only, mean over the draws.",
        "",
        *lines,
        "",
        "\n\n".join(observations(rows, guided, info.get("history", []))),
        "",
        "Targets (PASS / FAIL only when the paired difference over the draws is beyond two standard errors):",
        "",
        *[f"- {t}" for t in targets],
        "",
        f"Guidance curve: ![guidance curve]({Path(info['curve']).name})" if info["curve"].endswith(".png")
        else f"Guidance curve: {info['curve']}",
        "",
    ])


def observations(rows: list[dict], guided: list[dict], history: list[dict]) -> list[str]:
    """Comparisons read off the rows, each judged against its measured noise (no fixed prose)."""
    every = rows + guided
    best = min(every, key=lambda r: r["fid"])
    sds = [r["fid_sd"] for r in every if r.get("fid_sd") is not None]
    out = [f"Best mean FID: {best['fid']:.2f} ({name(best)}). SD of one row's FID over its draws: "
           f"{min(sds):.2f} to {max(sds):.2f}; the floor's SD over its draws: {every[0].get('floor_fid_sd', 0):.2f}."]
    below = [r for r in every if r["fid"] < r["floor_fid"]]
    for r in below:
        d = [x - y for x, y in zip(r["fid_draws"], r["floor_fid_draws"])]
        word = {"PASS": "below it by more than", "FAIL": "above it by more than",
                "within noise": "within"}[verdict([-x for x in d])]
        out.append(f"{name(r)} scores {r['fid']:.2f}, under the floor's mean {r['floor_fid']:.2f}: {word} the noise "
                   "of their paired draws (the floor is a random draw too, not a bound).")
    ddpm = next((r for r in rows if r["sampler"] == "ddpm"), None)
    if ddpm:
        same_noise = [r for r in rows if r is not ddpm]
        if same_noise:
            out.append("At w = 1, against " + name(ddpm) + ": " + "; ".join(versus(r, ddpm) for r in same_noise) + ".")
        fast = [r for r in guided if r["guidance"] not in (0.0, 1.0) and (d := paired(r, ddpm))
                and verdict([-x for x in d]) == "PASS"]
        if fast:
            r = min(fast, key=lambda r: r["seconds_per_1000"])
            out.append(f"With guidance a fast sampler scores lower than {name(ddpm)} beyond the noise: {versus(r, ddpm)}, "
                       f"conditional accuracy {r['conditional_accuracy']:.3f}, "
                       f"{ddpm['seconds_per_1000'] / r['seconds_per_1000']:.1f}x faster.")
    return out + training_length(rows, history)


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
        lines.append(f"| {steps} | {num(minutes, '.0f')} | "
                     + " | ".join(num(got[k]["fid"], ".1f") if k in got else "-" for k in pick) + " |")
    return ["FID at w = 1 on earlier checkpoints of the same run (same n, seed and batch):\n\n" + "\n".join(lines)]


def check_targets(rows: list[dict], guided: list[dict]) -> list[str]:
    """The targets, each PASS / FAIL only beyond the noise of its paired per-draw margins."""
    def find(sampler, steps, w=1.0):
        return next((r for r in rows + guided if r["sampler"] == sampler and r["steps"] == steps
                     and r["guidance"] == w and row_eta(r) == default_eta(sampler)), None)

    out = []
    ddpm = next((r for r in rows if r["sampler"] == "ddpm"), None)
    d50, p20 = find("ddim", 50), find("dpmpp", 20)  # eta = 0: the deterministic DDIM the targets name
    if ddpm and d50:
        speeds = [a / b for a, b in zip(ddpm["seconds_per_1000_draws"], d50["seconds_per_1000_draws"])]
        quality = verdict([1.1 * a - b for a, b in zip(ddpm["fid_draws"], d50["fid_draws"])])
        speed = verdict([v - 20 for v in speeds])
        both = "FAIL" if "FAIL" in (quality, speed) else "PASS" if quality == speed == "PASS" else "within noise"
        out.append(f"{both}: DDIM-50 FID {pm(d50['fid'], d50['fid_sd'], '.2f')} vs DDPM-{ddpm['steps']} "
                   f"{pm(ddpm['fid'], ddpm['fid_sd'], '.2f')} (within 10%: {quality}) at "
                   f"{pm(*mean_sd(speeds))}x less time (>= 20x: {speed})")
    if d50 and p20:
        out.append(f"{verdict([b - a for a, b in zip(p20['fid_draws'], d50['fid_draws'])])}: DPM-Solver++ 20 FID "
                   f"{pm(p20['fid'], p20['fid_sd'], '.2f')} no worse than DDIM-50 {pm(d50['fid'], d50['fid_sd'], '.2f')}")
    accs = [r for r in guided if 2 <= r["guidance"] <= 4 and r.get("conditional_accuracy_draws")]
    if accs:
        r = max(accs, key=lambda r: r["conditional_accuracy"])
        acc = mean_sd(r["conditional_accuracy_draws"])
        out.append(f"{verdict([a - 0.9 for a in r['conditional_accuracy_draws']])}: conditional accuracy with CFG "
                   f"in [2, 4]: best {pm(*acc, '.3f')} ({r['sampler']} {r['steps']}, w = {r['guidance']:g}; "
                   "target >= 0.9)")
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default=None, help="class-conditional fashion_mnist diffusion run folder")
    p.add_argument("--n", type=int, default=1000, help="samples per draw (and real images per test / train set)")
    p.add_argument("--draws", type=int, default=MIN_DRAWS,
                   help=f"independent draws of n samples per row (at least {MIN_DRAWS}): FID mean ± SD")
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
    if args.draws < MIN_DRAWS:
        p.error(f"--draws must be at least {MIN_DRAWS} (the SD of FID over fewer draws says little)")
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
    # the feature network and the disjoint real-image sets, before any sampling: a missing classifier fails now
    extractor = feature_extractor("fashion_mnist", 1, 28, device=device)
    real = real_draws(extractor, "fashion_mnist", args.n, args.draws, kid_subsets=args.kid_subsets)
    info = dict(command=command, checkpoint=args.checkpoint, params=sum(p.numel() for p in model.parameters()),
                training=training_summary(args.checkpoint, config), features=extractor.name,
                T=model.schedule.T, schedule=model.cfg.schedule, prediction=model.cfg.prediction, device=str(device))

    # each finished row is kept in <out>.rows.jsonl, so an interrupted run picks up where it stopped;
    # the key names what the rows were measured on AND scored with (the feature network's weights)
    done_file = out.with_name(out.stem + ".rows.jsonl")
    key = dict(weights=weights_hash(args.checkpoint), features=extractor.hash, n=args.n, draws=args.draws,
               seed=args.seed, batch_size=args.batch_size, threads=torch.get_num_threads())
    trained = trained_for(args.checkpoint)
    done, info["history"] = load_rows(done_file, key) if not args.quick else ({}, [])

    def row(sampler, steps, w, eta):
        r = done.get((sampler, steps or model.schedule.T, w, eta))
        if r is None:
            r = measure(model, args, labels, real, extractor, sampler, steps, w, eta)
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
                                                f"fashion_mnist, {args.draws} x {args.n} samples per point"))
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

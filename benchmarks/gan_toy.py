"""The GAN losses compared on toy2d's 8gaussians ring and 25-Gaussian grid (issue #18).

Every loss trains the same MLP pair (toy-gan, 3 x 128 hidden) on the same data, for the same number
of loop steps (discriminator steps), with the optimiser settings its paper recommends:

    saturating, nonsaturating, lsgan, hinge   Adam 2e-4, betas (0.5, 0.999), n_critic 1
    nonsaturating + R1 (gamma 1)               the same, plus the R1 penalty on real points
    wgan (weight clipping, c = 0.01)           Adam 1e-4, betas (0.5, 0.999), n_critic 5
    wgan-gp (lambda = 10)                      Adam 1e-4, betas (0.5, 0.9), n_critic 5

Every `--eval-every` steps it counts modes covered and high-quality samples (within 3 std of a mode;
genlab.data.toy2d.mode_coverage) on 2,500 samples, for each of `--seeds` seeds, and keeps the samples
of seed 0 for a scatter GIF per loss and shape. Writes the rows to benchmarks/gan_toy.rows.jsonl and
the "toy" section of benchmarks/gan_losses.md.

    python benchmarks/gan_toy.py                    # the report: 5000 steps, 3 seeds, 2 workers
    python benchmarks/gan_toy.py --steps 200 --seeds 1 --out /tmp/gan_toy   # a dry run
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
VARIANTS = {  # name -> toy-gan options, lr
    "saturating": (dict(loss="saturating"), 2e-4),
    "nonsaturating": (dict(loss="nonsaturating"), 2e-4),
    "nonsaturating+R1": (dict(loss="nonsaturating", r1_weight=1.0), 2e-4),
    "lsgan": (dict(loss="lsgan"), 2e-4),
    "hinge": (dict(loss="hinge"), 2e-4),
    "wgan (clip 0.01)": (dict(loss="wgan", n_critic=5, clip_value=0.01), 1e-4),
    "wgan-gp": (dict(loss="wgan-gp", n_critic=5, beta2=0.9), 1e-4),
}
SHAPES = ("8gaussians", "grid25")


def one_run(variant: str, shape: str, seed: int, steps: int, eval_every: int, workdir: str) -> dict:
    """Train one loss on one shape with one seed; mode counts every eval_every steps; seed 0 keeps its samples."""
    import torch

    torch.set_num_threads(1)
    from genlab.data.toy2d import load_toy2d, mode_coverage
    from genlab.models import build_model
    from genlab.models.toy_diffusion import energy_distance
    from genlab.train import TrainConfig, train

    options, lr = VARIANTS[variant]
    data = load_toy2d("train", shape=shape, n=20000, seed=seed)
    test = load_toy2d("test", shape=shape, n=5000, seed=seed)
    out = Path(workdir) / f"{shape}-{variant.replace(' ', '_')}-s{seed}"
    shutil.rmtree(out, ignore_errors=True)
    torch.manual_seed(seed)
    model = build_model("toy-gan", dict(options))
    curve, frames, seconds = [], [], 0.0
    for k, stop in enumerate(range(eval_every, steps + 1, eval_every)):
        cfg = TrainConfig(epochs=10 ** 6, max_steps=stop, batch_size=256, lr=lr, warmup_steps=0, grad_clip=0,
                          ema_decay=0, weight_decay=0, device="cpu", progress=False, precision="fp32",
                          sample_every=0, num_samples=0, log_every=eval_every, seed=seed)
        t0 = time.perf_counter()
        result = train(model, data, cfg, out, resume=k > 0)
        seconds += time.perf_counter() - t0
        model = result.model
        samples = model.sample(2500, generator=torch.Generator().manual_seed(seed))
        m = mode_coverage(samples, shape)  # (the full toy-gan evaluate adds MMD, which costs more than training)
        curve.append({"step": stop, "modes": m["modes"], "high_quality": m["high_quality"],
                      "energy_distance": energy_distance(samples, test.x[:2500])})
        if seed == 0:
            g = torch.Generator().manual_seed(0)
            frames.append(model.sample(1000, generator=g).tolist())
    last = result.history[-1] if result.history else {}
    return {"variant": variant, "shape": shape, "seed": seed, "steps": steps, "seconds": round(seconds, 1),
            "num_modes": m["num_modes"], "curve": curve, "frames": frames,
            "floor_high_quality": mode_coverage(test.x[2500:], shape)["high_quality"],
            "final_losses": {k: float(v) for k, v in last.items() if k in ("d_loss", "g_loss")}}


def summarise(rows: list[dict]) -> str:
    from genlab.fmt import md_table

    out = []
    for shape in SHAPES:
        table = []
        for variant in VARIANTS:
            runs = [r for r in rows if r["shape"] == shape and r["variant"] == variant]
            if not runs:
                continue
            finals = [r["curve"][-1] for r in runs]
            modes = "/".join(str(f["modes"]) for f in finals)
            hq = "/".join(f"{f['high_quality']:.0%}" for f in finals)
            # the first evaluation at which a seed covered every mode with >= 80% high-quality samples
            reached = [next((c["step"] for c in r["curve"] if c["modes"] == r["num_modes"] and c["high_quality"] >= 0.8),
                            None) for r in runs]
            reach = "/".join("never" if s is None else str(s) for s in reached)
            worst = min(runs, key=lambda r: r["curve"][-1]["modes"])
            collapse = "-" if worst["curve"][-1]["modes"] == worst["num_modes"] else (
                f"seed {worst['seed']}: {worst['curve'][-1]['modes']}/{worst['num_modes']} modes at the end; "
                f"most modes seen {max(c['modes'] for c in worst['curve'])} "
                f"(step {max(worst['curve'], key=lambda c: c['modes'])['step']})")
            table.append([variant, f"{modes} of {runs[0]['num_modes']}", hq, reach,
                          f"{sum(r['seconds'] for r in runs) / len(runs):.0f}", collapse])
        out.append(f"**{shape}** (floor: real points are {rows[0]['floor_high_quality']:.0%} high quality "
                   "by this rule)\n\n" + md_table(
                       ["loss", "modes covered (seeds 0/1/2)", "high-quality samples", "first step with all modes "
                        "and >= 80% HQ", "s per run", "where it falls short"], table))
    return "\n\n".join(out)


def write_gifs(rows: list[dict], folder: Path) -> list[Path]:
    import torch

    from genlab.data.toy2d import load_toy2d
    from genlab.viz.points import points_gif

    paths = []
    for r in rows:
        if r["seed"] != 0 or not r["frames"]:
            continue
        data = load_toy2d("test", shape=r["shape"], n=2000)
        name = f"gan_toy_{r['shape']}_{r['variant'].split(' ')[0].replace('+', '-')}.gif"
        paths.append(points_gif([torch.tensor(f) for f in r["frames"]], folder / name, data=data.x, duration_ms=120))
    return paths


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=5000)
    p.add_argument("--eval-every", type=int, default=250)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--workers", type=int, default=2, help="runs in parallel, one thread each")
    p.add_argument("--out", default=str(HERE), help="folder for the rows, the GIFs and gan_losses.md")
    p.add_argument("--workdir", default="/tmp/gan_toy_runs")
    p.add_argument("--note", default="", help="a sentence for the report (e.g. what else ran on the machine)")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(v, s, seed, args.steps, args.eval_every, args.workdir) for s in SHAPES for v in VARIANTS
            for seed in range(args.seeds)]
    t0 = time.time()
    with ProcessPoolExecutor(args.workers) as pool:
        rows = list(pool.map(one_run, *zip(*jobs)))
    wall = time.time() - t0
    (out / "gan_toy.rows.jsonl").write_text("".join(json.dumps({k: v for k, v in r.items() if k != "frames"}) + "\n"
                                                    for r in rows))
    gifs = write_gifs(rows, out / "gan_pictures")
    from genlab.fmt import write_section

    cmd = "python " + " ".join([f"benchmarks/{Path(__file__).name}"] + (argv if argv is not None else sys.argv[1:]))
    text = (f"## Toy 2-D: the losses on 8gaussians and grid25\n\n"
            f"`{cmd}` on {datetime.date.today()}, {os.cpu_count()} CPU cores, {args.workers} runs at a time with "
            f"one thread each; {len(rows)} runs in {wall / 60:.1f} min. Each run: {args.steps} loop steps "
            f"(discriminator steps: the n_critic-5 losses make a fifth as many generator updates), batch 256, "
            f"evaluated every {args.eval_every} steps on 2,500 samples. A mode is covered when at least 20 of them "
            f"lie within 3 std of it (VEEGAN's rule). {args.note}\n\n{summarise(rows)}\n\n"
            f"Scatter GIFs of seed 0 over training: " + ", ".join(f"[{g.stem}](gan_pictures/{g.name})" for g in gifs))
    print(text)
    write_section(out / "gan_losses.md", "toy", text, title="# The GAN losses compared (issue #18)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

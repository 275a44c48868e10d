"""GANs on Fashion-MNIST for a fixed CPU budget each (issue #18): the losses, and the conditional ablation.

    python benchmarks/gan_fashion_mnist.py losses --minutes 10        # every loss, one after another
    python benchmarks/gan_fashion_mnist.py conditional --minutes 30   # cGAN -> +SN -> +projection -> +FM
    python benchmarks/gan_fashion_mnist.py losses --minutes 0.2 --n 200 --out /tmp/gfm   # a dry run

Each row trains genlab's `gan` family with the one training loop, stopped by the time budget
(genlab.bench.quality, the engine of `genlab bench --quality`), then scores the EMA generator:
5 independent draws of n samples, draw i against test set i, FID ± its SD over the draws beside
the floor (train set i vs test set i), KID, precision, recall (genlab.bench.noise); conditional
rows add the class accuracy of the samples by genlab's Fashion-MNIST classifier (the FID feature
network), whose own test accuracy is printed beside it. Differences between rows are called only
beyond two standard errors of the paired per-draw differences.

Extra pictures: a grid per row side by side, each run's loss curve, a class grid per conditional row,
and, for the two WGANs, the critic's weight distribution under clipping vs under the gradient penalty
and the distribution of the critic's gradient norm at interpolates (what the penalty pins to 1).
Writes benchmarks/gan_losses.md (section "fashion") or benchmarks/gan_conditional.md.
Needs the feature classifier: `genlab train classifier --dataset fashion_mnist
--out ~/.cache/genlab/classifiers/fashion_mnist-1x28`.
"""

from __future__ import annotations

import argparse
import datetime
import json
import shutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BASE = dict(z_dim=64, g_width=64, d_width=64)          # the DCGAN pair for 28 px (0.9M + 0.2M parameters)
TRAIN = dict(batch_size=64, lr=2e-4, warmup_steps=0, ema_decay=0.999, weight_decay=0.0, grad_clip=0.0,
             lr_schedule="constant")
LOSS_ROWS = {  # name -> (model options, training options): each loss with its paper's optimiser settings
    "saturating": (dict(loss="saturating"), {}),
    "nonsaturating": (dict(loss="nonsaturating"), {}),
    "lsgan": (dict(loss="lsgan"), {}),
    "hinge": (dict(loss="hinge"), {}),
    "wgan (clip 0.01)": (dict(loss="wgan", n_critic=5, clip_value=0.01), dict(lr=5e-5)),
    "wgan-gp": (dict(loss="wgan-gp", n_critic=5, beta1=0.0, beta2=0.9), dict(lr=1e-4)),
}
COND = dict(conditional=True, loss="hinge")
CONDITIONAL_ROWS = {
    "cGAN (one-hot maps into D)": (dict(COND, d_cond="concat"), {}),
    "+ spectral norm": (dict(COND, d_cond="concat", spectral_norm=True), {}),
    "+ projection": (dict(COND, d_cond="projection", spectral_norm=True), {}),
    "+ feature matching": (dict(COND, d_cond="projection", spectral_norm=True, feature_matching=1.0), {}),
}


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name).strip("_").replace("__", "_")


def run_row(name: str, model: dict, train_opts: dict, args, workdir: Path) -> dict:
    import torch

    from genlab.bench.quality import QualityConfig, run_quality
    from genlab.train.checkpoint import load_checkpoint

    run_dir = workdir / slug(name)
    shutil.rmtree(run_dir, ignore_errors=True)
    cfg = QualityConfig(minutes=args.minutes, n=args.n, draws=args.draws, family="gan", dataset="fashion_mnist",
                        run_dir=str(run_dir), recipe_model={**BASE, **model}, train={**TRAIN, **train_opts},
                        device="cpu")
    q = run_quality(cfg, workdir / f"{slug(name)}_grid", log=lambda m: print(f"[{name}] {m}", flush=True))
    gan = load_checkpoint(run_dir)[1]  # the EMA model: the generator that was scored
    gan.eval()
    gen = torch.Generator().manual_seed(0)
    gan.sample(100, generator=gen)  # warm-up
    t0 = time.perf_counter()
    gan.sample(1000, generator=gen)
    per_1000 = time.perf_counter() - t0
    return dict(name=name, model=cfg.recipe_model, train=cfg.train, steps=q["steps"], seconds=q["seconds"],
                epochs=q["epochs"], metrics=q["metrics"], sample_1000_s=per_1000, run_dir=str(run_dir),
                conditional=bool(model.get("conditional")))


def side_by_side(rows: list[dict], path: Path) -> Path:
    import torch

    from genlab.figures.samplers import labelled_rows
    from genlab.train.checkpoint import load_checkpoint

    pics = []
    for r in rows:
        gan = load_checkpoint(r["run_dir"])[1].eval()
        y = torch.arange(16) % 10 if r["conditional"] else None
        pics.append(gan.sample(16, generator=torch.Generator().manual_seed(0), y=y))
    return labelled_rows(pics, [r["name"] for r in rows], path, title="16 samples per row (EMA generator, seed 0)")


def wgan_figure(rows: list[dict], path: Path) -> Path | None:
    """Critic weights under clipping vs under the penalty; critic gradient norms at interpolates for both."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from genlab.data import load_dataset
    from genlab.data.base import to_float_image
    from genlab.train.checkpoint import load_checkpoint
    from genlab.viz.plots import save_figure

    runs = {r["model"]["loss"]: r for r in rows if r["model"]["loss"] in ("wgan", "wgan-gp")}
    if len(runs) < 2:
        return None
    real = to_float_image(load_dataset("fashion_mnist", "test").x[:512])
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2), dpi=120)
    for loss, r in runs.items():
        gan = load_checkpoint(r["run_dir"])[0].eval()  # the trained critic (the EMA averages the generator only)
        w = torch.cat([p.detach().flatten() for p in gan.discriminator.parameters()])
        axes[0].hist(w.numpy(), bins=100, alpha=0.6, label=f"{loss}: |w| max {float(w.abs().max()):.3g}", log=True)
        with torch.no_grad():
            fake = gan.sample(512, generator=torch.Generator().manual_seed(0))
        e = torch.rand(512, 1, 1, 1, generator=torch.Generator().manual_seed(1))
        x = (e * real + (1 - e) * fake).requires_grad_(True)
        (grad,) = torch.autograd.grad(gan.discriminator(x)[0].sum(), x)
        norms = grad.flatten(1).norm(dim=1)
        axes[1].hist(norms.numpy(), bins=60, alpha=0.6, label=f"{loss}: median {float(norms.median()):.3g}")
    axes[0].set_title("critic weights (clipping piles them at +-c)", fontsize=9)
    axes[1].set_title("||grad_x D(x_hat)|| at real/fake interpolates", fontsize=9)
    for ax in axes:
        ax.legend(fontsize=7)
    return save_figure(fig, path)


def table(rows: list[dict], classifier_acc: float | None) -> str:
    from genlab.bench.noise import pm
    from genlab.fmt import md_table, num

    head = ["row", "steps (epochs)", "FID ± SD", "floor", "KID", "precision", "recall"]
    conditional = any(r["conditional"] for r in rows)
    if conditional:
        head.append("class accuracy")
    head += ["1,000 samples (s)"]
    body = []
    for r in rows:
        m = r["metrics"]
        cells = [r["name"], f"{r['steps']} ({r['epochs']:.1f})", pm(m["fid"], m.get("fid_sd"), ".3g"),
                 pm(m.get("floor_fid"), m.get("floor_fid_sd"), ".3g"), num(m.get("kid"), ".3g"),
                 num(m.get("precision"), ".3f"), num(m.get("recall"), ".3f")]
        if conditional:
            cells.append(num(m.get("conditional_accuracy"), ".3f"))
        cells.append(f"{r['sample_1000_s']:.3f}")
        body.append(cells)
    note = ""
    if conditional and classifier_acc is not None:
        note = f"\n\nThe classifier that judges the class accuracy scores {classifier_acc:.4f} on the real test split."
    return md_table(head, body) + note


def paired(rows: list[dict]) -> str:
    """Each row against the best one, draw by draw: mean FID difference and the verdict."""
    from genlab.bench.noise import mean_sd, verdict

    best = min(rows, key=lambda r: r["metrics"]["fid"])
    lines = []
    for r in rows:
        if r is best or "fid_draws" not in r["metrics"]:
            continue
        d = [a - b for a, b in zip(r["metrics"]["fid_draws"], best["metrics"]["fid_draws"])]
        mean, sd = mean_sd(d)
        v = verdict(d)
        lines.append(f"- {r['name']} vs {best['name']}: FID higher by {mean:.3g} (SD of the paired difference "
                     f"{sd:.2g}): " + ("worse beyond the noise" if v == "PASS" else "better beyond the noise"
                                       if v == "FAIL" else "within the noise"))
    return "\n".join(lines)


def classifier_accuracy() -> float | None:
    from genlab.cli.sample import load_classifier
    from genlab.data import load_dataset
    from genlab.metrics.family import evaluate
    from genlab.metrics.features import find_classifier

    try:
        clf = load_classifier(str(find_classifier("fashion_mnist", 1, 28)), "cpu")
    except Exception as e:  # noqa: BLE001 (reported, not hidden)
        print(f"classifier accuracy not measured: {e}")
        return None
    return float(evaluate(clf.eval(), load_dataset("fashion_mnist", "test"))["accuracy"])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("which", choices=("losses", "conditional"))
    p.add_argument("--minutes", type=float, default=10.0, help="training budget of each row")
    p.add_argument("--n", type=int, default=1000, help="samples per draw")
    p.add_argument("--draws", type=int, default=5)
    p.add_argument("--rows", default="", help="comma-separated row names to run (default: all)")
    p.add_argument("--out", default=str(HERE))
    p.add_argument("--workdir", default="runs/bench_gan")
    p.add_argument("--note", default="", help="a sentence for the report (what else ran on the machine)")
    args = p.parse_args(argv)
    import torch

    out, workdir = Path(args.out), Path(args.workdir) / args.which
    (out / "gan_pictures").mkdir(parents=True, exist_ok=True)
    spec = LOSS_ROWS if args.which == "losses" else CONDITIONAL_ROWS
    names = [n.strip() for n in args.rows.split(",") if n.strip()] or list(spec)
    t0 = time.time()
    rows = [run_row(n, *spec[n], args, workdir) for n in names]
    wall = time.time() - t0
    pics = out / "gan_pictures"
    tag = "fm_losses" if args.which == "losses" else "fm_conditional"
    links = [side_by_side(rows, pics / f"{tag}_samples.png")]
    for r in rows:
        links.append(Path(shutil.copy(Path(r["run_dir"]) / "loss.png", pics / f"{tag}_{slug(r['name'])}_loss.png")))
        if r["conditional"]:
            from genlab.figures.gan import class_grid
            from genlab.train.checkpoint import load_checkpoint

            gan = load_checkpoint(r["run_dir"])[1].eval()
            links.append(class_grid(gan, pics / f"{tag}_{slug(r['name'])}_classes.png",
                                    generator=torch.Generator().manual_seed(0)))
    if args.which == "losses":
        w = wgan_figure(rows, pics / "fm_wgan_clip_vs_gp.png")
        links += [w] if w else []
    acc = classifier_accuracy() if args.which == "conditional" else None
    (out / f"{tag}.rows.jsonl").write_text("".join(json.dumps(r, default=str) + "\n" for r in rows))
    cmd = "python " + " ".join([f"benchmarks/{Path(__file__).name}"] + (argv if argv is not None else sys.argv[1:]))
    text = (f"## Fashion-MNIST: {'the losses' if args.which == 'losses' else 'the conditional ablation'}, "
            f"{args.minutes:g} CPU-minutes of training each\n\n"
            f"`{cmd}` on {datetime.date.today()} ({torch.get_num_threads()} torch threads, rows one after another; "
            f"{wall / 60:.0f} min in all). {args.note}\n\n"
            f"DCGAN pair {json.dumps(BASE)}, batch 64, Adam betas (0.5, 0.999) and lr 2e-4 unless the row says "
            f"otherwise, EMA 0.999 of the generator; n = {args.n} samples per draw, {args.draws} draws.\n\n"
            f"{table(rows, acc)}\n\n{paired(rows)}\n\nPictures: "
            + ", ".join(f"[{pth.stem}](gan_pictures/{pth.name})" for pth in links))
    print(text)
    from genlab.fmt import write_section

    if args.which == "losses":
        write_section(out / "gan_losses.md", "fashion", text, title="# The GAN losses compared (issue #18)")
    else:
        write_section(out / "gan_conditional.md", "conditional", text, title="# The conditional GAN (issue #18)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Fashion-MNIST benchmark of the autoencoder families: AE, VAE and HVAE.

Trains, with the one genlab training loop,
    AE    32-d bottleneck, MSE loss
    VAE   latent 32 (Bernoulli likelihood by default)
    HVAE  z1 = 32, z2 = 16, with the VAE's hidden width raised until the two
          have the same parameter count (within 1%)
then evaluates on the test split: MSE / PSNR / SSIM of reconstructions,
-ELBO and -IWAE_k in nats and bits/dim (k importance samples per image), active
units, and wall-clock seconds per training epoch. Prints a markdown table and
writes it to benchmarks/vae_results.md.

    python benchmarks/vae_fashion_mnist.py                       # quick: 1 epoch, k = 50
    python benchmarks/vae_fashion_mnist.py --epochs 30 --iwae-k 5000 --iwae-n 10000   # the report (GPU)
    python benchmarks/vae_fashion_mnist.py ... --max-minutes 25 --resume  # train the runs in --runs longer

IWAE-5000 over the whole test split costs 50 million decoder passes per
model: minutes on a GPU, many hours on a CPU (use --iwae-n to bound it).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

import torch

from genlab.data import load_dataset
from genlab.fmt import num
from genlab.metrics.likelihood import bits_per_dim, iwae_per_item, latent_diagnostics, negative_elbo
from genlab.metrics.reconstruction import reconstruction_metrics
from genlab.models import build_model
from genlab.train import TrainConfig, train


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def model_configs(args) -> dict[str, tuple[str, dict]]:
    common = dict(channels=1, image_size=28, width=args.width)
    lik = dict(likelihood=args.likelihood, binarize=args.binarize, kl_warmup_steps=args.kl_warmup_steps)
    hvae = dict(common, hidden=args.hidden, z1_dim=args.latent_dim, z2_dim=args.z2_dim, **lik)
    target = n_params(build_model("hvae", hvae))
    # the VAE gets the hidden width that brings its parameter count closest to the HVAE's
    def vae_params(hidden):
        return n_params(build_model("vae", dict(common, hidden=hidden, latent_dim=args.latent_dim)))

    best = min(range(args.hidden, 2 * args.hidden + 1, 2), key=lambda h: abs(vae_params(h) - target))
    return {
        "AE": ("ae", dict(common, hidden=args.hidden, latent_dim=args.ae_latent_dim, recon_loss="mse")),
        "VAE": ("vae", dict(common, hidden=best, latent_dim=args.latent_dim, **lik)),
        "HVAE": ("hvae", hvae),
    }


def evaluate(model, test, args, run: Path) -> dict:
    out = reconstruction_metrics(model, test, n=args.eval_n)
    if model.family == "ae":
        return out
    out.update(negative_elbo(model, test, n=args.eval_n))
    t = time.time()
    bounds = iwae_per_item(model, test, k=args.iwae_k, n=args.iwae_n, batch_size=args.iwae_batch)
    torch.save(bounds, run / "iwae_per_item.pt")  # the same test images for every model: paired comparisons
    nats = -bounds.mean().item()
    out.update(iwae_k=args.iwae_k, neg_iwae_nats=nats, neg_iwae_bpd=bits_per_dim(nats, 784),
               neg_iwae_se=bounds.std().item() / math.sqrt(len(bounds)), iwae_seconds=time.time() - t)
    scalars, _ = latent_diagnostics(model, test, n=args.eval_n)
    out["active"] = " / ".join(f"{int(scalars[f'active_units_{layer}'])}/{int(scalars[f'latent_dims_{layer}'])}"
                               for layer in ("z2", "z1", "z") if f"active_units_{layer}" in scalars)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--max-minutes", type=float, default=0.0, help="time budget per model (0: none)")
    p.add_argument("--subset", type=int, default=None, help="train on the first N training images only")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--latent-dim", type=int, default=32, help="VAE latent / HVAE z1 size")
    p.add_argument("--z2-dim", type=int, default=16)
    p.add_argument("--ae-latent-dim", type=int, default=32)
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--likelihood", default="bernoulli", choices=("bernoulli", "gaussian"))
    p.add_argument("--binarize", action="store_true")
    p.add_argument("--kl-warmup-steps", type=int, default=0)
    p.add_argument("--iwae-k", type=int, default=50, help="importance samples per image (5000 for the report)")
    p.add_argument("--iwae-n", type=int, default=1000, help="test images for the IWAE bound")
    p.add_argument("--iwae-batch", type=int, default=64)
    p.add_argument("--eval-n", type=int, default=None, help="test images for the other metrics (default: all)")
    p.add_argument("--models", default="AE,VAE,HVAE")
    p.add_argument("--resume", action="store_true",
                   help="continue each model's run in --runs up to --max-minutes in all (same other options), "
                        "then re-evaluate it")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--device", default="auto")
    p.add_argument("--runs", default="runs/bench-vae", help="folder for the run folders and pictures")
    p.add_argument("--results", default=str(Path(__file__).with_name("vae_results.md")))
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    command = "python benchmarks/vae_fashion_mnist.py " + " ".join(argv if argv is not None else sys.argv[1:])

    data = load_dataset("fashion_mnist", split="train", n=args.subset)
    test = load_dataset("fashion_mnist", split="test")
    configs = model_configs(args)
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        if name not in configs:
            raise SystemExit(f"unknown model {name}; choose from {', '.join(configs)}")
        family, cfg = configs[name]
        model = build_model(family, cfg)
        tcfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, warmup_steps=100,
                           max_minutes=args.max_minutes, device=args.device, sample_every=0, progress=False)
        run = Path(args.runs) / name.lower()
        resume = args.resume and (run / "state.pt").exists()
        if (run / "model.safetensors").exists() and not resume:
            raise SystemExit(f"{run} already holds a run; pass --resume to continue it, delete it or pass "
                             "another --runs")
        print(f"{'resuming' if resume else 'training'} {name} ({n_params(model) / 1e6:.3f}M parameters) on "
              f"{len(data)} images ...", flush=True)
        result = train(model, data, tcfg, run, resume=resume)
        epochs_done = result.steps / (len(data) // args.batch_size)
        trained = result.sampling_model.eval()
        metrics = evaluate(trained, test, args, run)
        trained.save_artifacts(test, run)
        row = dict(name=name, params=n_params(model), cfg=cfg, epochs=epochs_done,
                   sec_per_epoch=result.seconds / max(epochs_done, 1e-9), command=command,
                   threads=torch.get_num_threads(), device=str(trained.device), train_images=len(data),
                   eval_n=args.eval_n or len(test), iwae_n=min(args.iwae_n, len(test)), **metrics)
        (run / "bench_row.json").write_text(json.dumps(row, indent=1))
        print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items() if k != "cfg"}, flush=True)

    # the table holds every model benchmarked into --runs, so models may be run one process at a time
    rows = [json.loads((Path(args.runs) / n / "bench_row.json").read_text()) for n in ("ae", "vae", "hvae")
            if (Path(args.runs) / n / "bench_row.json").exists()]
    text = results_markdown(rows, args, Path(args.runs))
    print(text)
    Path(args.results).write_text(text)
    print(f"wrote {args.results}; runs and pictures in {args.runs}")
    return 0


def paired_iwae(runs: Path) -> str:
    """HVAE minus VAE -IWAE on the same test images, with the standard error of the paired difference."""
    files = [runs / name / "iwae_per_item.pt" for name in ("vae", "hvae")]
    if not all(f.exists() for f in files):
        return ""
    vae, hvae = (torch.load(f) for f in files)
    if len(vae) != len(hvae):
        return ""
    d = -(hvae - vae)  # -IWAE difference per image: negative = the HVAE's bound is better
    se = d.std().item() / math.sqrt(len(d))
    verdict = "better" if d.mean() + 2 * se < 0 else "worse" if d.mean() - 2 * se > 0 else "not different (within 2 SE)"
    return (f"HVAE vs VAE, -IWAE paired over the same {len(d)} test images: {d.mean().item():+.2f} ± {se:.2f} "
            f"nats (HVAE minus VAE; the HVAE's bound is {verdict}).")


def results_markdown(rows: list[dict], args, runs_dir: Path) -> str:
    header = ("| model | params | latent | epochs | s/epoch | test MSE | PSNR (dB) | SSIM | -ELBO (nats) | "
              "-ELBO (bits/dim) | IWAE k | -IWAE (nats) | -IWAE (bits/dim) | active units |")
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for r in rows:
        latent = (f"z1={r['cfg']['z1_dim']}, z2={r['cfg']['z2_dim']}" if "z1_dim" in r["cfg"]
                  else str(r["cfg"]["latent_dim"]))
        k = int(r["iwae_k"]) if "iwae_k" in r else None
        lines.append(f"| {r['name']} | {r['params'] / 1e6:.3f}M | {latent} | {r['epochs']:.2f} | "
                     f"{r['sec_per_epoch']:.1f} | {r['mse']:.5f} | {r['psnr']:.2f} | {r['ssim']:.3f} | "
                     f"{num(r.get('neg_elbo_nats'), '.2f')} | {num(r.get('neg_elbo_bpd'), '.4f')} | {k or '-'} | "
                     f"{num(r.get('neg_iwae_nats'), '.2f')}{' ± ' + num(r['neg_iwae_se'], '.2f') if 'neg_iwae_se' in r else ''} | "
                     f"{num(r.get('neg_iwae_bpd'), '.4f')} | "
                     f"{r.get('active', '-')} |")
    mean_mse = rows[0]["mse_mean_image"] if rows else float("nan")
    lik = ("Bernoulli on intensities in [0, 1]" + (" binarised at 0.5" if args.binarize else
           " (a cross-entropy, not a density of 8-bit data: compare only with other Bernoulli numbers)")
           if args.likelihood == "bernoulli" else "discretised Gaussian on 8-bit values (a true likelihood)")
    runs = "\n".join(f"- {r['name']}: `{r['command']}` ({r['train_images']} train images, {r['threads']} "
                     f"CPU thread(s), {r['device']}; metrics on {r['eval_n']} test images, IWAE on the first "
                     f"{r['iwae_n']})" for r in rows)
    return "\n".join([
        "# Fashion-MNIST: AE / VAE / HVAE",
        "",
        f"Machine: {platform.processor() or platform.machine()}, torch {torch.__version__}. Batch "
        f"{args.batch_size}, lr {args.lr} (AdamW, 100 warm-up steps, EMA weights evaluated).",
        "",
        runs,
        "",
        f"Likelihood: {lik}; bits/dim = nats / (784 ln 2). MSE is on the [0, 1] scale (always answering the "
        f"mean image scores {mean_mse:.5f}, i.e. {10 * math.log10(1 / mean_mse):.2f} dB). -ELBO uses one z "
        "sample per image; -IWAE uses k samples (Burda et al. 2016) and is an upper bound on -log p(x) (± its "
        "standard error over the test images). Active "
        "units: posterior-mean variance > 0.01 (Burda et al. 2016), per layer (HVAE: z2 / z1). The VAE's "
        "hidden width is chosen so its parameter count matches the HVAE's.",
        "Seconds per epoch are wall clock, including checkpoints, on a machine shared with other jobs.",
        "",
        *lines,
        "",
        paired_iwae(runs_dir),
        "",
    ])


if __name__ == "__main__":
    raise SystemExit(main())

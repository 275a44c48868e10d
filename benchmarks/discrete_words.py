"""Discrete diffusion on English words: likelihood vs simple references, novelty vs steps.

Trains a masked (absorbing) discrete diffusion model on the train split of the
word list for a time budget with the ordinary training loop, then reports

- bits per token (negative ELBO, MDLM continuous-time bound) on the held-out
  words, next to a unigram model and character n-gram models (interpolated
  Kneser-Ney) fitted on the same train split and scored on the same sequences;
- for the ancestral and MaskGIT samplers and several numbers of steps, the
  fraction of sampled words that are memorised (in the train split), novel real
  words (in the dictionary, not in the train split) or not words at all.

    python benchmarks/discrete_words.py --minutes 5
    python benchmarks/discrete_words.py --minutes 2 --process uniform

Writes its section of a markdown report (default benchmarks/discrete_results.md;
one section per process, the others are kept) and the run folder with the model, loss curve and pictures (default runs/bench_discrete_words).
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
from genlab.data.words import word_sets
from genlab.metrics.text import NGramModel, UnigramModel
from genlab.models.discrete import DiscreteDiffusion, config_for_data
from genlab.train import TrainConfig, train

REPO = Path(__file__).resolve().parents[1]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=5.0, help="training time budget")
    ap.add_argument("--process", default="absorbing", choices=["absorbing", "uniform"])
    ap.add_argument("--schedule", default="linear", choices=["linear", "cosine"])
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--samples", type=int, default=1000, help="words sampled per sampler and step count")
    ap.add_argument("--steps", type=int, nargs="+", default=[1, 2, 4, 10, 20, 50])
    ap.add_argument("--passes", type=int, default=8, help="ELBO time samples per test word")
    ap.add_argument("--run-dir", default=str(REPO / "runs" / "bench_discrete_words"))
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "discrete_results.md"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("GENLAB_DATA_DIR", str(REPO.parent / "shared" / "datasets"))

    train_set, test_set = load_dataset("words", split="train"), load_dataset("words", split="test")
    extra = dict(num_steps=1000, ce_weight=0.01) if args.process == "uniform" else {}
    model = DiscreteDiffusion(config_for_data(train_set, process=args.process, schedule=args.schedule,
                                              dim=args.dim, depth=args.depth, heads=4, **extra))
    params = sum(p.numel() for p in model.parameters())
    run_dir = Path(args.run_dir) / f"{args.process}_{args.schedule}"
    if (run_dir / "model.safetensors").exists():
        import shutil

        shutil.rmtree(run_dir)
    cfg = TrainConfig(epochs=1000, batch_size=args.batch_size, lr=args.lr, warmup_steps=200, lr_schedule="constant",
                      ema_decay=0.999, max_minutes=args.minutes, sample_every=0, log_every=100,
                      device=args.device, progress=False, seed=0)
    t0 = time.time()
    result = train(model, train_set, cfg, run_dir)
    train_s = time.time() - t0
    net = result.sampling_model.eval()
    last = result.history[-1] if result.history else {}

    # likelihoods on the same held-out sequences
    t0 = time.time()
    g = torch.Generator().manual_seed(0)
    x = test_set.x
    nats = torch.cat([net.nelbo(x[i:i + 1024], passes=args.passes, generator=g).cpu() for i in range(0, len(x), 1024)])
    L = x.shape[1]
    model_bits = float(nats.mean() / (L * math.log(2)))
    model_se = float(nats.std() / math.sqrt(len(nats)) / (L * math.log(2)))
    D, bos = train_set.meta["data_vocab"], train_set.meta["bos_id"]
    refs = [("unigram (add-one)", UnigramModel(D).fit(train_set.x).bits_per_token(x))]
    for k in (2, 3, 4, 5, 6):
        refs.append((f"{k}-gram (interpolated Kneser-Ney)", NGramModel(k, D, bos).fit(train_set.x).bits_per_token(x)))
    eval_s = time.time() - t0

    # novelty / memorisation per sampler and steps
    t0 = time.time()
    train_words, dictionary = word_sets(train_set)
    rows = net.quality_vs_steps(train_words, dictionary, args.samples, tuple(args.steps))
    sample_s = time.time() - t0
    artifacts = net.save_artifacts(test_set, run_dir / "artifacts")
    examples = net.sample_text(24, torch.Generator().manual_seed(1), sampler="ancestral", steps=50)
    infill = [f"`{p}` -> " + ", ".join(net.infill(p, 8, torch.Generator().manual_seed(2)))
              for p in ("c__t", "s___e", "___ing", "pre*")]

    lines = [f"# Discrete diffusion on words ({args.process} process, {args.schedule} schedule)", "",
             f"Generated by `python benchmarks/discrete_words.py {' '.join(sys.argv[1:])}` on "
             f"{platform.machine()} with {args.threads} CPU thread(s) "
             f"(device {next(net.parameters()).device}).", "",
             f"- data: {len(train_set)} train / {len(test_set)} test words (hashed split), sequences of "
             f"{L} tokens (letters then padding; padding counts as tokens, so a model must predict word length)",
             f"- model: bidirectional Transformer, dim {args.dim}, depth {args.depth}, {params / 1e6:.2f} M parameters; "
             f"objective: negative ELBO ({'MDLM continuous time' if args.process == 'absorbing' else 'D3PM, T=1000, + 0.01 CE'})",
             f"- training: {result.steps} steps of batch {args.batch_size} in {train_s / 60:.1f} min "
             f"({result.steps * args.batch_size / len(train_set):.1f} epochs), lr {args.lr:g}, EMA 0.999; "
             f"last logged train bound {float(last.get('nelbo_bits', float('nan'))):.3f} bits/token", "",
             "## Held-out likelihood (bits per token, lower is better)", "",
             "| model | bits/token | bits/word |", "|---|---|---|",
             f"| discrete diffusion (upper bound: -ELBO, {args.passes} time samples/word) | "
             f"{model_bits:.3f} ± {model_se:.3f} | {model_bits * L:.2f} |"]
    lines += [f"| {name} | {b:.3f} | {b * L:.2f} |" for name, b in refs]
    lines += ["", f"(references fitted on the train split, scored on the same {len(x)} test sequences; "
              f"evaluation took {eval_s:.0f} s)", "",
              "## Samples vs number of steps", "",
              f"{args.samples} samples per row. memorised: in the train split; novel: a dictionary word held out "
              f"of training; non-word: neither (malformed rows included); unique: distinct words / samples.", "",
              "| sampler | steps | memorised | novel | non-word | malformed | unique |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['sampler']} | {r['steps']} | {r['memorised']:.3f} | {r['novel']:.3f} | {r['non_word']:.3f} | "
              f"{r['malformed']:.3f} | {r['unique']:.3f} |" for r in rows]
    lines += ["", f"(sampling took {sample_s:.0f} s)", "", "## Examples", "",
              "Ancestral, 50 steps: " + ", ".join(examples), "", "Infilling (ancestral, 10 steps):", ""]
    lines += [f"- {s}" for s in infill]
    lines += ["", "Pictures and text panels: " + ", ".join(p.name for p in artifacts) + f" in `{run_dir / 'artifacts'}`."]
    text = "\n".join(lines) + "\n"
    write_section(args.out, f"words-{args.process}", text, title="# Discrete diffusion benchmarks")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

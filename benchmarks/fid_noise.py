"""How noisy FID is at a given n: the floor (n train vs n test images) over disjoint draws.

A perfect generator scores the floor; its spread over disjoint draws is the noise of a
single FID at this n (samples scored against the same feature network). Needs the
dataset's feature classifier (`genlab train classifier --dataset fashion_mnist`); the
numbers hold for that classifier's weights only (its hash is printed).

    python benchmarks/fid_noise.py --n 500 --draws 20      # 20 disjoint train/test pairs of 500
    python benchmarks/fid_noise.py --n 2000 --draws 5      # Fashion-MNIST's test split holds 5 x 2000
"""

from __future__ import annotations

import argparse
import sys

import torch

from genlab.bench.noise import MIN_DRAWS, mean_sd, real_draws
from genlab.metrics.features import feature_extractor
from genlab.device import pick_device


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="fashion_mnist")
    p.add_argument("--n", type=int, default=500, help="images per set")
    p.add_argument("--draws", type=int, default=MIN_DRAWS, help=f"disjoint train/test pairs (at least {MIN_DRAWS})")
    p.add_argument("--channels", type=int, default=1)
    p.add_argument("--image-size", type=int, default=28)
    p.add_argument("--classifier", default=None, help="classifier run folder (default: the dataset's, in GENLAB_HOME)")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = p.parse_args(argv)
    if args.draws < MIN_DRAWS or args.n < 10:
        p.error(f"--draws must be at least {MIN_DRAWS} and --n at least 10")
    if args.threads:
        torch.set_num_threads(args.threads)
    extractor = feature_extractor(args.dataset, args.channels, args.image_size, path=args.classifier,
                                  device=pick_device(args.device))
    real = real_draws(extractor, args.dataset, args.n, args.draws, data_dir=args.data_dir, kid_subsets=10)
    floor = real.floor()
    fids = floor["floor_fid_draws"]
    mean, sd = mean_sd(fids)
    command = "python benchmarks/fid_noise.py " + " ".join(argv if argv is not None else sys.argv[1:])
    print(f"`{command}`: {real.floor_source}, features {extractor.name}")
    print("FID per draw: " + ", ".join(f"{v:.2f}" for v in fids))
    print(f"| {args.n} | {mean:.2f} | {sd:.2f} | {args.draws} | {min(fids):.2f} .. {max(fids):.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

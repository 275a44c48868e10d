"""`genlab eval RUN`: a trained model's numbers on the test split.

Two kinds of number: the family's own (accuracy, reconstruction error, ELBO,
bits/token, ... from `model.evaluate`) and, for models that generate images,
FID / KID / precision / recall of samples against the test split, each printed
beside the train-vs-test floor at the same n so that it has a scale.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import GenlabError
from ..metrics.family import evaluate as evaluate_family
from ..metrics.family import has_metrics
from ..train.checkpoint import sampling_model
from ..device import pick_device
from .common import load_data, positive


def add_parser(sub) -> None:
    p = sub.add_parser("eval", help="test-split metrics of a checkpoint (family metrics, FID/KID vs floor)")
    p.add_argument("checkpoint", help="run folder written by `genlab train`")
    p.add_argument("--dataset", default=None, help="compare against this dataset (default: the training one)")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--n", type=positive(), default=5000, help="test images for the family's metrics; samples / real images for FID and KID")
    p.add_argument("--batch-size", type=positive(), default=250)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--metrics", default="all", choices=("all", "model", "samples"),
                   help="model: the family's own metrics; samples: FID & co; all: both")
    p.add_argument("--features", default="classifier", choices=("classifier", "inception"),
                   help="feature network for FID (inception needs its weights file)")
    p.add_argument("--classifier", default=None, help="feature classifier run folder (default: found by dataset)")
    p.add_argument("--inception-weights", default=None)
    p.add_argument("--kid-subsets", type=positive(), default=100)
    p.add_argument("--k", type=positive(), default=3, help="neighbours for precision/recall")
    p.add_argument("--sampler", default=None, help="diffusion: sampler for the FID samples")
    p.add_argument("--steps", type=positive(), default=None, help="diffusion: sampler steps")
    p.add_argument("--guidance", type=float, default=None, help="diffusion: classifier-free guidance scale")
    p.add_argument("--device", default="auto")
    p.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    p.set_defaults(func=run)


def _data_args(args, config: dict):
    """A namespace that loads the dataset the model was trained on, with its options."""
    opts = dict(config.get("data", {}).get("options", {}))
    ns = type("DataArgs", (), {})()
    ns.image_size, ns.channels = opts.pop("image_size", None), opts.pop("channels", None)
    ns.data_dir, ns.data_path, ns.subset = args.data_dir, opts.pop("path", None), None
    ns.data_opt = [f"{k}={v}" for k, v in opts.items() if k != "n"]
    return ns


def run(args) -> int:
    if args.json:
        try:
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise GenlabError(f"cannot create the folder for --json {args.json} ({e.strerror}); pass another path") from e
        if Path(args.json).is_dir():
            raise GenlabError(f"--json {args.json} is a folder; pass a file name, e.g. {Path(args.json) / 'eval.json'}")
    device = pick_device(args.device)
    model, config = sampling_model(args.checkpoint, device)
    dataset = args.dataset or config.get("data", {}).get("name")
    if not dataset:
        raise GenlabError(f"{args.checkpoint} does not record its dataset; pass --dataset")
    results = {"checkpoint": str(args.checkpoint), "family": model.family}
    trained_on = config.get("data", {}).get("name")
    makes_images = model.data_kind == "image" or getattr(model, "is_image", False)  # incl. image tokens
    if args.metrics == "model" and not has_metrics(model):
        raise GenlabError(f"the {model.family} family has no metrics of its own; use --metrics samples "
                          "(FID & co of its samples)")
    if args.metrics == "model" and dataset != trained_on:
        raise GenlabError(f"the {model.family} family's own metrics are on the dataset it was trained on "
                          f"({trained_on}), not {dataset}; leave out --dataset")
    if args.metrics == "samples" and not (model.can_sample and makes_images):
        raise GenlabError(f"the {model.family} model does not generate images, so there are no FID-style sample "
                          "metrics; use --metrics model")
    sampling = {k: v for k, v in {"sampler": args.sampler, "steps": args.steps, "guidance": args.guidance}.items()
                if v is not None}
    if sampling and not makes_images and not set(sampling) <= set(model.eval_options):
        raise GenlabError(f"{', '.join('--' + k for k in sampling)}: not for {model.family} checkpoints, whose "
                          "metrics fix how they sample")
    if args.metrics in ("all", "model") and has_metrics(model) and dataset == trained_on:
        test = load_data(_data_args(args, config), dataset, "test")
        own_kw = {k: v for k, v in {**sampling, "seed": args.seed}.items() if k in model.eval_options}
        own = evaluate_family(model, test, n=min(args.n, len(test)), **own_kw)
        results.update(own)
        print(f"{model.family} on {dataset} (test split):")
        for k, v in own.items():
            print(f"  {k:<24} {v:.5g}" if isinstance(v, (int, float)) else f"  {k:<24} {v}")
    if args.metrics in ("all", "samples") and model.can_sample and makes_images:
        from ..metrics.evaluate import evaluate_model, format_metrics

        kw = sampling
        if kw and model.family != "diffusion":
            raise GenlabError("--sampler/--steps/--guidance only apply to diffusion checkpoints")
        # the real images are loaded the way the training data was (image_folder path, token levels)
        options = {k: v for k, v in config.get("data", {}).get("options", {}).items()
                   if k not in ("image_size", "channels", "n")} if dataset == trained_on else {}
        metrics = evaluate_model(model, dataset, n=args.n, batch_size=args.batch_size, seed=args.seed,
                                 sample_kwargs=kw, network=args.features, classifier_path=args.classifier,
                                 inception_weights=args.inception_weights, device=device, data_dir=args.data_dir,
                                 k=args.k, kid_subsets=args.kid_subsets, data_options=options)
        print(format_metrics(metrics))
        results.update(metrics)
    if len(results) == 2:  # only checkpoint and family: neither kind of metric applied
        raise GenlabError(f"nothing to evaluate: the {model.family} model makes no images and its own metrics are "
                          f"on the dataset it was trained on ({trained_on}), not {dataset}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))
    return 0

"""`genlab visualize` pictures of latent-variable checkpoints (AE, VAE, HVAE) and the KL-weight sweep.

reconstructions, interpolation, latent-scatter, prior-samples, kl-per-dim and
hvae-layers draw one checkpoint each; kl-sweep trains one VAE per KL weight
(or compares trained runs).
"""

from __future__ import annotations

import math
from pathlib import Path

from ..errors import GenlabError
from ..figures.latent import save_kl_sweep, visualize
from ..models import build_model
from ..train import TrainConfig, train
from ..train.checkpoint import sampling_model
from ..device import pick_device
from .common import add_data_flags, generator, load_data, output_path

KINDS = {
    "reconstructions": "AE/VAE/HVAE: inputs above their reconstructions",
    "interpolation": "AE/VAE/HVAE: decoded latent interpolation between test images",
    "latent-scatter": "AE/VAE/HVAE: latent means coloured by class (PCA when >2-D)",
    "prior-samples": "VAE/HVAE: samples from the prior",
    "kl-per-dim": "VAE/HVAE: KL per latent dimension (posterior collapse)",
    "kl-sweep": "VAE: train at several KL weights (or compare vae/hvae --checkpoints a,b)",
    "hvae-layers": "HVAE: the z2-fixed grid (z2 per row, z1 resampled)",
}

_CHECKPOINT_KINDS = {  # CLI name -> (families accepted, VISUALIZE_KINDS name, default file)
    "reconstructions": (("ae", "vae", "hvae"), "reconstructions", "reconstructions.png"),
    "interpolation": (("ae", "vae", "hvae"), "interpolation", "interpolation.png"),
    "latent-scatter": (("ae", "vae", "hvae"), "latent-scatter", "latent_scatter.png"),
    "prior-samples": (("vae", "hvae"), "prior-samples", "prior_samples.png"),
    "kl-per-dim": (("vae", "hvae"), "kl-per-dim", "kl_per_dim.png"),
    "hvae-layers": (("hvae",), "hvae-z2-fixed", "hvae_z2_fixed.png"),
}


def add_visualize_parser(kinds, name: str, help_text: str) -> None:
    p = kinds.add_parser(name, help=help_text)
    add_data_flags(p, "the checkpoint's" if name != "kl-sweep" else "fashion_mnist")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    if name == "kl-sweep":
        p.add_argument("--kl-weights", default="0.1,1,4", help="comma-separated KL weights (beta) to train")
        p.add_argument("--checkpoints", default=None,
                       help="comma-separated trained vae run folders to compare instead of training")
        p.add_argument("--latent-dim", type=int, default=16)
        p.add_argument("--epochs", type=int, default=1)
        p.add_argument("--max-steps", type=int, default=0, help="cap on steps per model (0: none)")
        p.add_argument("--batch-size", type=int, default=128)
        p.add_argument("--out", default="kl_sweep", help="folder for the runs and kl_sweep.png")
        p.set_defaults(func=_run_kl_sweep)
        return
    if name not in _CHECKPOINT_KINDS:
        raise GenlabError(f"genlab visualize has no latent picture '{name}'")
    p.add_argument("--checkpoint", required=True, help="run folder written by `genlab train ae|vae|hvae`")
    p.add_argument("--out", default=None, help=f"output file (default: <checkpoint>/{_CHECKPOINT_KINDS[name][2]})")
    p.set_defaults(func=_run_checkpoint_kind, latent_kind=name)


def _test_data_for(args, config: dict):
    """The split to draw from: --dataset if given, else the training data of the checkpoint (test split)."""
    info = config.get("data", {})
    name = args.dataset or info.get("name")
    if not name:
        raise GenlabError("the checkpoint does not record its dataset; pass --dataset")
    same = {} if args.dataset else {k: v for k, v in info.get("options", {}).items()
                                    if k in ("image_size", "channels")}
    try:
        return load_data(args, name, "test", **same)
    except GenlabError as e:
        if "no split" not in str(e):
            raise
        return load_data(args, name, "train", **same)


def _check_picture_path(path: Path, flag: str) -> Path:
    """A writable .png/.jpg file path, checked before any work (else one line saying how to fix it)."""
    if path.is_dir():
        raise GenlabError(f"{flag} {path} is a folder; pass a file name, e.g. {path / 'picture.png'}")
    if path.suffix.lower() not in (".png", ".jpg", ".jpeg"):
        raise GenlabError(f"{flag} {path}: pictures are saved as .png or .jpg; pass e.g. {path.with_suffix('.png')}")
    for parent in path.parents:  # a file where a folder must go ("--out notes.txt/x.png")
        if parent.exists():
            if not parent.is_dir():
                raise GenlabError(f"{flag} {path}: {parent} is a file, not a folder; pass another path")
            break
    return path


def _run_checkpoint_kind(args) -> int:
    families, kind, default_file = _CHECKPOINT_KINDS[args.latent_kind]
    out = _check_picture_path(output_path(args.out, args.checkpoint, default_file), "--out")
    model, config = sampling_model(args.checkpoint, pick_device(args.device), family=families)
    data = _test_data_for(args, config)
    print(f"wrote {visualize(kind, model, data, out, generator=generator(args.seed))}")
    return 0


def _floats(text: str) -> list[float]:
    try:
        vals = [float(v) for v in text.split(",") if v.strip()]
    except ValueError as e:
        raise GenlabError(f"--kl-weights expects comma-separated numbers, got '{text}'") from e
    if not vals or any(not (math.isfinite(v) and v >= 0) for v in vals):
        raise GenlabError(f"--kl-weights needs one or more finite weights >= 0, got '{text}'")
    return vals


def _run_kl_sweep(args) -> int:
    device = pick_device(args.device)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise GenlabError(f"--out {out} is a file; kl-sweep writes a folder (runs and kl_sweep.png): pass --out FOLDER")
    models = []
    if args.checkpoints:
        config = None
        runs = [c for c in args.checkpoints.split(",") if c.strip()]
        if not runs:
            raise GenlabError(f"--checkpoints expects comma-separated run folders, got '{args.checkpoints}'")
        for run in runs:
            model, config = sampling_model(run.strip(), device, family=("vae", "hvae"))
            models.append(model)
        test = _test_data_for(args, config)
    else:
        name = args.dataset or "fashion_mnist"
        data, test = load_data(args, name, "train"), load_data(args, name, "test")
        for beta in _floats(args.kl_weights):
            model = build_model("vae", dict(channels=data.channels, image_size=data.image_size,
                                            latent_dim=args.latent_dim, kl_weight=beta))
            cfg = TrainConfig(epochs=args.epochs, max_steps=args.max_steps, batch_size=args.batch_size, lr=1e-3,
                              device=str(device), seed=args.seed, sample_every=0, progress=False)
            print(f"training a VAE with KL weight {beta:g}")
            result = train(model, data, cfg, out / f"vae_beta{beta:g}")
            models.append(result.sampling_model.eval())
    names = [Path(r.strip()).name for r in runs] if args.checkpoints else None
    print(f"wrote {save_kl_sweep(models, test, out / 'kl_sweep.png', generator_seed=args.seed, names=names)}")
    return 0

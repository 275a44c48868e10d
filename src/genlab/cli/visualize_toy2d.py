"""`genlab visualize toy-forward | toy-diffusion | toy-t-sweep`: the 2-D diffusion lab's pictures."""

from __future__ import annotations

from pathlib import Path

import torch

from ..diffusion.schedules import make_schedule
from ..errors import GenlabError
from ..figures.toy2d import energy_floor, forward_plot, quality_plot, t_sweep, toy_artifacts
from ..models.toy_diffusion import ToyDiffusion
from ..train import TrainConfig
from ..train.checkpoint import sampling_model
from .common import add_data_flags, load_data

KINDS = {
    "toy-forward": "toy 2-D data through the forward process",
    "toy-diffusion": "toy 2-D diffusion: samples vs data and reverse trajectories",
    "toy-t-sweep": "toy 2-D diffusion: sample quality vs number of steps T",
}


def add_visualize_parser(kinds, name: str, help_text: str) -> None:
    p = kinds.add_parser(name, help=help_text)
    p.add_argument("--seed", type=int, default=0)
    if name == "toy-forward":
        add_data_flags(p, "toy2d")
        p.add_argument("--T", type=int, default=100, help="number of diffusion steps")
        p.add_argument("--schedule", default="cosine", help="linear | cosine")
        p.add_argument("--out", default="toy_forward.png")
        p.set_defaults(func=_run_forward)
    elif name == "toy-diffusion":
        add_data_flags(p, "the checkpoint's")
        p.add_argument("--checkpoint", required=True, help="run folder written by `genlab train toy-diffusion`")
        p.add_argument("--out", default=None, help="output folder (default: <checkpoint>/pictures)")
        p.set_defaults(func=_run_checkpoint)
    elif name == "toy-t-sweep":
        add_data_flags(p, "toy2d")
        p.add_argument("--Ts", default="5,10,20,50,100,200", help="comma-separated numbers of diffusion steps T")
        p.add_argument("--epochs", type=int, default=20, help="training epochs per model")
        p.add_argument("--max-steps", type=int, default=0, help="cap on training steps per model (0: none)")
        p.add_argument("--schedule", default="cosine", help="linear | cosine")
        p.add_argument("--batch-size", type=int, default=256, help="training batch size per model")
        p.add_argument("--out", default="toy_t_sweep", help="folder for t_sweep.png")
        p.set_defaults(func=_run_t_sweep)
    else:
        raise GenlabError(f"genlab visualize has no toy picture '{name}'")


def _points(args, split: str, default_shape: str | None = None):
    over = {"shape": default_shape} if default_shape and not any(o.startswith("shape=") for o in args.data_opt) else {}
    data = load_data(args, args.dataset or "toy2d", split, **over)
    if data.kind != "points":
        raise GenlabError(f"dataset {data.name} holds {data.kind}, not points; use toy2d")
    return data


def _run_forward(args) -> int:
    s = make_schedule(args.schedule, args.T)
    data = _points(args, "test")
    ts = sorted({min(args.T - 1, round(f * (args.T - 1))) for f in (0, 0.1, 0.25, 0.5, 0.75, 1.0)})
    print(f"wrote {forward_plot(s, data.x.float(), ts, args.out, torch.Generator().manual_seed(args.seed))}")
    return 0


def _run_checkpoint(args) -> int:
    model, config = sampling_model(args.checkpoint, "cpu", family="toy-diffusion")
    shape = config.get("data", {}).get("options", {}).get("shape")
    data = _points(args, "test", shape)
    out = Path(args.out or Path(args.checkpoint) / "pictures")
    for p in toy_artifacts(model, data, out, torch.Generator().manual_seed(args.seed)):
        print(f"wrote {p}")
    return 0


def _run_t_sweep(args) -> int:
    try:
        Ts = [int(v) for v in args.Ts.split(",") if v.strip()]
    except ValueError as e:
        raise GenlabError(f"--Ts expects comma-separated integers, got '{args.Ts}'") from e
    if not Ts or min(Ts) < 2:
        raise GenlabError(f"--Ts needs numbers of steps >= 2, got '{args.Ts}'")
    train_data, test = _points(args, "train"), _points(args, "test")
    cfg = TrainConfig(**{**ToyDiffusion.train_defaults, "epochs": args.epochs, "max_steps": args.max_steps,
                         "batch_size": args.batch_size,
                         "seed": args.seed, "progress": False, "device": "cpu"})
    out = Path(args.out)
    rows = t_sweep(train_data, test, Ts, cfg, {"schedule": args.schedule})
    floor = energy_floor(test.x.float(), 1000)  # t_sweep scores n = 1000 samples against test[:1000]
    for r in rows:
        print(f"T={r['steps']:5d}  energy distance {r['energy_distance']:.4f}  chamfer {r['chamfer']:.4f}")
    path = quality_plot(rows, out / "t_sweep.png", floor, xlabel="diffusion steps T (training and sampling)",
                        title="ancestral DDPM: quality vs T")
    print(f"wrote {path}")
    return 0

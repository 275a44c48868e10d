"""`genlab visualize` pictures of a trained image diffusion model: samplers, guidance, editing."""

from __future__ import annotations

import torch

from ..diffusion.inpaint import load_mask
from ..errors import GenlabError
from ..figures.samplers import (image_shape, class_grid, class_names, ddim_interpolation, guidance_curve,
                                guidance_sweep, inpaint_images, inpainting_panel, inversion_panel,
                                parse_sampler_specs, sampler_comparison)
from ..train.checkpoint import sampling_model
from ..device import pick_device
from .common import add_data_flags, load_data, output_path, positive
from .sample import load_classifier

KINDS = {
    "class-grid": "conditional diffusion: one row of samples per class",
    "guidance-sweep": "conditional diffusion: samples at several guidance scales",
    "sampler-grid": "diffusion: ddpm/ddim/dpmpp from the same initial noise",
    "ddim-interpolation": "diffusion: DDIM decodes of slerp between two noises",
    "inversion": "diffusion: image -> DDIM inversion -> the same image",
    "inpainting": "diffusion: fill a masked region (replacement / RePaint)",
    "guidance-curve": "conditional diffusion: FID / accuracy / precision-recall vs guidance",
}
# visualize kind -> default file name
FILES = {
    "class-grid": "class_grid.png",
    "guidance-sweep": "guidance_sweep.png",
    "sampler-grid": "sampler_grid.png",
    "ddim-interpolation": "ddim_interpolation.png",
    "inversion": "inversion.png",
    "inpainting": "inpainting.png",
    "guidance-curve": "guidance_curve.png",
}


def add_visualize_parser(kinds, name: str, help_text: str) -> None:
    if name not in FILES:
        raise GenlabError(f"genlab visualize has no sampler picture '{name}'")
    p = kinds.add_parser(name, help=help_text)
    p.add_argument("--checkpoint", required=True, help="run folder written by `genlab train diffusion`")
    p.add_argument("--out", default=None, help=f"output file (default: <checkpoint>/{FILES[name]})")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    if name in ("class-grid", "guidance-sweep", "guidance-curve"):
        p.add_argument("--sampler", default=None, help="ddpm | ddim | dpmpp (default: ddim)")
    elif name == "ddim-interpolation":
        p.add_argument("--sampler", default=None, help="ddim | dpmpp (deterministic; default: ddim)")
    if name != "sampler-grid":  # its rows carry their own step counts (--samplers)
        p.add_argument("--steps", type=positive(), default=None,
                       help="network calls (default: min(50, T); all T for ddpm)")
    if name in ("class-grid", "sampler-grid", "ddim-interpolation", "inpainting"):
        p.add_argument("--guidance", type=float, default=1.0, help="classifier-free guidance scale")
    if name in ("sampler-grid", "ddim-interpolation", "inversion", "inpainting"):
        p.add_argument("--class", dest="label", type=int, default=None, help="class to generate (conditional models)")
    if name == "class-grid":
        p.add_argument("--per-class", type=positive(), default=8)
        p.add_argument("--classifier", default=None, help="noisy-classifier run folder (classifier guidance)")
        p.add_argument("--classifier-scale", type=float, default=None, help="classifier-guidance gradient scale (1)")
    elif name == "guidance-sweep":
        p.add_argument("--scales", default="0,1,2,3,5", help="comma-separated CFG scales")
    elif name == "sampler-grid":
        p.add_argument("--samplers", default=None,
                       help="rows as sampler[:steps[:eta]], comma-separated "
                            "(default: ddpm,ddim:50,ddim:10,dpmpp:20,dpmpp:10, step counts capped at T)")
        p.add_argument("--num-images", type=positive(), default=8)
    elif name == "ddim-interpolation":
        p.add_argument("--pairs", type=positive(), default=4)
        p.add_argument("--frames", type=positive(), default=9)
    elif name in ("inversion", "inpainting"):
        add_data_flags(p, "the checkpoint's")
        p.add_argument("--num-images", type=positive(), default=8)
        if name == "inversion":
            p.add_argument("--refine", type=int, default=0, help="fixed-point refinements per inversion step (>= 0)")
        else:
            p.add_argument("--mask", default="center", help="left|right|top|bottom|center|box|random or a PNG")
            p.add_argument("--resample", type=positive(), default=5, help="RePaint resampling rounds r (1 = replace; "
                           "default 5, as `genlab inpaint`)")
    elif name == "guidance-curve":
        p.add_argument("--scales", default="0,1,2,3,4", help="comma-separated CFG scales")
        p.add_argument("--n", type=positive(), default=1000, help="samples per scale")
        p.add_argument("--dataset", default=None, help="metrics dataset (default: the checkpoint's)")
    p.set_defaults(func=_run, viz_kind=name)


def _floats(text: str, flag: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError as e:
        raise GenlabError(f"{flag} expects comma-separated numbers, got '{text}'") from e
    if not values:
        raise GenlabError(f"{flag} is empty; give comma-separated numbers, e.g. 0,1,3")
    return values


def _scales(text: str, model) -> list[float]:
    """--scales of guidance-sweep / guidance-curve: classifier-free guidance scales, each finite and >= 0."""
    if not model.num_classes:
        raise GenlabError("guidance-sweep and guidance-curve need a class-conditional checkpoint (train with "
                          "--conditional); this one is unconditional")
    scales = _floats(text, "--scales")
    bad = [w for w in scales if not 0 <= w < float("inf")]
    if bad:
        raise GenlabError(f"--scales must be numbers >= 0 (0: unconditional, 1: conditional), got {bad[0]:g}")
    return scales


def checkpoint_images(args, config: dict, n: int, seed: int = 0, shape: tuple | None = None):
    """n test images (and labels) of the checkpoint's dataset, or of --dataset; shape: the model's (C, H, W)."""
    info = config.get("data", {})
    name = args.dataset or info.get("name")
    if not name:
        raise GenlabError("the checkpoint does not record its dataset; pass --dataset")
    same = {k: v for k, v in info.get("options", {}).items() if k in ("image_size", "channels", "path")}
    if args.dataset:
        same = {}
    try:
        data = load_data(args, name, "test", **same)
    except GenlabError as e:
        if "split" not in str(e):
            raise
        data = load_data(args, name, "train", **same)
    if data.kind != "image":
        raise GenlabError(f"dataset {data.name} holds {data.kind}, not images")
    idx = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:n]
    batch = data.batch(idx)
    if shape is not None and tuple(batch["x"].shape[1:]) != tuple(shape):
        raise GenlabError(f"the dataset's images are {tuple(batch['x'].shape[1:])} but the model makes {tuple(shape)}; "
                          "pass --image-size / --channels to match")
    return batch["x"], batch.get("y")


def _run(args) -> int:
    device = pick_device(args.device)
    model, config = sampling_model(args.checkpoint, device, family="diffusion")
    kind = args.viz_kind
    out = output_path(args.out, args.checkpoint, FILES[kind])
    T = model.schedule.T
    default_steps = getattr(args, "steps", None) or min(50, T)  # a T = 20 model cannot take 50
    g = torch.Generator(device=model.device).manual_seed(args.seed)
    names = class_names(config, model.num_classes)
    label = getattr(args, "label", None)
    y_for = (lambda n: torch.full((n,), label, dtype=torch.long)) if label is not None else (lambda n: None)
    kw = {"sampler": getattr(args, "sampler", None) or "ddim", "steps": getattr(args, "steps", None)}
    if kind != "guidance-sweep" and getattr(args, "guidance", 1.0) != 1.0:
        kw["guidance"] = args.guidance
    if kind == "class-grid":
        if args.classifier:
            scale = 1.0 if args.classifier_scale is None else args.classifier_scale
            kw.update(classifier=load_classifier(args.classifier, device, config), classifier_scale=scale)
            names = class_names(config, kw["classifier"].num_classes)
        elif args.classifier_scale is not None:
            raise GenlabError("--classifier-scale needs --classifier (a noisy-classifier run folder)")
        path = class_grid(model, out, args.per_class, g, names, **kw)
    elif kind == "guidance-sweep":
        path = guidance_sweep(model, out, _scales(args.scales, model), g, names, **kw)
    elif kind == "sampler-grid":
        kw.pop("sampler"), kw.pop("steps")
        specs = args.samplers or (f"ddpm,ddim:{min(50, T)},ddim:{min(10, T)},dpmpp:{min(20, T)},"
                                  f"dpmpp:{min(10, T)}")
        path = sampler_comparison(model, out, parse_sampler_specs(specs), args.num_images, g,
                                  y_for(args.num_images), **kw)
    elif kind == "ddim-interpolation":
        path = ddim_interpolation(model, out, args.pairs, args.frames, default_steps, g, y_for(args.pairs),
                                  sampler=kw["sampler"], **({"guidance": kw["guidance"]} if "guidance" in kw else {}))
    elif kind == "inversion":
        if args.refine < 0:
            raise GenlabError(f"--refine must be >= 0, got {args.refine}")
        x0, y = checkpoint_images(args, config, args.num_images, args.seed, image_shape(model))
        y = y_for(len(x0)) if label is not None else (y if model.num_classes else None)
        path, stats = inversion_panel(model, x0, out, default_steps, y, args.refine)
        print(f"round trip: MSE {stats['mse']:.3e}, max |error| {stats['max_abs']:.4f}")
    elif kind == "inpainting":
        x0, _ = checkpoint_images(args, config, args.num_images, args.seed, image_shape(model))
        mask = load_mask(args.mask, len(x0), model.cfg.image_size, torch.Generator().manual_seed(args.seed))
        filled = inpaint_images(model, x0, mask, args.steps, args.resample, y=y_for(len(x0)),
                                guidance=kw.get("guidance", 1.0), generator=g)
        path = inpainting_panel(x0, mask, [filled], out, [f"filled in\n(r = {args.resample})"],
                                title=f"inpainting, mask '{args.mask}', {args.steps or model.schedule.T} steps")
    else:  # guidance-curve
        dataset = args.dataset or config.get("data", {}).get("name")
        path, rows = guidance_curve(model, dataset, out, _scales(args.scales, model), args.n,
                                    kw["sampler"], kw["steps"] or (None if kw["sampler"] == "ddpm" else min(50, T)),
                                    args.seed, device=device)
        for r in rows:
            print(f"w={r['guidance']:<4g} FID {r['fid']:8.3f}  accuracy {r['conditional_accuracy']:.3f}  "
                  f"precision {r['precision']:.3f}  recall {r['recall']:.3f}")
    print(f"wrote {path}")
    return 0

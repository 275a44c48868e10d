"""`genlab sample`: draw images from a trained checkpoint."""

from __future__ import annotations

import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..diffusion import samplers
from ..errors import GenlabError
from ..train.checkpoint import sampling_model
from ..device import pick_device
from ..viz.files import check_new_file, check_new_folder, save_image_files, save_npz
from ..viz.grid import save_gif, save_grid, save_strip
from ..viz.points import points_gif, trajectory_plot
from ..viz.samples import save_samples
from .common import generator, output_path, positive


def add_parser(sub) -> None:
    p = sub.add_parser("sample", help="generate images from a trained checkpoint")
    p.add_argument("--checkpoint", required=True, help="run folder written by `genlab train`")
    p.add_argument("--num-images", type=positive(), default=64)
    p.add_argument("--out", default=None, help="output folder (default: <checkpoint>/generated)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--image-size", type=int, default=None, help="expected image size (checked against the model)")
    p.add_argument("--channels", type=int, default=None, help="expected channels (checked against the model)")
    g = p.add_argument_group("diffusion (Gaussian and discrete)")
    g.add_argument("--sampler", default=None, help=f"{' | '.join(samplers.available())}; discrete: ancestral | "
                   "maskgit (default: the model's)")
    g.add_argument("--steps", type=positive(), default=None,
                   help="timesteps visited, one network call each (heun: two; default: all T for ddpm, "
                   + ", ".join(f"{n} for {name}" for name, n in samplers.default_steps().items() if n) + ")")
    g.add_argument("--eta", type=float, default=None, help="--sampler ddim only: noise per step (0 = deterministic)")
    g.add_argument("--class", dest="label", type=int, default=None, help="class index to generate")
    g.add_argument("--guidance", type=float, default=None, help="classifier-free guidance scale")
    g.add_argument("--spacing", default=None, help=f"timestep spacing ({', '.join(samplers.spacing_samplers())}): "
                   f"{' | '.join(samplers.SPACINGS)} (default: uniform)")
    g.add_argument("--classifier", default=None, help="noisy-classifier run folder: classifier guidance")
    g.add_argument("--classifier-scale", type=float, default=None, help="classifier-guidance gradient scale (1)")
    g.add_argument("--temperature", type=float, default=None, help="discrete diffusion: sampling temperature")
    g.add_argument("--pattern", default=None, help='discrete diffusion (words): infill a pattern, e.g. "c__t"')
    g.add_argument("--show-intermediate", action="store_true", help="save the denoising strip x_T ... x_0")
    g.add_argument("--gif", action="store_true", help="save a GIF of the reverse process")
    add_file_flags(p)
    p.set_defaults(func=run)


def add_file_flags(p) -> None:
    f = p.add_argument_group("samples as files, for FID tools (beside the grid)")
    f.add_argument("--save-images", default=None, metavar="DIR",
                   help="one PNG per image (000000.png, ...; grey as 8-bit L, colour as RGB), the folder layout "
                   "clean-fid, torch-fidelity and pytorch-fid read, then DIR/samples.csv (index,file,class,prompt,"
                   "seed; written last). The seed column is --seed: all images come from one random stream, so "
                   "image i is reproduced by the same command (same --seed, --num-images and sampling flags, same "
                   "device kind) and cannot be drawn alone. Images only (not points or words)")
    f.add_argument("--npz", default=None, metavar="FILE",
                   help="all samples in one file, np.savez(FILE, arr_0=...): images as uint8 NxHxWxC, channel-last "
                   "(grey: NxHxWx1), as the guided-diffusion evaluator (evaluations/evaluator.py) reads; that "
                   "evaluator takes 3 channels only, so repeat a grey channel first: np.repeat(arr_0, 3, axis=3). "
                   "Points models: float32 NxD (toy 2-D data: Nx2). Not for words")
    f.add_argument("--overwrite", action="store_true",
                   help="replace an existing --npz FILE, and the numbered PNGs and samples.csv of a non-empty "
                   "--save-images DIR (other files there are kept); without it either is refused")


GAUSSIAN = ("diffusion", "toy-diffusion")  # families sampled by genlab.diffusion.samplers


def load_classifier(path: str, device, config: dict | None = None):
    """A trained noisy classifier for classifier guidance (of the diffusion run whose config.json is `config`)."""
    model, own = sampling_model(path, device, family="noisy-classifier")
    data, want = own.get("data", {}), (config or {}).get("data", {})
    where = {k: (d.get("name"), d.get("options", {}).get("path")) for k, d in (("clf", data), ("model", want))}
    # data of another kind (points) is the model's own error to report: it takes no classifier at all
    if want and data and want.get("kind") == data.get("kind") and where["clf"] != where["model"]:
        name = want.get("name")
        raise GenlabError(f"the classifier in {path} was trained on {data.get('name')}, the diffusion model on "
                          f"{name}: its gradients would steer towards the wrong classes; train one on the model's "
                          f"data (`genlab train noisy-classifier --dataset {name}`)")
    return model


def num_steps(model, kw) -> int:
    """Network calls the sampler will make (for the progress bar)."""
    sampler = kw.get("sampler") or model.cfg.sampler
    # as DiffusionModel.sample: the configured step count belongs to the configured sampler only
    steps = kw.get("steps") or (model.cfg.sample_steps if kw.get("sampler") in (None, model.cfg.sampler) else 0)
    steps = samplers.resolve_steps(sampler, steps or None, model.schedule.T)
    return samplers.sampler_class(sampler).network_calls(steps)


def check_shape(model, args) -> None:
    """--image-size / --channels, if given, must be what the checkpoint makes (points and words: no images)."""
    cfg = model.cfg
    grid = tuple(getattr(cfg, "grid", ()) or ())  # discrete image tokens: (C, H, W)
    have = {"image_size": grid[-1], "channels": grid[0]} if grid else \
        {"image_size": getattr(cfg, "image_size", None), "channels": getattr(cfg, "channels", None)}
    made = f"{have['channels']}x{have['image_size']}x{have['image_size']} images" if have["image_size"] else "no images"
    for name, value in have.items():
        want = getattr(args, name, None)
        if want is not None and want != value:
            raise GenlabError(f"--{name.replace('_', '-')} {want} does not match the checkpoint, whose model "
                              f"makes {made}")


def run(args) -> int:
    device = pick_device(args.device)
    model, config = sampling_model(args.checkpoint, device)
    if not model.can_sample:
        raise GenlabError(f"{args.checkpoint} holds a '{model.family}' model, which cannot generate samples")
    check_shape(model, args)
    out = output_path(args.out, args.checkpoint, "generated", folder=True)
    kw = {}
    diffusion_only = {"sampler": args.sampler, "steps": args.steps, "eta": args.eta, "guidance": args.guidance,
                      "temperature": args.temperature}
    gaussian_only = {"spacing": args.spacing, "classifier": args.classifier, "classifier-scale": args.classifier_scale}
    nrow = None
    if model.family not in GAUSSIAN and any(v is not None for v in gaussian_only.values()):
        given = [k for k, v in gaussian_only.items() if v is not None]
        raise GenlabError(f"--{', --'.join(given)} only apply to Gaussian diffusion checkpoints; "
                          f"{args.checkpoint} holds a '{model.family}' model")
    if model.family == "discrete":
        kw = {k: v for k, v in diffusion_only.items() if v is not None}
        if "eta" in kw:
            raise GenlabError("--eta applies to Gaussian diffusion (DDIM) only")
        if args.label is not None:
            kw["y"] = torch.full((args.num_images,), args.label, dtype=torch.long)
        elif model.num_classes:  # the model's own default, made explicit so samples.csv can list the classes
            kw["y"] = torch.arange(args.num_images) % model.num_classes
        if args.pattern is not None:
            tokens, fixed = model.pattern_to_tokens(args.pattern)
            kw["fixed"] = tokens.expand(args.num_images, -1).to(model.device)
            kw["fixed_mask"] = fixed.expand(args.num_images, -1).to(model.device)
            kw["letters_only"] = model.pattern_letters(args.pattern).expand(args.num_images, -1)
        if args.show_intermediate or args.gif:
            raise GenlabError("--show-intermediate/--gif are for Gaussian diffusion; for a discrete checkpoint run "
                              f"`genlab visualize discrete-reverse --checkpoint {args.checkpoint}` (the reverse "
                              "process step by step, with a GIF for image tokens)")
    elif args.temperature is not None or args.pattern is not None:
        raise GenlabError("--temperature and --pattern apply to discrete diffusion checkpoints only")
    elif model.family in GAUSSIAN:
        kw = {k: v for k, v in diffusion_only.items() if v is not None}
        if args.eta is not None and (args.sampler or model.cfg.sampler) == "ddpm":
            raise GenlabError("--eta applies to --sampler ddim only (ddpm is always ancestral, i.e. eta = 1); "
                              "add --sampler ddim")
        if args.spacing is not None:
            kw["spacing"] = args.spacing
        if args.classifier is not None:
            kw["classifier"] = load_classifier(args.classifier, device, config)
            kw["classifier_scale"] = 1.0 if args.classifier_scale is None else args.classifier_scale
        elif args.classifier_scale is not None:
            raise GenlabError("--classifier-scale needs --classifier (a noisy-classifier run folder)")
        nrow = class_labels(args, kw, kw["classifier"].num_classes if "classifier" in kw else model.num_classes)
        if args.show_intermediate or args.gif:
            kw["return_intermediates"] = 10 if not args.gif else 50
    elif model.family == "gan" and not any(v is not None for v in diffusion_only.values()) and not (
            args.show_intermediate or args.gif):
        nrow = class_labels(args, kw, model.num_classes)  # one network call per image: no sampler options
    else:
        given = [k for k, v in diffusion_only.items() if v is not None] + (["class"] if args.label is not None else [])
        if given or args.show_intermediate or args.gif:
            raise GenlabError(f"--{', --'.join(given) or 'show-intermediate/--gif'} only apply to diffusion "
                              f"checkpoints; {args.checkpoint} holds a '{model.family}' model")
    check_files(model, args, out)
    if model.data_kind != "image":  # points and tokens: a scatter plot, words or decoded image tokens
        return _sample_generic(model, args, out, kw)
    g = generator(args.seed)
    t0 = time.time()
    total = num_steps(model, kw) if model.family == "diffusion" else 0
    # delay: a bad option raises before the bar is drawn, so the error stays one line
    with tqdm(total=total, disable=not total, unit="step", desc="sampling", delay=0.5) as bar:
        if total:
            kw["progress"] = bar.update
        result = model.sample(args.num_images, generator=g, **kw)
    seconds = time.time() - t0
    images, frames = result if isinstance(result, tuple) else (result, None)
    print(f"{args.num_images} images in {seconds:.1f} s ({args.num_images / seconds:.1f} images/s)")
    layout = f" (no --class given: one row per class 0..{len(images) // nrow - 1})" if nrow else ""
    print(f"wrote {save_grid(images, out / 'grid.png', nrow=nrow)}{layout}")
    write_files(images, args, kw)
    if frames:
        k = min(8, args.num_images)
        if args.show_intermediate:
            idx = torch.linspace(0, len(frames) - 1, min(11, len(frames))).round().long()
            rows = [torch.stack([frames[int(j)][i] for j in idx]) for i in range(k)]
            print(f"wrote {save_strip(rows, out / 'denoising_strip.png')}")
        if args.gif:
            print(f"wrote {save_gif([f[:16] for f in frames], out / 'reverse_process.gif')}")
    return 0


def class_labels(args, kw: dict, classes: int) -> int | None:
    """kw["y"] from --class; a per-class grid (one row per class) when a conditional model gets none."""
    if args.label is not None:
        kw["y"] = torch.full((args.num_images,), args.label, dtype=torch.long)
        return None
    if not classes:
        return None
    nrow = max(1, args.num_images // classes)
    kw["y"] = torch.arange(classes).repeat_interleave(nrow)
    if nrow * classes != args.num_images:
        # said now (the run may take minutes); whether the other options are valid is checked as it starts
        print(f"no --class given: a per-class grid of {nrow} image(s) for each of the {classes} classes, "
              f"so {nrow * classes} images instead of --num-images {args.num_images}")
    args.num_images = nrow * classes
    return nrow


def _sample_generic(model, args, out: Path, kw) -> int:
    """Families whose samples are not images: points (a scatter plot) and tokens (words, decoded images)."""
    g = generator(args.seed)
    samples = model.sample(args.num_images, generator=g, **kw)
    samples, frames = samples if isinstance(samples, tuple) else (samples, None)
    shown = model.present(samples)
    paths = save_samples(shown, out / "samples.png")
    if frames and model.data_kind == "points":  # the reverse process: trajectories (and a GIF)
        paths.append(trajectory_plot([(frames, "reverse trajectories")], out / "reverse_trajectories.png"))
        if args.gif:
            paths.append(points_gif(frames, out / "reverse_process.gif"))
    for p in paths:
        if p.suffix == ".txt":
            print(p.read_text().rstrip())
        print(f"wrote {p}")
    write_files(shown, args, kw)
    return 0


def sample_kind(model) -> str:
    """What `model.present(model.sample(...))` is: 'images', 'points' or 'text' (words)."""
    if model.data_kind == "points":
        return "points"
    return "text" if model.data_kind == "tokens" and not getattr(model, "is_image", False) else "images"


def check_files(model, args, out: Path) -> None:
    """--save-images / --npz, before sampling: refused for samples they cannot hold or over earlier files."""
    kind, what = sample_kind(model), f"{args.checkpoint} holds a '{model.family}' model"
    if kind == "text" and args.save_images:
        raise GenlabError(f"--save-images writes images, and {what} of words; its samples are printed and "
                          f"written to {out / 'samples.txt'}")
    if kind == "text" and args.npz:
        raise GenlabError(f"--npz writes an array of images or points, and {what} of words; its samples are "
                          f"printed and written to {out / 'samples.txt'}")
    if kind == "points" and args.save_images:
        raise GenlabError(f"--save-images writes images, and {what} of points; --npz FILE saves them as a float32 "
                          "NxD array")
    if args.save_images:
        if Path(args.save_images).resolve() == out.resolve():
            raise GenlabError(f"--save-images {args.save_images} is the --out folder, where grid.png would be "
                              f"scored as a sample; use a folder of its own, e.g. {out / 'images'}")
        check_new_folder(args.save_images, args.overwrite)
    if args.npz:
        check_new_file(args.npz, args.overwrite)


def write_files(samples, args, kw) -> None:
    """--save-images and --npz: every path that samples calls this with what it drew (images or points)."""
    y = kw.get("y")
    labels = y.tolist() if isinstance(y, torch.Tensor) and y.dim() == 1 else None
    if args.save_images:
        paths = save_image_files(samples, args.save_images, labels=labels, seed=args.seed)
        print(f"wrote {len(paths) - 1} PNGs and {paths[-1]}")
    if args.npz:
        print(f"wrote {save_npz(samples, args.npz)}")

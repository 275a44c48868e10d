"""Pictures of a trained image diffusion model's samplers, guidance and editing.

class_grid           one row per class (conditional model, or an unconditional one + a noisy classifier)
guidance_sweep       rows = classifier-free guidance scales, columns = classes, same x_T in every row
sampler_comparison   rows = samplers / step counts, all from the same x_T
ddim_interpolation   deterministic DDIM from spherical interpolations between two x_T
inversion_panel      image -> DDIM inversion x_T -> DDIM back: the round trip and its error
inpainting_panel     original, known pixels, filled in (genlab.diffusion.inpaint)
guidance_curve       FID / conditional accuracy / precision / recall against the guidance scale

Every picture is also a `genlab visualize` kind (see add_visualize_parser).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from ..errors import GenlabError  # noqa: E402
from .grid import make_grid  # noqa: E402
from .plots import save_figure  # noqa: E402

# visualize kind -> default file name; the help texts live in cli/visualize.py EXTRA_KINDS
KINDS = {
    "class-grid": "class_grid.png",
    "guidance-sweep": "guidance_sweep.png",
    "sampler-grid": "sampler_grid.png",
    "ddim-interpolation": "ddim_interpolation.png",
    "inversion": "inversion.png",
    "inpainting": "inpainting.png",
    "guidance-curve": "guidance_curve.png",
}


def labelled_rows(rows: list[torch.Tensor], labels: list[str], path: str | Path, title: str | None = None,
                  col_labels: list[str] | None = None) -> Path:
    """Image rows (each N,C,H,W in [-1, 1]) stacked, with a label left of each row."""
    ncols = max(len(r) for r in rows)
    h = rows[0].shape[-2]
    scale = max(0.5, 0.9 * 28 / h) * h / 28  # inches per image: ~0.9" for 28 px
    fig, axes = plt.subplots(len(rows), 1, figsize=(1.6 + ncols * scale, 0.35 + len(rows) * scale * 1.02),
                             dpi=120, squeeze=False)
    for ax, row, label in zip(axes[:, 0], rows, labels):
        ax.imshow(make_grid(row, nrow=ncols, padding=1), interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        for side in ax.spines.values():
            side.set_visible(False)
        ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=7)
    if col_labels:
        w = rows[0].shape[-1] + 1
        axes[0, 0].set_xticks([1 + w * i + w / 2 for i in range(len(col_labels))], col_labels, fontsize=6)
        axes[0, 0].xaxis.tick_top()
    if title:
        fig.suptitle(title, fontsize=8, wrap=True)  # a narrow panel (few images) must not clip it
    return save_figure(fig, path)


def _image_shape(model) -> tuple[int, int, int]:
    return model.cfg.channels, model.cfg.image_size, model.cfg.image_size


def _noise(model, n: int, generator: torch.Generator | None) -> torch.Tensor:
    return torch.randn((n, *_image_shape(model)), generator=generator).to(model.device)


def class_names(config: dict | None, k: int) -> list[str]:
    names = (config or {}).get("data", {}).get("classes") or []
    return list(names) if len(names) == k else [str(i) for i in range(k)]


@torch.no_grad()
def class_grid(model, path: str | Path, per_class: int = 8, generator: torch.Generator | None = None,
               names: list[str] | None = None, **sample_kw) -> Path:
    """One row per class; sample_kw go to model.sample (sampler, steps, guidance, classifier, ...)."""
    classifier = sample_kw.get("classifier")
    k = classifier.num_classes if classifier is not None else model.num_classes
    if not k:
        raise GenlabError("a per-class grid needs a class-conditional checkpoint or --classifier")
    y = torch.arange(k).repeat_interleave(per_class)
    images = model.sample(len(y), generator=generator, y=y, **sample_kw)
    rows = list(images.cpu().split(per_class))
    return labelled_rows(rows, names or [str(i) for i in range(k)], path, title=_describe(sample_kw))


@torch.no_grad()
def guidance_sweep(model, path: str | Path, scales=(0.0, 1.0, 2.0, 3.0, 5.0), generator: torch.Generator | None = None,
                   names: list[str] | None = None, **sample_kw) -> Path:
    """Rows = CFG scales w, columns = classes; the same x_T per column in every row."""
    k = model.num_classes
    if not k:
        raise GenlabError("a guidance sweep needs a class-conditional checkpoint (train with --conditional)")
    y = torch.arange(k)
    x_T = _noise(model, k, generator)
    rows = [model.sample(k, generator=generator, y=y, guidance=float(w), x_T=x_T.clone(), **sample_kw).cpu()
            for w in scales]
    return labelled_rows(rows, [f"w = {w:g}" for w in scales], path, col_labels=names,
                         title="classifier-free guidance: " + _describe(sample_kw))


def parse_sampler_specs(text: str) -> list[tuple[str, int | None, float]]:
    """'ddpm,ddim:50,ddim:10:1.0,dpmpp:20' -> [(sampler, steps or None, eta), ...]."""
    out = []
    for item in [v.strip() for v in text.split(",") if v.strip()]:
        parts = item.split(":")
        try:
            steps = int(parts[1]) if len(parts) > 1 and parts[1] else None
            eta = float(parts[2]) if len(parts) > 2 else 0.0
        except ValueError as e:
            raise GenlabError(f"--samplers expects items like ddim:50 or ddim:50:1.0, got '{item}'") from e
        if steps is not None and steps < 1:
            raise GenlabError(f"--samplers: the step count must be >= 1 (or left out for the default), got '{item}'")
        if eta and parts[0] != "ddim":
            raise GenlabError(f"--samplers: eta applies to ddim only (ddpm is ancestral, dpmpp deterministic), "
                              f"got '{item}'")
        out.append((parts[0], steps, eta))
    if not out:
        raise GenlabError("--samplers is empty; give e.g. ddpm,ddim:50,dpmpp:20")
    return out


@torch.no_grad()
def sampler_comparison(model, path: str | Path, specs=(("ddpm", None, 0.0), ("ddim", 50, 0.0), ("ddim", 10, 0.0),
                                                      ("dpmpp", 20, 0.0), ("dpmpp", 10, 0.0)),
                       n: int = 8, generator: torch.Generator | None = None, y: torch.Tensor | None = None,
                       **sample_kw) -> Path:
    """Rows = (sampler, steps, eta), all started from the same x_T (and the same labels)."""
    import time

    x_T = _noise(model, n, generator)
    rows, labels = [], []
    for sampler, steps, eta in specs:
        g = torch.Generator(device=model.device).manual_seed(0)  # same noise stream for the stochastic ones
        t0 = time.time()
        rows.append(model.sample(n, generator=g, y=y, sampler=sampler, steps=steps, eta=eta, x_T=x_T.clone(),
                                 **sample_kw).cpu())
        n_steps = steps or (model.schedule.T if sampler == "ddpm" else "default")
        labels.append(f"{sampler} {n_steps}" + (f"\neta={eta:g}" if eta else "") + f"\n{time.time() - t0:.1f} s")
    return labelled_rows(rows, labels, path, title="same x_T in every row")


def slerp(z0: torch.Tensor, z1: torch.Tensor, alpha: float) -> torch.Tensor:
    """Spherical interpolation (Shoemake 1985), per item: keeps the norm a Gaussian x_T should have.

    slerp = sin((1 - a) theta) / sin(theta) z0 + sin(a theta) / sin(theta) z1, cos(theta) = <z0, z1> / |z0||z1|.
    """
    a, b = z0.flatten(1), z1.flatten(1)
    cos = (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))
    theta = torch.arccos(cos.clamp(-1, 1))[:, None]
    sin = torch.sin(theta)
    near = sin.abs() < 1e-6  # (anti)parallel: fall back to linear interpolation
    w0 = torch.where(near, 1 - alpha, torch.sin((1 - alpha) * theta) / torch.where(near, 1.0, sin))
    w1 = torch.where(near, torch.full_like(theta, alpha), torch.sin(alpha * theta) / torch.where(near, 1.0, sin))
    return (w0 * a + w1 * b).view_as(z0)


@torch.no_grad()
def ddim_interpolation(model, path: str | Path, pairs: int = 4, frames: int = 9, steps: int = 50,
                       generator: torch.Generator | None = None, y: torch.Tensor | None = None,
                       sampler: str = "ddim", **sample_kw) -> Path:
    """Rows = pairs of noises; columns = a deterministic sampler (DDIM eta = 0, or dpmpp) from slerp(z0, z1, a)."""
    if sampler not in ("ddim", "dpmpp"):
        raise GenlabError(f"interpolating noises needs a deterministic sampler (ddim or dpmpp), not '{sampler}'")
    z0, z1 = _noise(model, pairs, generator), _noise(model, pairs, generator)
    alphas = torch.linspace(0, 1, frames).tolist()
    cols = [model.sample(pairs, y=y, sampler=sampler, steps=steps, x_T=slerp(z0, z1, a), **sample_kw).cpu()
            for a in alphas]
    rows = [torch.stack([c[i] for c in cols]) for i in range(pairs)]
    return labelled_rows(rows, [f"pair {i + 1}" for i in range(pairs)], path,
                         col_labels=[f"{a:.2g}" for a in alphas],
                         title=f"{sampler} ({steps} steps, deterministic) from slerp(z0, z1, a)")


@torch.no_grad()
def invert_and_reconstruct(model, x0: torch.Tensor, steps: int = 50, y: torch.Tensor | None = None,
                           refine: int = 0, spacing: str = "uniform") -> tuple[torch.Tensor, torch.Tensor]:
    """(x_T, reconstruction): DDIM inversion of x0, then deterministic DDIM back from it."""
    from ..diffusion.ddim import ddim_invert, ddim_sample_loop

    model.check_labels(y)
    x0 = x0.to(model.device)
    y = y.to(model.device) if y is not None else None
    fn = model.denoiser(1.0)
    x_T = ddim_invert(model.schedule, fn, x0, steps=steps, y=y, prediction=model.cfg.prediction, spacing=spacing,
                      refine=refine)
    back = ddim_sample_loop(model.schedule, fn, x0.shape, steps=steps, y=y, prediction=model.cfg.prediction,
                            eta=0.0, spacing=spacing, clip=False, x_T=x_T)
    return x_T, back


@torch.no_grad()
def inversion_panel(model, x0: torch.Tensor, path: str | Path, steps: int = 50, y: torch.Tensor | None = None,
                    refine: int = 0) -> tuple[Path, dict]:
    """Rows: images, their DDIM latents x_T, the reconstructions, |error| x 4. Returns (path, errors)."""
    x_T, back = invert_and_reconstruct(model, x0, steps, y, refine)
    x0, x_T, back = x0.cpu(), x_T.cpu(), back.cpu()
    err = (back - x0).abs()
    stats = {"mse": float(err.pow(2).mean()), "max_abs": float(err.max()), "x_T_std": float(x_T.std())}
    rows = [x0, (x_T / 3).clamp(-1, 1), back, (err * 4 - 1).clamp(-1, 1)]
    labels = ["image x_0", "DDIM latent x_T\n(/3)", "DDIM(x_T)", "|error| x 4"]
    title = (f"DDIM inversion, {steps} steps{f', {refine} refinements' if refine else ''}: "
             f"MSE {stats['mse']:.2e}, max |error| {stats['max_abs']:.3f}, std(x_T) {stats['x_T_std']:.2f}")
    return labelled_rows(rows, labels, path, title=title), stats


@torch.no_grad()
def inpaint_images(model, x0: torch.Tensor, mask: torch.Tensor, steps: int | None = None, resample: int = 1,
                   eta: float = 1.0, y: torch.Tensor | None = None, guidance: float = 1.0,
                   generator: torch.Generator | None = None, return_intermediates: int = 0, progress=None):
    """Fill in mask == 0 of x0 with a diffusion model (RePaint with resample > 1)."""
    from ..diffusion.inpaint import inpaint

    model.check_labels(y)
    model.check_guidance(guidance, y)
    y = y.to(model.device) if y is not None else None
    steps = steps or None
    if steps is not None and not 1 <= steps <= model.schedule.T:
        raise GenlabError(f"--steps must be between 1 and the model's {model.schedule.T} timesteps, got {steps}")
    return inpaint(model.schedule, model.denoiser(guidance), x0.to(model.device), mask.to(model.device), steps=steps,
                   y=y, prediction=model.cfg.prediction, eta=eta, resample=resample, generator=generator,
                   return_intermediates=return_intermediates, progress=progress)


def inpainting_panel(x0: torch.Tensor, mask: torch.Tensor, results: list[torch.Tensor], path: str | Path,
                     labels: list[str] | None = None, title: str | None = None) -> Path:
    """Rows: originals, known pixels (the hole in grey), then one row per inpainting result."""
    mask = mask.cpu().expand_as(x0.cpu())
    masked = x0.cpu() * mask + (1 - mask) * 0.0  # grey (0 in [-1, 1]) where the model fills in
    rows = [x0.cpu(), masked] + [r.cpu() for r in results]
    labels = ["original", "known pixels"] + (labels or [f"sample {i + 1}" for i in range(len(results))])
    return labelled_rows(rows, labels, path, title=title)


def guidance_curve(model, dataset: str, path: str | Path, scales=(0.0, 1.0, 2.0, 3.0, 4.0), n: int = 1000,
                   sampler: str = "ddim", steps: int | None = 50, seed: int = 0, batch_size: int = 250,
                   **eval_kw) -> tuple[Path, list[dict]]:
    """FID, conditional accuracy, precision and recall of n samples at each CFG scale, and their plot."""
    from ..metrics import evaluate_model

    if not model.num_classes:
        raise GenlabError("a guidance curve needs a class-conditional checkpoint (train with --conditional)")
    rows = []
    for w in scales:
        m = evaluate_model(model, dataset, n=n, batch_size=batch_size, seed=seed,
                           sample_kwargs=dict(sampler=sampler, steps=steps, guidance=float(w)), **eval_kw)
        rows.append({"sampler": sampler, "steps": steps, "guidance": float(w), "floor_fid": m.get("floor_fid"),
                     **{k: m[k] for k in ("fid", "conditional_accuracy", "precision", "recall")}})
    return guidance_curve_plot(rows, path, f"{dataset}, {n} samples per point"), rows


def guidance_curve_plot(rows: list[dict], path: str | Path, title: str = "") -> Path:
    """FID (left) and conditional accuracy / precision / recall (right) against the guidance scale,
    one line per (sampler, steps) in rows."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6), dpi=120)
    groups = dict.fromkeys((r.get("sampler", ""), r.get("steps")) for r in rows)
    styles = ["-", "--", ":", "-."]
    for (sampler, steps), ls in zip(groups, styles * 4):
        rs = sorted((r for r in rows if (r.get("sampler", ""), r.get("steps")) == (sampler, steps)),
                    key=lambda r: r["guidance"])
        ws, name = [r["guidance"] for r in rs], f"{sampler} {steps or ''}".strip()
        a.plot(ws, [r["fid"] for r in rs], ls, marker="o", color="tab:red", label=f"FID, {name}")
        for key, color in (("conditional_accuracy", "tab:blue"), ("precision", "tab:green"), ("recall", "tab:orange")):
            b.plot(ws, [r[key] for r in rs], ls, marker="o", ms=3, color=color,
                   label=f"{key.replace('_', ' ')}, {name}")
    floors = [r["floor_fid"] for r in rows if r.get("floor_fid") is not None]
    if floors:
        a.axhline(floors[0], ls="--", color="grey", lw=1, label="FID floor (train vs test)")
    a.set_ylabel("FID (lower is better)")
    b.set_ylim(0, 1.02)
    for ax in (a, b):
        ax.set_xlabel("classifier-free guidance scale w")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    fig.suptitle(f"guidance trade-off: {title}", fontsize=9)
    return save_figure(fig, path)


def _describe(kw: dict) -> str:
    parts = [f"{kw.get('sampler') or 'default sampler'}"]
    if kw.get("steps"):
        parts.append(f"{kw['steps']} steps")
    if kw.get("guidance", 1.0) != 1.0:
        parts.append(f"CFG w = {kw['guidance']:g}")
    if kw.get("classifier") is not None:
        parts.append(f"classifier guidance s = {kw.get('classifier_scale', 1.0):g}")
    return ", ".join(parts)


# ----------------------------------------------------------------------------- genlab visualize
def add_visualize_parser(kinds, name: str, help_text: str) -> None:
    from ..cli.common import add_data_flags, positive

    if name not in KINDS:
        raise GenlabError(f"genlab.viz.samplers has no picture '{name}'")
    p = kinds.add_parser(name, help=help_text)
    p.add_argument("--checkpoint", required=True, help="run folder written by `genlab train diffusion`")
    p.add_argument("--out", default=None, help=f"output file (default: <checkpoint>/{KINDS[name]})")
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
    from ..cli.common import load_data

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
    from ..cli.common import output_path
    from ..train.checkpoint import sampling_model
    from ..train.device import pick_device

    device = pick_device(args.device)
    model, config = sampling_model(args.checkpoint, device, family="diffusion")
    kind = args.viz_kind
    out = output_path(args.out, args.checkpoint, KINDS[kind])
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
            from ..cli.sample import load_classifier

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
        x0, y = checkpoint_images(args, config, args.num_images, args.seed, _image_shape(model))
        y = y_for(len(x0)) if label is not None else (y if model.num_classes else None)
        path, stats = inversion_panel(model, x0, out, default_steps, y, args.refine)
        print(f"round trip: MSE {stats['mse']:.3e}, max |error| {stats['max_abs']:.4f}")
    elif kind == "inpainting":
        from ..diffusion.inpaint import load_mask

        x0, _ = checkpoint_images(args, config, args.num_images, args.seed, _image_shape(model))
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


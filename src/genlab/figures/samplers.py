"""Pictures of a trained image diffusion model's samplers, guidance and editing.

class_grid           one row per class (conditional model, or an unconditional one + a noisy classifier)
guidance_sweep       rows = classifier-free guidance scales, columns = classes, same x_T in every row
sampler_comparison   rows = samplers / step counts, all from the same x_T
ddim_interpolation   deterministic DDIM from spherical interpolations between two x_T
inversion_panel      image -> DDIM inversion x_T -> DDIM back: the round trip and its error
inpainting_panel     original, known pixels, filled in (genlab.diffusion.inpaint)
guidance_curve       FID / conditional accuracy / precision / recall against the guidance scale

Every picture is also a `genlab visualize` kind (cli/visualize_samplers.py).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from ..errors import GenlabError, ParamError  # noqa: E402
from ..diffusion.ddim import ddim_invert, ddim_sample_loop  # noqa: E402
from ..diffusion.inpaint import inpaint  # noqa: E402
from ..diffusion.timesteps import check_steps  # noqa: E402
from ..metrics import evaluate_model  # noqa: E402
from ..rng import randn  # noqa: E402
from ..viz.grid import make_grid  # noqa: E402
from ..viz.plots import save_figure  # noqa: E402

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


def image_shape(model) -> tuple[int, int, int]:
    return model.cfg.channels, model.cfg.image_size, model.cfg.image_size


def _noise(model, n: int, generator: torch.Generator | None) -> torch.Tensor:
    return randn((n, *image_shape(model)), generator, device=model.device)


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
        raise ParamError("classifier", "is needed for a per-class grid of an unconditional checkpoint "
                         "(or use a class-conditional one)")
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
            raise ParamError("samplers", f"expects items like ddim:50 or ddim:50:1.0, got '{item}'") from e
        if steps is not None and steps < 1:
            raise ParamError("samplers", f"item '{item}': the step count must be >= 1 (or left out for the default)")
        if eta and parts[0] != "ddim":
            raise ParamError("samplers", f"item '{item}': eta applies to ddim only (ddpm is ancestral, dpmpp "
                             "deterministic)")
        out.append((parts[0], steps, eta))
    if not out:
        raise ParamError("samplers", "is empty; give e.g. ddpm,ddim:50,dpmpp:20")
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
    model.check_labels(y)
    model.check_guidance(guidance, y)
    y = y.to(model.device) if y is not None else None
    steps = steps or None
    if steps is not None:
        check_steps(model.schedule.T, steps)
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

"""Pictures of latent-variable models: reconstructions, interpolations, latent
scatter plots, KL per dimension, KL-weight sweeps and the HVAE's layers.

Works with any model that has `observe`, `embed` (image -> code),
`decode` (code -> image in [-1, 1]) and `reconstruct` (the AE, VAE and HVAE);
`sample`, `posterior_stats` and `sample_fixed_z2` are used where present.
Plots use matplotlib's Agg canvas directly, so no display is needed and
pyplot's global state is never touched.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..errors import GenlabError
from ..metrics.likelihood import eval_mode, latent_diagnostics, negative_elbo
from ..viz.grid import make_grid, save_grid


def _figure(**kw) -> Figure:
    fig = Figure(**kw)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    return path


def _first(data, n: int, device) -> dict[str, torch.Tensor]:
    return {k: v.to(device) for k, v in data.batch(torch.arange(min(n, len(data)))).items()}


# ----------------------------------------------------------------------------- image grids

def interpolate(z_a: torch.Tensor, z_b: torch.Tensor, steps: int) -> torch.Tensor:
    """Codes on the straight lines z_a -> z_b: (N, D) pairs -> (N * steps, D), pair-major."""
    t = torch.linspace(0, 1, steps, device=z_a.device, dtype=z_a.dtype)[None, :, None]
    return ((1 - t) * z_a[:, None] + t * z_b[:, None]).reshape(-1, z_a.shape[1])


@torch.no_grad()
def interpolation_strip(model, x_a: torch.Tensor, x_b: torch.Tensor, steps: int = 10) -> torch.Tensor:
    """One row per pair: x_a, decode(lerp(embed(x_a), embed(x_b))) at `steps` points, x_b."""
    with eval_mode(model):
        mid = model.decode(interpolate(model.embed(x_a), model.embed(x_b), steps))
    n = x_a.shape[0]
    rows = torch.cat([model.observe(x_a)[:, None].float(), mid.reshape(n, steps, *mid.shape[1:]),
                      model.observe(x_b)[:, None].float()], dim=1)
    return rows.reshape(-1, *mid.shape[1:])


@torch.no_grad()
def save_reconstructions(model, data, path, n: int = 32, nrow: int = 8) -> Path:
    """Rows of inputs, each followed by the row of their reconstructions."""
    x = model.observe(_first(data, n, model.device)["x"]).float()
    with eval_mode(model):
        r = model.reconstruct(x).float()
    nrow = min(nrow, x.shape[0])
    rows = [t for i in range(0, x.shape[0], nrow) for t in (x[i : i + nrow], r[i : i + nrow])]
    return save_grid(torch.cat(rows), path, nrow=nrow)


@torch.no_grad()
def save_interpolation(model, data, path, pairs: int = 6, steps: int = 10) -> Path:
    """Latent interpolation strips between test images i and i + pairs."""
    x = _first(data, 2 * pairs, model.device)["x"]
    pairs = x.shape[0] // 2
    strip = interpolation_strip(model, x[:pairs], x[pairs : 2 * pairs], steps)
    return save_grid(strip, path, nrow=steps + 2)


@torch.no_grad()
def save_prior_samples(model, path, n: int = 64, generator=None) -> Path:
    with eval_mode(model):
        return save_grid(model.sample(n, generator=generator), path)


@torch.no_grad()
def save_hvae_z2_fixed(model, path, n_z2: int = 8, n_z1: int = 8, generator=None) -> Path:
    """HVAE: each row keeps one z2 ~ p(z2) and redraws z1 ~ p(z1|z2) along the row."""
    with eval_mode(model):
        return save_grid(model.sample_fixed_z2(n_z2, n_z1, generator), path, nrow=n_z1)


# ----------------------------------------------------------------------------- plots

def pca_2d(z: torch.Tensor) -> tuple[torch.Tensor, list[float]]:
    """Project (N, D) codes onto their top two principal axes: (N, 2), explained-variance fractions."""
    z = z.double()
    zc = z - z.mean(0)
    if z.shape[1] <= 2:
        return zc.float(), [1.0] * z.shape[1]
    _, s, vh = torch.linalg.svd(zc, full_matrices=False)
    var = s.pow(2)
    return (zc @ vh[:2].T).float(), (var[:2] / var.sum()).tolist()


def save_latent_scatter(z: torch.Tensor, labels: torch.Tensor | None, path, class_names=None,
                        title: str = "latent codes") -> Path:
    """Scatter of 2-D codes (or their PCA projection when D > 2), coloured by class."""
    z = z.detach().cpu()
    one_d = z.shape[1] == 1
    if one_d:  # a 1-D code: z along x, the class (jittered) along y; there is no second axis to project on
        ys = labels.cpu().float() if labels is not None and labels.numel() else torch.zeros(len(z))
        jitter = torch.rand(len(z), generator=torch.Generator().manual_seed(0)) - 0.5
        pts, frac = torch.stack([z[:, 0].float(), ys + 0.6 * jitter], 1), None
    else:
        pts, frac = pca_2d(z) if z.shape[1] != 2 else (z.float(), None)
    fig = _figure(figsize=(6, 5))
    ax = fig.add_subplot()
    cmap = matplotlib.colormaps["tab10"]
    if labels is None or labels.numel() == 0:
        ax.scatter(pts[:, 0], pts[:, -1], s=4, alpha=0.6)
    else:
        labels = labels.cpu()
        for c in labels.unique().tolist():
            m = labels == c
            name = class_names[c] if class_names and c < len(class_names) else str(c)
            ax.scatter(pts[m, 0], pts[m, -1], s=4, alpha=0.6, color=cmap(c % 10), label=name)
        ax.legend(markerscale=3, fontsize=7, loc="best")
    if one_d:
        ax.set_xlabel("z[0]"), ax.set_ylabel("class (jittered)")
    elif frac is None:
        ax.set_xlabel("z[0]"), ax.set_ylabel("z[1]")
    else:
        ax.set_xlabel(f"PC1 ({100 * frac[0]:.0f}% var)"), ax.set_ylabel(f"PC2 ({100 * frac[-1]:.0f}% var)")
        title += f" (PCA of {z.shape[1]}-D)"
    ax.set_title(title)
    return _save(fig, path)


@torch.no_grad()
def save_data_latent_scatter(model, data, path, n: int = 2000) -> Path:
    b = _first(data, n, model.device)
    with eval_mode(model):
        z = torch.cat([model.embed(b["x"][i : i + 500]) for i in range(0, b["x"].shape[0], 500)])
    return save_latent_scatter(z, b.get("y"), path, data.classes, title=f"{model.family} codes of {data.name}")


def save_kl_per_dim(kl_per_dim: dict[str, torch.Tensor], path) -> Path:
    """Bar chart of the mean KL (nats) of every latent dim, one panel per layer; ~0 = collapsed unit."""
    fig = _figure(figsize=(7, 2.6 * len(kl_per_dim)))
    for i, (layer, kl) in enumerate(kl_per_dim.items()):
        ax = fig.add_subplot(len(kl_per_dim), 1, i + 1)
        kl = kl.cpu().numpy()
        ax.bar(np.arange(len(kl)), kl, color=["tab:blue" if v > 0.01 else "tab:gray" for v in kl])
        ax.set_ylabel("KL (nats)")
        ax.set_title(f"{layer}: KL per latent dimension ({int((kl > 0.01).sum())}/{len(kl)} above 0.01 nats)")
    ax.set_xlabel("latent dimension")
    fig.tight_layout()
    return _save(fig, path)


@torch.no_grad()
def save_kl_sweep(models: list, data, path, n: int = 8, n_eval: int = 512, generator_seed: int = 0,
                  names: list[str] | None = None) -> Path:
    """How reconstructions and prior samples change with the KL weight (beta).

    models: trained VAEs (or HVAEs) differing in `cfg.kl_weight`; names: a row label
    per model (default: its family). One row per model: n test reconstructions | n prior
    samples (the same seed for all), then a panel of reconstruction nats and KL nats
    against the weight.
    """
    named = sorted(zip(names or [m.family for m in models], models), key=lambda nm: nm[1].cfg.kl_weight)
    x = _first(data, n, named[0][1].device)["x"]
    rows, stats = [], []
    for name, m in named:
        x_m = m.observe(x.to(m.device)).float()
        g = torch.Generator(device=m.device).manual_seed(generator_seed)
        with eval_mode(m):
            rows.append((f"{name}, KL weight {m.cfg.kl_weight:g}", m.reconstruct(x_m).cpu(),
                         m.sample(n, generator=g).cpu()))
        e = negative_elbo(m, data, n=n_eval)
        recon = -next(v for k, v in e.items() if k.startswith("log_px"))
        stats.append((m.cfg.kl_weight, recon, e["neg_elbo_nats"] - recon))
    fig = _figure(figsize=(10, 1.3 * (len(rows) + 1) + 2.8))
    gs = fig.add_gridspec(len(rows) + 2, 2, height_ratios=[1] * (len(rows) + 1) + [2.2])
    ax = fig.add_subplot(gs[0, 0])
    ax.imshow(make_grid(named[0][1].observe(x).float().cpu(), nrow=n)), ax.set_axis_off()
    ax.set_title("test inputs", fontsize=9)
    for i, (label, rec, smp) in enumerate(rows):
        for j, (imgs, what) in enumerate(((rec, "reconstructions"), (smp, "prior samples"))):
            ax = fig.add_subplot(gs[i + 1, j])
            ax.imshow(make_grid(imgs, nrow=n)), ax.set_axis_off()
            ax.set_title(f"{label}: {what}", fontsize=9)
    ax = fig.add_subplot(gs[-1, :])
    betas = [s[0] for s in stats]
    ax.plot(betas, [s[1] for s in stats], "o-", label="reconstruction -E[log p(x|z)]")
    ax.plot(betas, [s[2] for s in stats], "s-", label="KL(q || p)")
    if min(betas) > 0 and max(betas) / min(betas) > 8:
        ax.set_xscale("log")
    ax.set_xlabel("KL weight (beta)"), ax.set_ylabel("nats per image"), ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


# ----------------------------------------------------------------------------- all of them

def save_latent_artifacts(model, data, out_dir, generator=None) -> list[Path]:
    """The AE / VAE / HVAE pictures saved at the end of training (see figures.artifacts)."""
    out_dir = Path(out_dir)
    paths = [save_reconstructions(model, data, out_dir / "reconstructions.png"),
             save_interpolation(model, data, out_dir / "interpolation.png"),
             save_data_latent_scatter(model, data, out_dir / "latent_scatter.png")]
    if model.can_sample:
        paths.append(save_prior_samples(model, out_dir / "prior_samples.png", generator=generator))
    if hasattr(model, "posterior_stats"):
        paths.append(save_kl_per_dim(latent_diagnostics(model, data, n=1000)[1], out_dir / "kl_per_dim.png"))
    if hasattr(model, "sample_fixed_z2"):
        paths.append(save_hvae_z2_fixed(model, out_dir / "hvae_z2_fixed.png", generator=generator))
    return paths


def _needs(model, method: str, kind: str):
    if not hasattr(model, method):
        raise GenlabError(f"'{kind}' pictures need an ae, vae or hvae checkpoint (this one is a "
                          f"{getattr(model, 'family', type(model).__name__)} model)")


def visualize(kind: str, model, data, path, generator=None) -> Path:
    """One picture by name (for `genlab visualize KIND`); see VISUALIZE_KINDS."""
    if kind not in VISUALIZE_KINDS:
        raise GenlabError(f"unknown picture '{kind}'; choose one of: {', '.join(VISUALIZE_KINDS)}")
    _needs(model, VISUALIZE_KINDS[kind], kind)
    if kind == "reconstructions":
        return save_reconstructions(model, data, path)
    if kind == "interpolation":
        return save_interpolation(model, data, path)
    if kind == "latent-scatter":
        return save_data_latent_scatter(model, data, path)
    if kind == "prior-samples":
        return save_prior_samples(model, path, generator=generator)
    if kind == "kl-per-dim":
        seed = generator.initial_seed() if generator is not None else 0  # z2 is sampled for the HVAE's z1 KL
        return save_kl_per_dim(latent_diagnostics(model, data, n=1000, seed=seed)[1], path)
    return save_hvae_z2_fixed(model, path, generator=generator)


# picture name -> the model method it needs; "kl-sweep" takes several models: save_kl_sweep(models, data, path)
VISUALIZE_KINDS = {
    "reconstructions": "reconstruct",
    "interpolation": "embed",
    "latent-scatter": "embed",
    "prior-samples": "sample",         # the AE has none: its sample() says so
    "kl-per-dim": "posterior_stats",
    "hvae-z2-fixed": "sample_fixed_z2",
}

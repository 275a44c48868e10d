"""Pictures and text panels of discrete diffusion: the forward corruption with its
probability table, the reverse process step by step, and sample quality against
the number of sampling steps (`genlab visualize discrete-forward | discrete-reverse`: cli/visualize_discrete.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from ..data.words import load_words, show_tokens, tokens_to_images, word_sets
from ..diffusion.discrete import DiscreteProcess
from ..metrics.text import quality_vs_steps
from ..models.discrete import SAMPLERS
from ..viz.grid import save_gif, save_grid, save_strip
from ..viz.plots import plt, save_figure
from ..viz.samples import save_samples
from ..viz.text import save_text, text_panel


@dataclass
class TokenView:
    """How to show tokens: letters (text) or pixels (image tokens), from a dataset's meta or a model's config."""

    mask_id: int
    alphabet: str = ""
    grid: tuple = ()
    levels: int = 0

    @classmethod
    def of(cls, src) -> "TokenView":
        """From a dict (TensorDataset.meta) or a DiscreteConfig."""
        get = src.get if isinstance(src, dict) else (lambda k, d=None: getattr(src, k, d))
        vocab = get("vocab_size")
        mask = get("mask_id", -1)
        mask = vocab - 1 if mask is None or mask < 0 else mask
        levels = get("data_vocab", 0) or vocab - 1
        return cls(mask, get("alphabet", "") or "", tuple(get("grid", ()) or ()), levels)

    @property
    def is_image(self) -> bool:
        return bool(self.grid)

    def show(self, tokens: torch.Tensor) -> list[str]:
        return show_tokens(tokens.cpu(), self.alphabet, self.mask_id)

    def name(self, t: int) -> str:
        if t == self.mask_id:
            return "[MASK]"
        if self.is_image:
            return f"lvl{t}" if t < self.levels else f"<{t}>"
        if t == 0:
            return "<pad>"
        return self.alphabet[t - 1] if 1 <= t <= len(self.alphabet) else f"<{t}>"

    def images(self, tokens: torch.Tensor) -> torch.Tensor:
        """Token grids -> images in [-1, 1], [MASK] drawn red."""
        return tokens_to_images(tokens.cpu(), self.grid, self.levels, self.mask_id)


def forward_table(process: DiscreteProcess, x0: torch.Tensor, times: list[float], show: Callable,
                  names: Callable[[int], str], generator: torch.Generator | None = None) -> str:
    """One sequence x0 (L,) corrupted at several times u, each with its explicit table
    q(x_u | x_0) per position: the probability of keeping the token, of the other
    outcome(s), and the token actually drawn.

    show(tokens (N, L)) -> list of display strings; names(id) -> a token's name.
    """
    x0 = x0.reshape(1, -1).cpu()
    L = x0.shape[1]
    noise = "[MASK]" if process.absorbing else f"uniform over the {process.D} data tokens"
    lines = [f"forward process q(x_u | x_0): {process.kind} diffusion, {process.schedule.name} schedule a(u)",
             f"each token is kept with probability a(u), else replaced by a draw from pi ({noise}):",
             "q(x_u | x_0) = a(u) onehot(x_0) + (1 - a(u)) pi", "", f"x_0 = {show(x0)[0]}", ""]
    cell = max(7, max(len(names(t)) for t in range(process.K)) + 1)
    row = lambda label, cells: f"  {label:<13}" + "".join(f"{c:>{cell}}" for c in cells)  # noqa: E731
    for u in times:
        a = float(process.alpha_at(torch.tensor([float(u)])))
        x_u = process.corrupt(x0, torch.tensor([a]), generator)
        probs = process.marginal_probs(x0, torch.tensor([a]))[0]  # (L, K)
        keep = [f"{float(probs[i, int(x0[0, i])]):.3f}" for i in range(L)]
        lines.append(f"u = {u:.2f}   a(u) = {a:.3f}   x_u = {show(x_u)[0]}")
        lines.append(row("position", [str(i) for i in range(L)]))
        lines.append(row("x_0", [names(int(t)) for t in x0[0]]))
        lines.append(row("q(x_u = x_0)", keep))
        if process.absorbing:
            lines.append(row("q(x_u = MASK)", [f"{float(probs[i, process.mask_id]):.3f}" for i in range(L)]))
        else:
            lines.append(row("q(x_u = v)", [f"{(1 - a) * float(process.pi[0]):.3f}"] * L))
            lines.append("  (v: any other data token)")
        lines.append(row("drawn x_u", [names(int(t)) for t in x_u[0]]))
        lines.append("")
    return "\n".join(lines)


def reverse_text(trajectory: list[torch.Tensor], show: Callable, title: str = "") -> str:
    """The reverse process of a few sequences: one line per step, one column per sequence."""
    lines = [title] if title else []
    steps = len(trajectory) - 1
    for i, x in enumerate(trajectory):
        u = 1 - i / steps if steps else 0.0
        lines.append(f"step {i:>3}  u = {u:.2f}   " + "   ".join(show(x)))
    return "\n".join(lines)


def plot_quality_vs_steps(rows: list[dict], path: str | Path, keys=("memorised", "novel", "non_word"),
                          title: str = "sample quality vs sampling steps") -> Path:
    """Lines of rows[key] against rows["steps"], one colour per key, one line style per rows["sampler"]."""
    fig, ax = plt.subplots(figsize=(6, 4))
    styles = ["-o", "--s", ":^", "-.d"]
    samplers = sorted({r["sampler"] for r in rows})
    for si, sampler in enumerate(samplers):
        rs = sorted((r for r in rows if r["sampler"] == sampler), key=lambda r: r["steps"])
        for ki, key in enumerate(keys):
            ax.plot([r["steps"] for r in rs], [r[key] for r in rs], styles[si % len(styles)], color=f"C{ki}",
                    label=f"{key} ({sampler})")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("sampling steps")
    ax.set_ylabel("fraction of samples")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return save_figure(fig, path, dpi=120)


def forward_panel(process: DiscreteProcess, view: TokenView, x0: torch.Tensor, out: str | Path,
                  times=(0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0), generator: torch.Generator | None = None) -> list[Path]:
    """The forward process of one sequence x0 (L,): `out`.txt (probability table per time) and
    `out`.png (the table as a picture for text; a strip of corrupted images for image tokens)."""
    out = Path(out)
    x0 = x0.reshape(1, -1).cpu()
    if not view.is_image:
        text = forward_table(process, x0, list(times), view.show, view.name, generator)
        return [save_text(text, out.with_suffix(".txt")), text_panel(text, out.with_suffix(".png"))]
    a = process.alpha_at(torch.tensor([float(u) for u in times]))
    frames = torch.cat([process.corrupt(x0, a[i : i + 1], generator) for i in range(len(times))])
    noise = "[MASK] (red)" if process.absorbing else f"a uniform level of {process.D}"
    lines = [f"forward process q(x_u | x_0) per pixel: {process.kind} diffusion, {process.schedule.name} schedule;",
             f"a pixel keeps its level with probability a(u), else becomes {noise}", "",
             "   u     a(u)   q(x_u = x_0)   q(x_u = " + ("MASK)" if process.absorbing else "v), v != x_0") +
             "   changed in the strip"]
    for i, u in enumerate(times):
        ai = float(a[i])
        keep = ai if process.absorbing else ai + (1 - ai) / process.D
        other = 1 - ai if process.absorbing else (1 - ai) / process.D
        changed = float((frames[i] != x0[0]).float().mean())
        lines.append(f"{u:5.2f}  {ai:6.3f}  {keep:13.3f}  {other:13.3f}   {changed:8.3f}")
    return [save_text("\n".join(lines), out.with_suffix(".txt")), save_strip([view.images(frames)], out.with_suffix(".png"))]


@torch.no_grad()
def reverse_panel(model, out: str | Path, sampler: str | None = None, steps: int | None = None, n: int = 6,
                  generator: torch.Generator | None = None, **sample_kwargs) -> list[Path]:
    """The reverse process of n samples from a trained DiscreteDiffusion: `out`.txt/.png
    (one line per step, text) or `out`.png/.gif (image tokens, masks red)."""
    out = Path(out)
    view = TokenView.of(model.cfg)
    sampler = sampler or model.cfg.sampler
    _, traj = model.sample_tokens(n, generator, sampler=sampler, steps=steps, trajectory=True, **sample_kwargs)
    if not view.is_image:
        text = reverse_text(traj, view.show, f"reverse process, {sampler} sampler, {len(traj) - 1} steps "
                                             f"('_' = [MASK], '.' = padding)")
        return [save_text(text, out.with_suffix(".txt")), text_panel(text, out.with_suffix(".png"))]
    pick = torch.linspace(0, len(traj) - 1, min(10, len(traj))).round().long().tolist()
    frames = [view.images(traj[i]) for i in pick]
    rows = [torch.stack([f[j] for f in frames]) for j in range(n)]
    return [save_strip(rows, out.with_suffix(".png")),
            save_gif([view.images(x) for x in traj], out.with_suffix(".gif"), duration_ms=80)]


def discrete_artifacts(model, data, out: Path, generator: torch.Generator) -> list[Path]:
    """Forward process with its probability table, the reverse process step by step,
    samples (word list + infilling, or image grids) and, for words, quality vs steps."""
    g, view = generator, TokenView.of(model.cfg)
    i = 0
    if not model.is_image:  # a long word shows more
        i = int(((data.x != 0).sum(1) >= min(7, model.cfg.seq_len)).float().argmax())
    paths = forward_panel(model.process, view, data.x[i], out / "forward_process", generator=g)
    samplers = SAMPLERS if model.process.absorbing else ("ancestral",)
    if model.is_image:
        y = torch.arange(8) % model.num_classes if model.num_classes else None
        for sampler in samplers:
            paths += reverse_panel(model, out / f"reverse_process_{sampler}", sampler,
                                   model.cfg.sample_steps or 32, 8, g, y=y)
        n = 10 * model.num_classes if model.num_classes else 64
        samples = model.sample(n, g, y=torch.arange(n) // 10 if model.num_classes else None)
        return paths + [save_grid(samples, out / "samples.png", nrow=10 if model.num_classes else None)]
    for sampler in samplers:
        paths += reverse_panel(model, out / f"reverse_process_{sampler}", sampler, model.cfg.seq_len, 6, g)
    paths += save_samples(model.present(model.sample_tokens(64, g)), out / "samples.txt")
    infill = [f"{p:<8} -> " + ", ".join(model.infill(p, 8, g))
              for p in ("c__t", "s___e", "___ing", "pre*", "q*") if len(p.rstrip("*")) <= model.cfg.seq_len]
    paths.append(save_text("\n".join(infill), out / "infill.txt"))
    train_words, dictionary = word_sets(load_words("train", seq_len=model.cfg.seq_len,
                                                   test_fraction=data.meta.get("test_fraction", 0.1),
                                                   path=data.meta.get("source")))
    rows = quality_vs_steps(model, train_words, dictionary, 300, (1, 2, 4, 8, 16, 32))
    paths.append(plot_quality_vs_steps(rows, out / "quality_vs_steps.png"))
    return paths + [save_csv(rows, out / "quality_vs_steps.csv")]


def save_csv(rows: list[dict], path: Path) -> Path:
    """rows (dicts with the same keys) as a CSV file, floats with 4 decimals."""
    keys = list(rows[0])
    lines = [",".join(keys)] + [",".join(f"{r[k]:.4f}" if isinstance(r[k], float) else str(r[k]) for k in keys)
                                for r in rows]
    return save_text("\n".join(lines), path)

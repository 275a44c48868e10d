"""Pictures and text panels of discrete diffusion: the forward corruption with its
probability table, the reverse process step by step, and sample quality against
the number of sampling steps. Also `genlab visualize discrete-forward | discrete-reverse`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from ..cli.common import make_folder
from ..diffusion.discrete import DiscreteProcess
from ..errors import GenlabError


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
        from ..data.words import show_tokens

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
        from ..data.words import tokens_to_images

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


def text_panel(text: str, path: str | Path, fontsize: int = 9) -> Path:
    """Render monospace text to a PNG (the text panels of `genlab visualize`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = text.split("\n")
    width = max(len(s) for s in lines) if lines else 1
    fig = plt.figure(figsize=(max(4.0, 0.075 * width * fontsize / 9), max(1.0, 0.16 * len(lines) * fontsize / 9)))
    fig.text(0.01, 0.99, text, family="monospace", fontsize=fontsize, va="top", ha="left")
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_quality_vs_steps(rows: list[dict], path: str | Path, keys=("memorised", "novel", "non_word"),
                          title: str = "sample quality vs sampling steps") -> Path:
    """Lines of rows[key] against rows["steps"], one colour per key, one line style per rows["sampler"]."""
    from .plots import plt, save_figure

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
    make_folder(out.parent)
    x0 = x0.reshape(1, -1).cpu()
    if not view.is_image:
        text = forward_table(process, x0, list(times), view.show, view.name, generator)
        txt = out.with_suffix(".txt")
        txt.write_text(text + "\n")
        return [txt, text_panel(text, out.with_suffix(".png"))]
    from . import save_strip

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
    txt = out.with_suffix(".txt")
    txt.write_text("\n".join(lines) + "\n")
    return [txt, save_strip([view.images(frames)], out.with_suffix(".png"))]


@torch.no_grad()
def reverse_panel(model, out: str | Path, sampler: str | None = None, steps: int | None = None, n: int = 6,
                  generator: torch.Generator | None = None, **sample_kwargs) -> list[Path]:
    """The reverse process of n samples from a trained DiscreteDiffusion: `out`.txt/.png
    (one line per step, text) or `out`.png/.gif (image tokens, masks red)."""
    out = Path(out)
    make_folder(out.parent)
    view = TokenView.of(model.cfg)
    sampler = sampler or model.cfg.sampler
    _, traj = model.sample_tokens(n, generator, sampler=sampler, steps=steps, trajectory=True, **sample_kwargs)
    if not view.is_image:
        text = reverse_text(traj, view.show, f"reverse process, {sampler} sampler, {len(traj) - 1} steps "
                                             f"('_' = [MASK], '.' = padding)")
        txt = out.with_suffix(".txt")
        txt.write_text(text + "\n")
        return [txt, text_panel(text, out.with_suffix(".png"))]
    from . import save_gif, save_strip

    pick = torch.linspace(0, len(traj) - 1, min(10, len(traj))).round().long().tolist()
    frames = [view.images(traj[i]) for i in pick]
    rows = [torch.stack([f[j] for f in frames]) for j in range(n)]
    return [save_strip(rows, out.with_suffix(".png")),
            save_gif([view.images(x) for x in traj], out.with_suffix(".gif"), duration_ms=80)]


# --------------------------------------------------------------------------- CLI: genlab visualize

def add_visualize_parser(kinds, name: str, help_text: str) -> None:
    """`genlab visualize discrete-forward` (no model needed) and `discrete-reverse` (a checkpoint)."""
    from ..cli.common import add_data_flags, positive

    p = kinds.add_parser(name, help=help_text)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    if name == "discrete-forward":
        add_data_flags(p, "words")
        p.add_argument("--checkpoint", default=None, help="take the process from this run (else --process/--schedule)")
        p.add_argument("--process", default="absorbing", help="absorbing | uniform")
        p.add_argument("--schedule", default="linear", help="linear | cosine")
        p.add_argument("--word", default=None, help="words: the word to corrupt (default: a test word)")
        p.add_argument("--index", type=int, default=0, help="which test item to corrupt")
        p.add_argument("--times", default="0,0.1,0.25,0.5,0.75,0.9,1", help="comma-separated times u in [0, 1]")
        p.add_argument("--out", default="discrete_forward", help="output path without suffix (.txt, .png)")
        p.set_defaults(func=_run_forward)
    elif name == "discrete-reverse":
        p.add_argument("--checkpoint", required=True, help="run folder written by `genlab train discrete`")
        p.add_argument("--sampler", default=None, help="ancestral | maskgit (default: the model's)")
        p.add_argument("--steps", type=positive(), default=None, help="sampling steps (default: the model's)")
        p.add_argument("--num", type=int, default=6, help="sequences to show")
        p.add_argument("--class", dest="label", type=int, default=None, help="class to generate (conditional models)")
        p.add_argument("--pattern", default=None, help="words: infill a pattern such as c__t or pre*")
        p.add_argument("--temperature", type=float, default=None)
        p.add_argument("--out", default=None, help="output path without suffix (default: <checkpoint>/reverse_process)")
        p.set_defaults(func=_run_reverse)
    else:
        raise GenlabError(f"genlab.viz.discrete has no picture '{name}'")


def _times(text: str) -> list[float]:
    try:
        times = [float(v) for v in text.split(",") if v.strip()]
    except ValueError as e:
        raise GenlabError(f"--times expects comma-separated numbers in [0, 1], got '{text}'") from e
    if not times or any(not 0 <= t <= 1 for t in times):
        raise GenlabError(f"--times must be numbers in [0, 1], got '{text}'")
    return times


def _run_forward(args) -> int:
    from ..cli.common import generator, load_data

    if args.checkpoint:
        from ..train.checkpoint import sampling_model
        from ..train.device import pick_device

        model, _ = sampling_model(args.checkpoint, pick_device(args.device), family="discrete")
        process, view = model.process, TokenView.of(model.cfg)
        data = None
    else:
        data = load_data(args, args.dataset or "words", "test")
        if data.kind != "tokens":
            raise GenlabError(f"dataset {data.name} holds {data.kind}; discrete-forward needs a token dataset "
                              f"(words, fashion_mnist-binary, mnist-tokens, ...)")
        view = TokenView.of(data.meta)
        process = DiscreteProcess(args.process, data.meta["vocab_size"], data.meta.get("data_vocab"),
                                  view.mask_id if args.process == "absorbing" else None, args.schedule)
    if args.word:
        if view.is_image:
            raise GenlabError("--word applies to word datasets")
        from ..data.words import encode_words

        x0 = encode_words([args.word.lower()], view.alphabet, (data.x.shape[1] if data is not None
                                                                  else model.cfg.seq_len))[0]
    else:
        if data is None:
            raise GenlabError("with --checkpoint, give --word (or drop --checkpoint to draw from --dataset)")
        if not 0 <= args.index < len(data):
            raise GenlabError(f"--index must be in [0, {len(data)}), got {args.index}")
        x0 = data.x[args.index]
    for p in forward_panel(process, view, x0, args.out, _times(args.times), generator(args.seed)):
        print(f"wrote {p}")
    return 0


def _run_reverse(args) -> int:
    from ..cli.common import generator
    from ..train.checkpoint import sampling_model
    from ..train.device import pick_device

    model, _ = sampling_model(args.checkpoint, pick_device(args.device), family="discrete")
    kw = {}
    if args.label is not None:
        kw["y"] = torch.full((args.num,), args.label, dtype=torch.long)
    if args.temperature is not None:
        kw["temperature"] = args.temperature
    if args.pattern:
        tokens, fixed = model.pattern_to_tokens(args.pattern)
        kw.update(fixed=tokens.expand(args.num, -1).to(model.device),
                  fixed_mask=fixed.expand(args.num, -1).to(model.device),
                  letters_only=model.pattern_letters(args.pattern).expand(args.num, -1))
    out = args.out or Path(args.checkpoint) / "reverse_process"
    for p in reverse_panel(model, out, args.sampler, args.steps, args.num, generator(args.seed), **kw):
        print(f"wrote {p}")
    return 0

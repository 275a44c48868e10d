"""`genlab visualize discrete-forward | discrete-reverse`: discrete diffusion step by step."""

from __future__ import annotations

from pathlib import Path

import torch

from ..data.words import encode_words
from ..diffusion.discrete import DiscreteProcess
from ..errors import GenlabError
from ..figures.discrete import TokenView, forward_panel, reverse_panel
from ..train.checkpoint import sampling_model
from ..device import pick_device
from .common import add_data_flags, generator, load_data, make_folder, positive

KINDS = {
    "discrete-forward": "discrete diffusion: one sequence through the forward process",
    "discrete-reverse": "discrete diffusion: the reverse process step by step",
}


def add_visualize_parser(kinds, name: str, help_text: str) -> None:
    """`genlab visualize discrete-forward` (no model needed) and `discrete-reverse` (a checkpoint)."""
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
        raise GenlabError(f"genlab visualize has no discrete picture '{name}'")


def _times(text: str) -> list[float]:
    try:
        times = [float(v) for v in text.split(",") if v.strip()]
    except ValueError as e:
        raise GenlabError(f"--times expects comma-separated numbers in [0, 1], got '{text}'") from e
    if not times or any(not 0 <= t <= 1 for t in times):
        raise GenlabError(f"--times must be numbers in [0, 1], got '{text}'")
    return times


def _run_forward(args) -> int:
    if args.checkpoint:
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
        x0 = encode_words([args.word.lower()], view.alphabet, (data.x.shape[1] if data is not None
                                                                  else model.cfg.seq_len))[0]
    else:
        if data is None:
            raise GenlabError("with --checkpoint, give --word (or drop --checkpoint to draw from --dataset)")
        if not 0 <= args.index < len(data):
            raise GenlabError(f"--index must be in [0, {len(data)}), got {args.index}")
        x0 = data.x[args.index]
    make_folder(Path(args.out).parent)
    for p in forward_panel(process, view, x0, args.out, _times(args.times), generator(args.seed)):
        print(f"wrote {p}")
    return 0


def _run_reverse(args) -> int:
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
    make_folder(Path(out).parent)
    for p in reverse_panel(model, out, args.sampler, args.steps, args.num, generator(args.seed), **kw):
        print(f"wrote {p}")
    return 0

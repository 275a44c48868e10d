"""What a condition is, what "no condition" is, and condition dropout for classifier-free guidance.

A condition `y` is what a denoiser reads besides x_t and t: `model(x_t, t, y)`. It is either

- a LongTensor (N,) of class labels, as every class-conditional genlab model has always taken, or
- a dict of named parts, each with the batch first:

      "class"      LongTensor (N,)        class labels
      "text"       FloatTensor (N, L, D)  a sequence of text embeddings (read by cross-attention)
      "text_mask"  BoolTensor (N, L)      optional: True where a text position is real
      "pooled"     FloatTensor (N, D)     optional: one vector for the whole text (added to the time embedding)
      "image"      FloatTensor (N, C, H, W) an image, concatenated with x_t (InstructPix2Pix, Pix2Pix)

Classifier-free guidance (Ho & Salimans 2022) needs a "no condition" value per part; parts drop
in *groups* ("text" takes its mask and pooled vector with it):

- class: the extra label index num_classes (the embedding table has num_classes + 1 rows);
- text: zero embeddings, every position unmasked, zero pooled vector. Zeros rather than a learned
  null embedding because the null then lives in the data, not in the model: it needs no parameter
  (old checkpoints and default models are unchanged), every helper here can build it without the
  network, and cross-attention over identical zero keys is uniform and returns a constant (the
  value projection's bias) that the network learns to read as "no text" (as it would learn a
  learned null). Stable Diffusion's null, the encoding of the empty prompt, is what a text encoder
  produces; we take the encoder's output as given, so zeros are the honest choice here;
- image: zeros, as InstructPix2Pix (Brooks et al. 2023, Sec. 3.3) — mid-grey in [-1, 1].

A part a model reads but `y` lacks counts as null (the model fills it in). `drop_condition` is the
training-time dropout; `genlab.diffusion.guidance.classifier_free` the sampling-time combination.
"""

from __future__ import annotations

from typing import Union

import torch

from .. import rng
from ..errors import GenlabError

Condition = Union[torch.Tensor, dict, None]

# the groups that drop together, in the order dropout draws them
GROUPS = {"class": ("class",), "text": ("text", "text_mask", "pooled"), "image": ("image",)}
PARTS = tuple(p for parts in GROUPS.values() for p in parts)


def as_dict(y: Condition) -> dict:
    """A condition as a dict of parts: a label tensor becomes {"class": y}, None becomes {}."""
    if y is None:
        return {}
    if isinstance(y, torch.Tensor):
        return {"class": y}
    if isinstance(y, dict):
        unknown = sorted(set(y) - set(PARTS))
        if unknown:
            raise GenlabError(f"unknown condition part(s) {', '.join(map(repr, unknown))}; "
                              f"a condition dict has some of: {', '.join(PARTS)}")
        return y
    raise GenlabError(f"a condition is class labels (a LongTensor) or a dict of parts, got {type(y).__name__}")


def _like(y: Condition, parts: dict) -> Condition:
    """parts in the structure of y (a plain label tensor stays a plain tensor)."""
    return parts["class"] if isinstance(y, torch.Tensor) else parts


def groups_of(y: Condition) -> list[str]:
    """The groups present in y, in GROUPS order."""
    d = as_dict(y)
    return [g for g, parts in GROUPS.items() if any(p in d for p in parts)]


def batch_size(y: Condition) -> int:
    return next(iter(as_dict(y).values())).shape[0]


def null_part(name: str, value: torch.Tensor, num_classes: int) -> torch.Tensor:
    """The "no condition" value of one part, shaped like `value`."""
    if name == "class":
        if num_classes < 1:
            raise GenlabError("a class condition needs a model with num_classes >= 1 (its null label is num_classes)")
        return torch.full_like(value, num_classes)
    if name == "text_mask":
        return torch.ones_like(value)  # attend to every (zero) position: a uniform, well-defined average
    return torch.zeros_like(value)


def null_condition(y: Condition, num_classes: int = 0, groups=None, where: torch.Tensor | None = None) -> Condition:
    """y with the parts of `groups` (default: all) replaced by their null, in the rows where `where`
    (bool (N,)) is True, or in every row."""
    d = as_dict(y)
    groups = list(GROUPS) if groups is None else list(groups)
    drop = {p for g in groups for p in GROUPS[g]}
    out = {}
    for name, value in d.items():
        if name in drop:
            null = null_part(name, value, num_classes)
            if where is not None:
                null = torch.where(where.view(-1, *[1] * (value.dim() - 1)), null, value)
            value = null
        out[name] = value
    return _like(y, out)


def drop_condition(y: Condition, p, num_classes: int = 0, p_all: float = 0.0,
                   generator: torch.Generator | None = None) -> Condition:
    """Training-time condition dropout, so one network also learns the unconditional model(s).

    p: the probability that a row's group goes null, a float (every group) or a dict {group: p}
    (a group left out is never dropped alone). Each group drops independently, then with
    probability p_all every group drops together (InstructPix2Pix trains with 5% image only,
    5% text only, 5% both: p={"image": 0.05, "text": 0.05}, p_all=0.05 is close to that).
    A plain label tensor gets a plain label tensor back; with p_all = 0 that is one uniform draw
    per row: y_i -> num_classes where u_i < p (the label dropout genlab always did).
    """
    if y is None:
        return None
    probs = {g: (p.get(g, 0.0) if isinstance(p, dict) else p) for g in groups_of(y)}
    for g, q in list(probs.items()) + [("all", p_all)]:
        if not 0 <= q <= 1:
            raise GenlabError(f"condition dropout for {g!r} is a probability in [0, 1], got {q}")
    n, device = batch_size(y), next(iter(as_dict(y).values())).device
    for g, q in probs.items():
        if q > 0:
            y = null_condition(y, num_classes, [g], rng.rand((n,), generator, device) < q)
    if p_all > 0:
        y = null_condition(y, num_classes, None, rng.rand((n,), generator, device) < p_all)
    return y


def cat_conditions(ys: list) -> Condition:
    """Conditions of several batches stacked along the batch (all of one structure)."""
    if ys[0] is None:
        return None
    if isinstance(ys[0], torch.Tensor):
        return torch.cat(ys)
    return {k: torch.cat([y[k] for y in ys]) for k in ys[0]}


def slice_condition(y: Condition, i: int, j: int) -> Condition:
    """Rows i..j-1 of a condition."""
    if y is None or isinstance(y, torch.Tensor):
        return None if y is None else y[i:j]
    return {k: v[i:j] for k, v in y.items()}


def condition_to(y: Condition, device) -> Condition:
    """A condition moved to `device`."""
    if y is None or isinstance(y, torch.Tensor):
        return None if y is None else y.to(device)
    return {k: v.to(device) for k, v in as_dict(y).items()}

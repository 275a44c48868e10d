"""Discrete diffusion on tokens (family "discrete"): words and quantised images.

A bidirectional Transformer predicts the clean tokens x0 from a corrupted
sequence x_t (absorbing/mask or uniform-replacement D3PM, see
`genlab.diffusion.discrete`); training minimises the negative ELBO (MDLM's
continuous-time weighting for the mask process) or the plain x0 cross-entropy.

What `sample(n)` returns depends on the data the model was trained on:
- image tokens (cfg.grid = (C, H, W)): images in [-1, 1], N,C,H,W, like every family;
- text (words): the token ids, LongTensor (N, seq_len); `sample_text` gives strings,
  `present` turns them into words, which genlab.viz.samples writes to a file.

Its metrics are in genlab.metrics.text, its pictures in genlab.figures.discrete,
the parsing of infilling patterns ("c__t") in genlab.data.words.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch

from ..data.base import TensorDataset
from ..data.words import decode_words, parse_pattern, pattern_letters, show_tokens, tokens_to_images
from ..diffusion import discrete as dd
from ..diffusion.guidance import classifier_free
from ..errors import GenlabError, ParamError
from ..nn.conditioning import drop_condition
from ..nn.transformer import DenoisingTransformer
from .base import GenerativeModel, register

SAMPLERS = ("ancestral", "maskgit")


@dataclass
class DiscreteConfig:
    # what the data looks like (filled from the dataset's meta, see config_for_data)
    vocab_size: int = 29            # all token ids: data tokens + [BOS] + [MASK]
    seq_len: int = 10
    data_vocab: int = 0             # data tokens are ids [0, data_vocab); 0: vocab_size - 1
    mask_id: int = -1               # -1: vocab_size - 1
    grid: tuple = ()                # (C, H, W) for image tokens, () for text
    alphabet: str = ""              # text: the characters of ids 1.. (id 0 is padding)
    conditional: bool = False       # class-conditional (labels from the dataset)
    num_classes: int = 0
    label_dropout: float = 0.1      # p(label -> null) during training, for classifier-free guidance
    # the process and the objective
    process: str = "absorbing"      # absorbing | uniform
    schedule: str = "linear"        # linear | cosine
    objective: str = "elbo"         # elbo | ce (unweighted predict-x0 cross-entropy)
    num_steps: int = 0              # T of the discrete chain; 0: continuous time (absorbing), 1000 (uniform)
    ce_weight: float = 0.0          # hybrid loss: + ce_weight * x0 cross-entropy (D3PM uses 0.001-0.01)
    # sampling defaults
    sampler: str = "ancestral"      # ancestral | maskgit
    sample_steps: int = 0           # 0: seq_len steps (text), 64 (image grids: one pixel per step is 784 calls)
    temperature: float = 1.0
    # the denoiser
    dim: int = 128
    depth: int = 4
    heads: int = 4
    mlp_ratio: float = 4.0
    dropout: float = 0.0

    @property
    def D(self) -> int:
        return self.data_vocab or self.vocab_size - 1

    @property
    def mask(self) -> int:
        return self.mask_id if self.mask_id >= 0 else self.vocab_size - 1


# meta keys of a token dataset (see genlab.data.words) that become config fields
_DATA_FIELDS = ("vocab_size", "seq_len", "data_vocab", "mask_id", "grid", "alphabet")


def config_for_data(data: TensorDataset, **overrides) -> DiscreteConfig:
    """A DiscreteConfig that fits a token dataset (vocabulary, length, grid, classes) plus overrides."""
    if data.kind != "tokens":
        raise GenlabError(f"the discrete model trains on token datasets (words, fashion_mnist-binary, ...), "
                          f"but {data.name} holds {data.kind}")
    kw = {k: data.meta[k] for k in _DATA_FIELDS if k in data.meta}
    kw["grid"] = tuple(kw.get("grid", ()))
    kw.setdefault("seq_len", data.x.shape[1])
    kw.setdefault("vocab_size", int(data.x.max()) + 2)
    kw["num_classes"] = data.num_classes
    names = {f.name for f in fields(DiscreteConfig)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise GenlabError(f"unknown discrete model option(s): {', '.join(unknown)}; valid: {', '.join(sorted(names))}")
    kw.update(overrides)
    return DiscreteConfig(**kw)


@register
class DiscreteDiffusion(GenerativeModel):
    """Discrete diffusion (absorbing / uniform) over tokens: words or image-token grids."""

    family = "discrete"
    eval_options = ("seed",)  # its samplers and step counts are fixed by the metrics themselves
    Config = DiscreteConfig
    data_kind = "tokens"
    default_dataset = "words"
    train_defaults = {"lr": 1e-3, "epochs": 20, "batch_size": 256, "warmup_steps": 200}
    config_for_data = staticmethod(config_for_data)

    def __init__(self, cfg: DiscreteConfig):
        super().__init__(cfg)
        if cfg.objective not in ("elbo", "ce"):
            raise GenlabError(f"unknown objective '{cfg.objective}'; choose elbo or ce")
        if cfg.sampler not in SAMPLERS:
            raise GenlabError(f"unknown sampler '{cfg.sampler}'; choose one of: {', '.join(SAMPLERS)}")
        if cfg.sampler == "maskgit" and cfg.process != "absorbing":
            raise ParamError("sampler", f"maskgit needs the absorbing process, not {cfg.process}")
        if cfg.seq_len < 1 or cfg.vocab_size < 2:
            raise GenlabError(f"need seq_len >= 1 and vocab_size >= 2, got {cfg.seq_len} and {cfg.vocab_size}")
        if cfg.grid and math.prod(cfg.grid) != cfg.seq_len:
            raise GenlabError(f"image grid {tuple(cfg.grid)} has {math.prod(cfg.grid)} pixels but seq_len "
                              f"is {cfg.seq_len}")
        if cfg.conditional and cfg.num_classes < 2:
            raise GenlabError("a conditional discrete model needs a dataset with class labels")
        if not 0 < cfg.temperature < math.inf:  # also NaN and inf
            raise ParamError("temperature", f"must be positive (and finite), got {cfg.temperature}")
        if cfg.sample_steps < 0:
            raise ParamError("sample_steps", f"must be >= 0 (0: the default), got {cfg.sample_steps}")
        if not 0 <= cfg.label_dropout <= 1:
            raise ParamError("label_dropout", f"is a probability in [0, 1], got {cfg.label_dropout}")
        T = cfg.num_steps or 1000  # the chain of the uniform process's bound (absorbing: continuous time)
        self.process = dd.DiscreteProcess(cfg.process, cfg.vocab_size, cfg.D, cfg.mask if cfg.process == "absorbing"
                                          else None, cfg.schedule, T)
        self.net = DenoisingTransformer(cfg.vocab_size, cfg.seq_len, out_dim=cfg.D, dim=cfg.dim, depth=cfg.depth,
                                        heads=cfg.heads, mlp_ratio=cfg.mlp_ratio, num_classes=self.num_classes,
                                        dropout=cfg.dropout)
        self._checked = False

    # ------------------------------------------------------------------ basics
    @property
    def num_classes(self) -> int:
        return self.cfg.num_classes if self.cfg.conditional else 0

    @property
    def is_image(self) -> bool:
        return bool(self.cfg.grid)

    def check_tokens(self, x: torch.Tensor) -> None:
        """GenlabError unless x is (N, L <= seq_len) of ids in the vocabulary (syncs the device)."""
        if not isinstance(x, torch.Tensor) or x.dtype.is_floating_point:
            raise GenlabError("the discrete model reads integer token ids; got "
                              f"{getattr(x, 'dtype', type(x).__name__)} (is this an image dataset? "
                              f"use a token dataset such as fashion_mnist-binary)")
        self.net.check_input(x)

    def check_labels(self, y: torch.Tensor | None) -> None:
        if y is None:
            return
        if not self.num_classes:
            raise GenlabError("this checkpoint is unconditional: it cannot generate a given class "
                              "(train with --conditional on a labelled dataset)")
        if int(y.min()) < 0 or int(y.max()) >= self.num_classes:
            raise GenlabError(f"class index out of range: this model knows classes 0..{self.num_classes - 1}")

    def check_guidance(self, guidance: float) -> None:
        """Classifier-free guidance needs a conditional model and a finite scale >= 0 (as DiffusionModel)."""
        if guidance == 1.0:
            return
        if not self.num_classes:
            raise ParamError("guidance", "needs a class-conditional checkpoint (train with --conditional); "
                             "this one is unconditional")
        if not 0 <= guidance < math.inf:  # also NaN / inf
            raise ParamError("guidance", f"must be a number >= 0 (0: unconditional, 1: conditional), got {guidance}")

    def denoiser(self, guidance: float = 1.0):
        """The network as a function (x_t, u, y) -> logits over the data tokens, with
        classifier-free guidance on the logits: uncond + w (cond - uncond)."""

        def net(x, u, y=None):
            return self.net(x, u, y).float()

        return classifier_free(net, guidance if self.num_classes else 1.0, self.num_classes)

    # ------------------------------------------------------------------ training
    def loss(self, batch):
        x0 = batch["x"]
        if not self._checked:  # one sync on the first batch: a foreign vocabulary fails clearly
            self.check_tokens(x0)
            self._checked = True
        y = drop_condition(batch["y"], self.cfg.label_dropout, self.num_classes) if self.num_classes else None
        return dd.diffusion_loss(self.process, self.net, x0, y, objective=self.cfg.objective,
                                 num_steps=self.cfg.num_steps, ce_weight=self.cfg.ce_weight)

    # ------------------------------------------------------------------ likelihood
    @torch.no_grad()
    def nelbo(self, x0: torch.Tensor, y: torch.Tensor | None = None, passes: int = 4,
              generator: torch.Generator | None = None) -> torch.Tensor:
        """Negative ELBO in nats per sequence (N,), averaged over `passes` stratified times.

        Absorbing: the continuous-time bound (num_steps 0) or the T-step one; uniform:
        the D3PM bound on the T-step chain. An upper bound on -log p(x0).
        """
        self.check_tokens(x0)
        x0 = x0.to(self.device)
        y = y.to(self.device) if (y is not None and self.num_classes) else None
        total = torch.zeros(x0.shape[0], device=self.device)
        for _ in range(passes):
            if self.process.absorbing:
                nelbo, _ = dd.masked_diffusion_loss(self.process, self.net, x0, y,
                                                    num_steps=self.cfg.num_steps or None, generator=generator)
            else:
                t = _stratified_steps(x0.shape[0], self.process.T, generator).to(self.device)
                nelbo, _ = dd.d3pm_vlb_loss(self.process, self.net, x0, y, t=t, generator=generator)
            total += nelbo
        return total / passes

    # ------------------------------------------------------------------ sampling
    def _labels(self, n: int, y) -> torch.Tensor | None:
        if y is None:
            return None
        y = torch.as_tensor(y, dtype=torch.long).reshape(-1)
        y = y.expand(n) if y.numel() == 1 else y
        if y.numel() != n:
            raise GenlabError(f"got {y.numel()} labels for {n} samples")
        self.check_labels(y)
        return y.to(self.device)

    @torch.no_grad()
    def sample_tokens(self, n: int, generator: torch.Generator | None = None, y=None, sampler: str | None = None,
                      steps: int | None = None, temperature: float | None = None, guidance: float = 1.0,
                      fixed: torch.Tensor | None = None, fixed_mask: torch.Tensor | None = None,
                      trajectory: bool = False, batch_size: int = 1000, letters_only: torch.Tensor | None = None):
        """n token sequences (N, seq_len) from `sampler` (ancestral | maskgit) with `steps` network calls.

        y: class labels (conditional models); fixed/fixed_mask (N, L): infilling, tokens
        where fixed_mask is True are kept; letters_only (N, L) bool: positions that may not
        become padding (id 0), the '_' of a pattern. trajectory: also return the list of x per step.
        """
        sampler = sampler or self.cfg.sampler
        if sampler not in SAMPLERS:
            raise GenlabError(f"unknown sampler '{sampler}'; choose one of: {', '.join(SAMPLERS)}")
        if n < 1:
            raise GenlabError(f"number of samples must be at least 1, got {n}")
        steps = steps or self.cfg.sample_steps or (min(64, self.cfg.seq_len) if self.is_image else self.cfg.seq_len)
        temperature = self.cfg.temperature if temperature is None else temperature
        if not 0 < temperature < math.inf:  # also NaN and inf: fail before any network call
            raise ParamError("temperature", f"must be positive (and finite), got {temperature}")
        self.check_guidance(guidance)
        y = self._labels(n, y)
        fn = dd.p_sample_loop if sampler == "ancestral" else dd.maskgit_sample
        outs, trajs = [], []
        for i in range(0, n, batch_size):
            j = min(n, i + batch_size)
            den = self.denoiser(guidance)
            if letters_only is not None:
                den = _no_padding_at(den, letters_only[i:j].to(self.device).bool())
            out = fn(self.process, den, j - i, self.cfg.seq_len, steps=steps,
                     y=None if y is None else y[i:j], temperature=temperature, device=self.device,
                     generator=generator, fixed=None if fixed is None else fixed[i:j],
                     fixed_mask=None if fixed_mask is None else fixed_mask[i:j], trajectory=trajectory)
            if trajectory:
                out, traj = out
                trajs.append(traj)
            outs.append(out)
        x = torch.cat(outs)
        if trajectory:
            return x, [torch.cat(step) for step in zip(*trajs)]
        return x

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, y=None, **kwargs) -> torch.Tensor:
        """Image tokens: n images in [-1, 1] (N,C,H,W). Text: n token sequences (N, seq_len), LongTensor.

        kwargs: sampler, steps, temperature, guidance, fixed, fixed_mask (see sample_tokens).
        A class-conditional model given no y cycles through the classes 0, 1, ...
        """
        if y is None and self.num_classes:
            y = torch.arange(n) % self.num_classes
        x = self.sample_tokens(n, generator, y=y, **kwargs)
        return self.tokens_to_images(x) if self.is_image else x

    @torch.no_grad()
    def preview(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.sample(n, generator=generator)

    # ------------------------------------------------------------------ text and images
    def tokens_to_images(self, tokens: torch.Tensor, show_masks: bool = False) -> torch.Tensor:
        if not self.is_image:
            raise GenlabError("this model was trained on text, not image tokens")
        return tokens_to_images(tokens, tuple(self.cfg.grid), self.cfg.D, self.cfg.mask if show_masks else None)

    def decode_text(self, tokens: torch.Tensor) -> list[str | None]:
        """Token rows -> words (None where a row is not a well-formed word)."""
        self._need_text()
        return decode_words(tokens.cpu(), self.cfg.alphabet)

    def show_text(self, tokens: torch.Tensor) -> list[str]:
        """Token rows -> display strings: letters, '_' for [MASK], '.' for padding."""
        self._need_text()
        return show_tokens(tokens.cpu(), self.cfg.alphabet, self.cfg.mask)

    def _need_text(self):
        if self.is_image or not self.cfg.alphabet:
            raise GenlabError("this model was not trained on words (no alphabet in its config)")

    @torch.no_grad()
    def sample_text(self, n: int, generator: torch.Generator | None = None, **kwargs) -> list[str]:
        """n sampled words as display strings (a malformed sample shows its raw letters/padding)."""
        return [w if w is not None else s for w, s in
                zip(*self._text_and_show(self.sample_tokens(n, generator, **kwargs)))]

    def _text_and_show(self, tokens):
        return self.decode_text(tokens), self.show_text(tokens)

    def pattern_to_tokens(self, pattern: str) -> tuple[torch.Tensor, torch.Tensor]:
        """An infilling pattern ("c__t", "pre*") -> (tokens, fixed_mask) of one row (see data.words.parse_pattern)."""
        if self.is_image:
            raise ParamError("pattern", "infills words, and this checkpoint generates image tokens; sample it "
                             "without a pattern")
        self._need_text()
        return parse_pattern(pattern, self.cfg.alphabet, self.cfg.seq_len)

    def pattern_letters(self, pattern: str) -> torch.Tensor:
        """(L,) bool: the '_' positions of a pattern, which must become letters (never padding)."""
        return pattern_letters(pattern, self.cfg.seq_len)

    @torch.no_grad()
    def infill(self, pattern: str, n: int = 8, generator: torch.Generator | None = None, **kwargs) -> list[str]:
        """Complete an infilling pattern ("c__t", "pre*") n times; returns display strings."""
        tokens, fixed = self.pattern_to_tokens(pattern)
        x = self.sample_tokens(n, generator, fixed=tokens.expand(n, -1).to(self.device),
                               fixed_mask=fixed.expand(n, -1).to(self.device),
                               letters_only=self.pattern_letters(pattern).expand(n, -1), **kwargs)
        words, shown = self._text_and_show(x)
        return [w if w is not None else s for w, s in zip(words, shown)]

    # ------------------------------------------------------------------ what a person sees
    def present(self, samples: torch.Tensor) -> torch.Tensor | list[str]:
        """Samples as a person sees them (what genlab.viz.samples.save_samples writes): images
        (image tokens decoded, [MASK] red) or words, one per line (malformed ones shown raw, marked)."""
        if samples.dtype.is_floating_point:
            return samples
        if self.is_image:
            return self.tokens_to_images(samples, show_masks=True)
        words, shown = self._text_and_show(samples)
        return [w if w is not None else f"{s}  (malformed)" for w, s in zip(words, shown)]


def _no_padding_at(denoise, where: torch.Tensor):
    """A denoiser whose prediction puts no mass on padding (id 0) where `where` (N, L) is True."""

    def fn(x, u, y=None):
        logits = denoise(x, u, y)
        return logits.masked_fill(where[..., None] & (torch.arange(logits.shape[-1], device=logits.device) == 0),
                                  float("-inf"))

    return fn


def _stratified_steps(n: int, T: int, generator) -> torch.Tensor:
    """n integer steps covering 1..T evenly (a random offset, then shuffled)."""
    u = dd.sample_times(n, "cpu", generator)
    return (u * T).ceil().long().clamp(1, T)

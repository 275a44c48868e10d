"""Discrete diffusion on tokens (family "discrete"): words and quantised images.

A bidirectional Transformer predicts the clean tokens x0 from a corrupted
sequence x_t (absorbing/mask or uniform-replacement D3PM, see
`genlab.diffusion.discrete`); training minimises the negative ELBO (MDLM's
continuous-time weighting for the mask process) or the plain x0 cross-entropy.

What `sample(n)` returns depends on the data the model was trained on:
- image tokens (cfg.grid = (C, H, W)): images in [-1, 1], N,C,H,W, like every family;
- text (words): the token ids, LongTensor (N, seq_len); `sample_text` gives strings,
  `render_samples` writes them to a file (what the CLI calls to show samples).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from pathlib import Path

import torch

from ..data.base import TensorDataset
from ..diffusion import discrete as dd
from ..errors import GenlabError
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
            raise GenlabError("the maskgit sampler needs --process absorbing")
        if cfg.seq_len < 1 or cfg.vocab_size < 2:
            raise GenlabError(f"need seq_len >= 1 and vocab_size >= 2, got {cfg.seq_len} and {cfg.vocab_size}")
        if cfg.grid and math.prod(cfg.grid) != cfg.seq_len:
            raise GenlabError(f"image grid {tuple(cfg.grid)} has {math.prod(cfg.grid)} pixels but seq_len "
                              f"is {cfg.seq_len}")
        if cfg.conditional and cfg.num_classes < 2:
            raise GenlabError("a conditional discrete model needs a dataset with class labels")
        if not 0 < cfg.temperature < math.inf:  # also NaN and inf
            raise GenlabError(f"temperature must be positive (and finite), got {cfg.temperature}")
        if cfg.sample_steps < 0:
            raise GenlabError(f"sample_steps must be >= 0 (0: the default), got {cfg.sample_steps}")
        if not 0 <= cfg.label_dropout <= 1:
            raise GenlabError(f"label_dropout is a probability in [0, 1], got {cfg.label_dropout}")
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
            raise GenlabError("--guidance needs a class-conditional checkpoint (train with --conditional); "
                              "this one is unconditional")
        if not 0 <= guidance < math.inf:  # also NaN / inf
            raise GenlabError(f"--guidance must be a number >= 0 (0: unconditional, 1: conditional), got {guidance}")

    def denoiser(self, guidance: float = 1.0):
        """The network as a function (x_t, u, y) -> logits over the data tokens, with
        classifier-free guidance on the logits: uncond + w (cond - uncond)."""

        def fn(x, u, y=None):
            if y is None or guidance == 1.0 or not self.num_classes:
                return self.net(x, u, y).float()
            if guidance == 0.0:
                return self.net(x, u, None).float()
            null = torch.full_like(y, self.num_classes)
            cond, uncond = self.net(torch.cat([x, x]), torch.cat([u, u]), torch.cat([y, null])).float().chunk(2)
            return uncond + guidance * (cond - uncond)

        return fn

    # ------------------------------------------------------------------ training
    def loss(self, batch):
        x0 = batch["x"]
        if not self._checked:  # one sync on the first batch: a foreign vocabulary fails clearly
            self.check_tokens(x0)
            self._checked = True
        y = None
        if self.num_classes:
            y = batch["y"]
            drop = torch.rand(y.shape, device=y.device) < self.cfg.label_dropout
            y = torch.where(drop, torch.full_like(y, self.num_classes), y)
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
            raise GenlabError(f"temperature must be positive (and finite), got {temperature}")
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
        from ..data.words import tokens_to_images

        if not self.is_image:
            raise GenlabError("this model was trained on text, not image tokens")
        return tokens_to_images(tokens, tuple(self.cfg.grid), self.cfg.D, self.cfg.mask if show_masks else None)

    def decode_text(self, tokens: torch.Tensor) -> list[str | None]:
        """Token rows -> words (None where a row is not a well-formed word)."""
        from ..data.words import decode_words

        self._need_text()
        return decode_words(tokens.cpu(), self.cfg.alphabet)

    def show_text(self, tokens: torch.Tensor) -> list[str]:
        """Token rows -> display strings: letters, '_' for [MASK], '.' for padding."""
        from ..viz.discrete import TokenView

        self._need_text()
        return TokenView.of(self.cfg).show(tokens)

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
        """An infilling pattern -> (tokens, fixed_mask) of one row.

        Letters are fixed, '_' is a free letter position, and the word ends where the
        pattern ends (the padding is fixed too) unless the pattern ends with '*', which
        leaves every later position free. "c__t" -> four-letter words c?? t.
        """
        if self.is_image:
            raise GenlabError("--pattern infills words, and this checkpoint generates image tokens; "
                              "sample it without --pattern")
        self._need_text()
        pattern = pattern.replace(" ", "").lower()
        open_end = pattern.endswith("*")
        body = pattern[:-1] if open_end else pattern
        L = self.cfg.seq_len
        if not body and not open_end:
            raise GenlabError("the pattern is empty; give letters and '_' (e.g. c__t), or '*' for any word")
        if len(body) > L:
            raise GenlabError(f"pattern {pattern!r} is longer than the model's seq_len {L}")
        bad = sorted(set(body) - set(self.cfg.alphabet) - {"_"})
        if bad or "*" in body:
            raise GenlabError(f"pattern {pattern!r} has characters outside the alphabet: {''.join(bad) or '*'}; "
                              f"use letters, '_' for a free position and a final '*' for a free ending")
        tokens = torch.zeros(L, dtype=torch.long)
        fixed = torch.zeros(L, dtype=torch.bool)
        for i, c in enumerate(body):
            if c != "_":
                tokens[i] = self.cfg.alphabet.index(c) + 1
                fixed[i] = True
        if not open_end:
            fixed[len(body):] = True  # padding after the pattern: the word has exactly this length
        return tokens, fixed

    def pattern_letters(self, pattern: str) -> torch.Tensor:
        """(L,) bool: the '_' positions of a pattern, which must become letters (never padding)."""
        body = pattern.replace(" ", "").rstrip("*")
        where = torch.zeros(self.cfg.seq_len, dtype=torch.bool)
        where[: len(body)] = torch.tensor([c == "_" for c in body], dtype=torch.bool)
        return where

    @torch.no_grad()
    def infill(self, pattern: str, n: int = 8, generator: torch.Generator | None = None, **kwargs) -> list[str]:
        """Complete an infilling pattern ("c__t", "pre*") n times; returns display strings."""
        tokens, fixed = self.pattern_to_tokens(pattern)
        x = self.sample_tokens(n, generator, fixed=tokens.expand(n, -1).to(self.device),
                               fixed_mask=fixed.expand(n, -1).to(self.device),
                               letters_only=self.pattern_letters(pattern).expand(n, -1), **kwargs)
        words, shown = self._text_and_show(x)
        return [w if w is not None else s for w, s in zip(words, shown)]

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def evaluate(self, data: TensorDataset, n: int | None = None, passes: int = 4, num_samples: int = 500,
                 steps: tuple = (1, 2, 4, 8, 16), seed: int = 0, orders: tuple = (3, 6),
                 fid: bool = False) -> dict[str, float]:
        """Test-split metrics.

        bits_per_token: the negative ELBO / (L ln 2) on the first n sequences (given their
        labels for a conditional model: a bound on -log p(x | y)). For words
        also the unigram and n-gram references (fitted on the train split, same
        sequences), and for each sampler and number of steps the fractions of
        num_samples generated words that are memorised (in the train split), novel
        real words, or non-words (orders: the n-gram references; 6 is about the best
        on the word list). For image tokens with fid=True: FID/KID of samples
        against the test images quantised the same way (genlab.metrics.evaluate_model;
        features from the source image dataset's classifier).
        """
        x = data.x[:n] if n else data.x
        y = data.y[:n] if (n and data.y is not None) else data.y
        g = torch.Generator().manual_seed(seed)
        nats = torch.cat([self.nelbo(x[i:i + 1000], None if y is None else y[i:i + 1000], passes, g).cpu()
                          for i in range(0, len(x), 1000)])
        L = x.shape[1]
        out = {"bits_per_token": float(nats.mean() / (L * math.log(2))),
               "bits_per_sequence": float(nats.mean() / math.log(2))}
        if not self.is_image and self.cfg.alphabet:
            out.update(self.text_metrics(data, x, num_samples, steps, seed, orders))
        if self.is_image and fid:
            from ..metrics import evaluate_model

            # against the test split quantised like the training data, so the floor is binarised
            # real vs binarised real and the score measures the model, not the quantisation
            for k, v in evaluate_model(self, data.name, n=num_samples, seed=seed).items():
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    out[k] = float(v)
        return out

    def text_metrics(self, data: TensorDataset, x: torch.Tensor, num_samples: int = 500,
                     steps: tuple = (1, 2, 4, 8, 16), seed: int = 0, orders: tuple = (3, 6)) -> dict[str, float]:
        """Reference bits/token (unigram, n-grams on the train split) and novelty per sampler/steps."""
        from ..data.words import load_words, word_sets
        from ..metrics.text import NGramModel, UnigramModel

        meta = data.meta
        train = load_words("train", seq_len=self.cfg.seq_len, test_fraction=meta.get("test_fraction", 0.1),
                           path=meta.get("source"))
        out = {"unigram_bits_per_token": UnigramModel(self.cfg.D).fit(train.x).bits_per_token(x)}
        for k in orders:
            out[f"ngram{k}_bits_per_token"] = NGramModel(k, self.cfg.D, meta.get("bos_id", self.cfg.D)).fit(
                train.x).bits_per_token(x)
        train_words, dictionary = word_sets(train)
        for row in self.quality_vs_steps(train_words, dictionary, num_samples, steps, seed):
            for key in ("memorised", "novel", "non_word", "unique"):
                out[f"{row['sampler']}_s{row['steps']}_{key}"] = row[key]
        return out

    @torch.no_grad()
    def quality_vs_steps(self, train_words: set, dictionary: set, num_samples: int = 500,
                         steps: tuple = (1, 2, 4, 8, 16), seed: int = 0) -> list[dict]:
        """Novelty / memorisation of num_samples words per sampler and number of steps."""
        from ..metrics.text import word_novelty

        rows = []
        samplers = SAMPLERS if self.process.absorbing else ("ancestral",)
        for sampler in samplers:
            for s in steps:
                g = torch.Generator().manual_seed(seed)
                words = self.decode_text(self.sample_tokens(num_samples, g, sampler=sampler, steps=s))
                rows.append(dict(sampler=sampler, steps=s, **word_novelty(words, train_words, dictionary)))
        return rows

    # ------------------------------------------------------------------ pictures
    def render_samples(self, samples: torch.Tensor, out_dir: str | Path, name: str = "samples") -> list[Path]:
        """Write samples where a person can see them: `name`.png (images) or `name`.txt (words)."""
        return render_samples(self, samples, out_dir, name)

    @torch.no_grad()
    def save_artifacts(self, data: TensorDataset, out_dir: str | Path,
                       generator: torch.Generator | None = None) -> list[Path]:
        """Forward process with its probability table, the reverse process step by step,
        samples (word list + infilling, or image grids) and, for words, quality vs steps."""
        from ..viz import discrete as vd

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        g = generator or torch.Generator().manual_seed(0)
        was_training = self.training
        self.eval()
        view = vd.TokenView.of(self.cfg)
        i = 0
        if not self.is_image:  # a long word shows more
            i = int(((data.x != 0).sum(1) >= min(7, self.cfg.seq_len)).float().argmax())
        paths = vd.forward_panel(self.process, view, data.x[i], out / "forward_process", generator=g)
        samplers = SAMPLERS if self.process.absorbing else ("ancestral",)
        if not self.is_image:
            for sampler in samplers:
                paths += vd.reverse_panel(self, out / f"reverse_process_{sampler}", sampler, self.cfg.seq_len, 6, g)
            paths += self.render_samples(self.sample_tokens(64, g), out)
            infill = [f"{p:<8} -> " + ", ".join(self.infill(p, 8, g))
                      for p in ("c__t", "s___e", "___ing", "pre*", "q*") if len(p.rstrip("*")) <= self.cfg.seq_len]
            paths += _write_text("\n".join(infill), out / "infill.txt")
            from ..data.words import load_words, word_sets

            train_words, dictionary = word_sets(load_words("train", seq_len=self.cfg.seq_len,
                                                           test_fraction=data.meta.get("test_fraction", 0.1),
                                                           path=data.meta.get("source")))
            rows = self.quality_vs_steps(train_words, dictionary, 300, (1, 2, 4, 8, 16, 32))
            paths.append(vd.plot_quality_vs_steps(rows, out / "quality_vs_steps.png"))
            paths += _write_csv(rows, out / "quality_vs_steps.csv")
        else:
            from ..viz import save_grid

            y = torch.arange(8) % self.num_classes if self.num_classes else None
            for sampler in samplers:
                paths += vd.reverse_panel(self, out / f"reverse_process_{sampler}", sampler,
                                          self.cfg.sample_steps or 32, 8, g, y=y)
            n = 10 * self.num_classes if self.num_classes else 64
            samples = self.sample(n, g, y=torch.arange(n) // 10 if self.num_classes else None)
            paths.append(save_grid(samples, out / "samples.png", nrow=10 if self.num_classes else None))
        self.train(was_training)
        return paths


def render_samples(model: DiscreteDiffusion, samples: torch.Tensor, out_dir: str | Path,
                   name: str = "samples") -> list[Path]:
    """What `genlab sample` calls: images (float N,C,H,W) -> `name`.png grid; image tokens -> decoded grid;
    word tokens -> `name`.txt, one word per line (malformed samples shown raw: '.' pad, '_' mask)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if samples.dtype.is_floating_point or model.is_image:
        from ..viz import save_grid

        images = samples if samples.dtype.is_floating_point else model.tokens_to_images(samples, show_masks=True)
        return [save_grid(images, out / f"{name}.png")]
    words, shown = model._text_and_show(samples)
    return _write_text("\n".join(w if w is not None else f"{s}  (malformed)" for w, s in zip(words, shown)),
                       out / f"{name}.txt")


def _write_text(text: str, path: Path) -> list[Path]:
    path.write_text(text + "\n")
    return [path]


def _write_csv(rows: list[dict], path: Path) -> list[Path]:
    keys = list(rows[0])
    path.write_text("\n".join([",".join(keys)] + [",".join(f"{r[k]:.4f}" if isinstance(r[k], float) else str(r[k])
                                                            for k in keys) for r in rows]) + "\n")
    return [path]


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

"""Reference language models and sample statistics for token sequences (words).

A likelihood in bits per token only means something next to simple baselines
fitted on the same training data, scored on the same held-out sequences:

- `UnigramModel`: every position independent, add-one (Laplace) smoothed counts;
- `NGramModel`: left-to-right n-gram with interpolated Kneser-Ney smoothing
  (Chen & Goodman 1998, Eq. 17), start-of-sequence context filled with BOS.

Both score whole fixed-length sequences (padding included, so the length of a
word is part of what is predicted, exactly as for the diffusion model).
`word_novelty` sorts generated words into memorised / novel real word / non-word.
`discrete_metrics` is the discrete diffusion family's `genlab eval` (bits per token beside these
baselines, and novelty per sampler and number of steps).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict

import torch

from ..data.base import TensorDataset
from ..data.words import load_words, word_sets
from ..errors import GenlabError
from ..models.discrete import SAMPLERS
from .evaluate import evaluate_model


def _rows(seqs) -> list[list[int]]:
    if isinstance(seqs, torch.Tensor):
        if seqs.dim() != 2:
            raise GenlabError(f"sequences must be a (N, L) tensor, got shape {tuple(seqs.shape)}")
        return seqs.tolist()
    return [list(s) for s in seqs]


def _check_vocab(rows: list[list[int]], vocab_size: int) -> None:
    flat = [t for r in rows for t in r]
    if flat and (min(flat) < 0 or max(flat) >= vocab_size):
        raise GenlabError(f"token ids must lie in [0, {vocab_size}); got values in [{min(flat)}, {max(flat)}]")


class UnigramModel:
    """p(x_1..x_L) = prod_l p(x_l), p(w) = (count(w) + 1) / (N + V) over V tokens."""

    def __init__(self, vocab_size: int):
        self.V = vocab_size
        self.counts = torch.zeros(vocab_size, dtype=torch.float64)

    def fit(self, seqs) -> "UnigramModel":
        rows = _rows(seqs)
        _check_vocab(rows, self.V)
        self.counts = torch.bincount(torch.tensor([t for r in rows for t in r], dtype=torch.long),
                                     minlength=self.V).double()
        return self

    def probs(self) -> torch.Tensor:
        return (self.counts + 1) / (self.counts.sum() + self.V)

    def log_prob(self, seqs) -> torch.Tensor:
        """Total log-likelihood in nats of each sequence, (N,)."""
        rows = _rows(seqs)
        _check_vocab(rows, self.V)
        return self.probs().log()[torch.tensor(rows, dtype=torch.long)].sum(1)

    def bits_per_token(self, seqs) -> float:
        return bits_per_token(self.log_prob(seqs), _rows(seqs))


class NGramModel:
    """Interpolated Kneser-Ney n-gram model over V data tokens; `bos_id` (not a data token)
    fills the context before the first position.

    p(w | h) = max(c(h w) - D, 0) / c(h) + D N1+(h .) / c(h) * p(w | h')      (h' = h minus its first token)

    with raw counts c at the top order, continuation counts N1+(. h w) below it
    (how many distinct tokens precede h w: a token seen after many contexts is a
    better guess in a new one), the uniform 1/V under the unigram, and one discount
    D = n1 / (n1 + 2 n2) per order (Ney et al. 1994).
    """

    def __init__(self, order: int, vocab_size: int, bos_id: int):
        if order < 1:
            raise GenlabError(f"n-gram order must be at least 1, got {order}")
        if 0 <= bos_id < vocab_size:
            raise GenlabError(f"bos_id {bos_id} must not be a data token id (< {vocab_size})")
        self.n, self.V, self.bos = order, vocab_size, bos_id
        # tables[k][context of k-1 tokens] -> Counter of next token, k = 1..n
        self.tables: list[dict[tuple, Counter]] = [{} for _ in range(order + 1)]
        self.totals: list[dict[tuple, tuple[float, int]]] = [{} for _ in range(order + 1)]
        self.discount = [0.0] * (order + 1)
        self._cache: dict[tuple, float] = {}

    def fit(self, seqs) -> "NGramModel":
        rows = _rows(seqs)
        _check_vocab(rows, self.V)
        n = self.n
        top: dict[tuple, Counter] = defaultdict(Counter)
        for r in rows:
            padded = [self.bos] * (n - 1) + r
            for i in range(n - 1, len(padded)):
                top[tuple(padded[i - n + 1 : i])][padded[i]] += 1
        self.tables[n] = dict(top)
        for k in range(n - 1, 0, -1):  # continuation counts from the distinct (k+1)-grams
            lower: dict[tuple, Counter] = defaultdict(Counter)
            for ctx, nxt in self.tables[k + 1].items():
                for w in nxt:
                    lower[ctx[1:]][w] += 1
            self.tables[k] = dict(lower)
        for k in range(1, n + 1):
            self.totals[k] = {ctx: (float(sum(c.values())), len(c)) for ctx, c in self.tables[k].items()}
            cc = Counter(v for c in self.tables[k].values() for v in c.values())
            n1, n2 = cc.get(1, 0), cc.get(2, 0)
            self.discount[k] = n1 / (n1 + 2 * n2) if n1 and n2 else 0.75
        self._cache.clear()
        return self

    def prob(self, context: tuple, w: int) -> float:
        """p(w | the last n-1 tokens of context)."""
        key = (tuple(context[-(self.n - 1):]) if self.n > 1 else (), w)
        if key in self._cache:
            return self._cache[key]
        ctx = key[0]
        p = 1.0 / self.V
        for k in range(1, self.n + 1):
            h = ctx[len(ctx) - (k - 1):] if k > 1 else ()
            table = self.tables[k].get(h)
            if table is None:
                continue  # unseen context: keep the lower-order estimate
            total, types = self.totals[k][h]
            d = self.discount[k]
            p = max(table.get(w, 0) - d, 0.0) / total + d * types / total * p
        self._cache[key] = p
        return p

    def log_prob(self, seqs) -> torch.Tensor:
        """Total log-likelihood in nats of each sequence, (N,)."""
        rows = _rows(seqs)
        _check_vocab(rows, self.V)
        out = []
        for r in rows:
            padded = [self.bos] * (self.n - 1) + r
            out.append(sum(math.log(self.prob(tuple(padded[i - self.n + 1 : i]), padded[i]))
                           for i in range(self.n - 1, len(padded))))
        return torch.tensor(out, dtype=torch.float64)

    def bits_per_token(self, seqs) -> float:
        return bits_per_token(self.log_prob(seqs), _rows(seqs))


def bits_per_token(log_prob_nats: torch.Tensor, rows) -> float:
    """-sum log p / (number of tokens * ln 2)."""
    tokens = sum(len(r) for r in rows) if not isinstance(rows, int) else rows
    return float(-log_prob_nats.sum() / (tokens * math.log(2)))


def word_novelty(words: list[str | None], train: set[str], dictionary: set[str]) -> dict[str, float]:
    """Fractions of generated words (None = malformed sequence) that are

    memorised: in the training split; novel: a real word (in `dictionary`) not in
    the training split; non_word: neither (malformed included); plus malformed and
    unique (distinct well-formed words / all).
    """
    n = len(words)
    if n == 0:
        raise GenlabError("word_novelty needs at least one generated word")
    ok = [w for w in words if w is not None]
    memorised = sum(w in train for w in ok)
    novel = sum(w in dictionary and w not in train for w in ok)
    return dict(memorised=memorised / n, novel=novel / n, non_word=(n - memorised - novel) / n,
                malformed=(n - len(ok)) / n, unique=len(set(ok)) / n)


# ----------------------------------------------------------------------------- the discrete family

@torch.no_grad()
def discrete_metrics(model, data: TensorDataset, n: int | None = None, passes: int = 4, num_samples: int = 500,
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
    nats = torch.cat([model.nelbo(x[i:i + 1000], None if y is None else y[i:i + 1000], passes, g).cpu()
                      for i in range(0, len(x), 1000)])
    L = x.shape[1]
    out = {"bits_per_token": float(nats.mean() / (L * math.log(2))),
           "bits_per_sequence": float(nats.mean() / math.log(2))}
    if not model.is_image and model.cfg.alphabet:
        out.update(text_metrics(model, data, x, num_samples, steps, seed, orders))
    if model.is_image and fid:
        # against the test split quantised like the training data, so the floor is binarised
        # real vs binarised real and the score measures the model, not the quantisation
        for k, v in evaluate_model(model, data.name, n=num_samples, seed=seed).items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                out[k] = float(v)
    return out

def text_metrics(model, data: TensorDataset, x: torch.Tensor, num_samples: int = 500,
                 steps: tuple = (1, 2, 4, 8, 16), seed: int = 0, orders: tuple = (3, 6)) -> dict[str, float]:
    """Reference bits/token (unigram, n-grams on the train split) and novelty per sampler/steps."""
    meta = data.meta
    train = load_words("train", seq_len=model.cfg.seq_len, test_fraction=meta.get("test_fraction", 0.1),
                       path=meta.get("source"))
    out = {"unigram_bits_per_token": UnigramModel(model.cfg.D).fit(train.x).bits_per_token(x)}
    for k in orders:
        out[f"ngram{k}_bits_per_token"] = NGramModel(k, model.cfg.D, meta.get("bos_id", model.cfg.D)).fit(
            train.x).bits_per_token(x)
    train_words, dictionary = word_sets(train)
    for row in quality_vs_steps(model, train_words, dictionary, num_samples, steps, seed):
        for key in ("memorised", "novel", "non_word", "unique"):
            out[f"{row['sampler']}_s{row['steps']}_{key}"] = row[key]
    return out

@torch.no_grad()
def quality_vs_steps(model, train_words: set, dictionary: set, num_samples: int = 500,
                     steps: tuple = (1, 2, 4, 8, 16), seed: int = 0) -> list[dict]:
    """Novelty / memorisation of num_samples words per sampler and number of steps."""
    rows = []
    samplers = SAMPLERS if model.process.absorbing else ("ancestral",)
    for sampler in samplers:
        for s in steps:
            g = torch.Generator().manual_seed(seed)
            words = model.decode_text(model.sample_tokens(num_samples, g, sampler=sampler, steps=s))
            rows.append(dict(sampler=sampler, steps=s, **word_novelty(words, train_words, dictionary)))
    return rows

"""Reference language models and sample statistics for token sequences (words).

A likelihood in bits per token only means something next to simple baselines
fitted on the same training data, scored on the same held-out sequences:

- `UnigramModel`: every position independent, add-one (Laplace) smoothed counts;
- `NGramModel`: left-to-right n-gram with interpolated Kneser-Ney smoothing
  (Chen & Goodman 1998, Eq. 17), start-of-sequence context filled with BOS.

Both score whole fixed-length sequences (padding included, so the length of a
word is part of what is predicted, exactly as for the diffusion model).
`word_novelty` sorts generated words into memorised / novel real word / non-word.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict

import torch

from ..errors import GenlabError


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

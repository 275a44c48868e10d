"""A small bidirectional Transformer that denoises token sequences (the DiT / MDLM backbone).

Every position attends to every other (no causal mask): a denoiser sees the whole
corrupted sequence at once. The time u in [0, 1] and an optional class label
enter through adaptive LayerNorm (adaLN-Zero, Peebles & Xie 2023): each block's
LayerNorm shift/scale and residual gates are predicted from the conditioning
vector, and the gates start at zero so every block starts as the identity.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import GenlabError
from .embeddings import TimeEmbedding


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale[:, None]) + shift[:, None]


class SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float = 0.0):
        super().__init__()
        if dim % heads:
            raise GenlabError(f"transformer width {dim} must be divisible by the number of heads {heads}")
        self.heads, self.dropout = heads, dropout
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, L, d = x.shape
        q, k, v = self.qkv(x).view(n, L, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        # fused attention (flash / memory-efficient kernels where available); no mask: bidirectional
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        return self.proj(y.transpose(1, 2).reshape(n, L, d))


class Block(nn.Module):
    """Pre-norm Transformer block with adaLN-Zero conditioning."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0, dropout: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = SelfAttention(dim, heads, dropout)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(approximate="tanh"),
                                 nn.Dropout(dropout), nn.Linear(hidden, dim))
        self.ada = nn.Linear(dim, 6 * dim)
        nn.init.zeros_(self.ada.weight)
        nn.init.zeros_(self.ada.bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.ada(F.silu(c)).chunk(6, dim=-1)
        x = x + gate1[:, None] * self.attn(modulate(self.norm1(x), shift1, scale1))
        return x + gate2[:, None] * self.mlp(modulate(self.norm2(x), shift2, scale2))


class DenoisingTransformer(nn.Module):
    """logits (N, L, out_dim) = f(tokens (N, L), time u (N,), label y (N,) or None).

    vocab_size: input tokens (data tokens plus mask/BOS); out_dim: predicted
    classes (the data tokens; default vocab_size); seq_len: the longest sequence
    (learned position embeddings). num_classes > 0 adds a label embedding with an
    extra "no label" entry (index num_classes) for classifier-free guidance.
    """

    def __init__(self, vocab_size: int, seq_len: int, out_dim: int | None = None, dim: int = 128,
                 depth: int = 4, heads: int = 4, mlp_ratio: float = 4.0, num_classes: int = 0,
                 dropout: float = 0.0):
        super().__init__()
        self.vocab_size, self.seq_len, self.num_classes = vocab_size, seq_len, num_classes
        self.tok = nn.Embedding(vocab_size, dim)
        self.pos = nn.Parameter(torch.randn(1, seq_len, dim) * 0.02)
        self.time = TimeEmbedding(dim, dim)
        self.label = nn.Embedding(num_classes + 1, dim) if num_classes else None
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList([Block(dim, heads, mlp_ratio, dropout) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.final_ada = nn.Linear(dim, 2 * dim)
        self.head = nn.Linear(dim, out_dim or vocab_size)
        nn.init.normal_(self.tok.weight, std=0.02)
        for m in (self.final_ada, self.head):  # start from uniform logits
            nn.init.zeros_(m.weight)
            nn.init.zeros_(m.bias)

    def check_input(self, x: torch.Tensor) -> None:
        """GenlabError for a sequence the network cannot read (checks values: syncs the device)."""
        if x.dim() != 2:
            raise GenlabError(f"token input must be (batch, length), got shape {tuple(x.shape)}")
        if x.shape[1] > self.seq_len:
            raise GenlabError(f"sequence of length {x.shape[1]} is longer than the model's seq_len "
                              f"{self.seq_len}; shorten it or train a model with a larger seq_len")
        if x.dtype not in (torch.int64, torch.int32):
            raise GenlabError(f"tokens must be integers, got {x.dtype}")
        if x.numel() and (int(x.min()) < 0 or int(x.max()) >= self.vocab_size):
            raise GenlabError(f"token ids must lie in [0, {self.vocab_size}) (the model's vocabulary); "
                              f"got values in [{int(x.min())}, {int(x.max())}]")

    def forward(self, x: torch.Tensor, u: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        L = x.shape[1]
        if L > self.seq_len:
            raise GenlabError(f"sequence of length {L} is longer than the model's seq_len {self.seq_len}")
        h = self.drop(self.tok(x) + self.pos[:, :L])
        # times are in [0, 1]; scale to the 0..1000 range the sinusoidal frequencies are laid out for
        c = self.time(u.float().expand(x.shape[0]) * 1000)
        if self.label is not None:
            if y is None:
                y = torch.full((x.shape[0],), self.num_classes, device=x.device, dtype=torch.long)
            c = c + self.label(y)
        for block in self.blocks:
            h = block(h, c)
        shift, scale = self.final_ada(F.silu(c)).chunk(2, dim=-1)
        return self.head(modulate(self.norm(h), shift, scale))

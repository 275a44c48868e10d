"""Sinusoidal time embedding (Vaswani et al. 2017, as used by Ho et al. 2020)."""

import math

import torch
from torch import nn


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Embed (possibly fractional) timesteps t of shape (N,) as (N, dim) sin/cos features.

    Frequencies are geometric from 1 down to 1/max_period, so nearby steps get
    nearby embeddings while distant ones stay distinguishable.
    """
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return torch.nn.functional.pad(emb, (0, dim % 2))


class TimeEmbedding(nn.Module):
    """t -> sinusoidal features -> 2-layer MLP (the "time MLP" of the DDPM U-Net)."""

    def __init__(self, base_dim: int, out_dim: int):
        super().__init__()
        self.base_dim = base_dim
        self.mlp = nn.Sequential(nn.Linear(base_dim, out_dim), nn.SiLU(), nn.Linear(out_dim, out_dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.mlp(timestep_embedding(t, self.base_dim))

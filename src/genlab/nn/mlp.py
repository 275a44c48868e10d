"""Multi-layer perceptrons, and the time-conditioned MLP denoiser of toy 2-D diffusion.

A point x in R^D and a timestep t go in; a vector of the same size comes out
(eps, x0 or v, as for the U-Net). t enters through the sinusoidal embedding
+ MLP of genlab.nn.embeddings, added to every hidden layer, so each layer
can behave differently at different noise levels: at large t the denoiser
must point towards the data's mean, at small t towards the nearest point of
the data's manifold.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .embeddings import TimeEmbedding


class MLP(nn.Sequential):
    """Linear -> SiLU -> ... -> Linear with `depth` hidden layers of width `hidden`."""

    def __init__(self, d_in: int, hidden: int, d_out: int, depth: int = 2):
        layers: list[nn.Module] = []
        d = d_in
        for _ in range(depth):
            layers += [nn.Linear(d, hidden), nn.SiLU()]
            d = hidden
        layers.append(nn.Linear(d, d_out))
        super().__init__(*layers)


class TimeResBlock(nn.Module):
    """h + W2 SiLU(W1 SiLU(h) + W_t emb): a residual MLP block told the timestep."""

    def __init__(self, hidden: int, tdim: int):
        super().__init__()
        self.norm = nn.LayerNorm(hidden)
        self.fc1, self.temb, self.fc2 = nn.Linear(hidden, hidden), nn.Linear(tdim, hidden), nn.Linear(hidden, hidden)

    def forward(self, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        z = self.fc1(F.silu(self.norm(h))) + self.temb(F.silu(emb))
        return h + self.fc2(F.silu(z))


class TimeMLP(nn.Module):
    """(x (N, D), t (N,)) -> (N, D): input layer, `depth` TimeResBlocks, output layer."""

    def __init__(self, dim: int = 2, hidden: int = 128, depth: int = 3, time_dim: int = 32):
        super().__init__()
        self.time_embed = TimeEmbedding(time_dim, hidden)
        self.inp = nn.Linear(dim, hidden)
        self.blocks = nn.ModuleList([TimeResBlock(hidden, hidden) for _ in range(depth)])
        self.out = nn.Sequential(nn.LayerNorm(hidden), nn.SiLU(), nn.Linear(hidden, dim))
        nn.init.zeros_(self.out[-1].weight)  # start as the zero function, as the U-Net does
        nn.init.zeros_(self.out[-1].bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        emb = self.time_embed(t)
        h = self.inp(x)
        for block in self.blocks:
            h = block(h, emb)
        return self.out(h)

"""The DDPM U-Net (Ho et al. 2020, Appendix B), small enough for a CPU.

x_t and t go in, a tensor of x_t's shape comes out (epsilon, x0 or v,
whichever the diffusion model asks for). The shape of the network:

    conv_in -> [ResBlock x num_res_blocks (+Attention)] -> Downsample   (per level)
            -> ResBlock, Attention, ResBlock                               (middle)
            -> [ResBlock x (num_res_blocks+1) on cat(skip)] -> Upsample   (per level, reversed)
            -> GroupNorm, SiLU, conv_out

The time embedding (sinusoidal + MLP) is added inside every ResBlock; an
optional class embedding is added to it (class-conditional models, with one
extra "null" class for classifier-free guidance).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .embeddings import TimeEmbedding


@dataclass
class UNetConfig:
    channels: int = 1               # image channels in and out
    image_size: int = 28
    base_width: int = 32            # channels at full resolution
    channel_mult: tuple = (1, 2, 2)  # width multiplier per resolution level
    num_res_blocks: int = 2
    attn_resolutions: tuple = (7,)  # feature-map sizes that get self-attention
    dropout: float = 0.0
    num_classes: int = 0            # >0: class-conditional, label num_classes = "no label"
    out_channels: int = 0           # 0: same as channels


def _norm(ch: int) -> nn.GroupNorm:
    # up to 32 groups of at least 4 channels: one channel per group would be instance
    # norm, which throws away per-channel offsets such as the time embedding
    groups = 32
    while ch % groups or ch // groups < 4 and groups > 1:
        groups //= 2
    return nn.GroupNorm(groups, ch)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, the embedding entering as a scale and shift after the second norm.

    Scale-shift norm (Nichol & Dhariwal 2021; Dhariwal & Nichol 2021, "AdaGN"):
    h = GroupNorm(h) * (1 + scale(emb)) + shift(emb). Adding the embedding *before*
    a norm, as the first DDPM did, lets the norm subtract part of it again.
    """

    def __init__(self, cin: int, cout: int, tdim: int, dropout: float):
        super().__init__()
        self.norm1, self.conv1 = _norm(cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.temb = nn.Linear(tdim, 2 * cout)
        self.norm2, self.conv2 = _norm(cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.dropout = nn.Dropout(dropout)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x, temb):
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.temb(F.silu(temb))[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(self.dropout(F.silu(h)))
        return self.skip(x) + h


class Attention(nn.Module):
    """Single-head self-attention over the H*W positions of a feature map."""

    def __init__(self, ch: int):
        super().__init__()
        self.norm, self.qkv, self.proj = _norm(ch), nn.Conv2d(ch, 3 * ch, 1), nn.Conv2d(ch, ch, 1)

    def forward(self, x, temb=None):
        n, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(n, 3, c, h * w).transpose(-1, -2).unbind(1)
        out = F.scaled_dot_product_attention(q, k, v)  # (n, hw, c)
        return x + self.proj(out.transpose(-1, -2).reshape(n, c, h, w))


class UNet(nn.Module):
    def __init__(self, cfg: UNetConfig):
        super().__init__()
        self.cfg = cfg
        if cfg.image_size % 2 ** (len(cfg.channel_mult) - 1):
            raise ValueError(f"image size {cfg.image_size} cannot be halved {len(cfg.channel_mult) - 1} times")
        ch, tdim = cfg.base_width, 4 * cfg.base_width
        self.time_embed = TimeEmbedding(ch, tdim)
        self.class_embed = nn.Embedding(cfg.num_classes + 1, tdim) if cfg.num_classes > 0 else None
        self.conv_in = nn.Conv2d(cfg.channels, ch, 3, padding=1)

        self.down, skips, res = nn.ModuleList(), [ch], cfg.image_size
        for level, mult in enumerate(cfg.channel_mult):
            for _ in range(cfg.num_res_blocks):
                blocks = [ResBlock(ch, cfg.base_width * mult, tdim, cfg.dropout)]
                ch = cfg.base_width * mult
                if res in cfg.attn_resolutions:
                    blocks.append(Attention(ch))
                self.down.append(nn.ModuleList(blocks))
                skips.append(ch)
            if level < len(cfg.channel_mult) - 1:
                self.down.append(nn.ModuleList([nn.Conv2d(ch, ch, 3, stride=2, padding=1)]))
                skips.append(ch)
                res //= 2

        self.mid = nn.ModuleList([ResBlock(ch, ch, tdim, cfg.dropout), Attention(ch), ResBlock(ch, ch, tdim, cfg.dropout)])

        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(cfg.channel_mult))):
            for i in range(cfg.num_res_blocks + 1):
                blocks = [ResBlock(ch + skips.pop(), cfg.base_width * mult, tdim, cfg.dropout)]
                ch = cfg.base_width * mult
                if res in cfg.attn_resolutions:
                    blocks.append(Attention(ch))
                if level > 0 and i == cfg.num_res_blocks:
                    blocks.append(Upsample(ch))
                    res *= 2
                self.up.append(nn.ModuleList(blocks))

        self.out = nn.Sequential(_norm(ch), nn.SiLU(), nn.Conv2d(ch, cfg.out_channels or cfg.channels, 3, padding=1))
        nn.init.zeros_(self.out[-1].weight)  # start as the zero function: a stable first step
        nn.init.zeros_(self.out[-1].bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        emb = self.time_embed(t)
        if self.class_embed is not None:
            if y is None:  # unconditional call of a conditional model: the null label
                y = torch.full((x.shape[0],), self.cfg.num_classes, device=x.device, dtype=torch.long)
            emb = emb + self.class_embed(y)
        h = self.conv_in(x)
        hs = [h]
        for blocks in self.down:
            for layer in blocks:
                h = layer(h, emb) if isinstance(layer, (ResBlock, Attention)) else layer(h)
            hs.append(h)
        for layer in self.mid:
            h = layer(h, emb)
        for blocks in self.up:
            h = torch.cat([h, hs.pop()], dim=1)
            for layer in blocks:
                h = layer(h, emb) if isinstance(layer, (ResBlock, Attention)) else layer(h)
        return self.out(h)


class Upsample(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))

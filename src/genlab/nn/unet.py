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

Beyond class labels (all off by default: a default U-Net has exactly the parameters it always had),
the condition y may be a dict (see genlab.nn.conditioning):
- "text" (N, L, context_dim): read by a cross-attention block after every self-attention block
  (Rombach et al. 2022, the latent-diffusion U-Net); "text_mask" (N, L) hides padding;
- "pooled" (N, pooled_dim): projected and added to the time embedding (as SDXL's pooled text);
- "image" (N, cond_channels, H, W): concatenated with x_t as extra input channels (InstructPix2Pix).
A part the network reads but y lacks is its null value (zeros; the null label for classes).

`grad_checkpoint = True` (an attribute, not a config field, so checkpoints do not change) recomputes
each block's activations in the backward pass instead of storing them: less memory, more time.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..errors import GenlabError
from .conditioning import as_dict
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
    context_dim: int = 0            # >0: cross-attention to a text sequence (N, L, context_dim)
    pooled_dim: int = 0             # >0: a pooled text vector (N, pooled_dim) added to the time embedding
    cond_channels: int = 0          # >0: an image condition (N, cond_channels, H, W) concatenated with x_t


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


class CrossAttention(nn.Module):
    """Single-head attention from the H*W positions of a feature map to a sequence of context vectors.

    softmax(q k^T / sqrt(c)) v with q from the (normalised) feature map and k, v from the context
    (Rombach et al. 2022, Sec. 3.3); text_mask (N, L) True marks real positions. The output
    projection starts at zero, so a new block starts as the identity.
    """

    def __init__(self, ch: int, context_dim: int):
        super().__init__()
        self.norm, self.q = _norm(ch), nn.Conv2d(ch, ch, 1)
        self.kv = nn.Linear(context_dim, 2 * ch)
        self.proj = nn.Conv2d(ch, ch, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x, context, mask=None):
        n, c, h, w = x.shape
        q = self.q(self.norm(x)).reshape(n, c, h * w).transpose(-1, -2)  # (n, hw, c)
        k, v = self.kv(context).chunk(2, dim=-1)                          # (n, L, c) each
        attn_mask = None
        if mask is not None:  # (n, 1, L), broadcast over queries; a row with no real position reads them all
            mask = mask.bool()
            attn_mask = (mask | ~mask.any(-1, keepdim=True))[:, None, :]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        return x + self.proj(out.transpose(-1, -2).reshape(n, c, h, w))


class UNet(nn.Module):
    grad_checkpoint: bool = False  # recompute each block in the backward pass while training

    def __init__(self, cfg: UNetConfig):
        super().__init__()
        self.cfg = cfg
        if cfg.image_size % 2 ** (len(cfg.channel_mult) - 1):
            raise ValueError(f"image size {cfg.image_size} cannot be halved {len(cfg.channel_mult) - 1} times")
        ch, tdim = cfg.base_width, 4 * cfg.base_width
        self.time_embed = TimeEmbedding(ch, tdim)
        self.class_embed = nn.Embedding(cfg.num_classes + 1, tdim) if cfg.num_classes > 0 else None
        if cfg.pooled_dim > 0:
            self.pooled_embed = nn.Linear(cfg.pooled_dim, tdim)
        self.conv_in = nn.Conv2d(cfg.channels + cfg.cond_channels, ch, 3, padding=1)

        self.down, skips, res = nn.ModuleList(), [ch], cfg.image_size
        for level, mult in enumerate(cfg.channel_mult):
            for _ in range(cfg.num_res_blocks):
                blocks = [ResBlock(ch, cfg.base_width * mult, tdim, cfg.dropout)]
                ch = cfg.base_width * mult
                if res in cfg.attn_resolutions:
                    blocks += self._attention(ch)
                self.down.append(nn.ModuleList(blocks))
                skips.append(ch)
            if level < len(cfg.channel_mult) - 1:
                self.down.append(nn.ModuleList([nn.Conv2d(ch, ch, 3, stride=2, padding=1)]))
                skips.append(ch)
                res //= 2

        self.mid = nn.ModuleList([ResBlock(ch, ch, tdim, cfg.dropout), *self._attention(ch),
                                  ResBlock(ch, ch, tdim, cfg.dropout)])

        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(cfg.channel_mult))):
            for i in range(cfg.num_res_blocks + 1):
                blocks = [ResBlock(ch + skips.pop(), cfg.base_width * mult, tdim, cfg.dropout)]
                ch = cfg.base_width * mult
                if res in cfg.attn_resolutions:
                    blocks += self._attention(ch)
                if level > 0 and i == cfg.num_res_blocks:
                    blocks.append(Upsample(ch))
                    res *= 2
                self.up.append(nn.ModuleList(blocks))

        self.out = nn.Sequential(_norm(ch), nn.SiLU(), nn.Conv2d(ch, cfg.out_channels or cfg.channels, 3, padding=1))
        nn.init.zeros_(self.out[-1].weight)  # start as the zero function: a stable first step
        nn.init.zeros_(self.out[-1].bias)

    def _attention(self, ch: int) -> list[nn.Module]:
        """Self-attention, followed by cross-attention to the text when the U-Net reads text."""
        return [Attention(ch)] + ([CrossAttention(ch, self.cfg.context_dim)] if self.cfg.context_dim > 0 else [])

    def forward(self, x: torch.Tensor, t: torch.Tensor, y=None) -> torch.Tensor:
        """y: class labels (N,), a condition dict (genlab.nn.conditioning), or None (the null condition)."""
        cond = self._condition(x, y)
        emb = self.time_embed(t)
        if self.class_embed is not None:
            emb = emb + self.class_embed(cond["class"])
        if self.cfg.pooled_dim > 0:
            emb = emb + self.pooled_embed(cond["pooled"])
        ctx = (emb, cond.get("text"), cond.get("text_mask"))
        h = self.conv_in(torch.cat([x, cond["image"]], dim=1) if self.cfg.cond_channels > 0 else x)
        hs = [h]
        for blocks in self.down:
            for layer in blocks:
                h = self._layer(layer, h, *ctx)
            hs.append(h)
        for layer in self.mid:
            h = self._layer(layer, h, *ctx)
        for blocks in self.up:
            h = torch.cat([h, hs.pop()], dim=1)
            for layer in blocks:
                h = self._layer(layer, h, *ctx)
        return self.out(h)

    def _layer(self, layer: nn.Module, h, emb, text, text_mask):
        """One layer: blocks get the embedding (or the text), and are checkpointed when asked."""
        if isinstance(layer, CrossAttention):
            args = (h, text, text_mask)
        elif isinstance(layer, (ResBlock, Attention)):
            args = (h, emb)
        else:
            return layer(h)  # down- and upsampling convs
        if self.grad_checkpoint and self.training and torch.is_grad_enabled():
            return checkpoint(layer, *args, use_reentrant=False)
        return layer(*args)

    def _condition(self, x: torch.Tensor, y) -> dict:
        """The parts of y this network reads, each checked and filled with its null value where absent."""
        d, cfg, n = as_dict(y), self.cfg, x.shape[0]
        # labels given to a class-less U-Net are ignored, as they always were (classifier guidance
        # of an unconditional model passes its target class through the denoiser)
        reads = {"class": True, "text": cfg.context_dim > 0, "text_mask": cfg.context_dim > 0,
                 "pooled": cfg.pooled_dim > 0, "image": cfg.cond_channels > 0}
        extra = [k for k in d if not reads[k]]
        if extra:
            raise GenlabError(f"this U-Net does not read the condition part(s) {', '.join(map(repr, extra))} "
                              f"(num_classes {cfg.num_classes}, context_dim {cfg.context_dim}, pooled_dim "
                              f"{cfg.pooled_dim}, cond_channels {cfg.cond_channels}); train a model that does")
        want = {"text": (n, None, cfg.context_dim), "text_mask": (n, None), "pooled": (n, cfg.pooled_dim),
                "image": (n, cfg.cond_channels, *x.shape[2:]), "class": (n,)}
        for k, v in d.items():
            if v.dim() != len(want[k]) or any(w is not None and w != s for w, s in zip(want[k], v.shape)):
                raise GenlabError(f"condition part {k!r} has shape {tuple(v.shape)}, but this U-Net wants "
                                  f"{tuple('L' if w is None else w for w in want[k])}")
        out = dict(d)
        if cfg.num_classes > 0 and "class" not in out:  # the null label
            out["class"] = torch.full((n,), cfg.num_classes, device=x.device, dtype=torch.long)
        if cfg.context_dim > 0 and "text" not in out:   # one zero token (attention over it: the value bias)
            out["text"] = x.new_zeros(n, 1, cfg.context_dim)
            out.pop("text_mask", None)
        if cfg.pooled_dim > 0 and "pooled" not in out:
            out["pooled"] = x.new_zeros(n, cfg.pooled_dim)
        if cfg.cond_channels > 0 and "image" not in out:
            out["image"] = x.new_zeros(n, cfg.cond_channels, *x.shape[2:])
        return out


class Upsample(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))

"""The `noisy-classifier` family: p_phi(y | x_t, t), a classifier of noisy images.

Classifier guidance (genlab.diffusion.guidance) needs the gradient of
log p(y | x_t) at every noise level the sampler visits, so the classifier is
trained on x_t ~ q(x_t | x_0) (DDPM Eq. 4) with t uniform, and is told t
through the same sinusoidal time embedding as the U-Net. The network is the
U-Net's encoder half (residual blocks, strided-conv downsampling, optional
self-attention) followed by global average pooling, LayerNorm, SiLU and a
linear layer, as the classifier of Dhariwal & Nichol 2021 (Sec. 4, with
average instead of attention pooling).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..data.base import TensorDataset
from ..diffusion.gaussian import q_sample
from ..diffusion.schedules import NoiseSchedule, make_schedule
from ..errors import GenlabError, ParamError
from ..nn.embeddings import TimeEmbedding
from ..nn.unet import Attention, ResBlock
from .base import GenerativeModel, register


@dataclass
class NoisyClassifierConfig:
    channels: int = 1
    image_size: int = 28
    num_classes: int = 10
    base_width: int = 32            # channels at full resolution
    channel_mult: tuple = (1, 2, 2)  # width multiplier per resolution level
    num_res_blocks: int = 1         # residual blocks per level
    attn_resolutions: tuple = ()    # feature-map sizes with self-attention
    dropout: float = 0.0
    timesteps: int = 1000           # T of the noise schedule it is trained on (use the diffusion model's)
    schedule: str = "cosine"        # linear | cosine (use the diffusion model's)


class NoisyClassifierNet(nn.Module):
    """U-Net encoder + pooled linear head: (x_t, t) -> logits (N, num_classes)."""

    def __init__(self, cfg: NoisyClassifierConfig):
        super().__init__()
        if cfg.image_size % 2 ** (len(cfg.channel_mult) - 1):
            raise ParamError("channel_mult", f"has {len(cfg.channel_mult)} entries, so the image is halved "
                             f"{len(cfg.channel_mult) - 1} times, which size {cfg.image_size} does not allow; "
                             "use a shorter one")
        ch, tdim = cfg.base_width, 4 * cfg.base_width
        self.time_embed = TimeEmbedding(ch, tdim)
        self.conv_in = nn.Conv2d(cfg.channels, ch, 3, padding=1)
        layers, res = [], cfg.image_size
        for level, mult in enumerate(cfg.channel_mult):
            for _ in range(cfg.num_res_blocks):
                layers.append(ResBlock(ch, cfg.base_width * mult, tdim, cfg.dropout))
                ch = cfg.base_width * mult
                if res in cfg.attn_resolutions:
                    layers.append(Attention(ch))
            if level < len(cfg.channel_mult) - 1:
                layers.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
                res //= 2
        layers.append(ResBlock(ch, ch, tdim, cfg.dropout))
        self.layers = nn.ModuleList(layers)
        # pool first, then normalise: a GroupNorm right before the pooling would remove each group's
        # spatial mean, the very statistic that average pooling reads
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.LayerNorm(ch), nn.SiLU(),
                                  nn.Linear(ch, cfg.num_classes))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        emb = self.time_embed(t)
        h = self.conv_in(x)
        for layer in self.layers:
            h = layer(h, emb) if isinstance(layer, (ResBlock, Attention)) else layer(h)
        return self.head(h)


@register
class NoisyClassifier(GenerativeModel):
    """Noise-aware classifier p(y | x_t, t) for classifier guidance (train on the diffusion model's data)."""

    family = "noisy-classifier"
    Config = NoisyClassifierConfig
    data_kind = "image"
    default_dataset = "fashion_mnist"
    train_defaults = {"epochs": 5, "lr": 1e-3, "weight_decay": 0.05, "lr_schedule": "cosine",
                      "warmup_steps": 100, "sample_every": 0}

    def __init__(self, cfg: NoisyClassifierConfig):
        super().__init__(cfg)
        if cfg.num_classes < 2:
            raise GenlabError("a noisy classifier needs a labelled dataset (at least 2 classes)")
        self.schedule = make_schedule(cfg.schedule, cfg.timesteps)
        self.net = NoisyClassifierNet(cfg)

    @property
    def num_classes(self) -> int:
        return self.cfg.num_classes

    def loss(self, batch):
        if "y" not in batch:
            raise GenlabError("the noisy classifier needs labels; train it on a labelled dataset")
        x0, y = batch["x"], batch["y"]
        # x_t ~ q(x_t | x_0) at a uniform t (DDPM Eq. 4): the classifier sees every noise level
        t = torch.randint(0, self.cfg.timesteps, (x0.shape[0],), device=x0.device)
        logits = self.net(q_sample(self.schedule, x0, t), t)
        loss = F.cross_entropy(logits, y)
        return loss, {"acc": (logits.argmax(1) == y).float().mean().detach()}

    def logits(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Logits of noisy images x_t at timesteps t (N,) of this classifier's schedule."""
        return self.net(x, t)

    def for_schedule(self, schedule: NoiseSchedule):
        """(x_t, t) -> logits with t a timestep of `schedule` (a diffusion model's).

        Same schedule: t as is. Otherwise t is mapped to this classifier's timestep
        whose alpha_bar is nearest, so a classifier trained with another T still
        sees inputs at the noise level it knows.
        """
        mine, theirs = self.schedule.alphas_cumprod, schedule.alphas_cumprod
        if len(mine) == len(theirs) and torch.allclose(mine, theirs):
            return self.logits
        table = (mine[None, :] - theirs[:, None]).abs().argmin(dim=1)

        def fn(x, t):
            return self.logits(x, table.to(t.device)[t])

        return fn

    def check_compatible(self, channels: int, image_size: int, num_classes: int | None = None) -> None:
        cfg = self.cfg
        if (cfg.channels, cfg.image_size) != (channels, image_size):
            raise GenlabError(f"the classifier takes {cfg.channels}x{cfg.image_size}x{cfg.image_size} images but the "
                              f"diffusion model makes {channels}x{image_size}x{image_size}; train the classifier "
                              "on the diffusion model's dataset")
        if num_classes and num_classes != cfg.num_classes:
            raise GenlabError(f"the classifier knows {cfg.num_classes} classes but the diffusion model "
                              f"{num_classes}; train both on the same dataset")

    @torch.no_grad()
    def accuracy_vs_t(self, data: TensorDataset, timesteps: list[int], n: int = 1000,
                      generator: torch.Generator | None = None) -> dict[int, float]:
        """Accuracy on the first n items of data, noised to each t (same noise for every t)."""
        if data.y is None:
            raise GenlabError(f"dataset {data.name} has no labels to evaluate a classifier on")
        was = self.training
        self.eval()
        n = min(n, len(data))
        batch = data.batch(torch.arange(n))
        x0, y = batch["x"].to(self.device), batch["y"].to(self.device)
        noise = torch.randn(x0.shape, generator=generator).to(self.device)
        out = {}
        for t in timesteps:
            tt = torch.full((n,), t, device=self.device, dtype=torch.long)
            correct = 0
            for i in range(0, n, 500):
                sl = slice(i, i + 500)
                logits = self.logits(q_sample(self.schedule, x0[sl], tt[sl], noise[sl]), tt[sl])
                correct += int((logits.argmax(1) == y[sl]).sum())
            out[t] = correct / n
        self.train(was)
        return out

    def evaluate(self, data: TensorDataset, n: int | None = None) -> dict[str, float]:
        """Accuracy at t = 0, T/4, T/2, 3T/4 (chance at the end, where x_t is nearly pure noise)."""
        T = self.cfg.timesteps
        ts = [0, T // 4, T // 2, 3 * T // 4]
        acc = self.accuracy_vs_t(data, ts, n or 2000, torch.Generator().manual_seed(0))
        return {f"accuracy_t{t}": a for t, a in acc.items()}

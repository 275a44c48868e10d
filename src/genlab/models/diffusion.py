"""DDPM as a genlab model family: a U-Net, the simplified loss, a sampler.

The network predicts eps, x0 or v (`prediction`); class-conditional models
(`conditional=True`) drop the label with probability `label_dropout` so the
same network also learns the unconditional score, which is what
classifier-free guidance (Ho & Salimans 2022) mixes at sampling time.

Text (`context_dim`, `pooled_dim`) and image (`cond_channels`) conditions come in the batch as
"text" / "text_mask" / "pooled" / "image" tensors next to "x" and "y" and reach the U-Net as a
condition dict (genlab.nn.conditioning); each drops with its own probability (`text_dropout`,
`image_dropout`) and all together with `joint_dropout`, so guidance can give each its own scale.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

import torch

from ..diffusion import gaussian, samplers
from ..diffusion.guidance import (check_guidance_scales, classifier_free, classifier_guidance, guidance_plan,
                                  is_plain)
from ..diffusion.schedules import make_schedule
from ..errors import GenlabError, ParamError
from ..nn.conditioning import condition_to, drop_condition, slice_condition
from ..nn.unet import UNet, UNetConfig
from ..device import use_bf16
from .base import GenerativeModel, register

# A CPU runs the sampler's network calls fastest in slices that keep the activations in cache;
# a GPU wants the whole batch. How 64 was chosen: benchmarks/measurements.md (sampler_micro_batch.py).
CPU_MICRO_BATCH = 64


@dataclass
class DiffusionConfig:
    channels: int = 1
    image_size: int = 28
    base_width: int = 32            # U-Net channels at full resolution
    channel_mult: tuple = (1, 2, 2)  # width multiplier per resolution level
    num_res_blocks: int = 2         # residual blocks per level
    attn_resolutions: tuple = (7,)  # feature-map sizes with self-attention
    dropout: float = 0.0
    timesteps: int = 1000           # T, the number of diffusion steps
    schedule: str = "cosine"        # linear | cosine
    # v-prediction (Salimans & Ho 2022) with Min-SNR-5 weighting (Hang et al. 2023): at high noise the
    # network predicts the mean image instead of amplifying eps errors by 1/sqrt(abar), and the loss does
    # not spend a short run on nearly clean steps; what it bought in 30 CPU-minutes on Fashion-MNIST:
    # benchmarks/results.md. `--prediction eps --weighting none` is Ho et al.'s DDPM.
    prediction: str = "v"           # eps | x0 | v
    weighting: str = "min_snr"      # none | min_snr
    conditional: bool = False       # class-conditional (labels from the dataset)
    num_classes: int = 0
    label_dropout: float = 0.1      # p(label -> null) during training, for CFG
    sampler: str = "ddpm"           # default sampler for sample(): ddpm | ddim | dpmpp
    sample_steps: int = 0           # 0: all T steps for ddpm, 50 for the others
    sample_bf16: bool = False       # sampler's network calls in bf16 where measured faster (precision.json)
    # conditions beyond class labels (0 = off; read from the batch's "text", "pooled", "image")
    context_dim: int = 0            # text embedding width: cross-attention wherever there is self-attention
    pooled_dim: int = 0             # pooled text vector width, added to the time embedding
    cond_channels: int = 0          # channels of an image condition concatenated with x_t
    text_dropout: float = 0.1       # p(text -> null) during training, for CFG
    image_dropout: float = 0.1      # p(image -> null) during training, for CFG
    joint_dropout: float = 0.0      # p(every condition -> null together), as InstructPix2Pix


@register
class DiffusionModel(GenerativeModel):
    """DDPM (U-Net; eps / x0 / v prediction; DDPM, DDIM and DPM-Solver++ samplers; CFG)."""

    family = "diffusion"
    Config = DiffusionConfig
    # DDPM's 2e-4 was for 35.7M parameters over 800k steps; a small U-Net given the few thousand
    # steps of a CPU budget barely leaves the noise at that rate (benchmarks/results.md, quality)
    train_defaults = {"lr": 1e-3}

    def __init__(self, cfg: DiffusionConfig):
        super().__init__(cfg)
        if cfg.prediction not in ("eps", "x0", "v"):
            raise GenlabError(f"unknown prediction target '{cfg.prediction}'; choose eps, x0 or v")
        if cfg.weighting not in ("none", "min_snr"):
            raise GenlabError(f"unknown loss weighting '{cfg.weighting}'; choose none or min_snr")
        if cfg.conditional and cfg.num_classes < 2:
            raise GenlabError("a conditional diffusion model needs a dataset with class labels")
        for name in ("context_dim", "pooled_dim", "cond_channels"):
            if getattr(cfg, name) < 0:
                raise ParamError(name, f"must be >= 0 (0: off), got {getattr(cfg, name)}")
        if cfg.pooled_dim and not cfg.context_dim:
            raise GenlabError("a pooled text vector (pooled_dim) comes with the text: set context_dim too")
        for name in ("label_dropout", "text_dropout", "image_dropout", "joint_dropout"):
            if not 0 <= getattr(cfg, name) <= 1:
                raise ParamError(name, f"is a probability in [0, 1], got {getattr(cfg, name)}")
        halvings = len(cfg.channel_mult) - 1
        if cfg.image_size % 2 ** halvings:
            raise ParamError("image_size", f"must be a multiple of {2 ** halvings}, got {cfg.image_size}: the U-Net "
                             f"halves the image {halvings} times (one fewer than the entries of channel_mult)")
        self.schedule = make_schedule(cfg.schedule, cfg.timesteps)
        self.net = UNet(UNetConfig(
            channels=cfg.channels, image_size=cfg.image_size, base_width=cfg.base_width,
            channel_mult=tuple(cfg.channel_mult), num_res_blocks=cfg.num_res_blocks,
            attn_resolutions=tuple(cfg.attn_resolutions), dropout=cfg.dropout,
            num_classes=cfg.num_classes if cfg.conditional else 0, context_dim=cfg.context_dim,
            pooled_dim=cfg.pooled_dim, cond_channels=cfg.cond_channels))

    @property
    def num_classes(self) -> int:
        return self.cfg.num_classes if self.cfg.conditional else 0

    @property
    def is_conditional(self) -> bool:
        """Reads any condition (class labels, text or an image), so classifier-free guidance applies."""
        cfg = self.cfg
        return bool(self.num_classes or cfg.context_dim or cfg.cond_channels)

    def condition(self, batch: dict):
        """The condition in a batch: the labels y for a class-only model (as always), else a dict of
        the parts this model reads (None for an unconditional model)."""
        cfg = self.cfg
        if not (cfg.context_dim or cfg.cond_channels):
            return batch["y"] if self.num_classes else None
        wanted = [("class", "y", self.num_classes), ("text", "text", cfg.context_dim),
                  ("text_mask", "text_mask", cfg.context_dim), ("pooled", "pooled", cfg.pooled_dim),
                  ("image", "image", cfg.cond_channels)]
        missing = [key for _, key, on in wanted if on and key not in batch and key != "text_mask"]
        if missing:
            raise GenlabError(f"this model is conditioned on {', '.join(missing)}, but the batch has only "
                              f"{', '.join(sorted(batch))}: train on a dataset that provides them")
        return {part: batch[key] for part, key, on in wanted if on and key in batch}

    def loss(self, batch):
        x0, cfg = batch["x"], self.cfg
        # condition dropout: the null condition teaches the unconditional model (class: label num_classes)
        p = {"class": cfg.label_dropout, "text": cfg.text_dropout, "image": cfg.image_dropout}
        y = self.condition(batch)
        if isinstance(y, torch.Tensor):
            p = cfg.label_dropout  # plain labels: one draw per row, the label dropout genlab always did
        y = drop_condition(y, p, self.num_classes, p_all=cfg.joint_dropout)
        loss = gaussian.diffusion_loss(self.schedule, self.net, x0, y=y, prediction=self.cfg.prediction,
                                       weighting=self.cfg.weighting)
        return loss, {}

    def denoiser(self, guidance=1.0, bf16: bool | None = None, micro_batch: int | None = None):
        """The network as a function (x_t, t, y) -> output, with classifier-free guidance.

        guidance w mixes out = out_uncond + w (out_cond - out_uncond) (Ho & Salimans 2022,
        Eq. 6 with w = 1 + their w): w = 1 is plain conditional, w = 0 unconditional.
        A dict {group: scale} guides several conditions, each with its own scale, in the
        order given (InstructPix2Pix: {"image": s_I, "text": s_T}; genlab.diffusion.guidance).
        y: labels, a condition dict (moved to the model's device here) or None.
        micro_batch: the most images per network call (default: CPU_MICRO_BATCH on a CPU,
        the whole batch on a GPU); the output does not depend on it.
        """
        bf16 = self.cfg.sample_bf16 if bf16 is None else bf16
        # bf16 only where the precision table measured it faster for sampling on this device kind
        # (genlab/precision.json; benchmarks/measurements.md), else fp32
        bf16 = bf16 and use_bf16("auto", self.device, task="sample")
        ctx = (lambda: torch.autocast(self.device.type, dtype=torch.bfloat16)) if bf16 else nullcontext
        if micro_batch is None:
            micro_batch = CPU_MICRO_BATCH if self.device.type == "cpu" else 0

        def net(x, t, y):
            if not micro_batch or len(x) <= micro_batch:
                return self.net(x, t, y).float()
            parts = [self.net(x[i : i + micro_batch], t[i : i + micro_batch],
                              slice_condition(y, i, i + micro_batch)).float()
                     for i in range(0, len(x), micro_batch)]
            return torch.cat(parts)

        guided = classifier_free(net, guidance if self.is_conditional else 1.0, self.num_classes)

        def fn(x, t, y=None):
            with ctx():
                return guided(x, t, condition_to(y, x.device))

        return fn

    def check_labels(self, y, classifier=None) -> None:
        """y: class labels, a condition dict (its "class" part is checked here) or None."""
        if classifier is not None:
            classifier.check_compatible(self.cfg.channels, self.cfg.image_size, self.num_classes)
            if y is None:
                raise GenlabError("classifier guidance needs the class to generate: pass labels y")
            if isinstance(y, dict):
                raise GenlabError("classifier guidance steers towards class labels y, not a condition dict; "
                                  "pass the labels alone")
            if int(y.min()) < 0 or int(y.max()) >= classifier.num_classes:
                raise GenlabError(f"class index out of range: the classifier knows classes "
                                  f"0..{classifier.num_classes - 1}")
            return
        if y is None:
            return
        y = y.get("class") if isinstance(y, dict) else y  # the U-Net checks the other parts' shapes
        if y is None:
            return
        if not self.num_classes:
            raise GenlabError("this checkpoint is unconditional: it cannot generate a given class "
                              "(train with --conditional to get a class-conditional model)")
        if int(y.min()) < 0 or int(y.max()) >= self.num_classes:
            raise GenlabError(f"class index out of range: this model knows classes 0..{self.num_classes - 1}")

    def check_guidance(self, guidance, y) -> None:
        """Classifier-free guidance needs a conditional model, the condition, and finite scales >= 0."""
        if is_plain(guidance):
            return
        if not self.is_conditional:
            raise ParamError("guidance", "needs a class-conditional checkpoint (train with --conditional); "
                             "this one is unconditional")
        if y is None:
            raise GenlabError("classifier-free guidance needs the class to generate: pass labels y")
        check_guidance_scales(guidance)
        guidance_plan(guidance, y)  # every scale names a condition that y has

    @torch.no_grad()
    def preview(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Training-time grids: DDIM with its default steps (50: 20x faster than DDPM-1000)."""
        return self.sample(n, generator=generator, sampler="ddim")

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, y: torch.Tensor | None = None,
               sampler: str | None = None, steps: int | None = None, guidance: float = 1.0, eta: float = 0.0,
               x_T: torch.Tensor | None = None, return_intermediates: int = 0, progress=None,
               spacing: str | None = None, classifier=None, classifier_scale: float = 1.0):
        """n images in [-1, 1] from `sampler` (one of diffusion.samplers.available()) with `steps` timesteps.

        guidance: classifier-free guidance scale (needs y and a conditional model);
        classifier: a trained NoisyClassifier for classifier guidance towards y, with
        gradient scale classifier_scale; spacing: uniform | quadratic | trailing (not ddpm).
        """
        self.check_labels(y, classifier)
        self.check_guidance(guidance, y)
        y = condition_to(y, self.device)  # labels or a condition dict (genlab.nn.conditioning)
        # the configured step count belongs to the configured sampler: `sampler="ddpm"` on a model whose
        # default is DDIM-50 runs DDPM's all T steps, not 50
        steps = steps or (self.cfg.sample_steps if sampler in (None, self.cfg.sampler) else 0) or None
        sampler = sampler or self.cfg.sampler
        steps = samplers.resolve_steps(sampler, steps, self.cfg.timesteps)  # a T = 20 model cannot take DDIM's 50
        model = self.denoiser(guidance)
        if classifier is not None:
            model = classifier_guidance(model, classifier.for_schedule(self.schedule), self.schedule,
                                        classifier_scale, self.cfg.prediction)
        shape = (n, self.cfg.channels, self.cfg.image_size, self.cfg.image_size)
        return samplers.sample(self.schedule, model, shape, sampler=sampler, steps=steps, y=y,
                               prediction=self.cfg.prediction, eta=eta, generator=generator, device=self.device,
                               x_T=x_T, return_intermediates=return_intermediates, progress=progress, spacing=spacing)

"""DDPM as a genlab model family: a U-Net, the simplified loss, a sampler.

The network predicts eps, x0 or v (`prediction`); class-conditional models
(`conditional=True`) drop the label with probability `label_dropout` so the
same network also learns the unconditional score, which is what
classifier-free guidance (Ho & Salimans 2022) mixes at sampling time.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch

from ..diffusion import gaussian, samplers
from ..diffusion.guidance import classifier_guidance
from ..diffusion.schedules import make_schedule
from ..errors import GenlabError
from ..nn.unet import UNet, UNetConfig
from ..train.device import use_bf16
from ..viz.diffusion import forward_panel
from ..viz.grid import save_gif, save_strip
from .base import GenerativeModel, register

# A CPU runs the sampler's network calls fastest in slices that keep the activations in cache:
# on the 2-core AVX2 machine the 0.72M CPU U-Net took ~1.6 ms per 28x28 image per call in slices
# of 64 and 2.2-2.3 ms as one batch of 250 (5.2-5.9 -> 3.2 ms with CFG's doubled batch of 500; 32
# and 128 were slower than 64; benchmarks/sampler_micro_batch.py, 2 threads). A GPU wants the whole batch.
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
    # not spend a short run on nearly clean steps. In 30 CPU-minutes on Fashion-MNIST this took FID from
    # 129 (eps, unweighted) to 105 (benchmarks/results.md). `--prediction eps --weighting none` is Ho et
    # al.'s DDPM.
    prediction: str = "v"           # eps | x0 | v
    weighting: str = "min_snr"      # none | min_snr
    conditional: bool = False       # class-conditional (labels from the dataset)
    num_classes: int = 0
    label_dropout: float = 0.1      # p(label -> null) during training, for CFG
    sampler: str = "ddpm"           # default sampler for sample(): ddpm | ddim | dpmpp
    sample_steps: int = 0           # 0: all T steps for ddpm, 50 for the others
    sample_bf16: bool = False       # sampler's network calls in bf16 where the hardware has it


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
        halvings = len(cfg.channel_mult) - 1
        if cfg.image_size % 2 ** halvings:
            raise GenlabError(f"the U-Net halves the image {halvings} times (--channel-mult), so --image-size must "
                              f"be a multiple of {2 ** halvings}, got {cfg.image_size}")
        self.schedule = make_schedule(cfg.schedule, cfg.timesteps)
        self.net = UNet(UNetConfig(
            channels=cfg.channels, image_size=cfg.image_size, base_width=cfg.base_width,
            channel_mult=tuple(cfg.channel_mult), num_res_blocks=cfg.num_res_blocks,
            attn_resolutions=tuple(cfg.attn_resolutions), dropout=cfg.dropout,
            num_classes=cfg.num_classes if cfg.conditional else 0))

    @property
    def num_classes(self) -> int:
        return self.cfg.num_classes if self.cfg.conditional else 0

    def loss(self, batch):
        x0, y = batch["x"], batch.get("y")
        if self.num_classes:
            # label dropout: the null label num_classes teaches the unconditional model
            drop = torch.rand(y.shape, device=y.device) < self.cfg.label_dropout
            y = torch.where(drop, torch.full_like(y, self.num_classes), y)
        else:
            y = None
        loss = gaussian.diffusion_loss(self.schedule, self.net, x0, y=y, prediction=self.cfg.prediction,
                                       weighting=self.cfg.weighting)
        return loss, {}

    def denoiser(self, guidance: float = 1.0, bf16: bool | None = None, micro_batch: int | None = None):
        """The network as a function (x_t, t, y) -> output, with classifier-free guidance.

        guidance w mixes out = out_uncond + w (out_cond - out_uncond) (Ho & Salimans 2022,
        Eq. 6 with w = 1 + their w): w = 1 is plain conditional, w = 0 unconditional.
        micro_batch: the most images per network call (default: CPU_MICRO_BATCH on a CPU,
        the whole batch on a GPU); the output does not depend on it.
        """
        bf16 = self.cfg.sample_bf16 if bf16 is None else bf16
        # bf16 without hardware support (an AVX2-only CPU) is emulated and ~20x slower than fp32,
        # so a checkpoint trained on a bf16 machine samples in fp32 elsewhere
        bf16 = bf16 and use_bf16("auto", self.device)
        ctx = (lambda: torch.autocast(self.device.type, dtype=torch.bfloat16)) if bf16 else nullcontext
        if micro_batch is None:
            micro_batch = CPU_MICRO_BATCH if self.device.type == "cpu" else 0

        def net(x, t, y):
            if not micro_batch or len(x) <= micro_batch:
                return self.net(x, t, y).float()
            parts = [self.net(x[i : i + micro_batch], t[i : i + micro_batch],
                              None if y is None else y[i : i + micro_batch]).float()
                     for i in range(0, len(x), micro_batch)]
            return torch.cat(parts)

        def fn(x, t, y=None):
            with ctx():
                if y is None or guidance == 1.0 or not self.num_classes:
                    return net(x, t, y)
                if guidance == 0.0:
                    return net(x, t, None)
                null = torch.full_like(y, self.num_classes)
                cond, uncond = net(torch.cat([x, x]), torch.cat([t, t]), torch.cat([y, null])).chunk(2)
                return uncond + guidance * (cond - uncond)

        return fn

    def check_labels(self, y: torch.Tensor | None, classifier=None) -> None:
        if classifier is not None:
            classifier.check_compatible(self.cfg.channels, self.cfg.image_size, self.num_classes)
            if y is None:
                raise GenlabError("classifier guidance needs the class to generate: pass --class (or labels y)")
            if int(y.min()) < 0 or int(y.max()) >= classifier.num_classes:
                raise GenlabError(f"class index out of range: the classifier knows classes "
                                  f"0..{classifier.num_classes - 1}")
            return
        if y is None:
            return
        if not self.num_classes:
            raise GenlabError("this checkpoint is unconditional: it cannot generate a given class "
                              "(train with --conditional to get a class-conditional model)")
        if int(y.min()) < 0 or int(y.max()) >= self.num_classes:
            raise GenlabError(f"class index out of range: this model knows classes 0..{self.num_classes - 1}")

    def check_guidance(self, guidance: float, y: torch.Tensor | None) -> None:
        """Classifier-free guidance needs a conditional model, the labels, and a finite scale >= 0."""
        if guidance == 1.0:
            return
        if not self.num_classes:
            raise GenlabError("--guidance needs a class-conditional checkpoint (train with --conditional); "
                              "this one is unconditional")
        if y is None:
            raise GenlabError("--guidance needs the class to generate (--class, or labels y)")
        if not 0 <= guidance < float("inf"):  # also NaN / inf
            raise GenlabError(f"--guidance must be a number >= 0 (0: unconditional, 1: conditional), got {guidance}")

    @torch.no_grad()
    def preview(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Training-time grids: DDIM with 50 steps when available (20x faster than DDPM)."""
        from ..diffusion.samplers import available

        fast = "ddim" in available()
        return self.sample(n, generator=generator, sampler="ddim" if fast else "ddpm",
                           steps=min(50, self.cfg.timesteps) if fast else None)

    def save_artifacts(self, data, out_dir: Path, generator: torch.Generator | None = None) -> list[Path]:
        """Forward-process panel, denoising strip and reverse-process GIF in the run folder."""
        g = generator or torch.Generator().manual_seed(0)
        T = self.cfg.timesteps
        ts = sorted({min(T - 1, round(f * T)) for f in (0, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0)})
        x0 = data.batch(torch.arange(min(6, len(data))))["x"]
        paths = [forward_panel(self.schedule, x0, ts, out_dir / "forward_process.png", g)]
        y = None
        if self.num_classes:
            y = torch.arange(16) % self.num_classes
        images, frames = self.sample(16, generator=g, y=y, return_intermediates=40)
        idx = torch.linspace(0, len(frames) - 1, 11).round().long()
        rows = [torch.stack([frames[int(j)][i] for j in idx]) for i in range(8)]
        paths.append(save_strip(rows, out_dir / "denoising_strip.png"))
        paths.append(save_gif(frames, out_dir / "reverse_process.gif", nrow=4))
        return paths

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, y: torch.Tensor | None = None,
               sampler: str | None = None, steps: int | None = None, guidance: float = 1.0, eta: float = 0.0,
               x_T: torch.Tensor | None = None, return_intermediates: int = 0, progress=None,
               spacing: str | None = None, classifier=None, classifier_scale: float = 1.0):
        """n images in [-1, 1] from `sampler` (ddpm | ddim | dpmpp) with `steps` network calls.

        guidance: classifier-free guidance scale (needs y and a conditional model);
        classifier: a trained NoisyClassifier for classifier guidance towards y, with
        gradient scale classifier_scale; spacing: uniform | quadratic (ddim, dpmpp).
        """
        self.check_labels(y, classifier)
        self.check_guidance(guidance, y)
        if y is not None:
            y = y.to(self.device)
        # the configured step count belongs to the configured sampler: `sampler="ddpm"` on a model whose
        # default is DDIM-50 runs DDPM's all T steps, not 50
        steps = steps or (self.cfg.sample_steps if sampler in (None, self.cfg.sampler) else 0) or None
        sampler = sampler or self.cfg.sampler
        if steps is None and sampler in samplers.available() and samplers.DEFAULT_STEPS[sampler]:
            steps = min(samplers.DEFAULT_STEPS[sampler], self.cfg.timesteps)  # a T = 20 model cannot take 50
        extra = {}
        if spacing is not None:
            if sampler == "ddpm":
                raise GenlabError("--spacing applies to the ddim and dpmpp samplers, not ddpm")
            extra["spacing"] = spacing
        model = self.denoiser(guidance)
        if classifier is not None:
            model = classifier_guidance(model, classifier.for_schedule(self.schedule), self.schedule,
                                        classifier_scale, self.cfg.prediction)
        shape = (n, self.cfg.channels, self.cfg.image_size, self.cfg.image_size)
        return samplers.sample(self.schedule, model, shape, sampler=sampler, steps=steps, y=y,
                               prediction=self.cfg.prediction, eta=eta, generator=generator, device=self.device,
                               x_T=x_T, return_intermediates=return_intermediates, progress=progress, **extra)

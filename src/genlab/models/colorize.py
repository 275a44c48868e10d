"""The `colorize` family: grey image in, colour image out (the image-transformation week).

The dataset gives RGB images x in [-1, 1]; the model makes its own input, the ITU-R BT.601
luma g = 0.299 R + 0.587 G + 0.114 B (genlab.color.rgb_to_gray), so any RGB dataset works.
Two networks, two colour spaces, two losses, and an optional adversarial term:

  arch "course"  exactly the course's encoder-decoder: Conv2d 1->32 and 32->64 (3x3, stride 2,
                 ReLU) down to 8x8, ConvTranspose2d 64->32 (ReLU) and 32->3 (3x3, stride 2) back
                 to 32x32, Tanh. It predicts RGB from g; with the MSE loss it learns the
                 conditional *mean* colour, and where a grey value could be many colours that
                 mean is desaturated, the brownish-grey outputs the course shows (measured by the
                 colourfulness of the outputs, genlab.color.colourfulness; figures/colorize.py).
  arch "unet"    a small U-Net with skips (ChromaUNet below). With space "lab" it predicts only
                 the chroma a*, b* (CIE Lab, scaled by AB_SCALE to [-1, 1]) from L* (the
                 lightness of g, scaled to [-1, 1]); the output is lab_to_rgb(L* of g, a*, b*), so
                 the grey input passes through untouched and only colour is learned.
  loss           mse (the conditional mean) or l1 (the conditional median: less averaging).
  training       `genlab train colorize` defaults to the course recipe (configs/colorize_course.json):
                 batch 64, 10 epochs, Adam at a constant lr 1e-3 (genlab's AdamW with weight decay 0
                 is Adam), no warm-up, no gradient clipping, no EMA.
  adversarial    w > 0 adds Pix2Pix's conditional GAN (Isola et al. 2017, Eq. 4):
                     G* = arg min_G max_D  L_cGAN(G, D) + lambda L_L1(G),  with w = 1 / lambda
                 D is a PatchGAN (genlab.nn.patchgan) on (input, colours) pairs: L* and a*b* in
                 lab space, g and RGB in rgb space; the D and G losses are genlab.gan.losses'.
                 With w = 0 no discriminator is built and the family is a plain one-loss family.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..color import lab_to_rgb, rgb_to_gray, rgb_to_lab
from ..errors import GenlabError, ParamError
from ..gan import losses as gan_losses
from ..nn.classifier import ConvBNReLU
from ..nn.patchgan import PatchGAN, layers_for
from .base import GenerativeModel, OptimizerSpec, register

ARCHS, SPACES, LOSSES = ("course", "unet"), ("rgb", "lab"), ("mse", "l1")
# the GAN losses whose critic needs nothing beyond its loss (wgan needs clipping, wgan-gp a penalty)
GAN_LOSSES = ("nonsaturating", "saturating", "lsgan", "hinge")
AB_SCALE = 110.0   # a*, b* of sRGB colours lie within about [-108, 98]: a*/110, b*/110 fit in [-1, 1]


class CourseColorizer(nn.Sequential):
    """The course's network, layer for layer: grey (N,1,s,s) -> RGB (N,3,s,s) in [-1, 1] (s a multiple of 4)."""

    def __init__(self):
        super().__init__(
            nn.Conv2d(1, 32, 3, stride=2, padding=1), nn.ReLU(),                                     # s -> s/2
            nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(),                                    # -> s/4
            nn.ConvTranspose2d(64, 32, 3, stride=2, padding=1, output_padding=1), nn.ReLU(),         # -> s/2
            nn.ConvTranspose2d(32, 3, 3, stride=2, padding=1, output_padding=1), nn.Tanh())  # -> s


class ChromaUNet(nn.Module):
    """(N, cin, s, s) -> (N, cout, s, s) in [-1, 1]: a U-Net with `depth` halvings and skip connections.

    Each level: two 3x3 ConvBNReLU; down: a 4x4 stride-2 conv; up: a 4x4 stride-2 transposed
    conv, concatenated with the skip of the same size, then two ConvBNReLU. Widths double per
    level (capped at 8 x width). The output is a 1x1 conv and Tanh.
    """

    def __init__(self, cin: int, cout: int, width: int = 32, depth: int = 3):
        super().__init__()
        widths = [width * min(2**i, 8) for i in range(depth + 1)]
        self.inc = nn.Sequential(ConvBNReLU(cin, width), ConvBNReLU(width, width))
        self.down = nn.ModuleList(nn.Sequential(nn.Conv2d(a, b, 4, stride=2, padding=1), ConvBNReLU(b, b))
                                  for a, b in zip(widths, widths[1:]))
        self.up = nn.ModuleList(nn.ConvTranspose2d(b, a, 4, stride=2, padding=1) for a, b in zip(widths, widths[1:]))
        self.merge = nn.ModuleList(nn.Sequential(ConvBNReLU(2 * a, a), ConvBNReLU(a, a)) for a in widths[:-1])
        self.out = nn.Sequential(nn.Conv2d(width, cout, 1), nn.Tanh())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inc(x)
        skips = []
        for down in self.down:
            skips.append(h)
            h = down(h)
        for up, merge in zip(reversed(self.up), reversed(self.merge)):
            h = merge(torch.cat([up(h), skips.pop()], dim=1))
        return self.out(h)


@dataclass
class ColorizeConfig:
    channels: int = 3               # of the data (filled from the dataset): colour is learned from RGB images
    image_size: int = 32
    arch: str = "course"            # course (the course's encoder-decoder) | unet (skips, width, depth)
    space: str = "rgb"              # rgb: predict R,G,B | lab: predict a*,b* and keep the input's L* (unet only)
    loss: str = "mse"               # mse | l1 (per pixel, on the predicted channels)
    width: int = 32                 # unet: channels at full resolution
    depth: int = 3                  # unet: halvings (the image size must divide by 2^depth)
    adversarial: float = 0.0        # weight of the PatchGAN loss added to the reconstruction loss (0: off)
    gan_loss: str = "nonsaturating"  # nonsaturating | saturating | lsgan | hinge (genlab.gan.losses)
    d_width: int = 64               # PatchGAN: channels of its first layer
    d_layers: int = 0               # PatchGAN: stride-2 layers (0: sized to the image, see nn.patchgan)
    d_lr: float = 0.0               # the discriminator's learning rate (0: the same as --lr)
    panel_images: int = 10          # test images in the panel (the course shows one test batch of 10)


def check_config(cfg: ColorizeConfig) -> None:
    if cfg.channels != 3:
        raise GenlabError(f"the colorize model learns colour from RGB images, but this dataset has {cfg.channels}-"
                          "channel (grey) images; train it on an RGB dataset such as cifar10 or shapes")
    for name, value, valid in (("arch", cfg.arch, ARCHS), ("space", cfg.space, SPACES), ("loss", cfg.loss, LOSSES),
                               ("gan_loss", cfg.gan_loss, GAN_LOSSES)):
        if value not in valid:
            raise ParamError(name, f"'{value}' is unknown; choose one of: {', '.join(valid)}")
    if cfg.arch == "course" and cfg.space != "rgb":
        raise ParamError("space", "must be rgb for the course network (its last layer makes R, G, B); "
                         "use --arch unet for lab")
    halvings = 2 if cfg.arch == "course" else cfg.depth
    if cfg.image_size % 2**halvings or cfg.image_size < 2**halvings:
        raise ParamError("image_size", f"must be a multiple of {2 ** halvings} for the {cfg.arch} network "
                         f"({halvings} halvings), got {cfg.image_size}; resize the data")
    for name in ("width", "depth", "d_width", "panel_images"):
        if getattr(cfg, name) < 1:
            raise ParamError(name, f"must be >= 1, got {getattr(cfg, name)}")
    for name in ("adversarial", "d_lr", "d_layers"):
        if getattr(cfg, name) < 0:
            raise ParamError(name, f"must be >= 0, got {getattr(cfg, name)}")
    d_layers = cfg.d_layers or layers_for(cfg.image_size)
    if cfg.adversarial and cfg.image_size // 2**d_layers < 3:  # the PatchGAN's logits would be 0 px wide
        raise ParamError("d_layers", f"{d_layers} halves a {cfg.image_size} px image too often for the PatchGAN; "
                         "use fewer, or a larger image")


@register
class Colorizer(GenerativeModel):
    """Colourisation: a grey image in, its colours out (course encoder-decoder or U-Net, RGB or Lab, +PatchGAN)."""

    family = "colorize"
    Config = ColorizeConfig
    default_dataset = "cifar10"
    ema_networks = ("net",)
    # the course recipe (configs/colorize_course.json): Adam (AdamW with no weight decay), constant lr 1e-3
    train_defaults = {"epochs": 10, "batch_size": 64, "lr": 1e-3, "weight_decay": 0.0, "warmup_steps": 0,
                      "grad_clip": 0.0, "ema_decay": 0.0, "sample_every": 0, "num_samples": 0}

    def __init__(self, cfg: ColorizeConfig):
        super().__init__(cfg)
        check_config(cfg)
        out = 3 if cfg.space == "rgb" else 2
        self.net = CourseColorizer() if cfg.arch == "course" else ChromaUNet(1, out, cfg.width, cfg.depth)
        self.discriminator = None
        if cfg.adversarial > 0:
            self.discriminator = PatchGAN(1 + out, cfg.d_width, cfg.d_layers or layers_for(cfg.image_size))

    # ---- the two spaces: network input, target and output image -------------------------------------------
    def gray(self, x: torch.Tensor) -> torch.Tensor:
        """RGB images (N,3,H,W) in [-1, 1] -> their grey input (N,1,H,W) in [-1, 1] (BT.601 luma)."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise GenlabError(f"colourisation learns from RGB images (N,3,H,W), got shape {tuple(x.shape)}; "
                              "use an RGB dataset")
        return rgb_to_gray(x)

    def net_input(self, gray: torch.Tensor) -> torch.Tensor:
        """rgb space: g itself; lab space: L* of the grey image, scaled from [0, 100] to [-1, 1]."""
        if self.cfg.space == "rgb":
            return gray
        return rgb_to_lab((gray.expand(-1, 3, -1, -1) + 1) / 2)[:, :1] / 50 - 1

    def target(self, x: torch.Tensor) -> torch.Tensor:
        """What the network should output for the real image x: RGB, or a*, b* / AB_SCALE."""
        return x.float() if self.cfg.space == "rgb" else rgb_to_lab((x.float() + 1) / 2)[:, 1:] / AB_SCALE

    def to_rgb(self, inp: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """The network's output (and its input, for L*) as an RGB image in [-1, 1]."""
        if self.cfg.space == "rgb":
            return out.float().clamp(-1, 1)
        lab = torch.cat([(inp.float() + 1) * 50, out.float() * AB_SCALE], dim=1)
        return lab_to_rgb(lab) * 2 - 1

    @torch.no_grad()
    def colorize(self, gray: torch.Tensor) -> torch.Tensor:
        """Grey images (N,1,s,s) in [-1, 1] at the model's size -> RGB (N,3,s,s) in [-1, 1]."""
        s = self.cfg.image_size
        if gray.ndim != 4 or gray.shape[1:] != (1, s, s):
            raise GenlabError(f"this colouriser takes grey images of shape 1x{s}x{s}, got "
                              f"{'x'.join(map(str, gray.shape[1:]))}; resize them to {s}x{s}")
        inp = self.net_input(gray.to(self.device).float())
        return self.to_rgb(inp, self.net(inp))

    @torch.no_grad()
    def colorize_any_size(self, gray: torch.Tensor) -> torch.Tensor:
        """Grey images (N,1,H,W) in [-1, 1] of any size -> RGB (N,3,H,W) in [-1, 1].

        At the model's size: `colorize`. Otherwise the grey image is resized to the model's
        size (bilinear, antialiased), colourised there, and the colour alone (a*, b* of the
        output) is resized back and put on the full-resolution image's own lightness L*:
        the output keeps every detail of the input, only its colour is coarse.
        """
        s = self.cfg.image_size
        if gray.shape[-2:] == (s, s):
            return self.colorize(gray)
        gray = gray.to(self.device).float()
        small = F.interpolate(gray, size=(s, s), mode="bilinear", align_corners=False, antialias=True)
        ab = rgb_to_lab((self.colorize(small.clamp(-1, 1)) + 1) / 2)[:, 1:]
        ab = F.interpolate(ab, size=gray.shape[-2:], mode="bilinear", align_corners=False)
        lightness = rgb_to_lab((gray.expand(-1, 3, -1, -1) + 1) / 2)[:, :1]
        return lab_to_rgb(torch.cat([lightness, ab], dim=1)) * 2 - 1

    # reconstruction_metrics (genlab.metrics) reads a colouriser as an autoencoder of colour images
    def observe(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.colorize(self.gray(x))

    # ---- training --------------------------------------------------------------------------------------------
    def recon_loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return (F.mse_loss if self.cfg.loss == "mse" else F.l1_loss)(pred.float(), target)

    def loss(self, batch):
        x = batch["x"]
        inp = self.net_input(self.gray(x))
        return self.recon_loss(self.net(inp), self.target(x)), {}

    @property
    def custom_step(self) -> bool:
        return self.discriminator is not None   # adversarial == 0: the loop's one-loss step

    def optimizers(self):
        if self.discriminator is None:
            return super().optimizers()
        betas = (0.5, 0.999)                    # Pix2Pix's Adam settings for both networks
        return {"discriminator": OptimizerSpec(self.discriminator.parameters(), lr=self.cfg.d_lr or None, betas=betas),
                "generator": OptimizerSpec(self.net.parameters(), betas=betas)}

    def critic(self, inp: torch.Tensor, colours: torch.Tensor) -> torch.Tensor:
        """PatchGAN logits (N,1,h,w) of an (input, colours) pair, as Pix2Pix's D(x, y)."""
        return self.discriminator(torch.cat([inp, colours], dim=1))

    def train_step(self, batch, step, ctx):
        if self.discriminator is None:
            return super().train_step(batch, step, ctx)
        x, name = batch["x"], self.cfg.gan_loss
        with ctx.autocast():
            inp = self.net_input(self.gray(x))
            real, fake = self.target(x), self.net(inp)
            d_loss = gan_losses.d_loss(name, self.critic(inp, real), self.critic(inp, fake.detach()))
        ctx.step("discriminator", d_loss)
        with ctx.autocast():
            recon = self.recon_loss(fake, real)
            adv = gan_losses.g_loss(name, self.critic(inp, fake))
            g_loss = recon + self.cfg.adversarial * adv   # Isola et al. 2017, Eq. 4 with lambda = 1 / adversarial
        ctx.step("generator", g_loss)
        return {"loss": g_loss, "recon": recon, "g_adv": adv, "d_loss": d_loss}

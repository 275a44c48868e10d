"""The `gan` family: a DCGAN on images, with every loss of the GAN lessons and the conditional extras.

One training step (Goodfellow et al. 2014, Algorithm 1, with n_critic from Arjovsky et al. 2017):

    D step, every step:          L_D = d_loss(D(x), D(G(z)))  [+ 10 * GP]  [+ r1/2 * R1]
                                 (wgan: then clip every weight of D to [-c, c])
    G step, every n_critic-th:   L_G = g_loss(D(G(z)))  [+ w_fm * feature matching]

The losses (saturating, non-saturating, LSGAN, hinge, WGAN, WGAN-GP) are genlab.gan.losses; the
networks are genlab.nn.gan (DCGAN sized from the image; conditional batch norm in G; projection or
concatenated labels in D; spectral norm). DiffAugment (Zhao et al. 2020) augments every image D sees,
real and fake, in both steps, so G is trained through the same augmentation. The EMA averages the
generator only. The loop counts D steps: with n_critic 5, 1000 steps are 200 generator updates.

`GANBase` holds the step shared with the toy GAN (models/toy_gan.py), which only swaps the networks.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import GenlabError, ParamError
from ..gan import losses
from ..gan.augment import diff_augment, parse_policy
from ..nn.gan import DCGANDiscriminator, DCGANGenerator
from ..rng import randn
from .base import GenerativeModel, OptimizerSpec, register


@dataclass
class GANLossConfig:
    loss: str = "nonsaturating"     # saturating | nonsaturating | lsgan | hinge | wgan | wgan-gp
    n_critic: int = 1               # discriminator steps per generator step
    d_lr: float = 0.0               # the discriminator's learning rate (0: the same as --lr)
    beta1: float = 0.5              # Adam betas of both networks (DCGAN: 0.5, 0.999; WGAN-GP: 0.0, 0.9)
    beta2: float = 0.999
    gp_weight: float = 10.0         # lambda of the gradient penalty (wgan-gp)
    clip_value: float = 0.01        # c of the weight clipping (wgan)
    r1_weight: float = 0.0          # gamma of the R1 penalty on real data (0: off; any loss)
    feature_matching: float = 0.0   # weight of the feature-matching loss added to G's loss (0: off)
    spectral_norm: bool = False     # spectral normalisation of every layer of D


def check_loss_config(cfg: GANLossConfig) -> None:
    losses.check_loss(cfg.loss)
    if cfg.n_critic < 1:
        raise ParamError("n_critic", f"must be at least 1 (discriminator steps per generator step), got {cfg.n_critic}")
    for name in ("gp_weight", "clip_value", "r1_weight", "feature_matching", "d_lr"):
        if getattr(cfg, name) < 0:
            raise ParamError(name, f"must be >= 0, got {getattr(cfg, name)}")
    if not (0 <= cfg.beta1 < 1 and 0 <= cfg.beta2 < 1):
        raise ParamError("beta1", f"and beta2 must be in [0, 1), got {cfg.beta1}, {cfg.beta2}")
    if cfg.loss == "wgan" and cfg.clip_value == 0:
        raise ParamError("clip_value", "must be > 0 for the wgan loss: weight clipping is what keeps its critic "
                                       "Lipschitz (or use --loss wgan-gp)")


class GANBase(GenerativeModel):
    """The adversarial step on any generator / discriminator pair (subclasses build them)."""

    ema_networks = ("generator",)
    generator: torch.nn.Module
    discriminator: torch.nn.Module

    @property
    def num_classes(self) -> int:
        return 0

    def condition(self, batch):
        return batch["y"] if self.num_classes else None

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def noise(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return randn((n, self.generator.z_dim), generator=generator, device=self.device)

    def optimizers(self):
        betas, cfg = (self.cfg.beta1, self.cfg.beta2), self.cfg
        return {"discriminator": OptimizerSpec(self.discriminator.parameters(), lr=cfg.d_lr or None, betas=betas),
                "generator": OptimizerSpec(self.generator.parameters(), betas=betas)}

    def critic(self, x: torch.Tensor, y=None):
        return self.discriminator(self.augment(x), y)

    def train_step(self, batch, step, ctx):
        cfg, real, y = self.cfg, batch["x"], self.condition(batch)
        with ctx.autocast():
            fake = self.generator(self.noise(len(real)), y).detach()
            if cfg.r1_weight:
                real = real.detach().requires_grad_(True)
            d_real, phi_real = self.critic(real, y)
            d_fake, _ = self.critic(fake, y)
            d_loss = losses.d_loss(cfg.loss, d_real, d_fake)
            logs = {"d_loss": d_loss, "d_real": d_real.float().mean().detach(),
                    "d_fake": d_fake.float().mean().detach()}
            if cfg.loss == "wgan-gp":
                logs["gp"] = losses.gradient_penalty(self.discriminator, real.detach(), fake, y)
                d_loss = d_loss + cfg.gp_weight * logs["gp"]
            if cfg.r1_weight:
                logs["r1"] = losses.r1_penalty(d_real, real)
                d_loss = d_loss + 0.5 * cfg.r1_weight * logs["r1"]      # Mescheder et al. 2018, Eq. 9
        ctx.step("discriminator", d_loss)
        if cfg.loss == "wgan":  # Arjovsky et al. 2017, Algorithm 1: clip the critic's weights
            losses.clip_weights_(self.discriminator, cfg.clip_value)
        if (step + 1) % cfg.n_critic == 0:
            logs.update(self.generator_step(ctx, len(real), y, phi_real.detach()))
        return logs

    def generator_step(self, ctx, n: int, y, phi_real: torch.Tensor) -> dict:
        with ctx.autocast():
            d_gen, phi_gen = self.critic(self.generator(self.noise(n), y), y)
            g_loss = losses.g_loss(self.cfg.loss, d_gen)
            logs = {"g_loss": g_loss}
            if self.cfg.feature_matching:
                logs["fm"] = losses.feature_matching_loss(phi_real, phi_gen)
                g_loss = g_loss + self.cfg.feature_matching * logs["fm"]
        ctx.step("generator", g_loss)
        return logs

    def check_labels(self, y, n: int):
        if y is None:
            if self.num_classes:  # a conditional model without a class: classes 0..K-1 in turn
                return torch.arange(n, device=self.device) % self.num_classes
            return None
        if not self.num_classes:
            raise GenlabError("this GAN is unconditional: it cannot generate a given class "
                              "(train with --conditional to get a class-conditional GAN)")
        y = torch.as_tensor(y, device=self.device).long().reshape(-1)
        if len(y) != n or int(y.min()) < 0 or int(y.max()) >= self.num_classes:
            raise GenlabError(f"need {n} class indices in 0..{self.num_classes - 1}, got {y.tolist()[:8]}")
        return y

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, y=None, z: torch.Tensor | None = None,
               **unused):
        """n samples G(z) from the generator (in eval mode: batch norm uses its running statistics).

        z: the latents to decode (default: N(0, I) drawn with `generator`); y: classes of a conditional GAN
        (default: 0..K-1 in turn).
        """
        if unused:
            raise GenlabError(f"a GAN samples in one network call: {', '.join(sorted(unused))} do not apply")
        z = self.noise(n, generator) if z is None else z.to(self.device)
        was = self.generator.training
        self.generator.eval()
        try:
            return self.generator(z, self.check_labels(y, len(z))).float()
        finally:
            self.generator.train(was)


@dataclass
class GANConfig(GANLossConfig):
    channels: int = 1
    image_size: int = 28
    z_dim: int = 100                # latent dimension
    g_width: int = 64               # generator channels at full resolution (doubled per halving)
    d_width: int = 64               # discriminator channels at full resolution
    conditional: bool = False       # class-conditional (labels from the dataset): conditional BN in G
    num_classes: int = 0
    d_cond: str = "projection"      # how D sees the class: projection (Miyato & Koyama 2018) | concat (one-hot maps)
    diffaugment: str = ""           # DiffAugment policy, e.g. color,translation,cutout ("": off)


@register
class GAN(GANBase):
    """GAN (DCGAN networks; saturating/non-saturating/LSGAN/hinge/WGAN/WGAN-GP losses; conditional, SN, projection)."""

    family = "gan"
    Config = GANConfig
    default_dataset = "fashion_mnist"
    train_defaults = {"epochs": 10, "batch_size": 64, "lr": 2e-4, "warmup_steps": 0, "lr_schedule": "constant",
                      "weight_decay": 0.0, "grad_clip": 0.0, "ema_decay": 0.999, "num_samples": 64}

    def __init__(self, cfg: GANConfig):
        super().__init__(cfg)
        check_loss_config(cfg)
        if cfg.conditional and cfg.num_classes < 2:
            raise GenlabError("a conditional GAN needs a dataset with class labels (this one has none); "
                              "train it without --conditional")
        if cfg.z_dim < 1 or cfg.g_width < 1 or cfg.d_width < 1:
            raise ParamError("z_dim", "and --g-width / --d-width must be positive")
        parse_policy(cfg.diffaugment, "diffaugment")
        k = self.num_classes
        self.generator = DCGANGenerator(cfg.z_dim, cfg.channels, cfg.image_size, cfg.g_width, k)
        self.discriminator = DCGANDiscriminator(cfg.channels, cfg.image_size, cfg.d_width, k, cfg.d_cond,
                                                cfg.spectral_norm)

    @property
    def num_classes(self) -> int:
        return self.cfg.num_classes if self.cfg.conditional else 0

    def augment(self, x):
        return diff_augment(x, self.cfg.diffaugment) if self.cfg.diffaugment else x

    def train_step(self, batch, step, ctx):
        x = batch["x"]
        if x.shape[1:] != (self.cfg.channels, self.cfg.image_size, self.cfg.image_size):
            raise ParamError("image_size", f"the model makes {self.cfg.channels}x{self.cfg.image_size}^2 images but "
                                           f"the data are {'x'.join(map(str, x.shape[1:]))}")
        return super().train_step(batch, step, ctx)

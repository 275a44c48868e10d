"""The lab's presets: which stages, models, budgets and data (`quick`, `full`, `tiny`).

Presets are plain dataclasses: `quick` (minutes on 2 CPU cores, shapes by
default), `full` (real numbers on Fashion-MNIST, meant for a GPU) and `tiny`
(seconds; for the tests).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..diffusion.samplers import available
from ..errors import GenlabError

STAGES = ("classifier", "ae", "vae", "hvae", "ddpm", "gan", "sweep")
FAMILY = {"classifier": "classifier", "ae": "ae", "vae": "vae", "hvae": "hvae", "ddpm": "diffusion", "gan": "gan"}
TITLE = {"classifier": "Classifier", "ae": "AE", "vae": "VAE", "hvae": "HVAE", "ddpm": "DDPM", "gan": "GAN",
         "sweep": "KL-weight sweep"}
ROW_FILE = "lab_row.json"
LOCK_FILE = ".run-all.lock"


# the unconditional GAN recipe (configs/gan_fashion_mnist_cpu.json; chosen in benchmarks/gan_losses.md)
GAN_RECIPE = dict(loss="hinge", spectral_norm=True, z_dim=64, g_width=64, d_width=64)
GAN_TRAIN = dict(lr=2e-4, batch_size=64, warmup_steps=0, ema_decay=0.999)


@dataclass
class Stage:
    """One model of the lab: family options and training options (TrainConfig fields).

    Options describing the data (channels, image_size, num_classes) are filled
    from the dataset. `max_minutes` / `max_steps` in `train` are budgets that
    `--minutes-scale` multiplies.
    """

    model: dict = field(default_factory=dict)
    train: dict = field(default_factory=dict)


@dataclass
class Sweep:
    """The controlled experiment: the VAE stage retrained with one option set to each value."""

    option: str = "kl_weight"
    values: tuple = (0.5, 1.0, 2.0)


@dataclass
class Preset:
    name: str
    dataset: str
    image_size: int | None           # None: the dataset's own
    channels: int | None
    train_items: int | None          # first N training items (None: all)
    eval_n: int                      # test images for the family metrics (accuracy, MSE, ELBO, IWAE)
    fid_n: int                       # generated samples (and real images per split) for FID and its floor
    stages: dict[str, Stage]
    sweep: Sweep
    sampler: dict                    # how the DDPM is sampled for its grid and FID: sampler, steps, guidance
    about: str = ""


def _ddpm_sampler(guidance: float = 1.0) -> dict:
    """DDIM with 50 steps where that sampler is registered (20x cheaper than 1000 DDPM steps).

    guidance: classifier-free guidance scale for class-conditional models (1 = none; 2 costs
    two network calls per step and gives crisper, more typical class members).
    """
    fast = "ddim" in available()
    return {"sampler": "ddim" if fast else "ddpm", "steps": 50 if fast else 0, "guidance": guidance}


def _unet(image_size: int, width: int) -> dict:
    """A small U-Net for the image size: four levels where the size allows it (32 -> 4), else three.

    The full-resolution level costs most of a CPU step, so it gets one residual
    block and the base width; channels grow where the maps are small.
    """
    if image_size % 8 == 0 and image_size >= 32:
        mult, attn = (1, 2, 4, 4), (image_size // 8,)
    elif image_size % 4 == 0:
        mult, attn = (1, 2, 4), (image_size // 4,)
    else:
        mult, attn = (1, 2), ()
    return dict(base_width=width, channel_mult=mult, num_res_blocks=1, attn_resolutions=attn)


def tiny(dataset: str | None = None) -> Preset:
    """Every stage for a few steps on 16-px shapes: a smoke run of the whole lab in seconds."""
    dataset = dataset or "shapes"
    size = 16
    sampler = _ddpm_sampler()
    steps = dict(epochs=50, max_steps=12, batch_size=32, warmup_steps=5, sample_every=0, num_samples=8,
                 checkpoint_every=1000, log_every=4)
    small = dict(width=8, hidden=32)
    return Preset(
        name="tiny", dataset=dataset, image_size=size, channels=None, train_items=512, eval_n=64, fid_n=48,
        stages={
            "classifier": Stage(dict(width=8, feature_dim=16), dict(steps, lr=3e-3)),
            "ae": Stage(dict(small, latent_dim=8), dict(steps, lr=1e-3)),
            "vae": Stage(dict(small, latent_dim=8, iwae_k=4), dict(steps, lr=1e-3)),
            "hvae": Stage(dict(small, z1_dim=8, z2_dim=4, top_hidden=16, iwae_k=4), dict(steps, lr=1e-3)),
            "ddpm": Stage(dict(_unet(size, 8), timesteps=100, conditional=True, sampler=sampler["sampler"],
                               sample_steps=min(sampler["steps"], 10)),
                          dict(steps, lr=1e-3, max_steps=8, max_minutes=0.5)),
            "gan": Stage(dict(z_dim=8, g_width=8, d_width=8), dict(steps, lr=2e-4)),
        },
        sweep=Sweep(values=(0.5, 1.0, 2.0)),
        sampler=dict(sampler, steps=min(sampler["steps"], 10)),
        about="smoke test: a few steps per model on 16 px images (numbers mean nothing)")


def quick(dataset: str | None = None) -> Preset:
    """About 7 minutes on 2 CPU cores: small models, short budgets; the DDPM gets most of the time."""
    dataset = dataset or "shapes"
    size = 32 if dataset == "shapes" else 28 if dataset in ("mnist", "fashion_mnist") else 32
    sampler = _ddpm_sampler(guidance=2.0)
    base = dict(epochs=100, batch_size=64, warmup_steps=50, sample_every=0, num_samples=16, log_every=25)
    short = dict(base, batch_size=32, max_steps=600, max_minutes=1.0)
    lv = dict(width=32, hidden=256)
    return Preset(
        name="quick", dataset=dataset, image_size=size, channels=None, train_items=None, eval_n=500, fid_n=300,
        stages={
            "classifier": Stage(dict(width=16, feature_dim=128),
                                dict(base, lr=3e-3, max_steps=250, max_minutes=1.0, weight_decay=0.05,
                                     lr_schedule="cosine", channels_last="on")),
            # batch 32: for a fixed CPU time, 600 small steps beat 300 large ones (-ELBO 930 vs 941 nats)
            "ae": Stage(dict(lv, latent_dim=32), dict(short, lr=2e-3)),
            "vae": Stage(dict(lv, latent_dim=16, iwae_k=50), dict(short, lr=2e-3)),
            "hvae": Stage(dict(lv, z1_dim=16, z2_dim=8, iwae_k=50), dict(short, lr=2e-3)),
            # v-prediction: at high noise it predicts the (dark) mean image instead of amplifying eps
            # errors, so short runs get the background right; Min-SNR weighting and batch 32 (more,
            # cheaper steps) learn the shapes in ~1000 steps. bf16 sampling: see benchmarks/measurements.md.
            "ddpm": Stage(dict(_unet(size, 16), conditional=True, prediction="v", weighting="min_snr",
                               sampler=sampler["sampler"], sample_steps=sampler["steps"], sample_bf16=True),
                          dict(base, batch_size=32, lr=2e-3, warmup_steps=100, max_minutes=4.0)),
            # the recipe of configs/gan_fashion_mnist_cpu.json (benchmarks/gan_losses.md), at 1 CPU-minute
            "gan": Stage(GAN_RECIPE, dict(base, **GAN_TRAIN, max_minutes=1.0)),
        },
        sweep=Sweep(values=(0.5, 1.0, 2.0)),
        sampler=sampler,
        about="minutes on a laptop CPU: short runs, so the numbers show the recipe working, not its limits")


def full(dataset: str | None = None) -> Preset:
    """Real numbers on Fashion-MNIST: full epochs and larger models (hours on a CPU; use a GPU)."""
    dataset = dataset or "fashion_mnist"
    size = 28 if dataset in ("mnist", "fashion_mnist") else 32
    sampler = _ddpm_sampler(guidance=2.0)
    base = dict(batch_size=128, sample_every=5, log_every=50)
    lv = dict(width=32, hidden=256)
    return Preset(
        name="full", dataset=dataset, image_size=size, channels=None, train_items=None, eval_n=10_000,
        fid_n=5000,
        stages={
            "classifier": Stage(dict(width=32, feature_dim=128), dict(base, epochs=10, lr=3e-3, weight_decay=0.05,
                                                                      lr_schedule="cosine", channels_last="on")),
            "ae": Stage(dict(lv, latent_dim=32), dict(base, epochs=30, lr=1e-3)),
            "vae": Stage(dict(lv, latent_dim=32, iwae_k=1000), dict(base, epochs=30, lr=1e-3)),
            "hvae": Stage(dict(lv, z1_dim=32, z2_dim=16, iwae_k=1000), dict(base, epochs=30, lr=1e-3)),
            "ddpm": Stage(dict(base_width=64, channel_mult=(1, 2, 2), num_res_blocks=2,
                               attn_resolutions=(size // 4,), dropout=0.1, conditional=True, prediction="v",
                               sampler=sampler["sampler"], sample_steps=sampler["steps"]),
                          dict(base, epochs=40, lr=2e-4, warmup_steps=1000)),
            "gan": Stage(GAN_RECIPE, dict(base, **GAN_TRAIN, epochs=40)),
        },
        sweep=Sweep(values=(0.5, 1.0, 2.0)),
        sampler=sampler,
        about="full training runs; IWAE with 1000 samples per image; FID on 5000 samples")


PRESETS = {"quick": quick, "full": full, "tiny": tiny}
PUBLIC_PRESETS = ("quick", "full")


def make_preset(name: str, dataset: str | None = None) -> Preset:
    if name not in PRESETS:
        raise GenlabError(f"unknown preset '{name}'; choose one of: {', '.join(PUBLIC_PRESETS)}")
    return PRESETS[name](dataset)


def parse_only(text: str | None) -> tuple[str, ...]:
    """'ddpm,vae' -> the stages in run order; None -> all of them."""
    if not text:
        return STAGES
    names = [s.strip().lower().replace("-", "_") for s in text.split(",") if s.strip()]
    names = ["ddpm" if n in ("diffusion", "ddpm") else "sweep" if n in ("sweep", "kl_sweep") else n for n in names]
    unknown = [n for n in names if n not in STAGES]
    if unknown or not names:
        raise GenlabError(f"--only: unknown stage(s) {', '.join(unknown) or repr(text)}; "
                          f"choose from {', '.join(STAGES)}")
    return tuple(s for s in STAGES if s in names)

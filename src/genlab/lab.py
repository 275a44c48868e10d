"""The lab run: every family trained with one preset, and the report of what came out.

    classifier -> AE -> VAE -> HVAE -> DDPM -> KL-weight sweep -> <out>/results.md

Each stage builds a model with `build_model`, trains it with the one training
loop (`genlab.train.train`), scores it on the test split with the family's own
`evaluate`, draws the family's pictures with `save_artifacts`, and, for models
that generate, scores samples with FID next to its floor (genlab.metrics).
The feature network of FID is the classifier trained in the same run (passed
by path, so a classifier the user keeps under ~/.cache/genlab is untouched).

A stage leaves its run folder <out>/<stage>/ (a normal genlab checkpoint:
`genlab sample`, `genlab eval` work on it) plus `lab_row.json`, its numbers.
The report is rebuilt from every row in <out>, so `--only ddpm` retrains one
model and keeps the other rows. An interrupted lab run continues with
`--resume`: finished stages (those with a row) are kept, a stage stopped
mid-training continues from its checkpoint (the optimizer state is kept until
the stage's row is written, then dropped: it is 2x the weights).

Presets are plain dataclasses: `quick` (minutes on 2 CPU cores, shapes by
default), `full` (real numbers on Fashion-MNIST, meant for a GPU) and `tiny`
(seconds; for the tests).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import shutil
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import torch

from .errors import GenlabError
from .train.checkpoint import STATE

STAGES = ("classifier", "ae", "vae", "hvae", "ddpm", "sweep")
FAMILY = {"classifier": "classifier", "ae": "ae", "vae": "vae", "hvae": "hvae", "ddpm": "diffusion"}
TITLE = {"classifier": "Classifier", "ae": "AE", "vae": "VAE", "hvae": "HVAE", "ddpm": "DDPM",
         "sweep": "KL-weight sweep"}
ROW_FILE = "lab_row.json"
LOCK_FILE = ".run-all.lock"


# ----------------------------------------------------------------------------- presets

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
    from .diffusion.samplers import available

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
            # cheaper steps) learn the shapes in ~1000 steps. bf16 sampling: 3x faster, same pictures.
            "ddpm": Stage(dict(_unet(size, 16), conditional=True, prediction="v", weighting="min_snr",
                               sampler=sampler["sampler"], sample_steps=sampler["steps"], sample_bf16=True),
                          dict(base, batch_size=32, lr=2e-3, warmup_steps=100, max_minutes=4.0)),
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


# ----------------------------------------------------------------------------- the run

class OutputLock:
    """<out>/.run-all.lock (holding the pid) while a run writes there.

    Two runs into one folder would delete each other's stage folders; the
    second one stops with a message instead. A lock left by a run that died
    (its process is gone) is taken over.
    """

    def __init__(self, out: Path):
        self.path = Path(out) / LOCK_FILE

    def _take(self) -> None:
        fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)

    def __enter__(self):
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._take()
        except FileExistsError:
            if not self.path.parent.is_dir():
                raise GenlabError(f"--out {self.path.parent} is a file; choose a folder") from None
            try:
                pid = int(self.path.read_text().strip() or 0)
            except (OSError, ValueError):
                pid = 0
            if pid and _alive(pid):
                raise GenlabError(f"another run-all (process {pid}) is writing to {self.path.parent}; wait for it "
                                  "to finish or choose another --out") from None
            self.path.unlink(missing_ok=True)
            self._take()
        except OSError as e:
            raise GenlabError(f"cannot write to --out {self.path.parent} ({e.strerror}); choose another --out") from None
        return self

    def __exit__(self, *exc):
        self.path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def _rel(path: Path, root: Path) -> str:
    return Path(path).resolve().relative_to(root.resolve()).as_posix()


def _fmt_time(seconds: float) -> str:
    if seconds < 10:
        return f"{seconds:.1f} s"
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


class Lab:
    """Runs the stages of a preset into `out` and writes `out/results.md`."""

    def __init__(self, preset: Preset, out: str | Path = "artifacts", data_dir: str | Path | None = None,
                 device: str = "auto", seed: int = 0, minutes_scale: float = 1.0, overwrite: bool = False,
                 progress: bool | None = None, command: str | None = None, log=None, resume: bool = False):
        if not minutes_scale > 0:
            raise GenlabError(f"--minutes-scale must be positive, got {minutes_scale}")
        self.preset, self.out = preset, Path(out)
        self.data_dir, self.device, self.seed = data_dir, device, seed
        self.minutes_scale, self.overwrite, self.resume = minutes_scale, overwrite, resume
        self._resume_stage = False  # the stage being run continues its own checkpoint
        self.progress = sys.stderr.isatty() if progress is None else progress
        self.command = command or f"genlab run-all --preset {preset.name}"
        self._log = log or (lambda msg: print(msg, flush=True))
        self.models: dict[str, torch.nn.Module] = {}
        self.extractor = None
        self.extractor_note = ""

    def log(self, msg: str) -> None:
        self._log(f"[run-all] {msg}")

    # --- setup ------------------------------------------------------------

    def _check_folders(self, stages) -> None:
        """Refuse to mix a new run into an old one unless told to replace it."""
        for stage in stages:
            folder = self.out / stage
            if not folder.exists():
                continue
            if not (self.overwrite or self.resume):
                raise GenlabError(f"{folder} holds an earlier run-all stage; pass --resume to continue that run, "
                                  f"--overwrite to replace it, or choose another --out")
            if not ((folder / ROW_FILE).exists() or (folder / "config.json").exists() or stage == "sweep"):
                raise GenlabError(f"{folder} exists and is not a run-all stage folder; move it away or "
                                  f"choose another --out (run-all only deletes its own folders)")

    def _load_data(self) -> None:
        from .data import load_dataset

        p = self.preset
        kw = dict(image_size=p.image_size, channels=p.channels, data_dir=self.data_dir)
        self.train_data = load_dataset(p.dataset, "train", n=p.train_items, **kw)
        if self.train_data.kind != "image":
            raise GenlabError(f"run-all trains image models; dataset {p.dataset} holds {self.train_data.kind}")
        try:
            self.test_data = load_dataset(p.dataset, "test", **kw)
            self.test_name = "test"
        except GenlabError as e:
            if "no split" not in str(e):
                raise
            self.test_data, self.test_name = self.train_data, "train (the dataset has no test split)"
        self.shape = f"{self.train_data.channels}x{self.train_data.image_size}x{self.train_data.image_size}"

    def _train_config(self, stage: Stage, family: str):
        from .models import MODELS
        from .train import TrainConfig

        opts = {**MODELS[family].train_defaults, **stage.train}
        for key in ("max_minutes", "max_steps"):
            if opts.get(key):
                scaled = opts[key] * self.minutes_scale
                opts[key] = max(1, round(scaled)) if key == "max_steps" else scaled
        opts.update(device=self.device, seed=self.seed, progress=self.progress)
        return TrainConfig(**opts)

    def _build(self, family: str, options: dict):
        from .cli.train import fill_from_data
        from .models import MODELS, build_model

        cfg = fill_from_data(dict(options), MODELS[family].Config, self.train_data)
        if cfg.get("conditional") and (self.train_data.num_classes or 0) < 2:
            cfg["conditional"] = False  # no labels to condition on
        return build_model(family, cfg)

    def _train(self, family: str, stage: Stage, folder: Path, what: str, model_options: dict | None = None,
               exact_steps: int | None = None):
        """Build, train (the one loop) and time one model; returns (eval-mode sampling model, result, row).

        exact_steps: train exactly this many steps with no time budget (runs that are compared).
        """
        from .train import train

        torch.manual_seed(self.seed)  # the same initial weights for every run of a stage (and the sweep)
        model = self._build(family, {**stage.model, **(model_options or {})})
        tcfg = self._train_config(stage, family)
        if exact_steps is not None:
            tcfg = dataclasses.replace(tcfg, max_steps=exact_steps, max_minutes=0.0)
        budget = " and ".join(b for b in (f"{tcfg.max_steps} steps" if tcfg.max_steps else "",
                                          f"{tcfg.max_minutes:.2g} min" if tcfg.max_minutes else "") if b)
        self.log(f"{what}: {_params(model) / 1e6:.2f}M parameters, {len(self.train_data)} training images, "
                 f"batch {tcfg.batch_size}, at most {tcfg.epochs} epochs" + (f" / {budget}" if budget else ""))
        resume = self._resume_stage and (Path(folder) / STATE).exists()
        if resume:
            self.log(f"{what}: continuing the checkpoint in {folder}")
        result = train(model, self.train_data, tcfg, folder, resume=resume)
        if result.stopped == "interrupted":  # Ctrl-C: the loop saved a checkpoint; stop the whole lab run
            raise KeyboardInterrupt
        steps_per_epoch = max(1, len(self.train_data) // tcfg.batch_size)
        epochs = result.steps / steps_per_epoch
        row = dict(params=_params(model), steps=result.steps, epochs=epochs, batch_size=tcfg.batch_size,
                   train_seconds=result.seconds, sec_per_epoch=result.seconds / max(epochs, 1e-9),
                   stopped=result.stopped, model_config=model.config_dict(), train_config=dataclasses.asdict(tcfg))
        final_loss = next((r["loss"] for r in reversed(result.history) if "loss" in r), None)
        self.log(f"{what}: {result.steps} steps ({epochs:.2f} epochs) in {_fmt_time(result.seconds)}"
                 + (f", final loss {float(final_loss):.4g}" if final_loss is not None else ""))
        return result.sampling_model.eval(), result, row

    # --- FID ----------------------------------------------------------------

    def _feature_network(self) -> None:
        """The classifier of this run as FID's feature network; else an earlier run's, else the default one."""
        from .metrics.features import ClassifierFeatures, find_classifier, load_classifier

        if "classifier" in self.models:
            model, where = self.models["classifier"], self.out / "classifier"
        else:
            candidates = [self.out / "classifier"]
            try:
                candidates.append(find_classifier(self.preset.dataset, self.train_data.channels,
                                                  self.train_data.image_size))
            except GenlabError:
                pass
            found = [c for c in candidates if (c / "config.json").exists()]
            if not found:
                self.extractor_note = (f"no feature classifier for {self.preset.dataset} at {self.shape} (run the "
                                       "classifier stage): FID not computed.")
                self.log(self.extractor_note)
                return
            where = found[0]
            model = load_classifier(where, self._device())
            cfg = model.cfg
            if (cfg.channels, cfg.image_size) != (self.train_data.channels, self.train_data.image_size):
                self.extractor_note = f"the classifier in {where} takes other images: FID not computed."
                self.log(self.extractor_note)
                return
        self.extractor = ClassifierFeatures(model.eval(), name=f"classifier:{where.name}")
        self.extractor_where = where

    def _device(self) -> torch.device:
        from .train.device import pick_device

        return pick_device(self.device)

    def _fid(self, model, what: str, labels: torch.Tensor | None = None, **sample_kwargs):
        """(FID dict or None, the samples, sampling seconds): fid_n samples scored against the test split."""
        from .metrics.evaluate import evaluate_samples, sample_model

        n = min(self.preset.fid_n, len(self.test_data))
        g = torch.Generator(device=model.device).manual_seed(self.seed)
        t0 = time.time()
        samples = sample_model(model, n, batch_size=250, labels=labels, generator=g, **sample_kwargs)
        took = time.time() - t0
        if self.extractor is None or self.test_data is self.train_data:  # FID needs a network and a test split
            return None, samples, took
        fid = evaluate_samples(samples, self.preset.dataset, n, labels=labels, extractor=self.extractor,
                               data_dir=self.data_dir)
        fid = {k: v for k, v in fid.items() if isinstance(v, (int, float, str))}
        self.log(f"{what}: FID {fid['fid']:.3g} (floor {fid.get('floor_fid', float('nan')):.3g}) on {n} samples"
                 + (f", conditional accuracy {fid['conditional_accuracy']:.3f}" if "conditional_accuracy" in fid
                    else "") + f"; sampling took {_fmt_time(took)}")
        return fid, samples, took

    # --- stages -------------------------------------------------------------

    def _stage_model(self, key: str) -> dict:
        from .viz.grid import save_grid

        stage = self.preset.stages[key]
        family = FAMILY[key]
        folder = self.out / key
        model, _, row = self._train(family, stage, folder, TITLE[key])
        t0 = time.time()
        row.update(stage=key, title=TITLE[key], family=family)
        n_eval = min(self.preset.eval_n, len(self.test_data))
        metrics = model.evaluate(self.test_data, n=n_eval) if hasattr(model, "evaluate") else {}
        row["metrics"] = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}
        row["eval_n"] = n_eval
        g = torch.Generator().manual_seed(self.seed)
        paths = model.save_artifacts(self.test_data, folder, generator=g) if hasattr(model, "save_artifacts") else []
        pictures = [[p.stem.replace("_", " "), _rel(p, self.out)] for p in paths or []]
        self.models[key] = model
        if key == "classifier":
            self._feature_network()
            self.log(f"{TITLE[key]}: test accuracy {row['metrics'].get('accuracy', float('nan')):.4f}")
        elif key in ("ae", "vae", "hvae"):
            m = row["metrics"]
            self.log(f"{TITLE[key]}: test MSE {m['mse']:.4g}, PSNR {m['psnr']:.2f} dB, SSIM {m['ssim']:.3f}"
                     + (f", -ELBO {m['neg_elbo_nats']:.1f} nats ({m['neg_elbo_bpd']:.3f} bits/dim)"
                        if "neg_elbo_nats" in m else ""))
        if getattr(model, "can_sample", False):
            if key == "ddpm":
                k = getattr(model, "num_classes", 0)
                n = min(self.preset.fid_n, len(self.test_data))
                labels = torch.arange(n) % k if k else None
                kw = {"sampler": self.preset.sampler["sampler"], "steps": self.preset.sampler["steps"] or None}
                if k:
                    kw["guidance"] = self.preset.sampler.get("guidance", 1.0)
                fid, samples, took = self._fid(model, TITLE[key], labels=labels, **kw)
                row["sampler"] = kw
                row["sample_seconds"] = took
                grid = self._ddpm_grid(samples, labels, k)
                pictures.insert(0, ["samples", _rel(save_grid(grid[0], folder / "samples_grid.png",
                                                              nrow=grid[1]), self.out)])
            else:  # the prior samples of save_artifacts are the grid; these n are for FID only
                fid, _, _ = self._fid(model, TITLE[key])
            row["fid"] = fid
        row["eval_seconds"] = time.time() - t0
        row["pictures"] = pictures
        return row

    @staticmethod
    def _ddpm_grid(samples: torch.Tensor, labels: torch.Tensor | None, k: int):
        """Up to 64 samples; for a class-conditional model one row per class, 8 per row."""
        if labels is None or not k:
            return samples[:64], 8
        per = min(8, len(samples) // k)
        rows = [samples[labels == c][:per] for c in range(k)]
        return torch.cat(rows), per

    def _stage_sweep(self) -> dict:
        """The VAE retrained with `sweep.option` set to each value, everything else (seed too) equal."""
        from .metrics.likelihood import latent_diagnostics, negative_elbo
        from .metrics.reconstruction import reconstruction_metrics
        from .models import MODELS
        from .viz.latent import save_kl_sweep

        sweep, stage = self.preset.sweep, self.preset.stages["vae"]
        folder = self.out / "sweep"
        base_value = stage.model.get(sweep.option, getattr(MODELS["vae"].Config(), sweep.option))
        n_eval = min(self.preset.eval_n, len(self.test_data))
        # a controlled experiment: every run takes the same number of steps (the VAE stage's, which a
        # time budget may have cut short), never a time budget that a busy machine would turn into fewer steps
        if "vae" in self.models:
            steps = self._read_row("vae")["steps"]
        else:
            steps = self._train_config(stage, "vae").max_steps
        entries, models = [], []
        for value in sweep.values:
            what = f"VAE {sweep.option}={value:g}"
            if value == base_value and "vae" in self.models:
                model, reused = self.models["vae"], "vae"
                src = self._read_row("vae")
                row = {k: src[k] for k in ("steps", "epochs", "train_seconds", "sec_per_epoch")}
                self.log(f"{what}: the VAE stage of this run (same options)")
            else:
                model, _, row = self._train("vae", stage, folder / f"vae_{sweep.option}{value:g}", what,
                                            {sweep.option: value}, exact_steps=steps)
                reused = ""
            m = reconstruction_metrics(model, self.test_data, n=n_eval)
            e = negative_elbo(model, self.test_data, n=n_eval)
            scalars, _ = latent_diagnostics(model, self.test_data, n=n_eval)
            recon = -e["log_px_z"]
            fid, _, _ = self._fid(model, what)
            entries.append(dict(value=value, reused=reused, steps=row["steps"], train_seconds=row["train_seconds"],
                                recon_nats=recon, kl_nats=e["kl"], neg_elbo_nats=e["neg_elbo_nats"],
                                neg_elbo_bpd=e["neg_elbo_bpd"], mse=m["mse"], psnr=m["psnr"], ssim=m["ssim"],
                                active_units=scalars.get("active_units_z"), latent_dims=scalars.get("latent_dims_z"),
                                fid=fid.get("fid") if fid else None, floor_fid=fid.get("floor_fid") if fid else None))
            models.append(model)
            self.log(f"{what}: reconstruction {recon:.1f} nats, KL {e['kl']:.1f} nats, "
                     f"-ELBO {e['neg_elbo_nats']:.1f} nats")
        picture = save_kl_sweep(models, self.test_data, folder / "kl_sweep.png", generator_seed=self.seed)
        return dict(stage="sweep", title=TITLE["sweep"], option=sweep.option, entries=entries, eval_n=n_eval,
                    pictures=[["kl sweep", _rel(picture, self.out)]], vae_config=stage.model,
                    train_config=dataclasses.asdict(self._train_config(stage, "vae")))

    def _read_row(self, stage: str) -> dict:
        return json.loads((self.out / stage / ROW_FILE).read_text())

    def _finished(self, stage: str) -> bool:
        """A row of this preset and dataset is already in <out>/<stage> (what --resume keeps)."""
        try:
            row = self._read_row(stage)
        except (OSError, ValueError):
            return False
        return row.get("preset") == self.preset.name and row.get("dataset") == self.preset.dataset

    # --- main ---------------------------------------------------------------

    def run(self, only=STAGES) -> Path:
        """Run the stages named in `only` (in lab order) and write the report; returns its path."""
        stages = [s for s in STAGES if s in only]
        if "sweep" in stages and "kl_weight" != self.preset.sweep.option:
            raise GenlabError(f"the sweep varies kl_weight; got {self.preset.sweep.option!r}")
        with OutputLock(self.out):
            self._check_folders(stages)
            return self._run(stages)

    def _run(self, stages: list[str]) -> Path:
        from .viz.grid import save_grid

        t_start = time.time()
        self._load_data()
        p = self.preset
        self.log(f"preset {p.name}: {p.dataset} {self.shape}, {len(self.train_data)} training / "
                 f"{len(self.test_data)} {self.test_name.split()[0]} images; stages {', '.join(stages)}; "
                 f"output in {self.out}/")
        self.out.mkdir(parents=True, exist_ok=True)
        save_grid(self.test_data.batch(torch.arange(min(64, len(self.test_data))))["x"], self.out / "inputs.png")
        kept = [s for s in stages if self.resume and self._finished(s)]
        if kept:
            self.log(f"--resume: keeping the finished stages {', '.join(kept)}")
        if ("classifier" not in stages or "classifier" in kept) and any(
                s in stages for s in ("vae", "hvae", "ddpm", "sweep")):
            self._feature_network()
        done = list(kept)
        try:
            for i, stage in enumerate(stages, 1):
                if stage in kept:
                    continue
                folder = self.out / stage
                # a stage stopped mid-training (--resume) continues its checkpoint; anything else starts afresh
                self._resume_stage = self.resume and stage != "sweep" and (folder / STATE).exists()
                if folder.exists() and not self._resume_stage:
                    shutil.rmtree(folder)
                self.log(f"stage {i}/{len(stages)}: {TITLE[stage]}")
                t0 = time.time()
                row = self._stage_sweep() if stage == "sweep" else self._stage_model(stage)
                row.update(preset=p.name, dataset=p.dataset, shape=self.shape, stage_seconds=time.time() - t0,
                           finished=datetime.now().isoformat(timespec="seconds"),
                           features=self.extractor.name if self.extractor is not None else None)
                folder.mkdir(parents=True, exist_ok=True)
                (folder / ROW_FILE).write_text(json.dumps(row, indent=1, default=str))
                for state in folder.rglob(STATE):  # the optimizer state only served a resume: 2x the weights
                    state.unlink()
                done.append(stage)
                self.log(f"stage {i}/{len(stages)}: {TITLE[stage]} done in {_fmt_time(row['stage_seconds'])}")
        except KeyboardInterrupt:
            if done:
                path = write_report(self.out, self._report_info(done, time.time() - t_start))
                self.log(f"interrupted; the report of the stages finished so far is {path}")
            again = self.command if "--resume" in self.command.split() else f"{self.command} --resume"
            self.log(f"interrupted: `{again}` continues where this stopped")
            raise
        path = write_report(self.out, self._report_info(stages, time.time() - t_start))
        self.log(f"all done in {_fmt_time(time.time() - t_start)}; report: {path}")
        return path

    def _report_info(self, stages: list[str], total: float) -> dict:
        p = self.preset
        info = dict(command=self.command, preset=p.name, about=p.about, total_seconds=total, stages_run=stages,
                    threads=torch.get_num_threads(), device=str(self._device()), torch=torch.__version__,
                    machine=platform.processor() or platform.machine(), test_split=self.test_name,
                    fid_n=min(p.fid_n, len(self.test_data)), minutes_scale=self.minutes_scale,
                    out=self.out.as_posix(), extractor_note=self.extractor_note)
        if self.extractor is not None:
            where = Path(self.extractor_where)
            info.update(classifier_path=where.as_posix(), classifier_trained_now="classifier" in stages,
                        classifier_link=_rel(where, self.out) if self._inside(where) else None)
        return info

    def _inside(self, path: Path) -> bool:
        try:
            Path(path).resolve().relative_to(self.out.resolve())
            return True
        except ValueError:
            return False


# ----------------------------------------------------------------------------- the report

def _n(v, fmt: str = ".3g") -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt)


def _fid_cell(row: dict) -> str:
    fid = row.get("fid")
    if not fid:
        return "–"
    return f"{fid['fid']:.3g} ({_n(fid.get('floor_fid'))})"


def _acc_cell(row: dict) -> str:
    if row["stage"] == "classifier":
        return f"{row['metrics']['accuracy']:.4f} (test)"
    fid = row.get("fid") or {}
    if "conditional_accuracy" in fid:
        return f"{fid['conditional_accuracy']:.4f} (cond.)"
    return "–"


def _table(rows: list[dict]) -> list[str]:
    head = ["model", "params", "train time", "steps (epochs)", "s / epoch", "MSE", "PSNR (dB)", "SSIM",
            "-ELBO (nats)", "-ELBO (bits/dim)", "-IWAE (nats)", "FID (floor)", "accuracy"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        m = r.get("metrics", {})
        k = m.get("iwae_k")
        iwae = f"{m['neg_iwae_nats']:.1f} (k={int(k)})" if "neg_iwae_nats" in m else "–"
        cells = [r["title"], f"{r['params'] / 1e6:.2f}M", _fmt_time(r["train_seconds"]),
                 f"{r['steps']} ({r['epochs']:.2f})", f"{r['sec_per_epoch']:.0f}",
                 _n(m.get("mse"), ".4f"), _n(m.get("psnr"), ".2f"), _n(m.get("ssim"), ".3f"),
                 _n(m.get("neg_elbo_nats"), ".1f"), _n(m.get("neg_elbo_bpd"), ".4f"), iwae, _fid_cell(r), _acc_cell(r)]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _img(label: str, path: str) -> str:
    return f"[![{label}]({path})]({path})" if not path.endswith(".gif") else f"![{label}]({path})"


def _links(row: dict) -> str:
    """Links to every picture of a stage, and its loss curve."""
    pics = [*row.get("pictures", []), ["loss curve", f"{row['stage']}/loss.png"]]
    return "All pictures: " + " · ".join(f"[{label}]({path})" for label, path in pics) + "."


def _pictures(rows: list[dict]) -> list[str]:
    out = []
    for r in rows:
        if r["stage"] == "ddpm":
            continue
        pics = dict(r.get("pictures", []))
        out += [f"### {r['title']}", "", _links(r), ""]
        for label in ("prior samples", "reconstructions", "confusion"):
            if label in pics:
                what = {"prior samples": "samples (decoded z ~ N(0, I))",
                        "reconstructions": "test inputs (odd rows) and reconstructions (even rows)",
                        "confusion": "confusion matrix on the test split"}[label]
                out += [f"{what}:", "", _img(label, pics[label]), ""]
    return out


def _ddpm_section(row: dict) -> list[str]:
    pics = dict(row.get("pictures", []))
    cfg = row["model_config"]
    s = row.get("sampler", {})
    sampler = f"{s.get('sampler', cfg.get('sampler'))} with {s.get('steps') or cfg.get('timesteps')} steps"
    if s.get("guidance", 1.0) != 1.0:
        sampler += f" and classifier-free guidance {s['guidance']:g}"
    lines = ["## DDPM", "",
             f"U-Net {cfg['base_width']} x {tuple(cfg['channel_mult'])}, {cfg['num_res_blocks']} residual block(s) "
             f"per level, attention at {tuple(cfg['attn_resolutions']) or 'none'}; T = {cfg['timesteps']}, "
             f"{cfg['schedule']} schedule, {cfg['prediction']}-prediction, loss weighting {cfg['weighting']}"
             + (", class-conditional (label dropout "
                f"{cfg['label_dropout']:g})" if cfg.get("conditional") else "") + f". Trained {row['steps']} steps "
             f"({row['epochs']:.2f} epochs, {_fmt_time(row['train_seconds'])}"
             + (", stopped by the time budget" if row.get("stopped") == "time" else "") + f"); sampled with "
             f"{sampler} ({_fmt_time(row.get('sample_seconds', 0))} for the FID samples).", "", _links(row), ""]
    if "samples" in pics:
        lines += ["Samples (EMA weights" + (", one row per class" if cfg.get("conditional") else "") + "):", "",
                  _img("DDPM samples", pics["samples"]), ""]
    names = {"denoising strip": "Denoising: x_T on the left to x_0 on the right",
             "reverse process": "The reverse process, animated",
             "forward process": "The forward process q(x_t | x_0) on test images"}
    for label, text in names.items():
        if label in pics:
            lines += [f"{text}:", "", _img(label, pics[label]), ""]
    return lines


def _direction(a: float, b: float, tol: float = 0.005) -> str:
    """'rose' / 'fell' / 'stayed about the same' (within tol, relative, or 0.05 absolute)."""
    if abs(b - a) <= max(tol * max(abs(a), abs(b)), 0.05 if max(abs(a), abs(b)) > 1 else 1e-4):
        return "stayed about the same"
    return "rose" if b > a else "fell"


def _sweep_section(row: dict) -> list[str]:
    es = sorted(row["entries"], key=lambda e: e["value"])
    name = {"kl_weight": "KL weight (beta)"}.get(row["option"], row["option"])
    head = [name, "steps", "reconstruction (nats)", "KL (nats)", "-ELBO (nats)", "-ELBO (bits/dim)", "MSE",
            "PSNR (dB)", "active units", "FID (floor)"]
    values = ", ".join(format(e["value"], "g") for e in es)
    lines = ["## What changed when an assumption changed: the KL weight", "",
             "The VAE assumes that the code should carry no more information than its KL term pays for, with a "
             "price of 1 nat per nat (the ELBO). The experiment trains the same VAE (same architecture, data, "
             f"seed and number of steps) with the KL term weighted by {values} and scores each on "
             f"{row['eval_n']} test images with the true ELBO (weight 1).", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for e in es:
        active = f"{_n(e['active_units'], '.0f')}/{_n(e['latent_dims'], '.0f')}"
        fid = "–" if e["fid"] is None else f"{e['fid']:.3g} ({_n(e['floor_fid'])})"
        lines.append(f"| {e['value']:g}{' (the VAE above)' if e['reused'] else ''} | {e['steps']} | "
                     f"{e['recon_nats']:.1f} | {e['kl_nats']:.1f} | {e['neg_elbo_nats']:.1f} | "
                     f"{e['neg_elbo_bpd']:.4f} | {e['mse']:.4f} | {e['psnr']:.2f} | {active} | {fid} |")
    lo, hi = es[0], es[-1]
    say = (f"Raising the weight from {lo['value']:g} to {hi['value']:g}: the KL "
           f"{_direction(lo['kl_nats'], hi['kl_nats'])} ({lo['kl_nats']:.1f} -> {hi['kl_nats']:.1f} nats), "
           "the reconstruction term "
           f"{_direction(lo['recon_nats'], hi['recon_nats'])} ({lo['recon_nats']:.1f} -> {hi['recon_nats']:.1f} nats), "
           f"the test MSE {_direction(lo['mse'], hi['mse'])} ({lo['mse']:.4f} -> {hi['mse']:.4f}), active units went "
           f"from {_n(lo['active_units'], '.0f')} to {_n(hi['active_units'], '.0f')}")
    if lo["fid"] is not None and hi["fid"] is not None:
        say += f", and the FID of prior samples {_direction(lo['fid'], hi['fid'])} ({lo['fid']:.3g} -> {hi['fid']:.3g})"
    say += "."
    expected = hi["kl_nats"] < lo["kl_nats"] and hi["recon_nats"] > lo["recon_nats"]
    best = min(es, key=lambda e: e["neg_elbo_nats"])
    if expected:
        say += (" That is the trade the weight sets: a higher price per nat of information squeezes the code "
                "(fewer nats through z) and the decoder has to guess more, so reconstructions get worse; a lower "
                "price keeps more detail in z but leaves the codes further from the prior N(0, I) that samples "
                "are drawn from.")
    else:
        say += (" This is not the textbook trade-off (KL down, reconstruction error up as the weight grows); "
                "with runs this short the differences can be within training noise.")
    say += f" The best -ELBO (the true bound) came from weight {best['value']:g}."
    pics = dict(row.get("pictures", []))
    lines += ["", say, ""]
    if "kl sweep" in pics:
        lines += ["Test inputs, then per weight: reconstructions (left) and prior samples from the same noise "
                  "(right); bottom: the two ELBO terms against the weight.", "", _img("KL sweep", pics["kl sweep"]), ""]
    return lines


def _feature_note(info: dict) -> str:
    if not info.get("classifier_path"):
        return info.get("extractor_note") or "none."
    path, link = info["classifier_path"], info.get("classifier_link")
    where = f"[{link}]({link})" if link else f"`{path}`"
    which = "the classifier trained in this run" if info.get("classifier_trained_now") else "the classifier in"
    return (f"{which} ({where}); score a run again with `genlab eval {info['out']}/ddpm --classifier {path}`."
            if info.get("classifier_trained_now") else f"{which} {where} (trained earlier).")


def write_report(out: str | Path, info: dict) -> Path:
    """<out>/results.md from every stage row in <out> (rows of this run and of earlier ones)."""
    out = Path(out)
    rows = {s: json.loads((out / s / ROW_FILE).read_text()) for s in STAGES if (out / s / ROW_FILE).exists()}
    models = [rows[s] for s in STAGES if s in rows and s != "sweep"]
    first = next(iter(rows.values()), {})
    dataset, shape = first.get("dataset", "?"), first.get("shape", "?")
    mixed = sorted({(r.get("preset"), r.get("dataset"), r.get("shape")) for r in rows.values()})
    lines = [f"# genlab lab report: {dataset} ({shape})", "",
             f"Written by `{info['command']}` (preset **{info['preset']}**: {info['about']}). This run took "
             f"{_fmt_time(info['total_seconds'])} for the stages {', '.join(info['stages_run'])} on "
             f"{info['device']} ({info['machine']}, {info['threads']} torch thread(s), torch {info['torch']})"
             + (f", time budgets x{info['minutes_scale']:g}" if info.get("minutes_scale", 1) != 1 else "")
             + f"; {datetime.now().strftime('%Y-%m-%d %H:%M')}.", ""]
    if len(mixed) > 1:
        lines += ["**Note:** the rows below come from different runs: "
                  + "; ".join(f"{p} preset on {d} {s}" for p, d, s in mixed) + ".", ""]
    lines += ["## Results", "", f"Metrics on the {info['test_split']} split.", "", *_table(models), ""]
    notes = [
        "MSE on the [0, 1] scale, PSNR and SSIM: test images against their reconstructions (AE: the code; VAE and "
        "HVAE: the posterior mean code).",
        "-ELBO and -IWAE: negative bounds on log p(x) per image in nats (lower is better) and in bits per "
        "dimension (nats / (C·H·W·ln 2)). With the Bernoulli likelihood used here they are cross-entropies of "
        "the pixel intensities, comparable between the VAE and the HVAE but not with published 8-bit numbers.",
        f"FID: Fréchet distance between the classifier features of {info['fid_n']} samples and as many test "
        "images; in brackets the floor, the same distance between training and test images, i.e. what a "
        "perfect generator would score at this n. Feature network: " + _feature_note(info),
        "accuracy: the classifier's on the test split; for the class-conditional DDPM, the fraction of samples "
        "the classifier assigns to the class they were generated for.",
        "Times are wall clock on a machine that may be shared; s / epoch = training time / epochs done "
        "(including checkpoints).",
    ]
    lines += [f"- {n}" for n in notes] + [""]
    if "ddpm" in rows:
        lines += _ddpm_section(rows["ddpm"])
    if "sweep" in rows:
        lines += _sweep_section(rows["sweep"])
    lines += ["## Pictures", "", "Test inputs (the first 64 of the test split):", "", _img("inputs", "inputs.png"), "",
              "Every picture of each run folder is linked; the main ones are shown.", ""] + _pictures(models)
    lines += ["## Settings", "", "Model and training options of each run (the run folders hold them as "
              "config.json, with the loss curve loss.png):", ""]
    for r in models:
        t = r["train_config"]
        lines.append(f"- {r['title']} ([{r['stage']}/]({r['stage']}/)): `{json.dumps(r['model_config'])}`; "
                     f"batch {t['batch_size']}, lr {t['lr']:g}, {t['lr_schedule']} schedule, EMA {t['ema_decay']:g}, "
                     f"budget {t['max_steps'] or '–'} steps / {t['max_minutes'] or '–'} min, {t['epochs']} epochs "
                     "max; "
                     f"stopped: {r['stopped']}")
    lines.append("")
    path = out / "results.md"
    path.write_text("\n".join(lines))
    return path

"""The lab run: every stage of a preset trained, scored and drawn into <out>/ (see genlab.lab)."""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import shutil
import sys
import time
from datetime import datetime
from pathlib import Path

import torch

from .. import train as training  # training.train, looked up at call time (tests replace it)
from ..cli.train import fill_from_data
from ..data import load_dataset
from ..device import pick_device
from ..errors import GenlabError
from ..figures.artifacts import save_artifacts
from ..figures.latent import save_kl_sweep
from ..fmt import duration
from ..metrics.evaluate import evaluate_samples, sample_model
from ..metrics.family import evaluate as evaluate_family
from ..metrics.features import ClassifierFeatures, find_classifier, load_classifier
from ..metrics.likelihood import latent_diagnostics, negative_elbo
from ..metrics.reconstruction import reconstruction_metrics
from ..models import MODELS, build_model
from ..train import TrainConfig
from ..train.checkpoint import STATE
from ..viz.grid import save_grid
from .presets import FAMILY, LOCK_FILE, ROW_FILE, STAGES, TITLE, Preset, Stage
from .report import write_report


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
        opts = {**MODELS[family].train_defaults, **stage.train}
        for key in ("max_minutes", "max_steps"):
            if opts.get(key):
                scaled = opts[key] * self.minutes_scale
                opts[key] = max(1, round(scaled)) if key == "max_steps" else scaled
        opts.update(device=self.device, seed=self.seed, progress=self.progress)
        return TrainConfig(**opts)

    def _build(self, family: str, options: dict):
        cfg = fill_from_data(dict(options), MODELS[family].Config, self.train_data)
        if cfg.get("conditional") and (self.train_data.num_classes or 0) < 2:
            cfg["conditional"] = False  # no labels to condition on
        return build_model(family, cfg)

    def _train(self, family: str, stage: Stage, folder: Path, what: str, model_options: dict | None = None,
               exact_steps: int | None = None):
        """Build, train (the one loop) and time one model; returns (eval-mode sampling model, result, row).

        exact_steps: train exactly this many steps with no time budget (runs that are compared).
        """
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
        result = training.train(model, self.train_data, tcfg, folder, resume=resume)
        if result.stopped == "interrupted":  # Ctrl-C: the loop saved a checkpoint; stop the whole lab run
            raise KeyboardInterrupt
        steps_per_epoch = max(1, len(self.train_data) // tcfg.batch_size)
        epochs = result.steps / steps_per_epoch
        row = dict(params=_params(model), steps=result.steps, epochs=epochs, batch_size=tcfg.batch_size,
                   train_seconds=result.seconds, sec_per_epoch=result.seconds / max(epochs, 1e-9),
                   stopped=result.stopped, model_config=model.config_dict(), train_config=dataclasses.asdict(tcfg))
        final_loss = next((r["loss"] for r in reversed(result.history) if "loss" in r), None)
        self.log(f"{what}: {result.steps} steps ({epochs:.2f} epochs) in {duration(result.seconds)}"
                 + (f", final loss {float(final_loss):.4g}" if final_loss is not None else ""))
        return result.sampling_model.eval(), result, row

    # --- FID ----------------------------------------------------------------

    def _feature_network(self) -> None:
        """The classifier of this run as FID's feature network; else an earlier run's, else the default one."""
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
        return pick_device(self.device)

    def _fid(self, model, what: str, labels: torch.Tensor | None = None, **sample_kwargs):
        """(FID dict or None, the samples, sampling seconds): fid_n samples scored against the test split."""
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
                    else "") + f"; sampling took {duration(took)}")
        return fid, samples, took

    # --- stages -------------------------------------------------------------

    def _stage_model(self, key: str) -> dict:
        stage = self.preset.stages[key]
        family = FAMILY[key]
        folder = self.out / key
        model, _, row = self._train(family, stage, folder, TITLE[key])
        t0 = time.time()
        row.update(stage=key, title=TITLE[key], family=family)
        n_eval = min(self.preset.eval_n, len(self.test_data))
        metrics = evaluate_family(model, self.test_data, n=n_eval)
        row["metrics"] = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}
        row["eval_n"] = n_eval
        g = torch.Generator().manual_seed(self.seed)
        paths = save_artifacts(model, self.test_data, folder, generator=g)
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
            else:  # the prior samples of the family's pictures are the grid; these n are for FID only
                fid, samples, took = self._fid(model, TITLE[key])
                if key == "gan":  # a GAN's pictures are walks and class rows: its samples grid comes from here
                    row["sample_seconds"] = took
                    pictures.insert(0, ["samples", _rel(save_grid(samples[:64], folder / "samples_grid.png"),
                                                        self.out)])
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
                s in stages for s in ("vae", "hvae", "ddpm", "gan", "sweep")):
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
                self.log(f"stage {i}/{len(stages)}: {TITLE[stage]} done in {duration(row['stage_seconds'])}")
        except KeyboardInterrupt:
            if done:
                path = write_report(self.out, self._report_info(done, time.time() - t_start))
                self.log(f"interrupted; the report of the stages finished so far is {path}")
            again = self.command if "--resume" in self.command.split() else f"{self.command} --resume"
            self.log(f"interrupted: `{again}` continues where this stopped")
            raise
        path = write_report(self.out, self._report_info(stages, time.time() - t_start))
        self.log(f"all done in {duration(time.time() - t_start)}; report: {path}")
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

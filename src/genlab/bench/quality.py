"""What a recipe reaches in a fixed time: FID vs floor after N minutes.

    genlab train diffusion --dataset fashion_mnist   (every other option default)
      or genlab train diffusion --config FILE        (a recipe of its own, `--config` here)
    stopped by the time budget (--max-minutes), EMA weights sampled
    -> `draws` independent draws of n samples (seeds seed + i), draw i scored against
       test set i: FID / KID / precision / recall as mean over the draws, FID ± its SD,
       each beside its floor (train set i vs test set i, disjoint sets: mean ± SD;
       genlab.bench.noise); a class-conditional recipe samples balanced labels and
       adds the classifier's agreement with them

The features are the trained Fashion-MNIST classifier's (genlab.metrics), so
the classifier must exist: `genlab train classifier --dataset fashion_mnist
--out ~/.cache/genlab/classifiers/fashion_mnist-1x28`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

import torch

from ..device import pick_device
from ..errors import GenlabError
from ..fmt import num
from .noise import check_draws, pm, real_draws, score_draws
from .speed import load_average, machine_info, md_table


@dataclass
class QualityConfig:
    minutes: float = 30.0           # training time budget (wall clock)
    n: int = 2000                   # samples (and real images) per draw for the metrics
    draws: int = 5                  # independent draws of n samples: FID mean ± SD (floor: disjoint draws)
    dataset: str = "fashion_mnist"
    sampler: str = "auto"           # auto: the recipe's sampler, else ddim if registered, else ddpm
    steps: int = 0                  # sampler network calls (0: 50 for ddim, all T for ddpm)
    batch_size: int = 250           # images per sampling batch
    device: str = "auto"
    seed: int = 0
    run_dir: str = ""               # training run folder (default: runs/bench_quality/<time stamp>)
    data_dir: str = ""
    model: dict = field(default_factory=dict)   # DiffusionConfig overrides (default: the default recipe)
    recipe: str = ""                # a `genlab train --config` file whose recipe to measure instead
    recipe_model: dict = field(default_factory=dict)   # its model options (model overrides these)
    family: str = "diffusion"       # the recipe's model family (a config file's "family" key): diffusion | gan
    train: dict = field(default_factory=dict)   # its TrainConfig options (not the budget: minutes, seed, device)
    sample_bf16: bool = False       # sample with the network in bf16 autocast


def check_quality_config(cfg: QualityConfig) -> None:
    if not cfg.minutes > 0:
        raise GenlabError(f"--minutes must be positive (the training time budget), got {cfg.minutes}")
    if cfg.n < 10:
        raise GenlabError(f"--n must be at least 10 samples for FID and friends, got {cfg.n}")
    check_draws(cfg.draws)
    if cfg.steps < 0 or cfg.batch_size < 1:
        raise GenlabError("--steps must be >= 0 and the sampling batch size >= 1")


def run_quality(cfg: QualityConfig, out_dir: str | Path, log=print) -> dict:
    """Train the recipe (the default, or cfg.recipe's) for cfg.minutes, sample, score; the grid goes to out_dir."""
    from ..data import load_dataset
    from ..diffusion.samplers import available
    from ..metrics.evaluate import sample_model
    from ..metrics.features import feature_extractor
    from ..models import MODELS, build_model
    from ..train import TrainConfig, train
    from ..viz.grid import save_grid

    check_quality_config(cfg)
    device = pick_device(cfg.device)
    model_options = {**cfg.recipe_model, **cfg.model}
    diffusion = cfg.family == "diffusion"
    if cfg.family not in ("diffusion", "gan"):
        raise GenlabError(f"the quality bench measures the diffusion and gan families, not '{cfg.family}'")
    sampler, steps = cfg.sampler, cfg.steps
    if not diffusion and (sampler != "auto" or steps or cfg.sample_bf16):
        raise GenlabError("--sampler, --sample-steps and --sample-bf16 apply to diffusion recipes: a GAN samples "
                          "in one network call")
    if diffusion and sampler == "auto":  # the recipe's own sampler, else DDIM-50
        sampler = model_options.get("sampler") or ("ddim" if "ddim" in available() else "ddpm")
        steps = steps or (model_options.get("sample_steps", 0) if "sampler" in model_options else 0)
    if diffusion and sampler not in available():
        raise GenlabError(f"unknown sampler '{sampler}'; choose one of: {', '.join(available())}")
    data = load_dataset(cfg.dataset, "train", data_dir=cfg.data_dir or None)
    if model_options.get("conditional") and not data.num_classes:
        raise GenlabError(f"the recipe is class-conditional but {cfg.dataset} has no class labels")
    # fail before training, not after it, when the metrics cannot run
    extractor = feature_extractor(cfg.dataset, data.channels, data.image_size, device=device)
    real = real_draws(extractor, cfg.dataset, cfg.n, cfg.draws, data_dir=cfg.data_dir or None)

    if diffusion:
        model_options["sample_bf16"] = cfg.sample_bf16 or model_options.get("sample_bf16", False)
    model = build_model(cfg.family, {**model_options, "channels": data.channels, "image_size": data.image_size,
                                     "num_classes": data.num_classes})
    if diffusion:
        steps = steps or (None if sampler == "ddpm" else min(50, model.cfg.timesteps))
    # the default recipe, stopped by time alone; no mid-run grids so the budget goes to training
    tcfg = replace(TrainConfig(**{**MODELS[cfg.family].train_defaults, **cfg.train}), epochs=1_000_000,
                   max_minutes=cfg.minutes, max_steps=0, sample_every=0, device=cfg.device, seed=cfg.seed)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = Path(cfg.run_dir or f"runs/bench_quality/{cfg.minutes:g}min-{stamp}")
    load_before = load_average()
    recipe = f"the recipe of {cfg.recipe}" if cfg.recipe else f"the default {cfg.family} recipe"
    log(f"quality: training {recipe} on {cfg.dataset} for {cfg.minutes:g} min "
        f"({machine_info(device)}, load {load_before}); run folder {run_dir}")
    result = train(model, data, tcfg, run_dir)
    if result.stopped == "interrupted":
        # a run cut short is not a measurement of the budget: write nothing rather than a wrong line
        raise KeyboardInterrupt
    model = result.sampling_model.eval()

    how = f"{sampler}{'' if steps is None else f'-{steps}'}" if diffusion else "the EMA generator"
    log(f"quality: {result.steps} steps; sampling {cfg.draws} draws of {cfg.n} images with {how} ...")
    t = time.perf_counter()
    labels = torch.arange(cfg.n) % data.num_classes if model.cfg.conditional else None  # balanced classes
    kw = dict(sampler=sampler, steps=steps) if diffusion else {}
    draws = [sample_model(model, cfg.n, cfg.batch_size, labels, torch.Generator().manual_seed(cfg.seed + i), **kw)
             for i in range(cfg.draws)]
    sample_seconds = time.perf_counter() - t
    out_dir = Path(out_dir)
    stem = f"_{Path(cfg.recipe).stem}" if cfg.recipe else ""
    grid = save_grid(draws[0][:64], out_dir / f"quality_samples{stem}.png", nrow=8)
    metrics = score_draws(extractor, draws, real, labels)
    # training time from the last log row: result.seconds also counts the final checkpoint and grid
    train_seconds = float(result.history[-1]["seconds"]) if result.history else result.seconds
    out = dict(cfg=cfg, steps=result.steps, seconds=train_seconds, batch_size=tcfg.batch_size,
               epochs=result.steps * tcfg.batch_size / len(data), sampler=sampler if diffusion else "generator",
               sampler_steps=(steps or model.cfg.timesteps) if diffusion else 1, sample_seconds=sample_seconds,
               metrics=metrics,
               grid=grid, run_dir=run_dir, machine=machine_info(device), load=(load_before, load_average()))
    out["markdown"] = quality_markdown(out)
    return out


def model_flags(model: dict) -> str:
    """DiffusionConfig overrides as `genlab train` flags."""
    def value(v):
        return ",".join(map(str, v)) if isinstance(v, tuple) else str(v).lower() if isinstance(v, bool) else str(v)
    return "".join(f" --{k.replace('_', '-')} {value(v)}" for k, v in model.items())


def section_name(cfg: QualityConfig) -> str:
    """results.md section: one per recipe, so the default's line and a config's line sit side by side."""
    return f"quality:{Path(cfg.recipe).stem}" if cfg.recipe else "quality"


def quality_command(cfg: QualityConfig) -> str:
    parts = [f"genlab bench --quality --minutes {cfg.minutes:g} --n {cfg.n}"]
    parts += [f"--draws {cfg.draws}"] * (cfg.draws != QualityConfig.draws)
    parts += [f"--config {cfg.recipe}"] * bool(cfg.recipe)
    parts += [f"--model {k}={','.join(map(str, v)) if isinstance(v, tuple) else v}" for k, v in cfg.model.items()]
    parts += ["--sample-bf16"] * cfg.sample_bf16
    if cfg.sampler != "auto" or cfg.steps:
        parts.append(f"--sampler {cfg.sampler}" + (f" --sample-steps {cfg.steps}" if cfg.steps else ""))
    return " ".join(parts)


def quality_markdown(q: dict) -> str:
    cfg, m = q["cfg"], q["metrics"]

    def cell(key):
        return num(m.get(key), ".4g")

    rows = [["FID", pm(m.get("fid"), m.get("fid_sd"), ".4g"), pm(m.get("floor_fid"), m.get("floor_fid_sd"), ".4g")],
            ["KID", cell("kid"), cell("floor_kid")], ["precision", cell("precision"), cell("floor_precision")],
            ["recall", cell("recall"), cell("floor_recall")]]
    if "conditional_accuracy" in m:
        rows.append(["class accuracy (requested class)", cell("conditional_accuracy"), "-"])
    if cfg.recipe:
        title, recipe = f"## Quality: `{cfg.recipe}`", f"The recipe of `{cfg.recipe}`"
        train_cmd = f"genlab train {cfg.family} --config {cfg.recipe}"
    else:
        title, recipe = "## Quality", f"The {'default ' if not cfg.model else ''}{cfg.family} recipe"
        train_cmd = f"genlab train {cfg.family} --dataset {cfg.dataset}"
    how = (f"EMA weights, {q['sampler']}-{q['sampler_steps']} {'bf16 ' if cfg.sample_bf16 else ''}sampling"
           if cfg.family == "diffusion" else "EMA generator: sampling")
    return "\n".join([
        title, "",
        f"`{quality_command(cfg)}` on {q['machine']}; "
        f"load average {q['load'][0]} before, {q['load'][1]} after.", "",
        f"{recipe} on {cfg.dataset} (`{train_cmd}{model_flags(cfg.model)}`), "
        f"stopped by a {cfg.minutes:g}-minute budget: {q['steps']} steps of batch {q['batch_size']} "
        f"({q['epochs']:.2f} epochs) in {q['seconds'] / 60:.1f} min. {how} "
        f"of {cfg.draws} x {cfg.n} images took {q['sample_seconds']:.0f} s. Features: {m.get('features')}. "
        f"Each number is the mean over {cfg.draws} independent draws of {cfg.n} samples, draw i scored against "
        f"test set i; FID ± its SD over the draws. Floor: {m.get('floor', '-')}, set i vs test set i, the sets "
        "disjoint.", "",
        md_table(["metric", "samples", "floor"], rows), "",
        f"![{cfg.minutes:g}-minute samples]({Path(q['grid']).name})", ""])

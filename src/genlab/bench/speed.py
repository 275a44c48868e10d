"""How fast the training loop runs, and how close it gets to the machine.

Every number comes from one process on one machine, measured back to back:

    peak       large torch.matmul in fp32 and bf16: the FLOP/s this device can do
    train      images/s of one optimisation step exactly as genlab.train.loop runs it
               (batch from the BatchLoader, autocast, loss, backward, clip, AdamW, EMA),
               for several "paths" (fp32 eager, the loop's default fast path, ...),
               and the same for diffusers.UNet2DModel at matched parameter count
    FLOPs      one step counted by torch.utils.flop_counter.FlopCounterMode;
               achieved FLOP/s / peak FLOP/s of the same precision = MFU
    loop       images/s of the real `genlab.train.train` (does the loop add overhead?)
    data       images/s of the BatchLoader alone (does the data ever starve the model?)
    sampling   seconds for n images with DDPM (all T steps) and DDIM-50 if registered

Timing: each path is warmed up, then timed `repeats` times over `steps` steps
with one device sync per timing (none inside the steps), interleaved across
paths so a burst of load from other processes hits all of them alike; the
minimum over repeats is reported. Host load averages are printed beside it.
"""

from __future__ import annotations

import math
import os
import platform
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from ..data.base import BatchLoader, TensorDataset
from ..device import autocast, cpu_has_bf16, hardware_bf16, pick_device, use_bf16, use_channels_last
from ..errors import GenlabError
from ..fmt import md_table, num, write_section  # noqa: F401  (bench.quality and the CLI use them from here)
from ..models.base import GenerativeModel
from ..train.config import TrainConfig
from ..train.ema import EMA
from ..train.log import Accumulator
from ..train.loop import wrap
from ..train.optim import build_optimizers
from ..train.step import StepContext

SKIP_DIFFUSERS = "skipped: pip install genlab[bench] (diffusers) to compare with diffusers.UNet2DModel"


@dataclass
class SpeedConfig:
    device: str = "auto"
    batch_size: int = 0             # 0: 128 on CPU, 512 on GPUs
    model: dict = field(default_factory=dict)   # DiffusionConfig overrides (default: the 28x28 U-Net)
    image_size: int = 28
    channels: int = 1
    warmup: int = 2                 # untimed steps per path (the first compiles, if compiling)
    steps: int = 3                  # steps per timing
    repeats: int = 3                # timings per path; the minimum is reported
    peak_size: int = 0              # matmul size for the peak (0: 2048 CPU, 8192 GPU)
    compile: bool = True            # also time the fast path under torch.compile
    ablation: bool = True           # also time the fast path with channels_last flipped
    diffusers: bool = True          # also time diffusers.UNet2DModel
    loop_steps: int = 12            # steps of the real train() (0: skip that row)
    sample_n: int = 64
    sample_timesteps: int = 1000    # T of the sampling model (DDPM runs all T)
    ddim_steps: int = 50
    sample_precisions: tuple = ("fp32", "bf16")
    command: str = "genlab bench"   # how the table was made (printed above it)


def quick_config(device: str = "auto") -> SpeedConfig:
    """Tiny sizes for CI: the whole table in seconds."""
    return SpeedConfig(device=device, batch_size=16,
                       model=dict(base_width=16, channel_mult=(1, 2), num_res_blocks=1, attn_resolutions=(14,)),
                       warmup=1, steps=2, repeats=2, peak_size=512, compile=False, ablation=False,
                       loop_steps=6, sample_n=8, sample_timesteps=100, ddim_steps=10,
                       command="genlab bench --quick")


# ---------------------------------------------------------------- timing helpers

def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def timed(fn, device: torch.device, n: int = 1) -> float:
    """Seconds per call of fn over n calls, with one sync at each end."""
    sync(device)
    t = time.perf_counter()
    for _ in range(n):
        fn()
    sync(device)
    return (time.perf_counter() - t) / n


def matmul_peak(device: torch.device, dtype: torch.dtype, n: int, repeats: int = 5) -> float:
    """FLOP/s of an n x n x n torch.matmul: the practical peak of this device and dtype.

    Each timing runs enough matmuls to last ~50 ms, so timer and launch overheads vanish.
    """
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    one = min(timed(lambda: torch.matmul(a, b), device) for _ in range(2))
    inner = max(1, min(1000, round(0.05 / max(one, 1e-6))))
    best = min(timed(lambda: torch.matmul(a, b), device, inner) for _ in range(repeats))
    return 2 * n ** 3 / best


def load_average() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except (AttributeError, OSError):
        return "n/a"


def machine_info(device: torch.device) -> str:
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = platform.processor() or platform.machine()
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
        except OSError:
            pass
        # the vector unit decides what the fast path can do: bf16 pays only with native bf16 (AVX-512 BF16 / AMX)
        isa = f"{torch.backends.cpu.get_cpu_capability()}, {'native' if cpu_has_bf16() else 'no native'} bf16"
        name = f"{name}, {isa}, {torch.get_num_threads()} torch threads of {os.cpu_count()} cores"
    return f"{device.type} ({name}), torch {torch.__version__}"


# ---------------------------------------------------------------- models

def genlab_model(cfg: SpeedConfig, **overrides):
    from ..models.diffusion import DiffusionConfig, DiffusionModel

    fields = {"channels": cfg.channels, "image_size": cfg.image_size, **cfg.model, **overrides}
    return DiffusionModel(DiffusionConfig(**fields))


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


class DiffusersDiffusion(GenerativeModel):
    """diffusers.UNet2DModel trained with genlab's DDPM loss (same schedule, same target).

    A (not registered) genlab family: the same train step times both.
    """

    family = "diffusers-unet"

    def __init__(self, unet, reference):
        super().__init__(None)
        self.unet, self.schedule, self.prediction = unet, reference.schedule, reference.cfg.prediction

    def denoise(self, x, t, y=None):
        return self.unet(x, t).sample

    def loss(self, batch):
        from ..diffusion import gaussian

        return gaussian.diffusion_loss(self.schedule, self.denoise, batch["x"], prediction=self.prediction), {}


def diffusers_unet(reference, width: int):
    """A UNet2DModel with the reference U-Net's layout at base width `width`.

    Same levels, residual blocks, single-head attention resolutions and scale-shift
    time embedding (AdaGN) as genlab.nn.unet; one GroupNorm group count throughout.
    """
    from diffusers import UNet2DModel

    c = reference.cfg
    groups = math.gcd(reference.net.out[0].num_groups, width)  # GroupNorm groups at full resolution, as genlab
    res = [c.image_size // 2 ** i for i in range(len(c.channel_mult))]
    attn = [r in tuple(c.attn_resolutions) for r in res]
    return UNet2DModel(
        sample_size=c.image_size, in_channels=c.channels, out_channels=c.channels,
        layers_per_block=c.num_res_blocks, block_out_channels=tuple(width * m for m in c.channel_mult),
        down_block_types=tuple("AttnDownBlock2D" if a else "DownBlock2D" for a in attn),
        up_block_types=tuple("AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attn)),
        norm_num_groups=groups, attention_head_dim=None, resnet_time_scale_shift="scale_shift")


def diffusers_model(reference):
    """diffusers at the base width whose parameter count is closest to the reference's.

    Returns the model, or None when diffusers is not installed.
    """
    try:
        import diffusers  # noqa: F401
    except ImportError:
        return None
    target, best = n_params(reference), None
    base = reference.cfg.base_width
    for w in sorted({max(4, base + d) for d in range(-16, 17, 4)}):
        with torch.device("meta"):  # counting parameters needs no memory
            count = n_params(diffusers_unet(reference, w))
        if best is None or abs(count - target) < abs(best[1] - target):
            best = (w, count)
    torch.manual_seed(0)
    return DiffusersDiffusion(diffusers_unet(reference, best[0]), reference)


# ---------------------------------------------------------------- one training step

def synthetic_images(n: int, channels: int, size: int, seed: int = 0) -> TensorDataset:
    """Random uint8 images: speed does not depend on what the pixels show."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, channels, size, size), generator=g, dtype=torch.uint8)
    return TensorDataset("synthetic", "image", {"x": x})


class TrainStep:
    """One optimisation step as genlab.train.loop runs it, callable again and again.

    Built from the loop's own parts for the same TrainConfig: the family's
    train_step through StepContext (bf16 autocast, AdamW per declared optimizer,
    global-norm clipping), channels_last, EMA, torch.compile (train.loop.wrap);
    batches come from the BatchLoader over in-memory uint8 images. The learning-rate
    schedule is left out (it costs nothing). No host sync inside.
    """

    def __init__(self, model, data: TensorDataset, cfg: TrainConfig, device: torch.device):
        self.device, self.cfg = device, cfg
        self.bf16 = use_bf16(cfg.precision, device)
        self.channels_last = use_channels_last(cfg.channels_last, device)
        self.model = model.to(device, memory_format=torch.channels_last) if self.channels_last else model.to(device)
        self.model.train()
        self.optimizers, params = build_optimizers(model.optimizers(), cfg, device)
        self.fused = all(o.defaults.get("fused") for o in self.optimizers.values())
        self.ema = EMA(model, cfg.ema_decay, cfg.ema_warmup, model.ema_networks) if cfg.ema_decay > 0 else None
        self.ctx = StepContext(wrap(model, cfg, device, world=1), self.optimizers, params, cfg, device, self.bf16,
                               sync_grads=False)
        self.loader = BatchLoader(data, cfg.batch_size, seed=cfg.seed, device=device)
        self.batches, self.epoch, self.step = iter(self.loader), 0, 0
        self.acc = Accumulator()

    def describe(self) -> str:
        opt = "fused" if self.fused else "foreach"
        parts = ["bf16 autocast" if self.bf16 else "fp32",
                 "channels_last" if self.channels_last else "NCHW", f"{opt} AdamW"]
        return ", ".join(parts + (["torch.compile"] if self.cfg.compile else []))

    def next_batch(self) -> dict:
        try:
            return next(self.batches)
        except StopIteration:
            self.epoch += 1
            self.loader.set_epoch(self.epoch)
            self.batches = iter(self.loader)
            return next(self.batches)

    def __call__(self) -> None:
        batch = self.next_batch()
        if self.channels_last:
            batch["x"] = batch["x"].contiguous(memory_format=torch.channels_last)
        self.acc.add(self.model.train_step(batch, self.step, self.ctx))  # the loop's step, its logging without a read
        if self.ema is not None:
            self.ema.update(self.model)
        self.step += 1


def step_flops(model, data: TensorDataset, device: torch.device, batch_size: int) -> float:
    """FLOPs of one training step (forward + backward) per image, counted at a small batch.

    Convolutions and matmuls scale linearly with the batch, so counting 8 images is exact
    and costs little. Counted in fp32 eager; the count does not depend on the dtype.
    """
    from torch.utils.flop_counter import FlopCounterMode

    n = min(batch_size, 8)
    batch = {k: v.to(device) for k, v in data.batch(torch.arange(n)).items()}
    model.to(device).train()
    with FlopCounterMode(display=False) as counter:
        loss, _ = model(batch)
        loss.backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / n


@dataclass
class StepBench:
    """One row of the training table: a model under one TrainConfig."""
    model_name: str
    label: str
    make: object                    # () -> TrainStep (built lazily, in the order of the table)
    params: int
    flops: float                    # per image, one step
    step: TrainStep | None = None
    seconds: float = math.inf       # best seconds per step
    first_step: float = 0.0         # seconds of the first step (compile time when compiling)
    error: str = ""


def time_paths(paths: list[StepBench], cfg: SpeedConfig, device: torch.device, log=print) -> None:
    for p in paths:
        try:
            p.step = p.make()
            p.first_step = timed(p.step, device)
            for _ in range(cfg.warmup - 1):
                p.step()
            sync(device)
        except Exception as e:  # a path that cannot run here (e.g. compile without a compiler) is reported, not fatal
            p.error = f"{type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''}"
            log(f"  {p.model_name} [{p.label}]: failed: {p.error}")
    for r in range(cfg.repeats):
        for p in paths:
            if p.step is not None and not p.error:
                p.seconds = min(p.seconds, timed(p.step, device, cfg.steps))
        log(f"  repeat {r + 1}/{cfg.repeats} done (load {load_average()})")


# ---------------------------------------------------------------- the whole benchmark

def run_speed(cfg: SpeedConfig, log=print) -> dict:
    """Run the speed benchmark; returns the numbers and the markdown section."""
    check_speed_config(cfg)
    device = pick_device(cfg.device)
    batch = cfg.batch_size or (128 if device.type == "cpu" else 512)
    load_before = load_average()
    log(f"genlab bench on {machine_info(device)}; load average {load_before}")
    fast_cfg = TrainConfig(batch_size=batch, device=str(device), progress=False)
    fp32_cfg = replace(fast_cfg, precision="fp32", channels_last="off", compile=False)
    bf16_ok = hardware_bf16(device)  # bf16 peak and sampling rows wherever the units exist, whatever auto picks

    log("peak matmul ...")
    n = cfg.peak_size or (2048 if device.type == "cpu" else 8192)
    peak = {"fp32": matmul_peak(device, torch.float32, n)}
    if bf16_ok:
        peak["bf16"] = matmul_peak(device, torch.bfloat16, n)

    steps_needed = cfg.warmup + cfg.steps * cfg.repeats + 2
    data = synthetic_images(max(batch * min(steps_needed, 16), 4 * batch), cfg.channels, cfg.image_size)

    reference = genlab_model(cfg)
    g_params = n_params(reference)
    g_flops = step_flops(genlab_model(cfg), data, device, batch)

    def genlab_path(label, tcfg):
        def make():
            torch.manual_seed(0)
            return TrainStep(genlab_model(cfg), data, tcfg, device)
        return StepBench("genlab U-Net", label, make, g_params, g_flops)

    paths = [genlab_path("fp32 eager", fp32_cfg), genlab_path("fast path (loop default)", fast_cfg)]
    if cfg.ablation:
        flipped = "off" if use_channels_last("auto", device) else "on"
        paths.append(genlab_path(f"fast path, channels_last {flipped}", replace(fast_cfg, channels_last=flipped)))
    if cfg.compile:
        paths.append(genlab_path("fast path + torch.compile", replace(fast_cfg, compile=True)))

    diffusers_note = ""
    if cfg.diffusers:
        dm = diffusers_model(reference)
        if dm is None:
            diffusers_note = SKIP_DIFFUSERS
            log(diffusers_note)
        else:
            d_params = n_params(dm)
            d_flops = step_flops(dm, data, device, batch)
            width = dm.unet.config.block_out_channels[0]
            diffusers_note = (f"diffusers.UNet2DModel: block_out_channels {tuple(dm.unet.config.block_out_channels)}, "
                              f"layers_per_block {dm.unet.config.layers_per_block}, attention where the genlab U-Net "
                              f"has it, {d_params / 1e6:.3f} M parameters vs genlab's {g_params / 1e6:.3f} M; "
                              "same DDPM loss, batch, optimizer step and EMA")

            def diffusers_path(label, tcfg):
                def make():
                    torch.manual_seed(0)
                    return TrainStep(DiffusersDiffusion(diffusers_unet(reference, width), reference), data, tcfg, device)
                return StepBench("diffusers UNet2DModel", label, make, d_params, d_flops)

            paths += [diffusers_path("fp32 eager", fp32_cfg), diffusers_path("fast path (loop default)", fast_cfg)]

    log(f"training steps: batch {batch}, {len(paths)} paths, {cfg.repeats} x {cfg.steps} timed steps each ...")
    time_paths(paths, cfg, device, log)
    fast_desc = paths[1].step.describe() if paths[1].step else ""

    loop_ips = loop_images_per_second(cfg, data, fast_cfg, device) if cfg.loop_steps else None
    data_ips = data_images_per_second(data, batch, device)

    log("sampling ...")
    sampling = sampling_rows(cfg, device, bf16_ok, log)
    load_after = load_average()

    result = dict(device=str(device), machine=machine_info(device), batch=batch, peak=peak, paths=paths,
                  fast_desc=fast_desc, loop_ips=loop_ips, data_ips=data_ips, sampling=sampling,
                  diffusers_note=diffusers_note, load=(load_before, load_after), peak_size=n, cfg=cfg)
    result["markdown"] = speed_markdown(result)
    return result


def loop_images_per_second(cfg: SpeedConfig, data: TensorDataset, fast_cfg: TrainConfig,
                           device: torch.device) -> float | None:
    """images/s of the real genlab.train.train, from its log rows (after the first row: no warm-up)."""
    from ..train import train

    log_every = max(1, cfg.loop_steps // 4)
    tcfg = replace(fast_cfg, max_steps=cfg.loop_steps, log_every=log_every, epochs=10_000, warmup_steps=1)
    torch.manual_seed(0)
    result = train(genlab_model(cfg), data, tcfg)
    rows = [(int(r["step"]), float(r["seconds"])) for r in result.history]  # the log stores text
    if len(rows) < 2 or rows[-1][1] <= rows[0][1]:
        return None
    return (rows[-1][0] - rows[0][0]) * fast_cfg.batch_size / (rows[-1][1] - rows[0][1])


def data_images_per_second(data: TensorDataset, batch: int, device: torch.device, repeats: int = 3) -> float:
    """images/s of the BatchLoader alone: gather, uint8 -> [-1, 1], copy to the device."""
    loader = BatchLoader(data, batch, device=device)

    def epoch():
        for b in loader:
            b["x"].sum()  # make sure the batch is really there (and on the device)

    best = min(timed(epoch, device) for _ in range(repeats))
    return len(loader) * batch / best


def sampling_rows(cfg: SpeedConfig, device: torch.device, bf16_ok: bool, log=print) -> list[dict]:
    model = genlab_model(cfg, timesteps=cfg.sample_timesteps).to(device).eval()
    samplers = [("ddpm", cfg.sample_timesteps), ("ddim", min(cfg.ddim_steps, cfg.sample_timesteps))]
    rows = []
    for name, steps in samplers:
        for precision in cfg.sample_precisions:
            if precision == "bf16" and not bf16_ok:
                continue
            g = torch.Generator().manual_seed(0)

            def run():  # the network in bf16 autocast as asked, whatever the precision table picks here
                with autocast(device, precision == "bf16"):
                    model.sample(cfg.sample_n, generator=g, sampler=name, steps=steps)
            seconds = timed(run, device)
            rows.append(dict(sampler=name, steps=steps, precision=precision, n=cfg.sample_n, seconds=seconds))
            log(f"  {name}-{steps} {precision}: {seconds:.2f} s")
    return rows


# ---------------------------------------------------------------- report

def targets(result: dict) -> list[str]:
    """The issue's targets, each with its measured value."""
    paths = [p for p in result["paths"] if not p.error and math.isfinite(p.seconds)]
    get = {(p.model_name, p.label): p for p in paths}
    g32, gfast = get.get(("genlab U-Net", "fp32 eager")), get.get(("genlab U-Net", "fast path (loop default)"))
    d32 = get.get(("diffusers UNet2DModel", "fp32 eager"))
    dfast = get.get(("diffusers UNet2DModel", "fast path (loop default)"))
    out = []

    def check(name, value, goal):
        out.append(f"- {name}: {value:.2f}x (target >= {goal}x) {'met' if value >= goal else 'NOT met'}")

    if g32 and gfast:
        check("fast path vs fp32 eager (genlab U-Net)", g32.seconds / gfast.seconds, 1.5)
    # genlab vs diffusers only on the same path (same precision, memory format, optimizer): like with like
    if g32 and d32:
        out.append(f"- genlab vs diffusers UNet2DModel, both fp32 eager: {d32.seconds / g32.seconds:.2f}x")
    if gfast and dfast:
        check(f"genlab vs diffusers UNet2DModel, both on the fast path ({gfast.step.describe()})",
              dfast.seconds / gfast.seconds, 1.5)
    if gfast and "bf16" in result["peak"] and gfast.step.bf16:
        mfu = gfast.flops * result["batch"] / gfast.seconds / result["peak"]["bf16"]
        goal = 0.6 if result["device"].startswith("cpu") else 0.4
        out.append(f"- fast path MFU: {100 * mfu:.0f}% of the measured bf16 matmul peak (target >= {100 * goal:.0f}%) "
                   f"{'met' if mfu >= goal else 'NOT met'}")
    return out


def speed_markdown(result: dict) -> str:
    b, peak = result["batch"], result["peak"]
    lines = ["## Speed", "",
             f"`{result['cfg'].command}` on {result['machine']}; "
             f"load average (1, 5, 15 min) {result['load'][0]} before, {result['load'][1]} after.", "",
             "### Peak matmul", "",
             md_table(["dtype", "size", "TFLOP/s"],
                      [[k, f"{result['peak_size']}^3", num(v / 1e12)] for k, v in peak.items()]),
             "", f"### Training step, batch {b}", ""]
    rows, fp32_eager = [], {}
    for p in result["paths"]:
        if p.label == "fp32 eager" and math.isfinite(p.seconds):
            fp32_eager[p.model_name] = p.seconds
    for p in result["paths"]:
        if p.error or not math.isfinite(p.seconds):
            rows.append([p.model_name, p.label, f"{p.params / 1e6:.3f}M", "failed: " + p.error] + ["-"] * 6)
            continue
        ips = b / p.seconds
        achieved = p.flops * ips
        prec = "bf16" if p.step.bf16 else "fp32"
        mfu = achieved / peak[prec] if prec in peak else math.nan
        speedup = fp32_eager.get(p.model_name, math.nan) / p.seconds
        rows.append([p.model_name, f"{p.label}: {p.step.describe()}", f"{p.params / 1e6:.3f}M", f"{ips:.1f}",
                     f"{1000 * p.seconds:.0f}", f"{p.flops / 1e9:.3f}", f"{achieved / 1e12:.3g}",
                     f"{100 * mfu:.0f}% ({prec})", f"{speedup:.2f}x", f"{p.first_step:.1f}"])
    lines.append(md_table(["model", "path", "params", "img/s", "ms/step", "GFLOP/img", "TFLOP/s",
                           "of peak", "vs fp32 eager", "first step s"], rows))
    if result["diffusers_note"]:
        lines += ["", result["diffusers_note"]]
    fast = next((p for p in result["paths"] if p.label.startswith("fast path (") and p.model_name == "genlab U-Net"), None)
    extra = []
    if result["loop_ips"]:
        extra.append(f"- real loop (`genlab.train.train`, fast path, incl. LR schedule, logging): "
                     f"{result['loop_ips']:.1f} img/s")
    if fast and math.isfinite(fast.seconds):
        ratio = result["data_ips"] / (b / fast.seconds)
        extra.append(f"- data pipeline alone (BatchLoader: gather uint8, to [-1, 1], to device): "
                     f"{result['data_ips']:.0f} img/s = {ratio:.0f}x what the fast path consumes")
    if extra:
        lines += ["", *extra]
    if result["sampling"]:
        lines += ["", f"### Sampling, genlab U-Net, {result['sampling'][0]['n']} images", "",
                  md_table(["sampler", "network calls", "precision", "seconds", "img/s"],
                           [[r["sampler"], str(r["steps"]), r["precision"], f"{r['seconds']:.2f}",
                             f"{r['n'] / r['seconds']:.2f}"] for r in result["sampling"]])]
    checks = targets(result)
    if checks:
        lines += ["", "### Targets", "", *checks]
    return "\n".join(lines) + "\n"


def check_speed_config(cfg: SpeedConfig) -> None:
    for name in ("warmup", "steps", "repeats", "sample_n", "sample_timesteps"):
        if getattr(cfg, name) < 1:
            raise GenlabError(f"bench: {name.replace('_', '-')} must be at least 1, got {getattr(cfg, name)}")
    if cfg.batch_size < 0:
        raise GenlabError(f"--batch-size must be positive (or 0 for the device default), got {cfg.batch_size}")

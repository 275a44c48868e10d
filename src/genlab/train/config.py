"""The training loop's settings: one dataclass, every field a CLI flag."""

from dataclasses import dataclass


@dataclass
class TrainConfig:
    epochs: int = 20
    batch_size: int = 128
    lr: float = 2e-4
    weight_decay: float = 0.0
    warmup_steps: int = 200         # linear LR warm-up from 0
    lr_schedule: str = "constant"   # constant | cosine (decay to 10% over the run)
    grad_clip: float = 1.0          # max global grad norm (0: off)
    ema_decay: float = 0.999        # 0: no EMA
    ema_warmup: bool = True         # decay ramps as (1+n)/(10+n): short runs still get a useful EMA
    max_minutes: float = 0.0        # time budget (0: none); stops cleanly with checkpoint + samples
    max_steps: int = 0              # step budget (0: none)
    precision: str = "auto"         # auto | bf16 | fp32 (auto: what genlab/precision.json measured faster here)
    channels_last: str = "auto"     # auto | on | off (auto: as genlab/precision.json measured, else off)
    compile: bool = False           # torch.compile the loss (measure before turning on)
    grad_checkpoint: bool = False   # recompute U-Net block activations in backward: less memory, more time
    device: str = "auto"            # auto | cpu | cuda | mps
    seed: int = 0
    sample_every: int = 1           # save a sample grid every N epochs (0: only at the end)
    num_samples: int = 64           # images in each sample grid (0: no grids)
    log_every: int = 25             # steps between loss syncs / log rows
    hflip: bool = False             # horizontal-flip augmentation
    checkpoint_every: int = 1       # epochs between checkpoints
    progress: bool = True           # show a progress bar

"""`genlab inpaint`: fill in masked pixels with a trained diffusion model (RePaint / replacement)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from ..data.base import to_float_image
from ..errors import GenlabError
from .common import add_data_flags, generator, output_path, positive


def add_parser(sub) -> None:
    p = sub.add_parser("inpaint", help="fill in the masked part of images with a diffusion model (RePaint)",
                       description="Known pixels are kept; the rest is generated (Lugmayr et al. 2022).")
    p.add_argument("--checkpoint", required=True, help="run folder written by `genlab train diffusion`")
    p.add_argument("--mask", default="center",
                   help="region to fill: left | right | top | bottom (halves), center, box (random square), random "
                        "(pixels), or a PNG file (white = known, black = fill in); default: center")
    p.add_argument("--mask-ratio", type=float, default=0.5, help="fraction of pixels missing for --mask random")
    p.add_argument("--images", nargs="+", default=None,
                   help="image files to inpaint (default: test images of the checkpoint's dataset)")
    add_data_flags(p, "the checkpoint's")
    p.add_argument("--num-images", type=positive(), default=8, help="dataset images to inpaint")
    p.add_argument("--samples", type=positive(), default=2, help="inpaintings per image (rows of the panel)")
    p.add_argument("--steps", type=positive(), default=None, help="reverse steps (default: all T)")
    p.add_argument("--resample", type=positive(), default=5, help="RePaint resampling rounds r (1 = replacement)")
    p.add_argument("--eta", type=float, default=1.0, help="noise per step (1 = ancestral, 0 = deterministic)")
    p.add_argument("--class", dest="label", type=int, default=None, help="class to fill in with (conditional models)")
    p.add_argument("--guidance", type=float, default=1.0, help="classifier-free guidance scale (with --class)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--gif", action="store_true", help="also save a GIF of the reverse process")
    p.add_argument("--out", default=None, help="output folder (default: <checkpoint>/inpainting)")
    p.set_defaults(func=run)


def read_images(paths: list[str], channels: int, size: int) -> torch.Tensor:
    """Image files -> float N,C,H,W in [-1, 1] at the model's size and channels."""
    out = []
    for path in paths:
        try:
            with Image.open(path) as im:
                im = im.convert("L" if channels == 1 else "RGB").resize((size, size), Image.BICUBIC)
                arr = np.asarray(im, dtype=np.uint8)
        except OSError as e:
            raise GenlabError(f"could not read image {path}: {e}") from e
        arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
        out.append(torch.from_numpy(arr.copy()))
    return to_float_image(torch.stack(out))


def run(args) -> int:
    from ..diffusion.inpaint import load_mask
    from ..train.checkpoint import sampling_model
    from ..device import pick_device
    from ..viz.grid import save_gif, save_grid
    from ..figures.samplers import inpaint_images, inpainting_panel
    from .visualize_samplers import checkpoint_images

    device = pick_device(args.device)
    model, config = sampling_model(args.checkpoint, device, family="diffusion")
    c, s = model.cfg.channels, model.cfg.image_size
    if args.images:
        x0 = read_images(args.images, c, s)
    else:
        x0, _ = checkpoint_images(args, config, args.num_images, args.seed)
        if x0.shape[1:] != (c, s, s):
            raise GenlabError(f"the dataset's images are {tuple(x0.shape[1:])} but the model makes {(c, s, s)}; "
                              "pass --image-size / --channels to match")
    n = len(x0)
    mask = load_mask(args.mask, n, s, torch.Generator().manual_seed(args.seed), args.mask_ratio)
    y = torch.full((n,), args.label, dtype=torch.long) if args.label is not None else None
    if y is None and args.guidance != 1.0 and model.is_conditional:  # the model says "pass labels y"
        raise GenlabError("--guidance needs the class to generate: pass --class")
    out = output_path(args.out, args.checkpoint, "inpainting", folder=True)
    g = generator(args.seed)
    steps = args.steps or model.schedule.T
    results, frames = [], None
    # delay: a bad option raises before the bar is drawn, so the error stays one line
    with tqdm(total=args.samples * steps * args.resample, unit="call", desc="inpainting", delay=0.5) as bar:
        for i in range(args.samples):
            r = inpaint_images(model, x0, mask, args.steps, args.resample, args.eta, y, args.guidance, g,
                               return_intermediates=40 if (args.gif and i == 0) else 0, progress=bar.update)
            if isinstance(r, tuple):
                r, frames = r
            results.append(r.cpu())
    hole = (1 - mask).expand_as(x0)
    for i, r in enumerate(results):
        known_err = float(((r - x0).abs() * (1 - hole)).max())
        hole_mse = float(((r - x0) ** 2 * hole).sum() / hole.sum().clamp(min=1))
        print(f"sample {i + 1}: MSE to the original in the hole {hole_mse:.4f}; known pixels changed by at most "
              f"{known_err:.2g}")
    title = f"mask '{Path(args.mask).name}', {steps} steps, r = {args.resample}, eta = {args.eta:g}"
    print(f"wrote {inpainting_panel(x0, mask, results, out / 'inpainting.png', title=title)}")
    print(f"wrote {save_grid(torch.cat(results), out / 'inpainted.png', nrow=n)}")
    if frames:
        print(f"wrote {save_gif([f[:16].cpu() for f in frames], out / 'inpainting.gif')}")
    return 0

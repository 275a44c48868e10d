"""`genlab colorize`: colour a grey picture with a trained colorize checkpoint.

    genlab colorize --checkpoint runs/colorize-cifar10 --image old_photo.png --out coloured.png

A colour picture is first turned grey (ITU-R BT.601 luma, what the model was trained on) and
the command says so. A picture of another size is colourised at the model's size and the
colours brought back onto the picture's own lightness at its full size
(Colorizer.colorize_any_size); the command says that too. Nothing is overwritten without
--overwrite.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ..color import rgb_to_gray
from ..errors import GenlabError
from ..pixels import to_float_image, to_uint8_image


def add_parser(sub) -> None:
    p = sub.add_parser("colorize", help="colour a grey image with a trained colorize checkpoint",
                       description="Colourise a grey (or colour, made grey first) image of any size.")
    p.add_argument("--checkpoint", required=True, help="run folder written by `genlab train colorize`")
    p.add_argument("--image", required=True, help="the picture to colourise (PNG, JPEG, ...)")
    p.add_argument("--out", required=True, help="where to write the colourised picture (PNG, JPEG, ...)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=run)


def _flatten_alpha(im: Image.Image) -> Image.Image:
    """Transparent pixels over white (as the emoji data are), so hidden colours do not show."""
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return im


def read_gray(path: str | Path) -> tuple[torch.Tensor, bool]:
    """An image file -> (grey image (1,1,H,W) in [-1, 1], whether it had colour)."""
    try:
        with Image.open(path) as im:
            im.load()
            im = _flatten_alpha(im)
            if im.mode.startswith("I"):   # 16/32-bit grey: scale to 8 bits instead of clipping at 255
                arr = np.asarray(im, dtype=np.float64)
                arr = (arr * (255 / max(arr.max(), 255.0))).round().astype(np.uint8)
                im = Image.fromarray(arr, mode="L")
            rgb = np.asarray(im.convert("RGB"), dtype=np.uint8)
    except FileNotFoundError as e:
        raise GenlabError(f"--image {path} does not exist") from e
    except (UnidentifiedImageError, OSError) as e:
        raise GenlabError(f"--image {path} is not an image genlab can read ({e}); pass a PNG or JPEG file") from e
    x = to_float_image(torch.from_numpy(rgb.copy()).permute(2, 0, 1)[None])
    coloured = bool((rgb != rgb[..., :1]).any())
    return rgb_to_gray(x), coloured


def check_out(out: Path, overwrite: bool) -> None:
    """Before any work: --out names a new image file (or --overwrite) in a folder that exists."""
    if out.is_dir():
        raise GenlabError(f"--out {out} is a folder; pass a file name such as {out / 'colorized.png'}")
    if out.suffix.lower() not in Image.registered_extensions():
        raise GenlabError(f"--out {out}: cannot tell an image format from its name; end it in .png or .jpg")
    if out.exists() and not overwrite:
        raise GenlabError(f"--out {out} exists; pass --overwrite to replace it or choose another --out")
    if not out.parent.exists():
        raise GenlabError(f"--out {out}: the folder {out.parent} does not exist; create it or choose another --out")


def run(args) -> int:
    from ..device import pick_device
    from ..train.checkpoint import sampling_model

    out = Path(args.out)
    check_out(out, args.overwrite)
    device = pick_device(args.device)
    model, _ = sampling_model(args.checkpoint, device, family="colorize")
    gray, coloured = read_gray(args.image)
    if coloured:
        print(f"{args.image} is a colour image: made grey first (ITU-R BT.601 luma, as in training)")
    h, w, s = gray.shape[-2], gray.shape[-1], model.cfg.image_size
    if (h, w) != (s, s):
        print(f"{w}x{h} image, {s}x{s} model: colourised at {s}x{s}, then the colours (a*, b*) resized back to "
              f"{w}x{h} and put on the image's own lightness (details stay sharp, colours are coarse)")
    rgb = model.colorize_any_size(gray.to(device))
    Image.fromarray(to_uint8_image(rgb[0].cpu()).permute(1, 2, 0).numpy()).save(out)
    print(f"wrote {out}")
    return 0

"""The colorize family: the course network's exact shapes, the PatchGAN's receptive field (computed from a
gradient), tiny colourisers that must learn an invertible colour map, the adversarial step, the panel, and
`genlab colorize` end to end with its bad inputs."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from genlab.cli.main import main
from genlab.data.base import TensorDataset
from genlab.errors import GenlabError
from genlab.models import build_model
from genlab.nn.patchgan import PatchGAN, layers_for, receptive_field
from genlab.pixels import to_float_image, to_uint8_image
from genlab.train import TrainConfig, train
from genlab.train.checkpoint import load_checkpoint, save_checkpoint


def cfg(**kw):
    base = dict(epochs=10, batch_size=32, lr=3e-3, warmup_steps=0, device="cpu", progress=False, precision="fp32",
                sample_every=0, num_samples=0, ema_decay=0, grad_clip=0, log_every=16)
    return TrainConfig(**{**base, **kw})


# ---- the course network ----------------------------------------------------------------------------------
def test_course_network_is_exactly_the_course_encoder_decoder():
    net = build_model("colorize", {}).net
    layers = list(net)
    convs = [m for m in layers if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    want = [(nn.Conv2d, 1, 32), (nn.Conv2d, 32, 64), (nn.ConvTranspose2d, 64, 32), (nn.ConvTranspose2d, 32, 3)]
    assert [(type(m), m.in_channels, m.out_channels) for m in convs] == want
    assert all(m.kernel_size == (3, 3) and m.stride == (2, 2) for m in convs)
    assert [type(m) for m in layers] == [nn.Conv2d, nn.ReLU, nn.Conv2d, nn.ReLU, nn.ConvTranspose2d, nn.ReLU,
                                         nn.ConvTranspose2d, nn.Tanh]
    sizes = []
    hooks = [m.register_forward_hook(lambda m, i, o: sizes.append(tuple(o.shape[1:]))) for m in layers]
    out = net(torch.zeros(2, 1, 32, 32))
    for h in hooks:
        h.remove()
    assert [s for s, m in zip(sizes, layers) if m in convs] == [(32, 16, 16), (64, 8, 8), (32, 16, 16), (3, 32, 32)]
    assert out.shape == (2, 3, 32, 32)
    n_params = sum(p.numel() for p in net.parameters())
    assert n_params == (1 * 32 * 9 + 32) + (32 * 64 * 9 + 64) + (64 * 32 * 9 + 32) + (32 * 3 * 9 + 3)


# ---- the PatchGAN ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("n_layers", [1, 2, 3])
def test_patchgan_receptive_field_is_the_support_of_one_output_pixels_gradient(n_layers):
    torch.manual_seed(0)
    d = PatchGAN(2, width=4, n_layers=n_layers).double().eval()  # eval: batch norm is a per-pixel affine map
    size = 96
    x = torch.randn(1, 2, size, size, dtype=torch.float64, requires_grad=True)
    out = d(x)
    i, j = out.shape[-2] // 2, out.shape[-1] // 2
    out[0, 0, i, j].backward()
    rows = torch.nonzero(x.grad.abs().sum((0, 1, 3))).flatten()
    cols = torch.nonzero(x.grad.abs().sum((0, 1, 2))).flatten()
    assert 0 < rows.min() and rows.max() < size - 1  # the window lies inside the image: not cut by padding
    side = int(rows.max() - rows.min() + 1)
    assert side == int(cols.max() - cols.min() + 1) == d.receptive_field() == receptive_field(n_layers)
    if n_layers == 3:
        assert side == 70  # Pix2Pix's "70x70 PatchGAN"


def test_patchgan_is_sized_to_the_image():
    assert layers_for(256) == 3 and receptive_field(3) == 70      # Pix2Pix at 256 px
    assert layers_for(32) == 1 and receptive_field(1) == 16       # CIFAR-10: 16 px patches
    model = build_model("colorize", dict(arch="unet", space="lab", adversarial=0.01, d_width=4))
    assert model.discriminator.n_layers == 1 and model.discriminator.net[0].in_channels == 3  # L* + a*, b*
    assert model.discriminator(torch.zeros(2, 3, 32, 32)).shape == (2, 1, 14, 14)


# ---- learning --------------------------------------------------------------------------------------------
def colour_map(v):
    """v in [0, 1] -> RGB in [0, 1] whose BT.601 luma rises strictly with v: grey -> colour is invertible."""
    return torch.cat([v, v * v, v.sqrt()], dim=1)


def smooth_images(n, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    v = F.interpolate(torch.rand(n, 1, 4, 4, generator=g), size=(size, size), mode="bilinear", align_corners=False)
    return to_uint8_image(colour_map(v) * 2 - 1)


@pytest.mark.parametrize("model_cfg", [dict(), dict(arch="unet", space="lab", loss="l1", width=8, depth=1)],
                         ids=["course-rgb-mse", "unet-lab-l1"])
def test_a_tiny_colorizer_learns_an_invertible_colour_map(model_cfg):
    torch.manual_seed(0)
    data = TensorDataset("colour-map", "image", {"x": smooth_images(512)})
    model = train(build_model("colorize", dict(image_size=16, **model_cfg)), data, cfg()).model.eval()
    x = to_float_image(smooth_images(128, seed=1))  # held-out images
    err = (model.reconstruct(x) - x).pow(2).mean().item()
    grey = (model.gray(x).expand_as(x) - x).pow(2).mean().item()  # adding no colour: ~0.15
    assert err < 0.01 < grey / 10, (err, grey)


def test_adversarial_variant_trains_two_networks_and_without_it_is_a_plain_family(tmp_path):
    plain = build_model("colorize", dict(arch="unet", space="lab", width=4, depth=1))
    assert plain.discriminator is None and not plain.custom_step and list(plain.optimizers()) == ["model"]
    data = TensorDataset("colour-map", "image", {"x": smooth_images(32)})
    model = build_model("colorize", dict(image_size=16, arch="unet", space="lab", width=4, depth=1,
                                         adversarial=0.1, gan_loss="lsgan", d_width=4))
    result = train(model, data, cfg(epochs=1, batch_size=8, log_every=1, ema_decay=0.5), tmp_path)
    assert {"loss", "recon", "g_adv", "d_loss", "lr_discriminator", "lr_generator"} <= set(result.history[-1])
    _, _, _, state = load_checkpoint(tmp_path, with_state=True)
    steps = {k: int(o["state"][0]["step"]) for k, o in state["optimizers"].items()}
    assert steps == {"discriminator": 4, "generator": 4}
    assert not torch.equal(result.ema.net.out[0].weight, model.net.out[0].weight)          # averaged
    assert torch.equal(result.ema.discriminator.net[0].weight, model.discriminator.net[0].weight)  # follows


def test_panel_names_the_desaturated_average_only_when_measured(tmp_path):
    from genlab.figures.colorize import colorize_panel, diagnosis

    x = to_float_image(smooth_images(4, size=32))
    grey = x.mean(1, keepdim=True).expand_as(x)
    brownish = grey * 0.8 + torch.tensor([0.12, 0.0, -0.15]).view(1, 3, 1, 1)  # a weak orange-brown tint
    assert diagnosis(x, x, "mse").startswith("colourfulness")                   # as colourful as the real ones
    line = diagnosis(brownish, x, "mse")
    assert line.startswith("desaturated") and "MSE" in line and "brown" in line
    assert "brown" not in diagnosis(grey * 0.8 + torch.tensor([-0.1, 0.0, 0.1]).view(1, 3, 1, 1), x)  # a blue cast
    model = build_model("colorize", {}).eval()
    path, numbers = colorize_panel(model, x, tmp_path / "panel.png")
    assert Image.open(path).size[1] > 4 * 64 and numbers["psnr"].shape == (4,)


# ---- the command line ------------------------------------------------------------------------------------
def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("colorize") / "run"
    assert main(["train", "colorize", "--dataset", "shapes", "--subset", "64", "--image-size", "16", "--epochs", "1",
                 "--out", str(run), "--no-progress"]) == 0
    return run


def test_train_then_colorize_an_image_of_any_size(tiny_run, tmp_path, capsys):
    assert (tiny_run / "colorize_panel.png").exists()
    config = json.loads((tiny_run / "config.json").read_text())
    assert config["train"]["lr"] == 1e-3 and config["train"]["weight_decay"] == 0
    assert config["model"]["arch"] == "course"
    src = tmp_path / "photo.png"
    Image.fromarray((np.random.default_rng(0).random((20, 28, 3)) * 255).astype(np.uint8)).save(src)
    code, out, _ = run_cli(capsys, "colorize", "--checkpoint", tiny_run, "--image", src, "--out", tmp_path / "c.png")
    assert code == 0 and "made grey first" in out and "28x20 image, 16x16 model" in out
    with Image.open(tmp_path / "c.png") as im:
        assert im.size == (28, 20) and im.mode == "RGB"
        coloured = np.asarray(im, dtype=np.float64)
    # the output keeps the input's lightness: its L* is the grey input's
    from genlab.color import rgb_to_gray, rgb_to_lab

    grey = rgb_to_gray(to_float_image(torch.from_numpy(np.array(Image.open(src))).permute(2, 0, 1)[None].contiguous()))
    l_in = rgb_to_lab((grey.expand(-1, 3, -1, -1) + 1) / 2)[:, 0]
    l_out = rgb_to_lab(torch.from_numpy(coloured).permute(2, 0, 1)[None] / 255)[:, 0]
    assert (l_in - l_out).abs().mean() < 3.0  # out-of-gamut colours are clipped, 8-bit rounding: a few L* units
    code, _, err = run_cli(capsys, "colorize", "--checkpoint", tiny_run, "--image", src, "--out", tmp_path / "c.png")
    assert code == 2 and "exists; pass --overwrite" in err and err.count("\n") == 1
    grey_png = tmp_path / "grey.png"
    Image.fromarray(np.full((16, 16), 128, np.uint8)).save(grey_png)
    code, out, _ = run_cli(capsys, "colorize", "--checkpoint", tiny_run, "--image", grey_png,
                           "--out", tmp_path / "c.png", "--overwrite")
    assert code == 0 and "made grey" not in out and "model:" not in out
    code, out, _ = run_cli(capsys, "eval", tiny_run, "--n", "16", "--metrics", "model")  # the family's metrics
    assert code == 0 and all(k in out for k in ("psnr", "ssim", "colourfulness_real", "psnr_gray"))


def test_bad_inputs_are_one_line_each(tiny_run, tmp_path, capsys):
    not_image = tmp_path / "notes.png"
    not_image.write_text("not an image")
    ae_run = save_checkpoint(tmp_path / "ae", build_model("ae", dict(channels=3, image_size=16, hidden=8, width=4)))
    out = tmp_path / "o.png"
    cases = [
        (["colorize", "--checkpoint", tiny_run, "--image", not_image, "--out", out], "is not an image genlab can read"),
        (["colorize", "--checkpoint", tiny_run, "--image", tmp_path / "none.png", "--out", out], "does not exist"),
        (["colorize", "--checkpoint", ae_run, "--image", not_image, "--out", out], "holds a 'ae' model, but this "
                                                                                 "command needs a colorize model"),
        (["colorize", "--checkpoint", tiny_run, "--image", not_image, "--out", tmp_path / "o.xyz"],
         "cannot tell an image format"),
        (["train", "colorize", "--dataset", "shapes", "--channels", "1", "--subset", "8", "--out", tmp_path / "g"],
         "learns colour from RGB images, but this dataset has 1-channel"),
        (["train", "colorize", "--dataset", "shapes", "--space", "lab", "--subset", "8", "--out", tmp_path / "l"],
         "--space must be rgb for the course network"),
        (["train", "colorize", "--dataset", "shapes", "--arch", "vit", "--subset", "8", "--out", tmp_path / "v"],
         "--arch 'vit' is unknown"),
        (["train", "colorize", "--dataset", "shapes", "--arch", "unet", "--gan-loss", "wgan", "--subset", "8",
          "--out", tmp_path / "w"], "--gan-loss 'wgan' is unknown"),
    ]
    for argv, message in cases:
        code, _, err = run_cli(capsys, *argv)
        assert code == 2 and message in err and err.count("\n") == 1, (argv, err)
    with pytest.raises(GenlabError, match="takes grey images of shape 1x32x32"):
        build_model("colorize", {}).colorize(torch.zeros(1, 3, 32, 32))


def test_course_recipe_file_is_plain_adam_at_the_course_settings():
    recipe = json.loads((Path(__file__).resolve().parents[1] / "configs" / "colorize_course.json").read_text())
    assert {k: recipe[k] for k in ("lr", "epochs", "batch_size", "weight_decay", "warmup_steps", "lr_schedule",
                                   "panel_images")} == dict(lr=1e-3, epochs=10, batch_size=64, weight_decay=0.0,
                                                            warmup_steps=0, lr_schedule="constant", panel_images=10)
    assert (recipe["arch"], recipe["space"], recipe["loss"], recipe["adversarial"]) == ("course", "rgb", "mse", 0)

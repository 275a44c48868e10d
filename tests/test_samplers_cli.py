"""`genlab sample / inpaint / visualize` for samplers, guidance and inpainting, end to end on tiny checkpoints."""

import argparse
import json
import shutil

import pytest
import torch
from PIL import Image

from genlab.cli.main import main
from genlab.models import build_model
from genlab.train.checkpoint import save_checkpoint
from genlab.cli import visualize_samplers as vcli
from genlab.figures import samplers as vs

TINY = ["--base-width", "8", "--channel-mult", "1,2", "--num-res-blocks", "1", "--attn-resolutions", "14",
        "--timesteps", "50"]
DATA = ["--dataset", "fashion_mnist", "--subset", "128", "--batch-size", "32", "--no-progress", "--sample-every", "0"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A tiny class-conditional diffusion run, a noisy classifier and an unconditional checkpoint."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("runs")
    assert main(["train", "diffusion", *DATA, *TINY, "--conditional", "--max-steps", "8", "--num-samples", "4",
                 "--out", str(root / "cond")]) == 0
    assert main(["train", "noisy-classifier", *DATA, "--base-width", "8", "--channel-mult", "1,2", "--timesteps",
                 "50", "--max-steps", "4", "--out", str(root / "clf")]) == 0
    torch.manual_seed(0)
    uncond = build_model("diffusion", dict(channels=1, image_size=28, base_width=8, channel_mult=(1, 2),
                                           num_res_blocks=1, attn_resolutions=(), timesteps=50))
    meta = {"data": {"name": "fashion_mnist", "kind": "image", "classes": [], "channels": 1, "image_size": 28,
                     "options": {}}}
    save_checkpoint(root / "uncond", uncond, meta=meta)
    short = build_model("diffusion", dict(channels=1, image_size=28, base_width=8, channel_mult=(1,),
                                          num_res_blocks=1, attn_resolutions=(), timesteps=20))
    save_checkpoint(root / "short", short, meta=meta)  # T = 20: fewer timesteps than any default step count
    yield root
    torch.set_num_threads(n)


def _png(path, min_side=64):
    with Image.open(path) as im:
        assert min(im.size) >= min_side
        return im.size


def test_sample_every_sampler_with_guidance_and_gif(runs, tmp_path, capsys):
    run = str(runs / "cond")
    for sampler, steps in (("ddpm", None), ("ddim", "8"), ("dpmpp", "6")):
        out = tmp_path / sampler
        args = ["sample", "--checkpoint", run, "--sampler", sampler, "--class", "3", "--guidance", "3",
                "--num-images", "4", "--gif", "--show-intermediate", "--out", str(out)]
        assert main(args + (["--steps", steps] if steps else [])) == 0
        for name in ("grid.png", "reverse_process.gif", "denoising_strip.png"):
            assert (out / name).exists(), (sampler, name)
        with Image.open(out / "reverse_process.gif") as gif:
            assert gif.n_frames > 5
    # no --class on a conditional model: a per-class grid, one row of 3 per class
    capsys.readouterr()
    assert main(["sample", "--checkpoint", run, "--sampler", "ddim", "--steps", "4", "--num-images", "30",
                 "--spacing", "quadratic", "--out", str(tmp_path / "grid")]) == 0
    assert "one row per class" in capsys.readouterr().out
    w, h = _png(tmp_path / "grid" / "grid.png")
    assert h > 3 * w                                                   # 10 rows of 3
    # classifier guidance of the conditional model, with the noisy classifier
    assert main(["sample", "--checkpoint", run, "--sampler", "ddim", "--steps", "4", "--num-images", "2",
                 "--class", "1", "--classifier", str(runs / "clf"), "--classifier-scale", "2",
                 "--out", str(tmp_path / "cg")]) == 0
    # ... and of an unconditional model (per-class grid, classes from the classifier)
    assert main(["sample", "--checkpoint", str(runs / "uncond"), "--sampler", "dpmpp", "--steps", "3",
                 "--num-images", "10", "--classifier", str(runs / "clf"), "--out", str(tmp_path / "cg2")]) == 0
    # a --num-images that is no multiple of the classes is rounded, and it says so
    capsys.readouterr()
    assert main(["sample", "--checkpoint", run, "--sampler", "ddim", "--steps", "2", "--num-images", "5",
                 "--out", str(tmp_path / "grid5")]) == 0
    assert "so 10 images instead of --num-images 5" in capsys.readouterr().out


def test_bad_sample_inputs_are_rejected(runs, tmp_path, capsys):
    run = str(runs / "cond")
    cases = [
        (["--class", "10"], "class index out of range: this model knows classes 0..9"),
        (["--sampler", "ddim", "--steps", "51"], "between 1 and the model's 50 timesteps"),
        (["--steps", "10"], "runs all 50 steps"),
        (["--sampler", "ddim", "--spacing", "cubic"], "unknown timestep spacing"),
        (["--classifier-scale", "3"], "--classifier-scale needs --classifier"),
        (["--classifier", run], "holds a 'diffusion' model, but this command needs a noisy-classifier"),
        (["--sampler", "ddpm", "--eta", "0.5"], "--eta applies to --sampler ddim only"),
        (["--sampler", "ddim", "--eta", "5"], "--eta must be between 0"),
        (["--sampler", "ddim", "--eta", "nan"], "--eta must be between 0"),
        (["--class", "1", "--guidance", "nan"], "--guidance must be a number >= 0"),
        (["--out", __file__], "cannot create the output folder"),
    ]
    for extra, message in cases:
        capsys.readouterr()
        assert main(["sample", "--checkpoint", run, "--num-images", "2", *extra]) == 2, extra
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, (extra, err)
    for extra, message in [(["--guidance", "3", "--class", "1"], "unconditional"),
                           (["--guidance", "3"], "needs a class-conditional checkpoint")]:
        assert main(["sample", "--checkpoint", str(runs / "uncond"), "--num-images", "2", *extra]) == 2
        assert message in capsys.readouterr().err
    # a noisy classifier of another dataset would steer towards its own classes
    other = tmp_path / "clf_mnist"
    shutil.copytree(runs / "clf", other)
    cfg = json.loads((other / "config.json").read_text())
    cfg["data"]["name"] = "mnist"
    (other / "config.json").write_text(json.dumps(cfg))
    assert main(["sample", "--checkpoint", run, "--class", "1", "--classifier", str(other)]) == 2
    assert "was trained on mnist, the diffusion model on fashion_mnist" in capsys.readouterr().err
    assert main(["sample", "--checkpoint", str(runs / "clf")]) == 2
    assert "cannot generate samples" in capsys.readouterr().err
    # the weights file instead of the run folder: the images go to the run folder
    assert main(["sample", "--checkpoint", str(runs / "uncond" / "model.safetensors"), "--sampler", "ddim",
                 "--steps", "2", "--num-images", "2"]) == 0
    assert (runs / "uncond" / "generated" / "grid.png").exists()


def test_inpaint_cli(runs, tmp_path, capsys):
    run = str(runs / "cond")
    out = tmp_path / "inp"
    assert main(["inpaint", "--checkpoint", run, "--mask", "left", "--steps", "6", "--resample", "2",
                 "--num-images", "3", "--samples", "2", "--gif", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "known pixels changed by at most 0" in text
    for name in ("inpainting.png", "inpainted.png", "inpainting.gif"):
        assert (out / name).exists()
    mask = tmp_path / "m.png"
    pixels = torch.full((28, 28), 255, dtype=torch.uint8)
    pixels[10:20, 10:20] = 0
    Image.fromarray(pixels.numpy()).save(mask)
    img = tmp_path / "img.png"
    Image.fromarray(torch.randint(0, 255, (40, 40), dtype=torch.uint8).numpy()).save(img)
    assert main(["inpaint", "--checkpoint", run, "--mask", str(mask), "--images", str(img), "--steps", "4",
                 "--resample", "1", "--samples", "1", "--class", "2", "--guidance", "2",
                 "--out", str(tmp_path / "inp2")]) == 0
    assert main(["inpaint", "--checkpoint", run, "--mask", "diagonal"]) == 2
    assert "neither a preset" in capsys.readouterr().err
    for extra, message in [(["--eta", "-1"], "--eta must be between 0"),
                           (["--class", "2", "--guidance", "-1"], "--guidance must be a number >= 0")]:
        assert main(["inpaint", "--checkpoint", run, "--steps", "2", "--samples", "1", *extra]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    assert main(["inpaint", "--checkpoint", str(runs / "clf")]) == 2
    assert "needs a diffusion model" in capsys.readouterr().err


def test_visualize_kinds(runs, tmp_path, monkeypatch):
    parser = argparse.ArgumentParser()
    kinds = parser.add_subparsers(dest="what")
    for name in vcli.KINDS:
        vcli.add_visualize_parser(kinds, name, name)
    run = str(runs / "cond")
    common = ["--checkpoint", run, "--steps", "3"]
    calls = {
        "class-grid": ["--per-class", "2"],
        "guidance-sweep": ["--scales", "0,1,4"],
        "sampler-grid": ["--samplers", "ddim:3,ddim:3:1.0,dpmpp:3", "--num-images", "3", "--class", "5"],
        "ddim-interpolation": ["--pairs", "2", "--frames", "4"],
        "inversion": ["--num-images", "3", "--refine", "1"],
        "inpainting": ["--num-images", "3", "--mask", "random", "--resample", "2"],
    }
    for name, extra in calls.items():
        out = tmp_path / f"{name}.png"
        steps = [] if name == "sampler-grid" else common[2:]           # sampler-grid's rows carry their steps
        args = parser.parse_args([name, *common[:2], *steps, *extra, "--out", str(out)])
        assert args.func(args) == 0
        _png(out)
    with pytest.raises(vs.GenlabError, match="^samplers expects items like ddim:50"):
        vs.parse_sampler_specs("ddim:x")


def test_visualize_defaults_fit_the_model_and_bad_inputs_are_rejected(runs, tmp_path, capsys):
    short = str(runs / "short")  # T = 20 < the default 50 steps: every kind caps its defaults at T
    for kind, extra in [("sampler-grid", ["--num-images", "2"]), ("ddim-interpolation", ["--pairs", "1"]),
                        ("inversion", ["--num-images", "2"])]:
        out = tmp_path / f"{kind}.png"
        assert main(["visualize", kind, "--checkpoint", short, "--out", str(out), *extra]) == 0, kind
        _png(out)
    run = str(runs / "cond")
    for extra, message in [(["inversion", "--refine", "-1"], "--refine must be >= 0"),
                           (["guidance-sweep", "--scales", ","], "--scales is empty"),
                           (["inversion", "--dataset", "cifar10"], "but the model makes (1, 28, 28)"),
                           (["sampler-grid", "--samplers", "dpmpp:5:0.5"], "eta applies to ddim only"),
                           (["guidance-sweep", "--scales", "0,-1"], "--scales must be numbers >= 0"),
                           (["guidance-curve", "--scales", "nan"], "--scales must be numbers >= 0"),
                           (["class-grid", "--classifier-scale", "2"], "--classifier-scale needs --classifier"),
                           (["guidance-sweep", "--checkpoint", str(runs / "uncond")], "unconditional")]:
        capsys.readouterr()
        assert main(["visualize", extra[0], "--checkpoint", run, *extra[1:]]) == 2, extra
        assert message in capsys.readouterr().err, extra


def test_guidance_curve_and_slerp(runs, tmp_path, monkeypatch):
    from genlab.metrics.features import classifier_dir
    from genlab.train.checkpoint import sampling_model

    # a tiny feature classifier for the metrics, in a private GENLAB_HOME
    monkeypatch.setenv("GENLAB_HOME", str(tmp_path / "home"))
    assert main(["train", "classifier", "--dataset", "fashion_mnist", "--subset", "256", "--epochs", "1",
                 "--batch-size", "64", "--width", "4", "--no-progress",
                 "--out", str(classifier_dir("fashion_mnist", 1, 28))]) == 0
    model, _ = sampling_model(runs / "cond")
    path, rows = vs.guidance_curve(model, "fashion_mnist", tmp_path / "curve.png", scales=(0.0, 2.0), n=20,
                                   steps=3, kid_subsets=2, kid_subset_size=10)
    _png(path)
    assert [r["guidance"] for r in rows] == [0.0, 2.0]
    assert all(r["fid"] > 0 and 0 <= r["conditional_accuracy"] <= 1 for r in rows)
    # slerp: the end points, unit-norm inputs stay on the sphere
    z0, z1 = torch.randn(3, 1, 4, 4), torch.randn(3, 1, 4, 4)
    z0, z1 = z0 / z0.flatten(1).norm(dim=1).view(-1, 1, 1, 1), z1 / z1.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    torch.testing.assert_close(vs.slerp(z0, z1, 0.0), z0)
    torch.testing.assert_close(vs.slerp(z0, z1, 1.0), z1)
    mid = vs.slerp(z0, z1, 0.5)
    torch.testing.assert_close(mid.flatten(1).norm(dim=1), torch.ones(3))
    torch.testing.assert_close(vs.slerp(z0, z0, 0.3), z0)             # parallel: no division by zero

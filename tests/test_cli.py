"""The command line end to end on tiny settings, and a one-line error (exit 2) for every bad input."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from genlab.cli.main import main
from genlab.train.checkpoint import load_checkpoint

TINY = ["--dataset", "shapes", "--subset", "64", "--image-size", "16", "--timesteps", "20", "--base-width", "8",
        "--attn-resolutions", "4", "--num-res-blocks", "1", "--epochs", "1", "--batch-size", "16",
        "--num-samples", "4", "--no-progress", "--device", "cpu"]



@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """`genlab train diffusion` on 64 shapes at 16 px: 4 steps, then samples and pictures."""
    out = tmp_path_factory.mktemp("cli") / "run"
    assert main(["train", "diffusion", *TINY, "--out", str(out)]) == 0
    return out


def _error_line(capsys) -> str:
    """The CLI's stderr for a failed command: exactly one line, no traceback."""
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err
    assert len(lines) == 1 and lines[0].startswith("genlab: error: "), err
    return lines[0]


def _frames(path) -> int:
    with Image.open(path) as im:
        return im.n_frames


def test_train_writes_a_complete_run_folder(run):
    for name in ("config.json", "model.safetensors", "ema.safetensors", "state.pt", "loss.csv", "loss.png",
                 "samples.png", "forward_process.png", "denoising_strip.png", "reverse_process.gif"):
        assert (run / name).is_file(), name
    config = json.loads((run / "config.json").read_text())
    assert config["family"] == "diffusion"
    m = config["model"]
    got = (m["channels"], m["image_size"], m["timesteps"], m["base_width"], m["attn_resolutions"])
    assert got == (3, 16, 20, 8, [4])
    assert config["train"]["epochs"] == 1 and config["data"]["name"] == "shapes"
    assert config["subset"] == 64 and config["data"]["options"] == {"image_size": 16}  # what --resume reloads
    _, _, _, state = load_checkpoint(run, with_state=True)
    assert state["step"] == 4                                   # 64 items / batch 16
    assert _frames(run / "reverse_process.gif") >= 10
    with Image.open(run / "samples.png") as im:
        assert min(im.size) >= 64


def test_sample_with_intermediates_and_gif(run, tmp_path, capsys):
    out = tmp_path / "gen"
    assert main(["sample", "--checkpoint", str(run), "--num-images", "4", "--show-intermediate", "--gif",
                 "--out", str(out), "--device", "cpu", "--seed", "1"]) == 0
    assert "4 images in" in capsys.readouterr().out
    for name in ("grid.png", "denoising_strip.png", "reverse_process.gif"):
        assert (out / name).is_file(), name
    assert _frames(out / "reverse_process.gif") >= 10          # one frame per kept step of the T = 20 chain
    with Image.open(out / "denoising_strip.png") as strip:
        assert strip.size[0] > 2 * strip.size[1]                # rows of x_T ... x_0, wider than tall


def test_resume_from_the_command_line(run, tmp_path, capsys):
    copy = shutil.copytree(run, tmp_path / "run")
    # only the new epoch count: dataset, subset, image size and model options come from the run folder
    assert main(["train", "diffusion", "--out", str(copy), "--resume", "--epochs", "2", "--no-progress"]) == 0
    assert "64 items" in capsys.readouterr().out
    _, _, config, state = load_checkpoint(copy, with_state=True)
    assert state["step"] == 8 and config["train"]["epochs"] == 2


def test_visualize_and_datasets(tmp_path, capsys):
    fwd = tmp_path / "pics" / "forward.png"
    assert main(["visualize", "forward", "--image-size", "16", "--T", "20", "--timesteps", "0,5,19",
                 "--num-images", "2", "--out", str(fwd)]) == 0
    with Image.open(fwd) as im:
        assert im.size[0] > im.size[1]                          # 3 columns of 2 images
    sched = tmp_path / "schedules.png"
    assert main(["visualize", "schedules", "--T", "50", "--out", str(sched)]) == 0
    assert sched.is_file()
    capsys.readouterr()
    assert main(["datasets"]) == 0
    out = capsys.readouterr().out
    for name in ("shapes", "mnist", "fashion_mnist", "cifar10", "toy2d"):
        assert name in out
    assert main(["visualize", "forward", "--T", "20", "--timesteps", "0,25"]) == 2
    assert "outside 0..19" in _error_line(capsys)


BAD_TRAIN = [
    (["--dataset", "nope"], "unknown dataset 'nope'"),
    (["--epochs", "0"], "--epochs must be at least 1"),
    (["--batch-size", "-4"], "--batch-size must be positive"),
    (["--image-size", "30"], "multiple of 4"),
    (["--schedule", "quadratic"], "unknown noise schedule"),
    (["--prediction", "score"], "unknown prediction target"),
    (["--batch-size", "128"], "fewer than one batch"),
    (["--attn-resolutions", "7"], "--attn-resolutions 7 matches no feature map"),
]


@pytest.mark.parametrize("flags,message", BAD_TRAIN, ids=[f[0][0] + f[0][1] for f in BAD_TRAIN])
def test_bad_training_input(flags, message, tmp_path, capsys):
    assert main(["train", "diffusion", *TINY, *flags, "--out", str(tmp_path / "new")]) == 2
    assert message in _error_line(capsys)
    assert not (tmp_path / "new" / "model.safetensors").exists()


def test_options_a_family_has_no_use_for(tmp_path, capsys):
    for family, flags, message in [
        ("toy-diffusion", ["--hflip"], "--hflip does nothing here (it mirrors images and toy-diffusion trains on points)"),
        ("classifier", ["--num-samples", "16"], "--num-samples does nothing here (the classifier model makes no"),
        ("noisy-classifier", ["--sample-every", "2"], "--sample-every does nothing here"),
    ]:
        assert main(["train", family, *flags, "--out", str(tmp_path / family), "--no-progress"]) == 2
        assert message in _error_line(capsys)
    # "off" is fine: a script may pass the same flags to every family
    assert main(["train", "toy-diffusion", "--no-hflip", "--sample-every", "0", "--max-steps", "2",
                 "--out", str(tmp_path / "toy"), "--no-progress"]) == 0


def test_bad_run_folders(run, tmp_path, capsys):
    assert main(["train", "diffusion", *TINY, "--out", str(run)]) == 2
    assert "already holds a trained run; pass --resume" in _error_line(capsys)
    assert main(["train", "diffusion", "--resume", "--out", str(tmp_path / "none"), "--no-progress"]) == 2
    assert "does not exist" in _error_line(capsys)


def test_bad_sample_input(run, tmp_path, capsys):
    base = ["sample", "--checkpoint", str(run), "--num-images", "2", "--out", str(tmp_path / "g"), "--device", "cpu"]
    cases = [
        (["--image-size", "32"], "--image-size 32 does not match the checkpoint, whose model makes 3x16x16 images"),
        (["--channels", "1"], "--channels 1 does not match the checkpoint"),
        (["--class", "2"], "unconditional"),
    ]
    for flags, message in cases:
        assert main([*base, *flags]) == 2
        assert message in _error_line(capsys)
    assert main(["sample", "--checkpoint", str(tmp_path / "missing")]) == 2
    assert "does not exist" in _error_line(capsys)
    broken = shutil.copytree(run, tmp_path / "broken")
    data = (broken / "ema.safetensors").read_bytes()
    (broken / "ema.safetensors").write_bytes(data[: len(data) // 3])
    assert main(["sample", "--checkpoint", str(broken)]) == 2
    assert "is corrupt or truncated" in _error_line(capsys)
    (broken / "config.json").write_text("{")
    assert main(["sample", "--checkpoint", str(broken)]) == 2
    assert "config.json is corrupt" in _error_line(capsys)


@pytest.mark.parametrize("argv", [["train", "nofamily"], ["sample"],
                                  ["sample", "--checkpoint", "x", "--num-images", "0"],
                                  ["visualize", "nothing"], ["nocommand"]])
def test_argparse_errors_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "error:" in err


def test_console_script(tmp_path):
    exe = Path(sys.executable).with_name("genlab")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "genlab.cli.main"]
    proc = subprocess.run([*cmd, "sample", "--checkpoint", str(tmp_path / "missing")], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and proc.stderr.startswith("genlab: error: checkpoint")
    assert "does not exist" in proc.stderr and "Traceback" not in proc.stderr


def test_every_option_with_a_default_shows_it_in_help(capsys):
    import argparse

    from genlab.cli.main import build_parser

    def walk(parser):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for child in action.choices.values():
                    yield from walk(child)
            elif action.option_strings and not any(action.default is v for v in (None, argparse.SUPPRESS, False)) \
                    and action.default != []:  # 0 is a default worth showing (--seed 0)
                yield parser.prog, action

    missing = [f"{prog} {a.option_strings[-1]}" for prog, a in walk(build_parser()) if "default" not in a.help]
    assert not missing, missing
    with pytest.raises(SystemExit):
        main(["sample", "--help"])
    assert "(default: 64)" in capsys.readouterr().out

"""ParamError: model code names a parameter, the CLI names the flag that sets it."""

import argparse

import pytest

from genlab.cli.main import flag_worded, main
from genlab.data import load_dataset
from genlab.errors import GenlabError, ParamError
from genlab.models import build_model
from genlab.train import TrainConfig, train
from genlab.train.loop import check_config


def _parser():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="command")
    s = sub.add_parser("sample")
    s.add_argument("--eta", type=float)
    s.add_argument("--sample-steps", dest="sample_steps", type=int)
    return p


def test_param_error_reads_with_the_parameter_in_python_and_the_flag_in_the_cli():
    e = ParamError("sample_steps", "must be >= 1, got 0")
    assert isinstance(e, GenlabError) and str(e) == "sample_steps must be >= 1, got 0"
    p = _parser()
    args = p.parse_args(["sample", "--eta", "0.5"])
    assert flag_worded(e, p, args) == "--sample-steps must be >= 1, got 0"
    assert flag_worded(ParamError("eta", "must be in [0, 1]"), p, args) == "--eta must be in [0, 1]"
    # a parameter no flag of this command sets keeps its own name; other errors are left alone
    assert flag_worded(ParamError("temperature", "must be > 0"), p, args) == "temperature must be > 0"
    assert flag_worded(GenlabError("plain"), p, args) == "plain"


# ----------------------------------------------------------------------------- converted errors, both ways
# The same bad value reads "param ..." from Python and "--flag ..." from the CLI (the CLI prints one line).
def _cli_error(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    return err


@pytest.mark.parametrize("field, value, message", [
    ("epochs", 0, "must be at least 1, got 0"),
    ("max_steps", -1, "must be >= 0 (0: no limit), got -1"),
    ("lr_schedule", "step", "'step' is unknown; choose constant or cosine"),
])
def test_training_settings_name_the_field_in_python_and_the_flag_in_the_cli(field, value, message, tmp_path, capsys):
    with pytest.raises(ParamError) as e:
        check_config(TrainConfig(**{field: value}))
    assert str(e.value) == f"{field} {message}" and e.value.param == field
    flag = "--" + field.replace("_", "-")
    err = _cli_error(capsys, ["train", "toy-diffusion", flag, str(value), "--out", str(tmp_path / "run")])
    assert err == f"genlab: error: {flag} {message}\n"


def test_model_options_name_the_field_in_python_and_the_flag_in_the_cli(tmp_path, capsys):
    with pytest.raises(ParamError, match=r"^sample_steps 500 does not fit sampler ddpm with timesteps 100 \(ddpm"):
        build_model("toy-diffusion", dict(timesteps=100, sample_steps=500))
    err = _cli_error(capsys, ["train", "toy-diffusion", "--timesteps", "100", "--sample-steps", "500",
                              "--out", str(tmp_path / "toy")])
    assert "genlab: error: --sample-steps 500 does not fit sampler ddpm with timesteps 100" in err
    with pytest.raises(ParamError, match=r"^kl_weight must be a finite number >= 0"):
        build_model("vae", dict(kl_weight=-1.0, channels=1, image_size=16))
    err = _cli_error(capsys, ["train", "vae", "--dataset", "shapes", "--image-size", "16", "--subset", "8",
                              "--kl-weight", "-1", "--out", str(tmp_path / "vae")])
    assert "genlab: error: --kl-weight must be a finite number >= 0" in err


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("toy") / "run"
    model = build_model("toy-diffusion", dict(timesteps=20, hidden=16))
    cfg = TrainConfig(max_steps=1, batch_size=16, device="cpu", progress=False, num_samples=0, ema_decay=0.0)
    train(model, load_dataset("toy2d", n=64), cfg, out)
    return model, str(out)


@pytest.mark.parametrize("kw, argv, message", [
    (dict(sampler="ddim", steps=5, eta=2.0), ["--sampler", "ddim", "--steps", "5", "--eta", "2"],
     "eta must be between 0 (deterministic DDIM) and 1 (DDPM-like), got 2.0"),
    (dict(sampler="ddim", steps=50), ["--sampler", "ddim", "--steps", "50"],
     "steps must be between 1 and the model's 20 timesteps, got 50"),
    (dict(sampler="ddpm", steps=5), ["--sampler", "ddpm", "--steps", "5"],
     "steps 5 does not fit the ddpm sampler, which runs all 20 steps; use the ddim or dpmpp sampler for 5 steps"),
    (dict(sampler="ddpm", spacing="trailing"), ["--sampler", "ddpm", "--spacing", "trailing"],
     "spacing applies to the ddim and dpmpp samplers, not ddpm"),
])
def test_sampler_options_name_the_argument_in_python_and_the_flag_in_the_cli(toy_run, kw, argv, message, capsys,
                                                                             tmp_path):
    model, run = toy_run
    with pytest.raises(ParamError) as e:
        model.sample(2, **kw)
    assert str(e.value) == message
    err = _cli_error(capsys, ["sample", "--checkpoint", run, "--num-images", "2", "--out", str(tmp_path), *argv])
    assert err == f"genlab: error: --{message}\n"

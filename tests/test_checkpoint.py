"""Checkpoints: exact round trips, and clear CheckpointErrors for every way a run folder can be broken."""

import errno
import json
import shutil

import pytest
import torch

import genlab.train.checkpoint as ckpt
from genlab.data import load_dataset
from genlab.errors import CheckpointError, GenlabError
from genlab.models import build_model
from genlab.train import TrainConfig, train
from genlab.train.checkpoint import load_checkpoint, sampling_model, save_checkpoint

TINY = dict(channels=1, image_size=8, base_width=8, channel_mult=(1, 2), num_res_blocks=1, attn_resolutions=(4,),
            timesteps=10)



@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A run folder of a tiny diffusion model after 8 steps (weights, EMA, state, config)."""
    out = tmp_path_factory.mktemp("ckpt") / "run"
    torch.manual_seed(0)
    model = build_model("diffusion", TINY)
    data = load_dataset("shapes", n=32, image_size=8, channels=1)
    cfg = TrainConfig(epochs=2, batch_size=8, lr=3e-3, warmup_steps=1, device="cpu", progress=False, precision="fp32",
                      sample_every=0, num_samples=2, log_every=4, ema_decay=0.9)
    return train(model, data, cfg, out)


@pytest.fixture
def run(trained, tmp_path):
    """A private copy of the trained run folder, free to break."""
    return shutil.copytree(trained.out_dir, tmp_path / "run")


def _sample(model, seed=7):
    return model.sample(3, generator=torch.Generator().manual_seed(seed), sampler="ddpm")


def test_round_trip_gives_identical_samples(trained):
    model, ema, config, state = load_checkpoint(trained.out_dir, "cpu", family="diffusion", with_state=True)
    assert config["family"] == "diffusion" and config["model"]["image_size"] == 8
    assert config["model"]["channel_mult"] == [1, 2] and model.cfg.channel_mult == (1, 2)  # tuples survive JSON
    assert config["train"]["batch_size"] == 8 and config["data"]["name"] == "shapes"
    assert state["step"] == 8 and state["ema"]["updates"] == 8
    for a, b in ((model, trained.model), (ema, trained.ema)):
        sa, sb = a.state_dict(), b.state_dict()
        assert all(torch.equal(sa[k], sb[k]) for k in sb)
    # sampling uses the EMA weights; the same seed gives the same images
    sampler, _ = sampling_model(trained.out_dir)
    want = _sample(trained.ema.eval())
    assert torch.equal(_sample(sampler), want)
    assert torch.equal(_sample(ema), want)
    # and the test can fail: other weights, other samples
    assert not torch.equal(_sample(trained.model.eval()), want)
    assert not torch.allclose(_sample(build_model("diffusion", TINY).eval()), want)


def test_save_checkpoint_without_ema_or_state(trained, tmp_path):
    save_checkpoint(tmp_path / "bare", trained.model)
    assert sorted(p.name for p in (tmp_path / "bare").iterdir()) == ["config.json", "model.safetensors"]
    model, ema, _, state = load_checkpoint(tmp_path / "bare", with_state=True)
    assert ema is None and state is None
    sampler, _ = sampling_model(tmp_path / "bare")
    assert torch.equal(_sample(sampler), _sample(trained.model.eval()))
    # a path to a file inside the run folder works too
    load_checkpoint(tmp_path / "bare" / "model.safetensors")


@pytest.mark.parametrize("name", ["model.safetensors", "ema.safetensors"])
@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_corrupt_weights(run, name, damage):
    f = run / name
    data = f.read_bytes()
    f.write_bytes({"truncate": data[: len(data) // 2], "garbage": b"\x00not a safetensors file" * 10,
                   "empty": b""}[damage])
    with pytest.raises(CheckpointError, match=f"{name} is corrupt or truncated.*re-train or restore") as e:
        load_checkpoint(run)
    assert "\n" not in str(e.value)


def test_weights_with_nan_are_refused(run):
    # what a run that diverged wrote before the loop refused to save such weights
    from safetensors.torch import load_file, save_file

    weights = load_file(str(run / "ema.safetensors"))
    name = sorted(weights)[3]
    weights[name] = torch.full_like(weights[name], float("nan"))
    save_file(weights, str(run / "ema.safetensors"))
    with pytest.raises(CheckpointError, match=f"ema.safetensors holds inf/NaN weights \\({name}, 1 tensor"):
        sampling_model(run)


def test_missing_and_garbage_config(run, tmp_path):
    (run / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="config.json is corrupt"):
        load_checkpoint(run)
    (run / "config.json").write_text(json.dumps({"model": {}}))            # valid JSON, no family
    with pytest.raises(CheckpointError, match="config.json is corrupt"):
        load_checkpoint(run)
    (run / "config.json").write_text("[1, 2]")
    with pytest.raises(CheckpointError, match="config.json is corrupt"):
        load_checkpoint(run)
    (run / "config.json").unlink()
    with pytest.raises(CheckpointError, match="is not a genlab checkpoint \\(no config.json\\)"):
        load_checkpoint(run)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nowhere")


def test_missing_weights_and_mismatched_config(run):
    cfg = json.loads((run / "config.json").read_text())
    cfg["model"]["base_width"] = 16                                        # weights of another shape
    (run / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="does not match its config.json"):
        load_checkpoint(run)
    cfg["model"]["base_width"] = 8
    cfg["model"]["attn_resolutions"] = []                                  # missing/unexpected keys
    (run / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="does not match its config.json"):
        load_checkpoint(run)
    cfg["model"]["no_such_option"] = 1
    (run / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(GenlabError, match="unknown DiffusionConfig option.*no_such_option"):
        load_checkpoint(run)
    (run / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="has no model.safetensors"):
        load_checkpoint(run)


def test_corrupt_training_state(run):
    (run / "state.pt").write_bytes(b"garbage")
    load_checkpoint(run)                                                   # sampling does not need it
    with pytest.raises(CheckpointError, match="state.pt is corrupt"):
        load_checkpoint(run, with_state=True)


def test_wrong_family_is_rejected(run):
    with pytest.raises(CheckpointError, match="holds a 'diffusion' model, but this command needs a vae model"):
        load_checkpoint(run, family="vae")
    with pytest.raises(CheckpointError, match="needs a vae or hvae model"):
        sampling_model(run, family=("vae", "hvae"))
    load_checkpoint(run, family=("vae", "diffusion"))


def test_full_disk_keeps_the_previous_checkpoint(run, trained, monkeypatch):
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    model = build_model("diffusion", TINY)                                 # different weights to save over it

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ckpt, "save_file", no_space)
    with pytest.raises(GenlabError, match="the disk is full. The previous checkpoint there is intact; free some space"):
        save_checkpoint(run, model, model, {"step": 99}, {"train": {}})
    after = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    assert after == before                                                 # nothing replaced, no temp files left
    loaded, _, _, state = load_checkpoint(run, with_state=True)
    assert state["step"] == 8 and torch.equal(loaded.net.conv_in.weight, trained.model.net.conv_in.weight)
    # other write errors say what happened
    monkeypatch.setattr(ckpt, "save_file", lambda *a, **k: (_ for _ in ()).throw(PermissionError(13, "denied")))
    with pytest.raises(GenlabError, match="could not write a checkpoint.*denied"):
        save_checkpoint(run, model)
    # safetensors reports a full disk as its own error type, without an errno
    from safetensors import SafetensorError

    def no_space_safetensors(*args, **kwargs):
        raise SafetensorError("Error while serializing: IoError(Os { code: 28, message: \"No space left on device\" })")

    monkeypatch.setattr(ckpt, "save_file", no_space_safetensors)
    with pytest.raises(GenlabError, match="the disk is full"):
        save_checkpoint(run, model)
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before

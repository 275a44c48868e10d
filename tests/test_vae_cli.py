"""AE / VAE / HVAE through the training loop, checkpoints, pictures and the command line (tiny settings)."""

import pytest
import torch
from PIL import Image

from genlab.cli.main import main
from genlab.data import load_dataset
from genlab.errors import CheckpointError
from genlab.models import build_model
from genlab.train import TrainConfig, train
from genlab.train.checkpoint import load_checkpoint
from genlab.figures.artifacts import save_artifacts
from genlab.figures.latent import interpolate, save_kl_sweep, save_latent_scatter, visualize
from genlab.metrics.family import evaluate

TINY = {"ae": dict(latent_dim=4, width=8, hidden=32), "vae": dict(latent_dim=4, width=8, hidden=32),
        "hvae": dict(z1_dim=4, z2_dim=2, width=8, hidden=32, top_hidden=16)}
TINY_FLAGS = {"ae": ["--latent-dim", "4"], "vae": ["--latent-dim", "4"], "hvae": ["--z1-dim", "4", "--z2-dim", "2"]}


@pytest.fixture(scope="module")
def small():
    return (load_dataset("fashion_mnist", split="train", n=256), load_dataset("fashion_mnist", split="test", n=128))


def _png_ok(path):
    with Image.open(path) as im:
        assert im.size[0] >= 64 and im.size[1] >= 64


@pytest.mark.parametrize("family", ["ae", "vae", "hvae"])
def test_train_loop_checkpoint_round_trip_and_artifacts(family, small, tmp_path):
    train_data, test = small
    model = build_model(family, dict(TINY[family], kl_warmup_steps=10) if family != "ae" else TINY[family])
    cfg = TrainConfig(epochs=2, max_steps=12, batch_size=32, device="cpu", progress=False, sample_every=0,
                      log_every=4)
    result = train(model, train_data, cfg, tmp_path / "run")
    assert result.steps == 12 and len(result.history) == 3
    loaded, ema, config, _ = load_checkpoint(tmp_path / "run", "cpu")
    assert config["family"] == family and type(loaded) is type(model)
    for (k, a), (k2, b) in zip(result.model.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(a.cpu(), b.contiguous())
    if family != "ae":
        assert int(loaded.kl_step) == 12                     # the KL warm-up resumes where it stopped
        g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
        torch.testing.assert_close(ema.sample(4, generator=g()), result.ema.sample(4, generator=g()))
        loaded.cfg.iwae_k = result.model.cfg.iwae_k = 4
        a, b = evaluate(loaded.eval(), test, n=32), evaluate(result.model.eval(), test, n=32)
        assert a == pytest.approx(b, rel=1e-4, abs=1e-4)
    paths = save_artifacts(ema, test, tmp_path / "pics", generator=torch.Generator().manual_seed(0))
    names = {p.name for p in paths}
    assert {"reconstructions.png", "interpolation.png", "latent_scatter.png"} <= names
    assert ("prior_samples.png" in names) == (family != "ae")
    assert ("hvae_z2_fixed.png" in names) == (family == "hvae")
    for p in paths:
        _png_ok(p)


def test_interpolation_and_scatter_helpers(tmp_path):
    za, zb = torch.zeros(2, 3), torch.ones(2, 3)
    path = interpolate(za, zb, 5)
    assert path.shape == (10, 3)
    torch.testing.assert_close(path[:5, 0], torch.linspace(0, 1, 5))
    torch.testing.assert_close(path[4], zb[0])
    # 2-D codes are plotted as they are, wider codes by their PCA projection
    _png_ok(save_latent_scatter(torch.randn(100, 2), torch.randint(0, 3, (100,)), tmp_path / "a.png", ["a", "b", "c"]))
    _png_ok(save_latent_scatter(torch.randn(100, 7), None, tmp_path / "b.png"))


def test_kl_sweep_picture(small, tmp_path):
    _, test = small
    models = [build_model("vae", dict(TINY["vae"], kl_weight=w)).eval() for w in (4.0, 0.25)]
    _png_ok(save_kl_sweep(models, test, tmp_path / "sweep.png", n=4, n_eval=32))


def test_cli_end_to_end(tmp_path, capsys):
    common = ["--dataset", "fashion_mnist", "--subset", "128", "--epochs", "1", "--batch-size", "32",
              "--width", "8", "--hidden", "32", "--no-progress", "--sample-every", "0"]
    for family in ("ae", "vae", "hvae"):
        assert main(["train", family, *common, *TINY_FLAGS[family], "--out", str(tmp_path / family)]) == 0
        assert (tmp_path / family / "model.safetensors").exists()
        assert (tmp_path / family / "reconstructions.png").exists()
    assert (tmp_path / "hvae" / "hvae_z2_fixed.png").exists()

    assert main(["sample", "--checkpoint", str(tmp_path / "vae"), "--num-images", "8",
                 "--out", str(tmp_path / "gen")]) == 0
    _png_ok(tmp_path / "gen" / "grid.png")
    for kind, run in [("reconstructions", "ae"), ("interpolation", "vae"), ("latent-scatter", "hvae"),
                      ("hvae-layers", "hvae")]:
        out = tmp_path / f"{kind}.png"
        assert main(["visualize", kind, "--checkpoint", str(tmp_path / run), "--subset", "64",
                     "--out", str(out)]) == 0
        _png_ok(out)
    assert main(["visualize", "kl-sweep", "--checkpoints", f"{tmp_path / 'vae'},{tmp_path / 'hvae'}",
                 "--subset", "64", "--out", str(tmp_path / "sweep")]) == 0
    _png_ok(tmp_path / "sweep" / "kl_sweep.png")

    # bad inputs: one clear line, exit status 2
    capsys.readouterr()
    assert main(["sample", "--checkpoint", str(tmp_path / "vae"), "--sampler", "ddim"]) == 2
    assert "only apply to diffusion" in capsys.readouterr().err
    assert main(["sample", "--checkpoint", str(tmp_path / "ae")]) == 2
    assert "cannot generate samples" in capsys.readouterr().err
    assert main(["visualize", "hvae-layers", "--checkpoint", str(tmp_path / "vae")]) == 2
    assert "holds a 'vae' model" in capsys.readouterr().err
    assert main(["train", "vae", *common, "--latent-dim", "8", "--out", str(tmp_path / "vae"), "--resume"]) == 2
    assert "model options differ" in capsys.readouterr().err
    assert main(["visualize", "kl-sweep", "--kl-weights", "1,x"]) == 2
    assert "--kl-weights" in capsys.readouterr().err


def test_vae_checkpoint_rejected_by_a_diffusion_loader(small, tmp_path):
    train_data, _ = small
    train(build_model("vae", TINY["vae"]), train_data,
          TrainConfig(epochs=1, max_steps=2, batch_size=32, device="cpu", progress=False, sample_every=0),
          tmp_path / "vae")
    with pytest.raises(CheckpointError, match="holds a 'vae' model, but this command needs a diffusion"):
        load_checkpoint(tmp_path / "vae", family="diffusion")


def test_visualize_rejects_unknown_kind_and_wrong_model(small):
    from genlab.errors import GenlabError

    _, test = small
    with pytest.raises(GenlabError, match="unknown picture"):
        visualize("nope", build_model("vae", TINY["vae"]), test, "x.png")
    with pytest.raises(GenlabError, match="need an ae, vae or hvae"):
        visualize("hvae-z2-fixed", build_model("vae", TINY["vae"]), test, "x.png")

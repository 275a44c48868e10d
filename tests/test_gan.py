"""The GAN families (issue #18): networks sized from the image, spectral norm, the adversarial step on the
shared loop, a toy GAN that learns its modes, exact resume of both networks, the CLI and bad input."""

import json
import math

import pytest
import torch

from genlab.cli.main import main
from genlab.data.base import TensorDataset
from genlab.data.toy2d import load_toy2d, mode_coverage
from genlab.errors import GenlabError
from genlab.models import build_model
from genlab.nn.gan import DCGANDiscriminator, DCGANGenerator, dcgan_plan
from genlab.train import TrainConfig, train
from genlab.train.checkpoint import load_checkpoint


def cfg(**kw):
    base = dict(epochs=1, batch_size=16, lr=2e-4, warmup_steps=0, device="cpu", progress=False, precision="fp32",
                sample_every=0, num_samples=0, log_every=1, ema_decay=0.9, grad_clip=0, weight_decay=0)
    return TrainConfig(**{**base, **kw})


def halves(n=64, size=16, seed=0):
    """Labelled 1-channel images: class 0 bright on the left half, class 1 on the right (plus noise)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = torch.rand(n, 1, size, size, generator=g) * 60
    x[y == 0, :, :, : size // 2] += 180
    x[y == 1, :, :, size // 2:] += 180
    return TensorDataset("halves", "image", {"x": x.clamp(0, 255).to(torch.uint8), "y": y}, classes=["left", "right"])


TINY = dict(channels=1, image_size=16, z_dim=8, g_width=8, d_width=8)


@pytest.mark.parametrize("size,channels", [(28, 1), (32, 3), (64, 3), (16, 1)])
def test_dcgan_networks_are_sized_from_the_image(size, channels):
    base, ups = dcgan_plan(size)
    assert base * 2 ** ups == size and 4 <= base <= 7
    g = DCGANGenerator(16, channels, size, width=8, num_classes=3)
    y = torch.tensor([0, 2])
    x = g(torch.randn(2, 16), y)
    assert x.shape == (2, channels, size, size) and x.abs().max() <= 1
    for cond in ("projection", "concat"):
        logits, phi = DCGANDiscriminator(channels, size, width=8, num_classes=3, cond=cond)(x, y)
        assert logits.shape == (2,) and phi.shape[0] == 2


def test_conditional_batch_norm_and_projection_use_the_class():
    torch.manual_seed(0)
    g = DCGANGenerator(8, 1, 16, width=8, num_classes=2)
    with torch.no_grad():
        for norm in g.norms:
            norm.gamma.weight[1] *= 3.0         # class 1: three times the scale after every norm
    z = torch.randn(4, 8)
    assert not torch.allclose(g(z, torch.zeros(4, dtype=torch.long)), g(z, torch.ones(4, dtype=torch.long)))
    d = DCGANDiscriminator(1, 16, width=8, num_classes=2, cond="projection")
    x = torch.randn(3, 1, 16, 16)
    l0, phi = d(x, torch.zeros(3, dtype=torch.long))
    l1, _ = d(x, torch.ones(3, dtype=torch.long))
    # Miyato & Koyama 2018, Eq. 3: the logits differ by (embed(1) - embed(0)) . phi(x)
    diff = phi @ (d.embed.weight[1] - d.embed.weight[0])
    torch.testing.assert_close(l1 - l0, diff, rtol=1e-4, atol=1e-5)


def test_spectral_norm_makes_every_discriminator_layer_1_lipschitz():
    torch.manual_seed(0)
    d = DCGANDiscriminator(3, 32, width=16, num_classes=4, spectral_norm=True)
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 4, (8,))
    for _ in range(30):  # one power iteration per forward pass in training mode
        d(x, y)
    d.eval()
    layers = list(d.convs) + [d.head, d.embed]
    for layer in layers:
        w = layer.weight.detach()                      # the normalised weight W / sigma(W)
        w = w.reshape(w.shape[0], -1)
        sigma = torch.linalg.matrix_norm(w, ord=2)      # its largest singular value, exactly
        assert abs(float(sigma) - 1.0) < 0.05, (layer, float(sigma))
        raw = layer.parametrizations.weight.original.detach().reshape(w.shape[0], -1)
        assert float(torch.linalg.matrix_norm(raw, ord=2)) != pytest.approx(1.0, abs=0.05)  # not 1 without SN


def test_toy_gan_learns_the_eight_modes():
    torch.manual_seed(0)
    data = load_toy2d("train", shape="8gaussians", n=8000)
    model = build_model("toy-gan", dict(loss="hinge", hidden=64))
    test = load_toy2d("test", shape="8gaussians", n=2500)
    before = model.evaluate(test, n=1250)
    train(model, data, cfg(epochs=100, max_steps=1000, batch_size=256, lr=5e-4, ema_decay=0))
    m = model.evaluate(test, n=1250)
    assert before["modes"] <= 2 and before["high_quality"] < 0.1, before
    assert m["modes"] >= 7 and m["high_quality"] >= 0.3, m
    assert m["energy_distance"] < 0.1, m
    # the metric itself: a collapsed sample (every point on one mode) covers 1 mode at full quality
    one_mode = test.x[test.y == 0]
    cover = mode_coverage(one_mode, "8gaussians")
    assert (cover["modes"], cover["num_modes"]) == (1, 8)
    assert cover["high_quality"] == pytest.approx(1 - math.exp(-4.5), abs=0.01)  # P(|N(0, I_2)| < 3)


@pytest.mark.parametrize("loss,extra", [("wgan", {}), ("wgan-gp", dict(n_critic=3)),
                                        ("nonsaturating", dict(r1_weight=1.0, feature_matching=1.0,
                                                               conditional=True, spectral_norm=True,
                                                               diffaugment="color,translation,cutout"))])
def test_gan_step_updates_what_each_loss_says(loss, extra, tmp_path):
    torch.manual_seed(0)
    model = build_model("gan", {**TINY, "loss": loss, "num_classes": 2, **extra})
    result = train(model, halves(), cfg(epochs=1, batch_size=16, ema_decay=0.5, ema_warmup=False), tmp_path)
    _, _, _, state = load_checkpoint(tmp_path, with_state=True)
    steps = {k: int(o["state"][0]["step"]) for k, o in state["optimizers"].items()}
    n_critic = extra.get("n_critic", 1)
    assert steps == {"discriminator": 4, "generator": 4 // n_critic}
    last = result.history[-1]
    if loss == "wgan":  # weight clipping keeps every weight of the critic in [-c, c]
        assert max(float(p.detach().abs().max()) for p in model.discriminator.parameters()) <= 0.01
    if loss == "wgan-gp":
        assert "gp" in last
    if extra.get("r1_weight"):
        assert {"r1", "fm"} <= set(last)
    assert not torch.equal(result.ema.generator.fc.weight, model.generator.fc.weight)  # the EMA averages G


def test_gan_resume_is_exact_for_both_networks_and_optimizers(tmp_path):
    kw = {**TINY, "loss": "hinge", "n_critic": 2, "conditional": True, "num_classes": 2, "diffaugment": "translation"}
    c = cfg(epochs=2, batch_size=16)
    torch.manual_seed(0)
    straight = train(build_model("gan", kw), halves(), c, tmp_path / "a")
    run = tmp_path / "b"
    torch.manual_seed(0)
    assert train(build_model("gan", kw), halves(), cfg(epochs=2, batch_size=16, max_steps=5), run).stopped == "steps"
    torch.manual_seed(1)
    rest = train(build_model("gan", kw), halves(), c, run, resume=True)
    for a, b in ((straight.model, rest.model), (straight.ema, rest.ema)):
        for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
            assert torch.equal(va, vb), k


def test_bad_gan_options_say_what_is_wrong():
    cases = [(dict(loss="wasserstein"), "--loss unknown 'wasserstein'|loss"), (dict(n_critic=0), "n_critic"),
             (dict(gp_weight=-1.0), "gp_weight"), (dict(r1_weight=-0.5), "r1_weight"),
             (dict(image_size=30), "image_size"), (dict(diffaugment="rotate"), "diffaugment"),
             (dict(d_cond="film", conditional=True, num_classes=2), "d_cond")]
    for bad, match in cases:
        with pytest.raises(GenlabError, match=match):
            build_model("gan", {**TINY, **bad})
    with pytest.raises(GenlabError, match="conditional GAN needs a dataset with class labels"):
        build_model("gan", {**TINY, "conditional": True})
    model = build_model("gan", TINY)
    with pytest.raises(GenlabError, match="unconditional"):
        model.sample(2, y=torch.tensor([0, 1]))


def test_a_diverging_gan_stops_keeps_the_last_good_checkpoint_and_says_which_network(tmp_path):
    kw = {**TINY, "loss": "hinge"}
    torch.manual_seed(0)
    train(build_model("gan", kw), halves(), cfg(epochs=3, max_steps=4), tmp_path)
    kept = (tmp_path / "model.safetensors").read_bytes()
    model = build_model("gan", kw)
    # from the 3rd step on the generator's images are inf: the critic's loss and then its weights become NaN
    calls = iter(range(10 ** 6))
    model.generator.register_forward_hook(lambda m, i, out: out * float("inf") if next(calls) >= 4 else out)
    with pytest.raises(GenlabError, match=r"became nan.*inf/NaN weights in: discriminator.*last good checkpoint"):
        train(model, halves(), cfg(epochs=3), tmp_path, resume=True)
    assert (tmp_path / "model.safetensors").read_bytes() == kept


def test_gan_cli_trains_samples_and_draws_its_pictures(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "gan", "--dataset", "shapes", "--image-size", "16", "--channels", "1", "--subset", "64",
                 "--z-dim", "8", "--g-width", "8", "--d-width", "8", "--conditional", "--epochs", "1",
                 "--batch-size", "16", "--num-samples", "8", "--out", "g", "--no-progress"]) == 0
    for name in ("interpolation.png", "interpolation.gif", "class_grid.png", "loss.png"):
        assert (tmp_path / "g" / name).exists(), name
    assert json.loads((tmp_path / "g" / "config.json").read_text())["model"]["conditional"] is True
    assert main(["sample", "--checkpoint", "g", "--class", "1", "--num-images", "4", "--npz", "s.npz"]) == 0
    import numpy as np
    assert np.load(tmp_path / "s.npz")["arr_0"].shape == (4, 16, 16, 1)
    capsys.readouterr()
    assert main(["sample", "--checkpoint", "g", "--steps", "3"]) != 0
    assert "--steps only apply to diffusion" in capsys.readouterr().err
    assert main(["visualize", "gan-interpolation", "--checkpoint", "g", "--pairs", "2", "--frames", "3"]) == 0
    assert main(["visualize", "gan-class-grid", "--checkpoint", "g", "--per-class", "3"]) == 0
    assert {p.name for p in (tmp_path / "g" / "pictures").iterdir()} == {"interpolation.png", "interpolation.gif",
                                                                         "class_grid.png"}


def test_toy_gan_cli_evaluates_modes_and_draws_them(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "toy-gan", "--data-opt", "shape=grid25", "--max-steps", "20", "--hidden", "16",
                 "--out", "t", "--no-progress"]) == 0
    assert (tmp_path / "t" / "samples_vs_data.png").exists()
    capsys.readouterr()
    assert main(["eval", "t", "--n", "400"]) == 0
    out = capsys.readouterr().out
    assert "modes" in out and "num_modes                25" in out and "high_quality" in out
    assert main(["visualize", "toy-gan", "--checkpoint", "t"]) == 0
    assert main(["sample", "--checkpoint", "t", "--num-images", "50", "--npz", "p.npz"]) == 0

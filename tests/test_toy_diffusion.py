"""Toy 2-D diffusion: the MLP denoiser learns a point cloud in seconds; metrics, pictures, CLI."""

import argparse
import json

import pytest
import torch
from PIL import Image

from genlab.cli.main import main
from genlab.data import load_dataset
from genlab.diffusion.ddim import ddim_invert, ddim_sample_loop
from genlab.errors import GenlabError
from genlab.models import build_model
from genlab.models.toy_diffusion import ToyDiffusion, chamfer, energy_distance, mmd_rbf
from genlab.nn.mlp import MLP, TimeMLP
from genlab.train import TrainConfig, train
from genlab.train.checkpoint import save_checkpoint
from genlab.cli import visualize_toy2d
from genlab.figures import toy2d



@pytest.fixture(scope="module")
def moons():
    return load_dataset("toy2d", shape="moons"), load_dataset("toy2d", split="test", shape="moons")


@pytest.fixture(scope="module")
def trained(moons):
    """A toy model trained for 12 epochs of two moons (~470 steps, a few seconds)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    cfg = TrainConfig(**{**ToyDiffusion.train_defaults, "epochs": 12, "progress": False, "device": "cpu"})
    result = train(build_model("toy-diffusion", {}), moons[0], cfg)
    torch.set_num_threads(n)
    return result.sampling_model.eval()


def test_point_metrics_on_known_cases():
    g = torch.Generator().manual_seed(0)
    x, x2 = torch.randn(1000, 2, generator=g), torch.randn(1000, 2, generator=g)
    shifted = x2 + torch.tensor([1.0, 0.0])
    assert energy_distance(x, x) == pytest.approx(0.0, abs=1e-12) and mmd_rbf(x, x) == pytest.approx(0.0, abs=1e-12)
    assert energy_distance(x, x2) < 0.01 < energy_distance(x, shifted)
    assert mmd_rbf(x, x2) < mmd_rbf(x, shifted)
    # energy distance between point masses at distance d: 2d
    assert energy_distance(torch.zeros(5, 2), torch.full((5, 2), 3.0)) == pytest.approx(2 * 18**0.5)
    assert chamfer(torch.zeros(1, 2), torch.tensor([[3.0, 4.0], [6.0, 8.0]])) == pytest.approx(0.5 * (5 + 7.5))
    # the floor: same-distribution draws at the curves' n; the V-statistic's bias makes it larger at smaller n
    pts = torch.randn(8000, 2, generator=g)
    assert 0 < toy2d.energy_floor(pts, 1000) < toy2d.energy_floor(pts, 250)
    assert toy2d.energy_floor(pts[:1500], 1000) is None                 # no held-out draw of that size


def test_mlp_shapes():
    assert MLP(3, 16, 5, depth=2)(torch.randn(7, 3)).shape == (7, 5)
    net = TimeMLP(dim=2, hidden=32, depth=2)
    out = net(torch.randn(7, 2), torch.randint(0, 100, (7,)))
    assert out.shape == (7, 2) and torch.equal(out, torch.zeros(7, 2))   # zero-initialised output layer


def test_toy_model_learns_two_moons(trained, moons):
    _, test = moons
    m = trained.evaluate(test, n=1000)
    # an untrained model samples N(0, I): far from the moons
    untrained = build_model("toy-diffusion", {}).eval().evaluate(test, n=1000)
    assert untrained["energy_distance"] > 10 * m["energy_distance"]
    assert m["energy_distance"] < 3 * m["floor_energy_distance"] + 0.005
    assert m["chamfer"] < 2 * m["floor_chamfer"]
    for sampler, steps in (("ddim", 20), ("dpmpp", 10)):
        fast = trained.evaluate(test, n=1000, sampler=sampler, steps=steps)
        assert fast["energy_distance"] < 0.05, (sampler, fast)


def test_ddim_inversion_round_trip_on_the_trained_model(trained, moons):
    x0 = moons[1].x[:500]
    s, fn = trained.schedule, trained.net
    with torch.no_grad():
        z = ddim_invert(s, fn, x0, steps=50, prediction="v", refine=1)
        back = ddim_sample_loop(s, fn, x0.shape, steps=50, prediction="v", clip=False, x_T=z)
    err = (back - x0).norm(dim=1)
    assert float(err.mean()) < 0.02 and float(err.max()) < 0.2      # the data span ~4 units
    assert 0.7 < float(z.std()) < 1.3                                 # the latents look like N(0, I)


def test_pictures(trained, moons, tmp_path):
    _, test = moons
    paths = toy2d.toy_artifacts(trained, test, tmp_path, torch.Generator().manual_seed(0), n=400)
    names = {p.name for p in paths}
    assert names == {"data.png", "forward_process.png", "samples_vs_data.png", "reverse_trajectories.png",
                     "reverse_process.gif", "quality_vs_steps.png"}
    for p in paths:
        with Image.open(p) as im:
            assert im.size[0] >= 200
    rows = toy2d.quality_vs_steps(trained, test.x, steps=[2, 20], n=500)
    by = {(r["sampler"], r["steps"]): r["energy_distance"] for r in rows}
    assert by[("dpm-solver++ 2M", 20)] < by[("dpm-solver++ 2M", 2)]  # quality improves with steps
    assert ("ddpm", trained.schedule.T) in by


def test_t_sweep_trains_one_model_per_T(moons):
    cfg = TrainConfig(**{**ToyDiffusion.train_defaults, "epochs": 1, "max_steps": 40, "progress": False,
                         "device": "cpu"})
    rows = toy2d.t_sweep(moons[0], moons[1], [5, 20], cfg, {"hidden": 32, "depth": 1}, n=300)
    assert [r["steps"] for r in rows] == [5, 20] and all(r["energy_distance"] > 0 for r in rows)


def test_cli_end_to_end(tmp_path, capsys):
    run = tmp_path / "toy"
    assert main(["train", "toy-diffusion", "--data-opt", "shape=8gaussians", "--epochs", "2", "--hidden", "32",
                 "--no-progress", "--out", str(run)]) == 0
    assert (run / "model.safetensors").exists() and (run / "quality_vs_steps.png").exists()
    assert (run / "samples.png").exists()                             # the loop's preview, as a scatter plot
    assert main(["sample", "--checkpoint", str(run), "--sampler", "dpmpp", "--steps", "10", "--num-images", "200",
                 "--out", str(tmp_path / "gen"), "--gif"]) == 0
    for name in ("samples.png", "reverse_trajectories.png", "reverse_process.gif"):
        assert (tmp_path / "gen" / name).exists()
    # the visualize kinds (cli/visualize_toy2d.py)
    parser = argparse.ArgumentParser()
    kinds = parser.add_subparsers(dest="what")
    for name in ("toy-forward", "toy-diffusion", "toy-t-sweep"):
        visualize_toy2d.add_visualize_parser(kinds, name, name)
    a = parser.parse_args(["toy-forward", "--data-opt", "shape=swiss_roll", "--out", str(tmp_path / "f.png")])
    assert a.func(a) == 0 and (tmp_path / "f.png").exists()
    a = parser.parse_args(["toy-diffusion", "--checkpoint", str(run), "--out", str(tmp_path / "pics")])
    assert a.func(a) == 0 and (tmp_path / "pics" / "reverse_trajectories.png").exists()
    a = parser.parse_args(["toy-t-sweep", "--Ts", "4,8", "--max-steps", "20", "--out", str(tmp_path / "sweep")])
    assert a.func(a) == 0 and (tmp_path / "sweep" / "t_sweep.png").exists()
    with pytest.raises(GenlabError, match="--Ts"):
        a = parser.parse_args(["toy-t-sweep", "--Ts", "4,x"])
        a.func(a)
    # bad inputs: one clear line, exit status 2
    capsys.readouterr()
    assert main(["sample", "--checkpoint", str(run), "--class", "1"]) == 2
    assert "unconditional" in capsys.readouterr().err
    clf = build_model("noisy-classifier", dict(base_width=8, channel_mult=(1,), timesteps=100))
    save_checkpoint(tmp_path / "clf", clf, meta={"data": {"name": "fashion_mnist", "kind": "image", "classes": [],
                                                         "channels": 1, "image_size": 28, "options": {}}})
    assert main(["sample", "--checkpoint", str(run), "--classifier", str(tmp_path / "clf")]) == 2
    assert "needs an image diffusion checkpoint" in capsys.readouterr().err
    assert main(["sample", "--checkpoint", str(run), "--image-size", "28"]) == 2  # points, not images
    assert "makes no images" in capsys.readouterr().err
    assert main(["train", "toy-diffusion", "--sampler", "lms", "--epochs", "1", "--out", str(tmp_path / "y")]) == 2
    assert "unknown sampler 'lms'" in capsys.readouterr().err
    assert not (tmp_path / "y").exists()                              # rejected before any training
    # eval: the sampler options reach the toy model's own (sample) metrics
    assert main(["eval", str(run), "--sampler", "ddim", "--steps", "5", "--n", "200",
                 "--json", str(tmp_path / "m.json")]) == 0
    assert "energy_distance" in json.loads((tmp_path / "m.json").read_text())
    assert main(["eval", str(run), "--metrics", "samples"]) == 2
    assert "does not generate images" in capsys.readouterr().err
    assert main(["sample", "--checkpoint", str(run), "--sampler", "ddim", "--steps", "500"]) == 2
    assert "between 1 and the model's 100" in capsys.readouterr().err
    assert main(["sample", "--checkpoint", str(run), "--steps", "10"]) == 2
    assert "runs all 100 steps" in capsys.readouterr().err
    assert main(["train", "toy-diffusion", "--dataset", "shapes", "--epochs", "1", "--out", str(tmp_path / "x")]) == 2
    assert "points" in capsys.readouterr().err

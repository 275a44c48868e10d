"""`genlab bench`: the quick table end to end, FLOP counting vs closed forms, the results file, bad inputs."""

import re
import sys

import pytest
import torch
from torch import nn

from genlab.bench import speed
from genlab.bench.speed import SKIP_DIFFUSERS, SpeedConfig, TrainStep, quick_config, run_speed, step_flops, write_section
from genlab.cli.main import main
from genlab.train import TrainConfig

NUMBER = r"[0-9]+(?:\.[0-9]+)?(?:e[-+]?[0-9]+)?"


def row(md: str, *cells: str) -> list[str]:
    """The cells of the first table row whose leading cells start with `cells`."""
    for line in md.splitlines():
        parts = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(parts) >= len(cells) and all(p.startswith(c) for p, c in zip(parts, cells)):
            return parts
    raise AssertionError(f"no row starting with {cells} in:\n{md}")


def test_quick_bench_writes_the_table(tmp_path, capsys):
    torch.set_num_threads(2)
    assert main(["bench", "--quick", "--threads", "1", "--out", str(tmp_path)]) == 0
    assert torch.get_num_threads() == 2  # the in-process CLI leaves torch as it found it
    md = (tmp_path / "results.md").read_text()
    printed = capsys.readouterr().out
    assert "### Training step, batch 16" in printed and f"wrote {tmp_path / 'results.md'}" in printed
    for dtype in ("fp32", "bf16") if "| bf16 |" in md else ("fp32",):
        assert float(row(md, dtype)[2]) > 0  # peak TFLOP/s
    for path in ("fp32 eager", "fast path (loop default)"):
        cells = row(md, "genlab U-Net", path)
        img_s, ms, gflop, tflops = map(float, cells[3:7])
        assert img_s > 0 and ms > 0 and gflop > 0 and tflops > 0
        assert abs(img_s * ms / 1000 - 16) < 0.5  # img/s x s/step = the quick batch of 16
        assert re.fullmatch(rf"{NUMBER}% \((fp32|bf16)\)", cells[7])
    if "skipped: pip install genlab[bench]" not in md:
        cells = row(md, "diffusers UNet2DModel", "fast path")
        assert float(cells[3]) > 0
        g, d = float(row(md, "genlab U-Net")[2][:-1]), float(cells[2][:-1])
        assert abs(g - d) / g < 0.1  # matched parameter count
    assert float(row(md, "ddpm", "100", "fp32")[3]) > 0  # seconds for the quick model's T = 100 steps
    assert re.search(rf"real loop .*: {NUMBER} img/s", md)
    assert re.search(rf"data pipeline alone .*: {NUMBER} img/s", md)
    assert re.search(rf"- fast path vs fp32 eager \(genlab U-Net\): {NUMBER}x", md)


def test_bench_without_diffusers_says_how_to_get_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "diffusers", None)  # import diffusers -> ImportError
    reference = speed.genlab_model(quick_config())
    assert speed.diffusers_model(reference) is None
    cfg = SpeedConfig(**{**quick_config().__dict__, "repeats": 1, "steps": 1, "loop_steps": 0,
                         "sample_precisions": ()})
    result = run_speed(cfg, log=lambda *a: None)
    assert SKIP_DIFFUSERS in result["markdown"] and "skipped: pip install genlab[bench]" in SKIP_DIFFUSERS
    assert "diffusers UNet2DModel |" not in result["markdown"]
    assert "### Sampling" not in result["markdown"]


class OneConv(nn.Module):
    """loss = mean(conv(x)): FLOPs known in closed form."""

    def __init__(self, cin=3, cout=5, k=3):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, padding=k // 2, bias=False)

    def forward(self, batch):
        return self.conv(batch["x"]).mean(), {}


def test_step_flops_matches_closed_form():
    cin, cout, k, size = 3, 5, 3, 8
    data = speed.synthetic_images(16, cin, size)
    per_image = step_flops(OneConv(cin, cout, k), data, torch.device("cpu"), batch_size=16)
    forward = 2 * cout * size * size * cin * k * k
    # the input needs no gradient: backward is the weight gradient alone, as costly as the forward
    assert per_image == 2 * forward


def test_step_flops_of_the_unet_scale_with_width():
    data = speed.synthetic_images(2, 1, 28)
    small = step_flops(speed.genlab_model(SpeedConfig(), base_width=16), data, torch.device("cpu"), 2)
    big = step_flops(speed.genlab_model(SpeedConfig(), base_width=32), data, torch.device("cpu"), 2)
    assert 3.0 < big / small < 4.2  # convolutions dominate: FLOPs grow with width squared


def test_train_step_mirrors_the_loop_choices():
    data = speed.synthetic_images(64, 1, 28)
    model = speed.genlab_model(quick_config())
    before = [p.detach().clone() for p in model.parameters()]
    step = TrainStep(model, data, TrainConfig(batch_size=16, precision="fp32", channels_last="on"),
                     torch.device("cpu"))
    assert step.describe() == "fp32, channels_last, fused AdamW"  # CPU has the fused kernel (torch >= 2.4)
    for _ in range(5):  # more steps than one epoch of 4 batches: the loader restarts
        step()
    assert step.epoch == 1
    assert torch.isfinite(step.acc) and step.acc > 0
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert step.ema is not None and step.ema.updates == 5


def test_write_section_replaces_only_its_own_section(tmp_path):
    path = tmp_path / "results.md"
    write_section(path, "speed", "## Speed\nold")
    write_section(path, "quality", "## Quality\nfid 1")
    write_section(path, "speed", "## Speed\nnew")
    text = path.read_text()
    assert text.startswith("# genlab benchmarks")
    assert "new" in text and "old" not in text and "fid 1" in text
    assert text.count("<!-- genlab-bench:speed -->") == 1
    assert text.index("## Speed") < text.index("## Quality")


def test_bad_bench_options(tmp_path, capsys):
    assert main(["bench", "--quality", "--quick", "--out", str(tmp_path)]) == 2
    assert "--quality --minutes 0.5 --n 200" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["bench", "--quality", "--minutes", "0", "--out", str(tmp_path)])
    with pytest.raises(SystemExit):
        main(["bench", "--batch-size", "-4", "--out", str(tmp_path)])
    assert main(["bench", "--quick", "--model", "depth=3", "--out", str(tmp_path)]) == 2
    assert "KEY one of" in capsys.readouterr().err
    assert main(["bench", "--quick", "--model", "num_res_blocks=two", "--out", str(tmp_path)]) == 2
    assert "cannot read 'two' as int" in capsys.readouterr().err
    # a flag of the other mode is an error, not silently dropped
    assert main(["bench", "--quick", "--minutes", "5", "--out", str(tmp_path)]) == 2
    assert "--minutes: option(s) of `genlab bench --quality`" in capsys.readouterr().err
    assert main(["bench", "--quality", "--no-sampling", "--steps", "3", "--out", str(tmp_path)]) == 2
    assert "--steps, --no-sampling: option(s) of the speed table" in capsys.readouterr().err
    assert not (tmp_path / "results.md").exists()


def test_model_options_parse_like_the_train_flags():
    from genlab.cli.bench import model_options

    got = model_options(["channel_mult=1,2", "attn_resolutions=", "num-res-blocks=1", "dropout=0.1",
                         "sample_bf16=true"])
    assert got == {"channel_mult": (1, 2), "attn_resolutions": (), "num_res_blocks": 1, "dropout": 0.1,
                   "sample_bf16": True}


def test_quality_without_a_feature_classifier_fails_before_training(tmp_path, capsys, data_dir):
    # conftest points GENLAB_HOME at an empty folder: no trained classifier there
    assert main(["bench", "--quality", "--minutes", "0.1", "--n", "20", "--out", str(tmp_path),
                 "--run-dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "classifier" in err and "genlab train classifier" in err
    assert not (tmp_path / "run").exists()


@pytest.fixture
def shapes_recipe(tmp_path, monkeypatch):
    """A tiny class-conditional recipe on `shapes`, and an (untrained) feature classifier for its metrics."""
    import json

    from genlab.metrics import features
    from genlab.models.classifier import Classifier, ClassifierConfig
    from genlab.train.checkpoint import save_checkpoint

    monkeypatch.setenv("GENLAB_HOME", str(tmp_path / "home"))
    torch.manual_seed(0)  # an untrained feature network is enough to exercise the path
    save_checkpoint(features.classifier_dir("shapes", 3, 32),
                    Classifier(ClassifierConfig(channels=3, image_size=32, num_classes=6, width=4, feature_dim=16)))
    recipe = tmp_path / "shapes_tiny.json"
    recipe.write_text(json.dumps({
        "dataset": "shapes", "conditional": True, "base_width": 8, "channel_mult": [1, 2], "num_res_blocks": 1,
        "attn_resolutions": [], "timesteps": 50, "sampler": "ddim", "sample_steps": 5,
        "batch_size": 16, "lr": 3e-3, "max_minutes": 90, "epochs": 3}))
    return recipe


def test_quality_of_a_recipe_from_a_config_file(tmp_path, shapes_recipe, one_thread):
    """`--config` measures a recipe of one's own, in its own results.md section beside the default's."""
    from genlab.train.checkpoint import read_config

    recipe = shapes_recipe
    out = tmp_path / "bench"
    write_section(out / "results.md", "quality", "## Quality\nthe default recipe's line")
    assert main(["bench", "--quality", "--config", str(recipe), "--minutes", "0.05", "--n", "20",
                 "--model", "dropout=0.1", "--out", str(out), "--run-dir", str(tmp_path / "run")]) == 0
    text = (out / "results.md").read_text()
    assert "the default recipe's line" in text  # its own section: the default's line is kept
    section = text.split("<!-- genlab-bench:quality:shapes_tiny -->")[1].split("<!-- /genlab-bench:quality")[0]
    assert f"## Quality: `{recipe}`" in section
    assert f"--config {recipe} --model dropout=0.1" in section
    assert "stopped by a 0.05-minute budget" in section and "ddim-5 sampling of 20 images" in section
    fid = float(re.search(r"\| FID \| ([-+0-9.e]+) \|", section).group(1))
    assert fid > 0 and "| class accuracy (requested class) |" in section  # conditional: balanced labels asked for
    assert (out / "quality_samples_shapes_tiny.png").exists()
    stored = read_config(tmp_path / "run")
    assert stored["data"]["name"] == "shapes"
    assert stored["model"]["base_width"] == 8 and stored["model"]["conditional"] and stored["model"]["dropout"] == 0.1
    # the recipe's training options, but the bench's budget: its max_minutes and epochs do not apply
    assert stored["train"]["batch_size"] == 16 and stored["train"]["lr"] == 3e-3
    assert stored["train"]["max_minutes"] == 0.05


def test_an_interrupted_quality_run_writes_no_result(tmp_path, shapes_recipe, monkeypatch, one_thread):
    """Ctrl-C during training: exit 130, the run keeps its checkpoint, and no line of a cut-short run is written."""
    import os
    import signal

    import genlab.train
    from genlab.train.checkpoint import read_config

    real_train = genlab.train.train

    def train_then_ctrl_c(model, data, cfg, out_dir, **kw):
        loss, calls = model.loss, [0]

        def loss_with_ctrl_c(batch):
            calls[0] += 1
            if calls[0] == 3:
                os.kill(os.getpid(), signal.SIGINT)  # what Ctrl-C sends; the loop finishes the step and stops
            return loss(batch)

        model.loss = loss_with_ctrl_c
        return real_train(model, data, cfg, out_dir, **kw)

    monkeypatch.setattr(genlab.train, "train", train_then_ctrl_c)
    out = tmp_path / "bench"
    assert main(["bench", "--quality", "--config", str(shapes_recipe), "--minutes", "5", "--n", "20",
                 "--out", str(out), "--run-dir", str(tmp_path / "run")]) == 130
    assert not (out / "results.md").exists() and not list(out.glob("*.png"))
    assert read_config(tmp_path / "run")["data"]["name"] == "shapes"  # the checkpoint is there to inspect


def test_bad_recipe_files_are_rejected_before_training(tmp_path, capsys):
    import json

    recipe = tmp_path / "r.json"
    recipe.write_text(json.dumps({"base_width": 8, "latent_dim": 4}))
    assert main(["bench", "--quality", "--config", str(recipe), "--out", str(tmp_path)]) == 2
    assert "latent_dim are not diffusion model or training options" in capsys.readouterr().err
    assert main(["bench", "--quality", "--config", str(tmp_path / "missing.json"), "--out", str(tmp_path)]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["bench", "--quick", "--config", str(recipe), "--out", str(tmp_path)]) == 2
    assert "--config names the recipe of a --quality run" in capsys.readouterr().err
    assert not (tmp_path / "results.md").exists()

"""`genlab bench`: the quick table end to end, FLOP counting vs closed forms, the results file, bad inputs."""

import math
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
    # diffusers is in the dev extra: its rows must run here, not be skipped
    assert "skipped: pip install genlab[bench]" not in md
    for path in ("fp32 eager", "fast path (loop default)"):
        cells = row(md, "diffusers UNet2DModel", path)
        assert float(cells[3]) > 0
        g, d = float(row(md, "genlab U-Net")[2][:-1]), float(cells[2][:-1])
        assert abs(g - d) / g < 0.1  # matched parameter count
    # the headline compares like with like: the same path on both sides, never genlab bf16 vs diffusers fp32
    assert re.search(rf"- genlab vs diffusers UNet2DModel, both fp32 eager: {NUMBER}x", md)
    assert re.search(rf"- genlab vs diffusers UNet2DModel, both on the fast path \(.*\): {NUMBER}x", md)
    assert "as shipped" not in md
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
    loss = step.acc.mean()["loss"]              # what the loop would log: the mean loss of the 5 steps
    assert math.isfinite(loss) and loss > 0
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
    assert "stopped by a 0.05-minute budget" in section and "ddim-5 sampling of 5 x 20 images" in section
    # FID and its floor as mean ± SD over 5 draws (samples: seeds 0..4; floor: disjoint train/test sets)
    fid, sd, floor, floor_sd = map(float, re.search(rf"\| FID \| ({NUMBER}) ± ({NUMBER}) \| ({NUMBER}) ± ({NUMBER}) \|",
                                                   section).groups())
    assert fid > 0 and sd > 0 and floor > 0 and floor_sd > 0
    assert "mean over 5 independent draws of 20 samples" in section
    assert "| class accuracy (requested class) |" in section  # conditional: balanced labels asked for
    assert (out / "quality_samples_shapes_tiny.png").exists()
    stored = read_config(tmp_path / "run")
    assert stored["data"]["name"] == "shapes"
    assert stored["model"]["base_width"] == 8 and stored["model"]["conditional"] and stored["model"]["dropout"] == 0.1
    # the recipe's training options, but the bench's budget: its max_minutes and epochs do not apply
    assert stored["train"]["batch_size"] == 16 and stored["train"]["lr"] == 3e-3
    assert stored["train"]["max_minutes"] == 0.05


def test_quality_of_a_gan_recipe(tmp_path, shapes_recipe, one_thread):
    """A config file with "family": "gan" is measured the same way: FID ± SD over 5 draws, class accuracy."""
    import json

    from genlab.train.checkpoint import read_config

    recipe = tmp_path / "gan_tiny.json"
    recipe.write_text(json.dumps({"family": "gan", "dataset": "shapes", "conditional": True, "loss": "hinge",
                                  "spectral_norm": True, "z_dim": 8, "g_width": 8, "d_width": 8, "batch_size": 16}))
    out = tmp_path / "bench"
    assert main(["bench", "--quality", "--config", str(recipe), "--minutes", "0.03", "--n", "20", "--out", str(out),
                 "--run-dir", str(tmp_path / "run")]) == 0
    section = (out / "results.md").read_text().split("<!-- genlab-bench:quality:gan_tiny -->")[1]
    assert f"genlab train gan --config {recipe}" in section and "EMA generator: sampling of 5 x 20 images" in section
    assert re.search(rf"\| FID \| {NUMBER} ± {NUMBER} \|", section) and "| class accuracy" in section
    assert read_config(tmp_path / "run")["family"] == "gan"
    # a GAN samples in one call: sampler options are refused in one line
    assert main(["bench", "--quality", "--config", str(recipe), "--minutes", "0.03", "--sampler", "ddim",
                 "--out", str(out), "--run-dir", str(tmp_path / "run2")]) == 2
    # `genlab train` takes the same file, and refuses it for another family
    assert main(["train", "diffusion", "--config", str(recipe), "--out", str(tmp_path / "x")]) == 2


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


# ---------------------------------------------------------------- FID noise and the sampler table's report

def sampler_table():
    """benchmarks/sampler_table.py as a module (it is a script, not part of the package)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "sampler_table.py"
    spec = importlib.util.spec_from_file_location("sampler_table", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_verdict_needs_a_difference_beyond_the_noise():
    from genlab.bench.noise import mean_sd, verdict

    assert mean_sd([1.0, 2.0, 3.0]) == (2.0, 1.0)
    assert verdict([1.0, 1.2, 0.9, 1.1, 1.0]) == "PASS"        # margins all well above 0
    assert verdict([-1.0, -1.2, -0.9, -1.1, -1.0]) == "FAIL"
    assert verdict([2.0, -1.5, 1.0, -2.0, 0.8]) == "within noise"  # mean 0.06, SE 0.8
    assert verdict([3.0]) == "within noise"                     # one draw: no measured noise, no verdict


def table_row(sampler, steps, fids, seconds, eta=None, w=1.0, acc=None):
    from genlab.bench.noise import mean_sd

    floor = [25.0, 21.0, 29.0, 24.0, 26.0]
    acc = acc or [0.9] * 5
    return dict(sampler=sampler, steps=steps, guidance=w, eta=eta if eta is not None else float(sampler == "ddpm"),
                fid=mean_sd(fids)[0], fid_sd=mean_sd(fids)[1], fid_draws=fids, floor_fid=mean_sd(floor)[0],
                floor_fid_sd=mean_sd(floor)[1], floor_fid_draws=floor, kid=0.0, precision=0.9, recall=0.8,
                conditional_accuracy=mean_sd(acc)[0], conditional_accuracy_draws=acc,
                seconds_per_1000=mean_sd(seconds)[0], seconds_per_1000_draws=seconds)


def test_sampler_table_targets_are_verdicts_only_beyond_the_noise():
    st = sampler_table()
    ddpm = table_row("ddpm", 1000, [25.0, 27.0, 23.0, 26.0, 24.0], [1300.0] * 5)
    # DDIM-50 12% above DDPM draw by draw: beyond the paired noise -> FAIL
    worse = table_row("ddim", 50, [28.0, 30.2, 25.8, 29.1, 26.9], [60.0] * 5)
    assert st.check_targets([ddpm, worse], [])[0].startswith("FAIL: DDIM-50 FID 28.00 ± 1.74 vs DDPM-1000 25.00 ± 1.58")
    # 10% above on average but scattered around the line: within noise, not a FAIL
    scattered = table_row("ddim", 50, [29.0, 28.0, 25.0, 27.0, 28.5], [60.0] * 5)
    assert st.check_targets([ddpm, scattered], [])[0].startswith("within noise: DDIM-50")
    better = table_row("ddim", 50, [25.1, 27.2, 23.0, 26.1, 24.2], [60.0] * 5)
    assert st.check_targets([ddpm, better], [])[0].startswith("PASS: DDIM-50")
    # fast enough only by timing noise around 20x: the speed half cannot pass
    edge = table_row("ddim", 50, [25.1, 27.2, 23.0, 26.1, 24.2], [62.0, 68.0, 63.0, 67.0, 65.0])
    line = st.check_targets([ddpm, edge], [])[0]
    assert line.startswith("within noise: DDIM-50") and "(>= 20x: within noise)" in line


def test_sampler_table_report_reads_only_the_numbers():
    st = sampler_table()
    ddpm = table_row("ddpm", 1000, [25.0, 27.0, 23.0, 26.0, 24.0], [1300.0] * 5)
    d50 = table_row("ddim", 50, [28.0, 30.2, 25.8, 29.1, 26.9], [60.0] * 5, eta=0.0)
    eta1 = table_row("ddim", 50, [23.0, 24.5, 21.5, 22.0, 23.0], [57.0] * 5, eta=1.0)
    text = "\n\n".join(st.observations([ddpm, d50, eta1], [], []))
    assert "corrects" not in text and "carry the network's errors" not in text  # no fixed causal prose
    assert "DDIM-50 vs DDPM-1000: +3.0 (SE 0.1 over 5 paired draws): higher" in text
    assert "DDIM-50 (eta 1) vs DDPM-1000: -2.2 (SE 0.5 over 5 paired draws): lower" in text
    # below the floor's mean, but within the floor's own spread: said so, no claim of beating it
    assert "DDIM-50 (eta 1) scores 22.80, under the floor's mean 25.00: within the noise" in text
    far_below = table_row("ddim", 50, [20.0, 16.5, 24.0, 19.0, 21.0], [57.0] * 5, eta=1.0)
    assert "under the floor's mean 25.00: below it by more than the noise" in \
        "\n".join(st.observations([ddpm, far_below], [], []))


def test_sampler_table_rows_are_keyed_on_the_feature_network(tmp_path):
    import json

    st = sampler_table()
    key = dict(weights="w1", features="clfA", n=500, draws=5, seed=0, batch_size=250, threads=2)
    rows = [dict(sampler="ddpm", steps=1000, guidance=1.0, eta=1.0, fid=25.0, **key),
            dict(sampler="ddim", steps=50, guidance=1.0, eta=0.0, fid=28.0, **{**key, "features": "clfB"}),
            dict(sampler="ddim", steps=10, guidance=1.0, eta=0.0, fid=30.0, **{**key, "weights": "w0"}),
            dict(sampler="ddim", steps=25, guidance=1.0, eta=0.0, fid=27.0,
                 **{**key, "weights": "w0", "features": "clfB"}),
            dict(sampler="dpmpp", steps=20, guidance=1.0, fid=26.0,  # written before features were recorded
                 **{k: v for k, v in key.items() if k not in ("features", "draws")})]
    path = tmp_path / "t.rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    done, history = st.load_rows(path, key)
    assert list(done) == [("ddpm", 1000, 1.0, 1.0)]  # the row scored by another classifier is measured again
    assert [(r["sampler"], r["steps"]) for r in history] == [("ddim", 10)]  # same scoring, earlier weights
    assert st.load_rows(tmp_path / "none.jsonl", key) == ({}, [])

"""`genlab sweep`: typed grids, one-line errors, a tiny toy-diffusion sweep end to end, skip, rescore, resume."""

import csv
import json
from pathlib import Path

import pytest
from PIL import Image
from safetensors.torch import load_file

from genlab.cli.main import main
from genlab.figures import artifacts
from genlab.lab.sweep import make_cells, parse_grid
from genlab.train import loop

BASE = {"family": "toy-diffusion", "hidden": 16, "depth": 1, "timesteps": 10, "epochs": 2, "batch_size": 64,
        "warmup_steps": 2, "log_every": 2, "num_samples": 0, "progress": False, "device": "cpu"}
GRID = ["--grid", "lr=1e-3,3e-3"]


def _sweep_argv(base: Path, out: Path, *extra, grid=GRID) -> list[str]:
    """256 training points, batch 64, 2 epochs: 8 steps per cell; metrics on 64 held-out points."""
    return ["sweep", "--config", str(base), *grid, "--out", str(out), "--data-opt", "n=256", "--eval-n", "64",
            *extra]


@pytest.fixture
def no_pictures(monkeypatch):
    """The toy family's pictures are tested in test_toy_diffusion; here they would only cost seconds."""
    monkeypatch.delitem(artifacts.ARTIFACTS, "toy-diffusion")


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("sweep") / "base.json"
    path.write_text(json.dumps(BASE))
    return path


@pytest.fixture(scope="module")
def swept(base, tmp_path_factory) -> Path:
    """A 2-cell sweep (lr = 1e-3, 3e-3) run through the CLI."""
    out = tmp_path_factory.mktemp("sweep") / "out"
    with pytest.MonkeyPatch.context() as mp:
        mp.delitem(artifacts.ARTIFACTS, "toy-diffusion")
        assert main(_sweep_argv(base, out)) == 0
    return out


def _csv(path: Path) -> list[dict]:
    return list(csv.DictReader(path.read_text().splitlines()))


def _error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err and len(lines) == 1 and lines[0].startswith("genlab: error: "), err
    return lines[0]


def test_grid_values_take_their_options_types():
    axes = parse_grid(["lr=1e-3,3e-4", "timesteps=200, 1e3", "ema_warmup=false,yes", "schedule=linear,cosine"],
                      "toy-diffusion")
    assert [a.values for a in axes] == [[1e-3, 3e-4], [200, 1000], [False, True], ["linear", "cosine"]]
    assert type(axes[1].values[1]) is int and type(axes[0].values[0]) is float
    cells = make_cells(axes)
    assert len(cells) == 16 and cells[0].options == {"lr": 1e-3, "timesteps": 200, "ema_warmup": False,
                                                     "schedule": "linear"}
    assert cells[1].options["schedule"] == "cosine" and cells[-1].options["lr"] == 3e-4  # first axis slowest
    assert cells[0].name == "lr=0.001,timesteps=200,ema_warmup=false,schedule=linear"
    # list options: values separated by ';' when they hold commas
    axes = parse_grid(["channel_mult=1,2;1,2,2", "attn_resolutions=none;8", "dataset=shapes"], "diffusion")
    assert [a.values for a in axes] == [[(1, 2), (1, 2, 2)], [(), (8,)], ["shapes"]]
    assert make_cells(axes)[0].name == "channel_mult=1-2,attn_resolutions=none,dataset=shapes"


@pytest.mark.parametrize("grid, words", [
    ("lrr=1e-3", ["lrr is not an option of toy-diffusion (did you mean lr?)", "timesteps", "batch_size",
                  "dataset"]),
    ("lr=", ["--grid 'lr=' has an empty value"]),
    ("lr=1e-3,,3e-3", ["empty value"]),
    ("lr=fast", ["lr takes a number, got 'fast'"]),
    ("timesteps=1.5", ["timesteps takes an integer, got '1.5'"]),
    ("ema_warmup=maybe", ["ema_warmup takes true or false"]),
    ("lr", ["--grid expects NAME=V1,V2"]),
    ("lr=1e-3,0.001", ["lists a value twice"]),
    ("lr=-1", ["--grid lr=-1: lr must be positive"]),                # checked before any cell trains
])
def test_bad_grids_are_one_line(grid, words, base, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["sweep", "--config", str(base), "--grid", grid, "--out", str(out)]) == 2
    line = _error_line(capsys)
    assert all(w in line for w in words), line
    assert not out.exists()


def test_other_bad_input_is_one_line(base, tmp_path, capsys):
    tmp_path.joinpath("bare.json").write_text(json.dumps({"lr": 1e-3}))
    for argv, words in [
        (["--config", str(tmp_path / "bare.json"), "--grid", "lr=1"], "name the family to sweep"),
        (["--config", str(base), "--grid", "lr=1", "--grid", "lr=2"], "sweeps lr twice"),
        (["--config", str(base), "--grid", "lr=1", "--fid-n", "10"], "--fid-n asks for FID, but the toy-diffusion"),
        (["--config", str(base), "--grid", "max_minutes=1,2", "--max-minutes", "1"], "--max-minutes is swept"),
    ]:
        assert main(["sweep", *argv, "--out", str(tmp_path / "out")]) == 2
        assert words in _error_line(capsys)
    tmp_path.joinpath("out", "notes.txt").parent.mkdir()
    tmp_path.joinpath("out", "notes.txt").write_text("mine")
    assert main(["sweep", "--config", str(base), *GRID, "--out", str(tmp_path / "out")]) == 2
    assert "holds files but no sweep" in _error_line(capsys)


def test_a_sweep_writes_run_folders_a_table_and_plots(swept):
    rows = _csv(swept / "results.csv")
    assert [r["lr"] for r in rows] == ["0.001", "0.003"]
    for r in rows:
        folder = swept / r["cell"]
        config = json.loads((folder / "config.json").read_text())       # a normal run folder
        assert config["train"]["lr"] == float(r["lr"]) and config["model"]["hidden"] == 16
        assert int(r["steps"]) == 8 and float(r["loss"]) > 0 and float(r["train_seconds"]) > 0
        # the family's own metrics, as `genlab eval --metrics model` wrote them into the run folder
        own = json.loads((folder / "eval_model.json").read_text())
        assert float(r["energy_distance"]) == pytest.approx(own["energy_distance"])
        assert "floor_energy_distance" in r
    with Image.open(swept / "plot_lr.png") as im:
        assert im.size[0] > 300
    report = (swept / "results.md").read_text()
    assert "| 0.001 | 8 |" in report and "![lr](plot_lr.png)" in report and "One seed per cell" in report


def test_rerun_skips_done_cells_and_rescoring_keeps_the_weights(swept, base, capsys, no_pictures):
    weights = {p: p.stat().st_mtime_ns for p in swept.glob("*/model.safetensors")}
    assert main(_sweep_argv(base, swept)) == 0
    assert capsys.readouterr().out.count("done, skipped") == 2
    assert main(_sweep_argv(base, swept, "--dry-run")) == 0
    assert capsys.readouterr().out.count("done (skipped)") == 2
    assert main(_sweep_argv(base, swept)[:-1] + ["32"]) == 0        # --eval-n 32: scored again, not trained
    out = capsys.readouterr().out
    assert out.count("scoring") == 2 and "training" not in out
    assert {p: p.stat().st_mtime_ns for p in swept.glob("*/model.safetensors")} == weights
    assert all(json.loads(p.read_text())["scoring"]["eval_n"] == 32 for p in swept.glob("*/sweep_row.json"))


def test_another_sweep_in_out_is_refused_unless_overwrite(swept, base, tmp_path, capsys, no_pictures):
    assert main(_sweep_argv(base, swept, grid=["--grid", "lr=1e-2"])) == 2
    assert "holds another sweep (differing in: grid)" in _error_line(capsys)
    out = tmp_path / "out"
    out.mkdir()
    (out / "old-cell").mkdir()
    (out / "notes.txt").write_text("mine")
    (out / "sweep.json").write_text(json.dumps({"family": "toy-diffusion", "cells": ["old-cell"]}))
    assert main(_sweep_argv(base, out, "--overwrite", grid=["--grid", "lr=1e-2"])) == 0
    assert not (out / "old-cell").exists() and (out / "notes.txt").exists()   # only its own files go
    assert [r["lr"] for r in _csv(out / "results.csv")] == ["0.01"]


class _InterruptSecondRun:
    """Stands in for the loop's Ctrl-C flag: the second training run is interrupted after 3 steps."""
    runs = 0

    def __init__(self):
        type(self).runs += 1
        self.stop, self.reads = type(self).runs == 2, 0

    @property
    def flag(self):
        self.reads += 1
        return self.stop and self.reads >= 3

    def restore(self):
        pass


def test_an_interrupted_cell_resumes_exactly(swept, base, tmp_path, capsys, monkeypatch, no_pictures):
    out = tmp_path / "out"
    with monkeypatch.context() as mp:
        mp.setattr(loop, "_InterruptFlag", _InterruptSecondRun)
        assert main(_sweep_argv(base, out)) == 130
    second = out / "lr=0.003"
    assert (second / "state.pt").exists() and not (second / "sweep_row.json").exists()
    assert len(_csv(out / "results.csv")) == 1
    capsys.readouterr()
    assert main(_sweep_argv(base, out, "--dry-run")) == 0
    assert "continues its checkpoint" in capsys.readouterr().out
    assert main(_sweep_argv(base, out)) == 0
    log = capsys.readouterr().out
    assert "lr=0.001: done, skipped" in log and "lr=0.003: continuing its checkpoint" in log
    # the loop's exact resume: the same weights as the cell that was never interrupted
    for name in ("model.safetensors", "ema.safetensors"):
        resumed, straight = load_file(second / name), load_file(swept / "lr=0.003" / name)
        assert all((resumed[k] == straight[k]).all() for k in straight)
    assert [r["steps"] for r in _csv(out / "results.csv")] == ["8", "8"]

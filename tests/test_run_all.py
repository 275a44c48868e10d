"""`genlab run-all`: the whole lab on the tiny preset (16 px shapes, a few steps per model).

One module-scoped run (~10 s on 2 cores) feeds the report checks; `--only`
then retrains one stage into the same folder and must keep the other rows.
"""

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from genlab.cli.main import main
from genlab.errors import GenlabError
from genlab.lab import STAGES, Lab, make_preset, parse_only
from genlab.train.checkpoint import load_checkpoint


@pytest.fixture(scope="module")
def lab_out(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("lab") / "artifacts"
    out.mkdir()
    done = subprocess.Popen([sys.executable, "-c", "pass"])
    done.wait()
    (out / ".run-all.lock").write_text(str(done.pid))  # left by a run that died: taken over
    threads = torch.get_num_threads()
    try:
        assert main(["run-all", "--preset", "tiny", "--out", str(out), "--threads", "1"]) == 0
    finally:
        torch.set_num_threads(threads)
    return out


@pytest.fixture(autouse=True)
def _keep_threads():
    """--threads sets torch's thread count for the whole process: put it back after each test."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def table_rows(text: str, first_header: str) -> dict[str, list[str]]:
    """Rows of the markdown table whose header starts with `first_header`, by first cell."""
    lines = text.splitlines()
    start = next(i for i, l in enumerate(lines) if l.startswith(f"| {first_header} |"))
    rows = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = cells
    return rows


def number(cell: str) -> float:
    m = re.match(r"^-?\d+(\.\d+)?(e-?\d+)?", cell)
    assert m, f"expected a number, got {cell!r}"
    return float(m.group(0))


def test_report_has_every_model_with_numbers(lab_out):
    text = (lab_out / "results.md").read_text()
    rows = table_rows(text, "model")
    assert list(rows) == ["Classifier", "AE", "VAE", "HVAE", "DDPM", "GAN"]
    head = [c.strip() for c in next(l for l in text.splitlines() if l.startswith("| model |")).strip("|").split("|")]
    col = {name: i for i, name in enumerate(head)}
    for name in ("AE", "VAE", "HVAE"):
        mse, psnr = number(rows[name][col["MSE"]]), number(rows[name][col["PSNR (dB)"]])
        assert 0 < mse < 1 and psnr == pytest.approx(10 * torch.log10(torch.tensor(1 / mse)).item(), abs=3)
        assert 0 < number(rows[name][col["SSIM"]]) <= 1
    for name in ("VAE", "HVAE"):
        nats, bpd = number(rows[name][col["-ELBO (nats)"]]), number(rows[name][col["-ELBO (bits/dim)"]])
        assert bpd == pytest.approx(nats / (3 * 16 * 16 * 0.6931472), rel=2e-3)
        assert "(k=4)" in rows[name][col["-IWAE (nats)"]]
    for name in ("VAE", "HVAE", "DDPM", "GAN"):   # the GAN row beside the VAE and DDPM rows, same metric
        fid = rows[name][col["FID (floor)"]]
        assert number(fid) >= 0 and re.search(r"\(\d", fid), fid   # FID with its floor in brackets
    for name in ("Classifier", "AE", "VAE", "HVAE", "DDPM", "GAN"):
        assert number(rows[name][col["steps (epochs)"]]) > 0 and number(rows[name][col["s / epoch"]]) >= 0
    assert 0 <= number(rows["Classifier"][col["accuracy"]]) <= 1 and "test" in rows["Classifier"][col["accuracy"]]
    assert "cond." in rows["DDPM"][col["accuracy"]]
    sweep = table_rows(text, "KL weight (beta)")
    assert [number(k) for k in sweep] == [0.5, 1.0, 2.0] and "the VAE above" in list(sweep)[1]
    assert "Raising the weight from 0.5 to 2" in text


def test_every_link_resolves_and_ddpm_pictures_exist(lab_out):
    text = (lab_out / "results.md").read_text()
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    assert len(links) > 20
    for link in links:
        assert not Path(link).is_absolute() and (lab_out / link).exists(), link
    assert not (lab_out / ".run-all.lock").exists()
    for name in ("samples_grid.png", "denoising_strip.png", "reverse_process.gif", "forward_process.png"):
        assert f"ddpm/{name}" in links and (lab_out / "ddpm" / name).stat().st_size > 0
    for name in ("inputs.png", "vae/reconstructions.png", "vae/prior_samples.png", "sweep/kl_sweep.png",
                 "gan/samples_grid.png", "gan/interpolation.png", "gan/interpolation.gif"):
        assert name in links


def test_stage_folders_are_training_loop_checkpoints(lab_out):
    for stage, family in (("classifier", "classifier"), ("vae", "vae"), ("ddpm", "diffusion")):
        model, ema, config, _ = load_checkpoint(lab_out / stage)
        assert config["family"] == family and ema is not None
        assert (lab_out / stage / "loss.csv").exists() and not (lab_out / stage / "state.pt").exists()
    ddpm, _, config, _ = load_checkpoint(lab_out / "ddpm")
    assert config["model"]["conditional"] and config["data"]["image_size"] == 16
    # the sweep's extra VAEs differ from the VAE stage in the KL weight only
    vae = load_checkpoint(lab_out / "vae")[2]["model"]
    half = load_checkpoint(lab_out / "sweep" / "vae_kl_weight0.5")[2]["model"]
    assert {k for k in vae if vae[k] != half[k]} == {"kl_weight"}


def test_only_keeps_other_rows_and_refuses_to_mix_without_overwrite(lab_out, capsys):
    before = table_rows((lab_out / "results.md").read_text(), "model")
    assert main(["run-all", "--preset", "tiny", "--out", str(lab_out), "--only", "ae"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["run-all", "--preset", "tiny", "--out", str(lab_out), "--only", "ae", "--overwrite",
                 "--minutes-scale", "0.5", "--threads", "1"]) == 0
    after = table_rows((lab_out / "results.md").read_text(), "model")
    assert list(after) == list(before)
    assert after["VAE"] == before["VAE"] and after["DDPM"] == before["DDPM"]
    assert after["AE"][3].startswith("6 (")     # 12 steps x 0.5


def test_bad_options():
    with pytest.raises(GenlabError, match="unknown stage"):
        parse_only("ddpm,stylegan")
    assert parse_only("diffusion, VAE") == ("vae", "ddpm") and parse_only(None) == STAGES
    with pytest.raises(GenlabError, match="unknown preset"):
        make_preset("huge")
    with pytest.raises(GenlabError, match="minutes-scale"):
        Lab(make_preset("tiny"), minutes_scale=0)
    assert make_preset("quick").dataset == "shapes" and make_preset("full").dataset == "fashion_mnist"
    assert make_preset("quick", "fashion_mnist").stages["ddpm"].model["attn_resolutions"] == (7,)


def test_a_second_run_into_the_same_folder_is_refused(tmp_path, capsys):
    import os

    out = tmp_path / "artifacts"
    out.mkdir()
    (out / ".run-all.lock").write_text(str(os.getpid()))  # a live process holds the folder
    assert main(["run-all", "--preset", "tiny", "--out", str(out)]) == 2
    assert "another run-all" in capsys.readouterr().err
    assert (out / ".run-all.lock").exists() and not (out / "classifier").exists()


def test_ctrl_c_stops_the_lab_and_keeps_the_finished_stages(tmp_path, monkeypatch):
    import dataclasses

    import genlab.train

    real_train = genlab.train.train

    def train_then_ctrl_c(model, *args, **kwargs):  # what the loop returns after a Ctrl-C
        result = real_train(model, *args, **kwargs)
        return dataclasses.replace(result, stopped="interrupted") if model.family == "diffusion" else result

    monkeypatch.setattr(genlab.train, "train", train_then_ctrl_c)
    out = tmp_path / "artifacts"
    assert main(["run-all", "--preset", "tiny", "--out", str(out), "--only", "ae,ddpm,sweep", "--threads", "1"]) == 130
    rows = table_rows((out / "results.md").read_text(), "model")
    assert list(rows) == ["AE"] and not (out / "sweep").exists() and not (out / ".run-all.lock").exists()
    # the interrupted stage kept its checkpoint (with optimizer state): --resume continues it,
    # keeps the finished AE as it is and runs the stage that never started
    assert (out / "ddpm" / "state.pt").exists()
    ae_weights = (out / "ae" / "model.safetensors").stat().st_mtime_ns
    calls = []
    monkeypatch.setattr(genlab.train, "train", lambda *a, **kw: calls.append(kw.get("resume")) or real_train(*a, **kw))
    assert main(["run-all", "--preset", "tiny", "--out", str(out), "--only", "ae,ddpm,sweep", "--threads", "1",
                 "--resume"]) == 0
    rows = table_rows((out / "results.md").read_text(), "model")
    assert list(rows) == ["AE", "DDPM"] and (out / "sweep" / "lab_row.json").exists()
    assert calls[0] is True and not any(calls[1:])  # ddpm continued, the sweep's VAEs started afresh
    assert (out / "ae" / "model.safetensors").stat().st_mtime_ns == ae_weights
    assert not list(out.rglob("state.pt"))


def test_demo_runs_the_lab_and_says_where_to_look(tmp_path, monkeypatch, capsys):
    """`genlab demo` (what `make demo` runs) is run-all with the quick preset; here with the tiny one."""
    import genlab.lab

    monkeypatch.setitem(genlab.lab.PRESETS, "quick", genlab.lab.tiny)
    out = tmp_path / "artifacts"
    assert main(["demo", "--out", str(out), "--device", "cpu"]) == 0
    assert (out / "results.md").exists() and "where to look" in capsys.readouterr().out
    # a plain second demo would replace the first; with --resume it keeps the finished stages
    assert main(["demo", "--out", str(out), "--resume"]) == 0
    assert "keeping the finished stages" in capsys.readouterr().out

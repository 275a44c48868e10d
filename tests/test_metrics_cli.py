"""`genlab train classifier` + `genlab eval` end to end on tiny checkpoints."""

import json

import numpy as np
import pytest
import torch

from genlab.cli.main import main
from genlab.metrics.features import classifier_dir


@pytest.fixture
def home(tmp_path, monkeypatch):
    """GENLAB_HOME in tmp_path, and one thread (tiny networks on a shared CPU, see test_classifier)."""
    monkeypatch.setenv("GENLAB_HOME", str(tmp_path / "home"))
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield tmp_path / "home"
    torch.set_num_threads(n)


def test_train_classifier_cli_writes_a_feature_network(home, capsys):
    out = classifier_dir("shapes", 1, 16)
    rc = main(["train", "classifier", "--dataset", "shapes", "--image-size", "16", "--channels", "1",
               "--subset", "256", "--epochs", "1", "--batch-size", "64", "--width", "4",
               "--no-progress", "--out", str(out)])
    assert rc == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["family"] == "classifier" and cfg["model"]["num_classes"] == 6
    assert cfg["model"]["channels"] == 1 and cfg["model"]["image_size"] == 16
    assert (out / "confusion.png").exists()


def test_eval_cli_end_to_end(home, tmp_path, capsys):

    from genlab.models import build_model
    from genlab.train.checkpoint import save_checkpoint

    clf = classifier_dir("shapes", 1, 16)
    assert main(["train", "classifier", "--dataset", "shapes", "--image-size", "16", "--channels", "1",
                 "--subset", "256", "--epochs", "1", "--batch-size", "64", "--width", "4",
                 "--no-progress", "--out", str(clf)]) == 0
    torch.manual_seed(0)
    vae = build_model("vae", {"channels": 1, "image_size": 16, "width": 8, "hidden": 32})
    run = tmp_path / "vae-run"
    save_checkpoint(run, vae, meta={"data": {"name": "shapes", "kind": "image", "classes": [],
                                             "channels": 1, "image_size": 16,
                                             "options": {"image_size": 16, "channels": 1}}})
    capsys.readouterr()
    rc = main(["eval", str(run), "--n", "64", "--kid-subsets", "5", "--json", str(tmp_path / "m.json")])
    assert rc == 0
    text = capsys.readouterr().out
    assert "FID" in text and "floor (train vs test)" in text
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["n"] == 64 and metrics["fid"] > metrics["floor_fid"] >= 0
    # a second eval reads the real-data features from the cache
    assert len(list((home / "feature_stats").glob("shapes-*-n64-*.npz"))) == 2
    # no classifier for this shape: one clear line, exit status 2
    rc = main(["eval", str(run), "--n", "64", "--dataset", "cifar10"])
    assert rc == 2 and "genlab train classifier --dataset cifar10" in capsys.readouterr().err
    # --metrics model on a family without metrics of its own says so instead of printing nothing
    ddpm = build_model("diffusion", {"channels": 1, "image_size": 16, "base_width": 8, "channel_mult": (1,),
                                     "num_res_blocks": 1, "attn_resolutions": (), "timesteps": 10})
    save_checkpoint(tmp_path / "ddpm-run", ddpm, meta={"data": {"name": "shapes", "kind": "image", "classes": [],
                                                              "channels": 1, "image_size": 16, "options": {}}})
    assert main(["eval", str(tmp_path / "ddpm-run"), "--metrics", "model"]) == 2
    assert "no metrics of its own; use --metrics samples" in capsys.readouterr().err


def test_eval_scores_image_token_samples_against_quantised_test_images(home, tmp_path, capsys):
    """A discrete model on binarised shapes gets FID & co from `genlab eval`: features from the
    shapes classifier, real images binarised like its training data (so the floor is binary too)."""
    from genlab.data import load_dataset
    from genlab.data.words import tokens_to_images
    from genlab.metrics.features import feature_extractor, real_features

    common = ["--image-size", "16", "--channels", "1", "--subset", "256", "--no-progress"]
    assert main(["train", "classifier", "--dataset", "shapes", *common, "--epochs", "1", "--batch-size", "64",
                 "--width", "4", "--out", str(classifier_dir("shapes", 1, 16))]) == 0
    run = tmp_path / "tokens-run"
    assert main(["train", "discrete", "--dataset", "shapes-binary", *common, "--max-steps", "3",
                 "--batch-size", "32", "--dim", "16", "--depth", "1", "--heads", "2", "--sample-steps", "4",
                 "--out", str(run)]) == 0
    capsys.readouterr()
    assert main(["eval", str(run), "--n", "48", "--kid-subsets", "3", "--json", str(tmp_path / "m.json")]) == 0
    text = capsys.readouterr().out
    assert "bits_per_token" in text and "FID" in text and "floor (train vs test)" in text
    m = json.loads((tmp_path / "m.json").read_text())
    assert m["dataset"] == "shapes-binary" and m["n"] == 48 and m["fid"] >= 0 and m["floor_fid"] >= 0

    # the reference features are those of the binarised test images, not of the grey ones
    ext = feature_extractor("shapes-binary", 1, 16)
    ref = real_features(ext, "shapes-binary", "test", 48)
    tokens = load_dataset("shapes-binary", split="test", image_size=16, channels=1)
    idx = torch.randperm(len(tokens), generator=torch.Generator().manual_seed(0))[:48]
    binary = tokens_to_images(tokens.x[idx], tokens.meta["grid"], tokens.meta["levels"])
    assert set(binary.unique().tolist()) == {-1.0, 1.0}
    assert np.allclose(ref.features, ext(binary)[0], atol=1e-5)

    # a token dataset trained with other loader options is judged against real images with the same options
    run3 = tmp_path / "levels3-run"
    assert main(["train", "discrete", "--dataset", "shapes-tokens", "--data-opt", "levels=3", *common,
                 "--max-steps", "2", "--batch-size", "32", "--dim", "16", "--depth", "1", "--heads", "2",
                 "--sample-steps", "4", "--out", str(run3)]) == 0
    assert main(["eval", str(run3), "--n", "48", "--kid-subsets", "3", "--metrics", "samples"]) == 0
    ext = feature_extractor("shapes-tokens", 1, 16)
    ref3 = real_features(ext, "shapes-tokens", "test", 48, data_options={"levels": 3})
    assert ref3.cached  # the eval above computed exactly these
    tokens = load_dataset("shapes-tokens", split="test", image_size=16, channels=1, levels=3)
    three = tokens_to_images(tokens.x[idx], tokens.meta["grid"], 3)
    assert set(three.unique().tolist()) == {-1.0, 0.0, 1.0}
    assert np.allclose(ref3.features, ext(three)[0], atol=1e-5)
    assert not real_features(ext, "shapes-tokens", "test", 48).cached  # the default 4 levels: another file

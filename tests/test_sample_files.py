"""`genlab sample --save-images DIR / --npz FILE`: samples as files FID tools read (issue #23).

Tiny untrained checkpoints of every family that samples; the files are checked against the grid the
same run writes, and against the model sampled directly with the same seed.
"""

import csv

import numpy as np
import pytest
import torch
from PIL import Image

from genlab.cli.main import main
from genlab.models import build_model
from genlab.pixels import to_uint8_image
from genlab.train.checkpoint import sampling_model, save_checkpoint
from genlab.viz import files

IMAGE_META = {"data": {"name": "shapes", "kind": "image", "classes": ["a", "b"], "channels": 1, "image_size": 8,
                       "options": {}}}


def _save(root, name, family, options, meta=None):
    torch.manual_seed(0)
    save_checkpoint(root / name, build_model(family, options), meta=meta or {})
    return root / name


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    return {
        "diffusion": _save(root, "diffusion", "diffusion", dict(
            channels=1, image_size=8, base_width=8, channel_mult=(1,), num_res_blocks=1, attn_resolutions=(),
            timesteps=20, conditional=True, num_classes=2), IMAGE_META),
        "vae": _save(root, "vae", "vae", dict(latent_dim=4, width=8, hidden=32)),
        "hvae": _save(root, "hvae", "hvae", dict(z1_dim=4, z2_dim=2, width=8, hidden=32, top_hidden=16)),
        "ae": _save(root, "ae", "ae", dict(latent_dim=4, width=8, hidden=32)),
        "points": _save(root, "points", "toy-diffusion", dict(hidden=16, timesteps=20)),
        "image-tokens": _save(root, "tokens", "discrete", dict(
            vocab_size=3, seq_len=16, data_vocab=2, mask_id=2, grid=(1, 4, 4), dim=16, depth=1, heads=2,
            conditional=True, num_classes=2, sample_steps=4)),
        "words": _save(root, "words", "discrete", dict(
            vocab_size=5, seq_len=4, data_vocab=4, mask_id=4, alphabet="abc", dim=16, depth=1, heads=2)),
    }


def _sample(run, tmp_path, *extra):
    return main(["sample", "--checkpoint", str(run), "--out", str(tmp_path / "out"), *extra])


def _csv(folder):
    with open(folder / "samples.csv", newline="") as f:
        return list(csv.reader(f))


def _grid_tiles(path, n, nrow, size, padding=2):
    """The n tiles of a grid.png written by viz.save_grid (undoing its nearest-neighbour upscale)."""
    grid = np.asarray(Image.open(path))
    scale = grid.shape[1] // (nrow * (size + padding) + padding)
    grid = grid[::scale, ::scale]
    tiles = []
    for i in range(n):
        r, c = divmod(i, nrow)
        y, x = padding + r * (size + padding), padding + c * (size + padding)
        tiles.append(grid[y:y + size, x:x + size])
    return np.stack(tiles)


def test_diffusion_pngs_csv_and_npz_are_the_grid_pixels(runs, tmp_path, capsys):
    images, npz = tmp_path / "images", tmp_path / "samples.npz"
    flags = ["--num-images", "4", "--sampler", "ddim", "--steps", "2", "--seed", "3"]
    assert _sample(runs["diffusion"], tmp_path, *flags, "--save-images", str(images), "--npz", str(npz)) == 0
    assert "wrote 4 PNGs" in capsys.readouterr().out
    arr = np.load(npz)
    assert list(arr.keys()) == ["arr_0"]
    arr = arr["arr_0"]
    assert arr.shape == (4, 8, 8, 1) and arr.dtype == np.uint8
    # no --class on a conditional model: one grid row per class, 2 images each
    tiles = _grid_tiles(tmp_path / "out" / "grid.png", n=4, nrow=2, size=8)
    assert np.array_equal(tiles, np.repeat(arr, 3, axis=3))  # the grid shows grey as RGB
    assert sorted(p.name for p in images.iterdir()) == [f"00000{i}.png" for i in range(4)] + ["samples.csv"]
    for i in range(4):
        png = Image.open(images / f"00000{i}.png")
        assert png.mode == "L" and np.array_equal(np.asarray(png), arr[i, ..., 0])
    assert _csv(images) == [["index", "file", "class", "prompt", "seed"]] + \
        [[str(i), f"00000{i}.png", str(i // 2), "", "3"] for i in range(4)]
    # what the help promises: the same command and seed draw the same images again
    assert _sample(runs["diffusion"], tmp_path, *flags, "--npz", str(tmp_path / "again.npz"), "--overwrite") == 0
    assert np.array_equal(np.load(tmp_path / "again.npz")["arr_0"], arr)


def test_existing_files_refused_before_sampling_unless_overwrite(runs, tmp_path, capsys):
    images, npz = tmp_path / "images", tmp_path / "s.npz"
    images.mkdir()
    (images / "000007.png").write_bytes(b"from an earlier, larger run")
    (images / "notes.txt").write_text("mine")
    npz.write_bytes(b"old")
    flags = ["--num-images", "2", "--class", "1", "--sampler", "ddim", "--steps", "2"]
    for extra, message in ((["--save-images", str(images)], f"--save-images {images} is not empty; pass --overwrite"),
                           (["--npz", str(npz)], f"--npz {npz} already exists; pass --overwrite"),
                           (["--npz", str(images)], f"--npz {images} is a folder"),
                           (["--save-images", str(tmp_path / "out")], "is the --out folder")):
        assert _sample(runs["diffusion"], tmp_path, *flags, *extra) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1
        assert not (tmp_path / "out" / "grid.png").exists()  # refused before any sampling
    assert npz.read_bytes() == b"old"
    assert _sample(runs["diffusion"], tmp_path, *flags, "--save-images", str(images), "--npz", str(npz),
                   "--overwrite") == 0
    # the stale numbered PNG is gone (FID tools would score it), the user's own file is kept
    assert sorted(p.name for p in images.iterdir()) == ["000000.png", "000001.png", "notes.txt", "samples.csv"]
    assert [row[2] for row in _csv(images)[1:]] == ["1", "1"]
    assert np.load(npz)["arr_0"].shape == (2, 8, 8, 1)


@pytest.mark.parametrize("family", ["vae", "hvae"])
def test_latent_models_write_what_they_sample(runs, family, tmp_path):
    images, npz = tmp_path / "images", tmp_path / "s.npz"
    assert _sample(runs[family], tmp_path, "--num-images", "3", "--seed", "5", "--save-images", str(images),
                   "--npz", str(npz)) == 0
    model, _ = sampling_model(runs[family])
    want = to_uint8_image(model.sample(3, generator=torch.Generator().manual_seed(5))).permute(0, 2, 3, 1).numpy()
    arr = np.load(npz)["arr_0"]
    assert arr.shape == (3, 28, 28, 1) and np.array_equal(arr, want)
    assert [row[1:] for row in _csv(images)[1:]] == [[f"00000{i}.png", "", "", "5"] for i in range(3)]


def test_image_tokens_go_through_the_generic_path(runs, tmp_path):
    images, npz = tmp_path / "images", tmp_path / "s.npz"
    assert _sample(runs["image-tokens"], tmp_path, "--num-images", "3", "--save-images", str(images),
                   "--npz", str(npz)) == 0
    arr = np.load(npz)["arr_0"]
    assert arr.shape == (3, 4, 4, 1) and set(np.unique(arr)) <= {0, 255}  # two grey levels
    for i in range(3):
        assert np.array_equal(np.asarray(Image.open(images / f"00000{i}.png")), arr[i, ..., 0])
    # a class-conditional model given no --class cycles through its classes; the CSV says which
    assert [row[2] for row in _csv(images)[1:]] == ["0", "1", "0"]


def test_points_npz_and_refusals(runs, tmp_path, capsys):
    npz = tmp_path / "points.npz"
    flags = ["--num-images", "5", "--sampler", "ddim", "--steps", "3", "--seed", "2"]
    assert _sample(runs["points"], tmp_path, *flags, "--npz", str(npz)) == 0
    arr = np.load(npz)["arr_0"]
    model, _ = sampling_model(runs["points"])
    want = model.sample(5, generator=torch.Generator().manual_seed(2), sampler="ddim", steps=3)
    assert arr.dtype == np.float32 and arr.shape == (5, 2) and np.array_equal(arr, want.numpy())
    assert _sample(runs["points"], tmp_path, *flags, "--save-images", str(tmp_path / "img")) == 2
    assert "--save-images writes images, and" in capsys.readouterr().err
    assert not (tmp_path / "img").exists()


@pytest.mark.parametrize("flag, message", [("--save-images", "--save-images writes images, and"),
                                           ("--npz", "--npz writes an array of images or points, and")])
def test_words_and_non_sampling_models_refused(runs, tmp_path, capsys, flag, message):
    assert _sample(runs["words"], tmp_path, "--num-images", "2", flag, str(tmp_path / "x")) == 2
    err = capsys.readouterr().err
    assert message in err and "model of words" in err and err.count("\n") == 1
    assert _sample(runs["ae"], tmp_path, flag, str(tmp_path / "x")) == 2
    assert "which cannot generate samples" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_rgb_round_trip_and_an_interrupted_run_leaves_no_csv(tmp_path, monkeypatch):
    levels = torch.tensor([-1.0, 0.0, 1.0])
    images = levels[torch.arange(2 * 3 * 2 * 2) % 3].reshape(2, 3, 2, 2)  # exact uint8 values 0, 128, 255
    paths = files.save_image_files(images, tmp_path / "d", labels=[4, 7], prompts=["a cat", "x, y"], seed=9)
    want = to_uint8_image(images).permute(0, 2, 3, 1).numpy()
    assert Image.open(paths[0]).mode == "RGB" and np.array_equal(np.asarray(Image.open(paths[1])), want[1])
    assert _csv(tmp_path / "d")[1:] == [["0", "000000.png", "4", "a cat", "9"], ["1", "000001.png", "7", "x, y", "9"]]
    files.save_npz(images, tmp_path / "s.npz")
    assert np.array_equal(np.load(tmp_path / "s.npz")["arr_0"], want)
    calls = []

    def fail_on_second(pixels):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(pixels)

    real = files._png_bytes
    monkeypatch.setattr(files, "_png_bytes", fail_on_second)
    with pytest.raises(KeyboardInterrupt):
        files.save_image_files(images, tmp_path / "d", seed=1)
    assert not (tmp_path / "d" / "samples.csv").exists()  # the old CSV no longer describes the folder

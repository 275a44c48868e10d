"""Data layer: real files from the shared folder, procedural sets, bad inputs, the batch loader."""

import gzip
import hashlib
import io
import os
import pickle
import re
import shutil
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from genlab.data import (DATASETS, BatchLoader, TensorDataset, convert_channels, format_datasets_table,
                         list_datasets, load_dataset, register_dataset, resize_images)
from genlab.data import cifar, idx, shapes, toy2d
from genlab.data.download import RemoteFile, download, is_verified
from genlab.errors import DataError, GenlabError

# ----------------------------------------------------------------------------- shapes


def test_shapes_deterministic_and_splits_differ():
    a = load_dataset("shapes", n=200)
    b = load_dataset("shapes", n=200)
    test = load_dataset("shapes", split="test", n=200)
    other_seed = load_dataset("shapes", n=200, seed=1)
    assert a.x.shape == (200, 3, 32, 32) and a.x.dtype == torch.uint8
    assert torch.equal(a.x, b.x) and a.captions == b.captions
    assert not torch.equal(a.x, test.x) and not torch.equal(a.x, other_seed.x)
    assert len(load_dataset("shapes")) == 20000 and len(load_dataset("shapes", split="test")) == 2000


def test_shapes_captions_match_attributes():
    d = load_dataset("shapes", n=500)
    assert d.classes == list(shapes.SHAPES) and len(d.classes) >= 4 and len(shapes.COLORS) >= 6
    assert set(d.y.tolist()) == set(range(len(shapes.SHAPES)))
    for key in ("color", "size", "position"):
        assert d.tensors[key].dtype == torch.int64
        assert set(d.tensors[key].tolist()) == set(range(len(d.meta["attributes"][key])))
    pattern = re.compile(r"^a (small|medium|large) (\w+) (\w+) (in the|at the|on the) ([a-z ]+)$")
    for i in range(len(d)):
        m = pattern.match(d.captions[i])
        assert m, d.captions[i]
        assert m.group(1) == list(shapes.SIZES)[d.tensors["size"][i]]
        assert m.group(2) == list(shapes.COLORS)[d.tensors["color"][i]]
        assert m.group(3) == shapes.SHAPES[d.y[i]]
        assert m.group(5) == shapes.POSITIONS[d.tensors["position"][i]]
    assert shapes.caption(0, 0, 0, 0) == "a small red circle in the top left"


def test_shapes_pixels_show_the_described_shape():
    d = load_dataset("shapes", n=400, seed=3)
    x = d.x.float()
    background = torch.tensor(shapes.BACKGROUND, dtype=torch.float32).view(1, 3, 1, 1)
    ink = (x - background).abs().amax(1) / 255  # N,H,W: > 0 where the shape covers the pixel
    # plain background at the corners, every image has fully covered pixels of its exact colour
    assert torch.equal(d.x[:, :, 0, 0], torch.tensor(shapes.BACKGROUND, dtype=torch.uint8).expand(len(d), 3))
    palette = torch.tensor(list(shapes.COLORS.values()), dtype=torch.uint8)
    exact = (d.x == palette[d.tensors["color"]][:, :, None, None]).all(1).flatten(1).sum(1)
    assert (exact > 0).all()
    # anti-aliased edges: partially covered pixels exist
    assert ((ink > 0.05) & (ink < 0.5)).any()
    # area grows with the size class
    area = (ink > 0.5).flatten(1).sum(1).float()
    means = [area[d.tensors["size"] == s].mean() for s in range(3)]
    assert means[0] < means[1] < means[2]
    # the centroid lies in the column named by the position
    cols = torch.arange(32).float() + 0.5
    cx = (ink * cols).sum((1, 2)) / ink.sum((1, 2)) / 32
    col = d.tensors["position"] % 3
    assert (cx[col == 0] < 0.42).all() and (cx[col == 2] > 0.58).all()
    assert ((cx[col == 1] - 0.5).abs() < 0.08).all()


def test_shapes_resolutions_and_grey():
    for size in (28, 64):
        d = load_dataset("shapes", image_size=size, n=16)
        assert d.x.shape == (16, 3, size, size)
    grey = load_dataset("shapes", channels=1, n=16)
    rgb = load_dataset("shapes", n=16)
    assert grey.x.shape == (16, 1, 32, 32)
    luma = convert_channels(rgb.x, 1).int()
    assert (grey.x.int() - luma).abs().max() <= 1  # same picture, rendered grey


# ----------------------------------------------------------------------------- MNIST-like IDX


def test_fashion_mnist_from_shared_folder(data_dir):
    train = load_dataset("fashion_mnist")
    test = load_dataset("fashion_mnist", split="test")
    assert train.x.shape == (60000, 1, 28, 28) and test.x.shape == (10000, 1, 28, 28)
    assert train.x.dtype == torch.uint8 and train.y.dtype == torch.int64
    assert torch.equal(train.y.bincount(), torch.full((10,), 6000))
    # reference values of the official data
    assert train.y[:10].tolist() == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]
    assert abs(train.x.float().mean().item() / 255 - 0.2860) < 1e-3
    assert train.classes[9] == "Ankle boot"
    path = data_dir / "fashion-mnist" / "train-images-idx3-ubyte.gz"
    assert is_verified(path, idx.FASHION_MNIST.files["train-images-idx3-ubyte"].payload_sha256)


def test_idx_pad_to_32_and_channels(data_dir):
    plain = load_dataset("fashion_mnist", split="test", n=100)
    padded = load_dataset("fashion_mnist", split="test", n=100, image_size=32, channels=3)
    assert padded.x.shape == (100, 3, 32, 32)
    assert torch.equal(padded.x[:, :, 2:30, 2:30], plain.x.expand(-1, 3, -1, -1))
    assert padded.x[:, :, :2].sum() == 0 and padded.x[:, :, :, 30:].sum() == 0
    small = load_dataset("fashion_mnist", split="test", n=100, image_size=14)
    assert small.x.shape == (100, 1, 14, 14) and "resized" in small.meta


def test_mnist_test_split_and_clear_error_for_train(data_dir):
    test = load_dataset("mnist", split="test")
    assert test.x.shape == (10000, 1, 28, 28) and test.y[:5].tolist() == [7, 2, 1, 0, 4]
    with pytest.raises(DataError) as e:
        load_dataset("mnist", split="train")
    msg = str(e.value)
    assert f"MNIST train split not found in {data_dir / 'mnist'}" in msg
    assert "only the test split is there" in msg and "split='test'" in msg and "download" in msg


def _copy_fashion_test(src: Path, dst: Path) -> Path:
    folder = dst / "fashion-mnist"
    folder.mkdir(parents=True)
    for name in idx.SPLIT_FILES["test"]:
        shutil.copy(src / "fashion-mnist" / f"{name}.gz", folder / f"{name}.gz")
    return folder


def test_truncated_and_corrupt_gzip(data_dir, tmp_path):
    folder = _copy_fashion_test(data_dir, tmp_path)
    images = folder / "t10k-images-idx3-ubyte.gz"
    images.write_bytes(images.read_bytes()[: 100_000])
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte\.gz.*truncated or corrupt.*delete it"):
        load_dataset("fashion_mnist", split="test", data_dir=tmp_path)
    shutil.copy(data_dir / "fashion-mnist" / images.name, images)
    labels = folder / "t10k-labels-idx1-ubyte.gz"
    raw = bytearray(labels.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    labels.write_bytes(bytes(raw))
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte\.gz"):
        load_dataset("fashion_mnist", split="test", data_dir=tmp_path)


def test_checksum_mismatch_and_uncompressed_copy(data_dir, tmp_path):
    folder = _copy_fashion_test(data_dir, tmp_path)
    labels = folder / "t10k-labels-idx1-ubyte.gz"
    payload = bytearray(gzip.decompress(labels.read_bytes()))
    payload[-1] = (payload[-1] + 1) % 10  # a valid IDX file, but not the official one
    labels.write_bytes(gzip.compress(bytes(payload)))
    with pytest.raises(DataError, match=r"checksum mismatch for .*t10k-labels-idx1-ubyte\.gz"):
        load_dataset("fashion_mnist", split="test", data_dir=tmp_path)
    # an uncompressed official copy is accepted (the payload hash is what counts)
    labels.unlink()
    (folder / "t10k-labels-idx1-ubyte").write_bytes(
        gzip.decompress((data_dir / "fashion-mnist" / "t10k-labels-idx1-ubyte.gz").read_bytes()))
    assert len(load_dataset("fashion_mnist", split="test", data_dir=tmp_path)) == 10000


def test_missing_files_offline_error_names_url_and_folder(tmp_path):
    with pytest.raises(DataError) as e:
        load_dataset("fashion_mnist", data_dir=tmp_path)
    msg = str(e.value)
    assert "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/train-images-idx3-ubyte.gz" in msg
    assert str(tmp_path / "fashion-mnist") in msg and "GENLAB_OFFLINE" in msg


def test_download_verifies_checksum(tmp_path):
    src = tmp_path / "server" / "file.bin"
    src.parent.mkdir()
    src.write_bytes(b"genlab" * 1000)
    good = RemoteFile("file.bin", (src.as_uri(),), sha256=hashlib.sha256(src.read_bytes()).hexdigest())
    assert download(good, tmp_path / "a").read_bytes() == src.read_bytes()
    bad = RemoteFile("file.bin", (src.as_uri(),), md5="0" * 32)
    with pytest.raises(DataError, match="checksum mismatch"):
        download(bad, tmp_path / "b")
    assert not any((tmp_path / "b").iterdir())  # nothing half-written is left behind
    gone = RemoteFile("nope.gz", ((tmp_path / "missing.gz").as_uri(),), sha256="0" * 64)
    with pytest.raises(DataError, match=rf"missing\.gz.*place it in {re.escape(str(tmp_path / 'c'))}"):
        download(gone, tmp_path / "c")


def test_idx_download_end_to_end(data_dir, tmp_path):
    """A full load through the download path, with a local folder standing in for the mirror."""
    mirror = data_dir / "fashion-mnist"
    files = {name: idx.IdxFile(hashlib.sha256((mirror / f"{name}.gz").read_bytes()).hexdigest(),
                               idx.FASHION_MNIST.files[name].payload_sha256)
             for name in idx.SPLIT_FILES["test"]}
    spec = idx.IdxDataset("fm", "FM", ("fm",), (mirror.as_uri() + "/",), files, idx.FASHION_MNIST.classes)
    data = idx.load_idx(spec, "test", data_dir=tmp_path, download=True)
    assert len(data) == 10000 and (tmp_path / "fm" / "t10k-images-idx3-ubyte.gz").is_file()


# ----------------------------------------------------------------------------- CIFAR-10


def test_cifar10_falls_back_to_jpeg_subset(data_dir, recwarn):
    d = load_dataset("cifar10", split="test")
    assert not [w for w in recwarn if "held-out" in str(w.message)]  # test.zip is a real test split
    assert d.x.shape == (5000, 3, 32, 32) and d.classes == list(cifar.CLASSES)
    assert torch.equal(d.y.bincount(), torch.full((10,), 500))
    assert "JPEG" in d.meta["source"] and "cifar10-jpg" in d.meta["source"]


def _cifar_batch(n, offset):
    data = np.zeros((n, 3, 32, 32), np.uint8)
    for i in range(n):
        data[i] = np.array([offset + i, 100, 200], np.uint8)[:, None, None]
    return {"batch_label": "b", "labels": [i % 10 for i in range(n)], "data": data.reshape(n, 3072)}


class _MakesDir:
    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return os.mkdir, (self.path,)


def test_cifar10_official_batches(tmp_path):
    folder = tmp_path / "cifar10" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for b, offset in zip(cifar.BATCHES["train"] + cifar.BATCHES["test"], range(0, 60, 10)):
        (folder / b).write_bytes(pickle.dumps(_cifar_batch(4, offset), protocol=2))
    train = load_dataset("cifar10", data_dir=tmp_path)
    test = load_dataset("cifar10", split="test", data_dir=tmp_path)
    assert train.x.shape == (20, 3, 32, 32) and test.x.shape == (4, 3, 32, 32)
    assert train.x[5, 0].unique().tolist() == [11] and train.x[5, 2].unique().tolist() == [200]  # R plane first
    assert test.y.tolist() == [0, 1, 2, 3] and "extracted" in train.meta["source"]
    # a pickle that would run code on load is refused before it runs
    (folder / "test_batch").write_bytes(pickle.dumps(_MakesDir(tmp_path / "pwned"), protocol=2))
    with pytest.raises(DataError, match="test_batch.*refusing to load"):
        load_dataset("cifar10", split="test", data_dir=tmp_path)
    assert not (tmp_path / "pwned").exists()


def test_cifar10_archive_checksum(tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        payload = pickle.dumps(_cifar_batch(2, 0), protocol=2)
        info = tarfile.TarInfo("cifar-10-batches-py/test_batch")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(buf.getvalue())
    with pytest.raises(DataError, match=r"checksum mismatch for .*cifar-10-python\.tar\.gz"):
        load_dataset("cifar10", split="test", data_dir=tmp_path)


# ----------------------------------------------------------------------------- image_folder


def _png(path: Path, color, size=(40, 30), mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color).save(path)


def test_image_folder_of_pngs(tmp_path):
    _png(tmp_path / "imgs" / "zebra" / "a.png", (255, 0, 0))
    _png(tmp_path / "imgs" / "zebra" / "b.png", (0, 0, 255), size=(20, 50))
    _png(tmp_path / "imgs" / "ant" / "c.png", (0, 255, 0, 0), mode="RGBA")  # transparent -> white
    d = load_dataset("image_folder", path=tmp_path / "imgs", image_size=16)
    assert d.classes == ["ant", "zebra"] and d.y.tolist() == [0, 1, 1]
    assert d.x.shape == (3, 3, 16, 16)
    assert d.x[0].unique().tolist() == [255]
    assert d.x[1, :, 8, 8].tolist() == [255, 0, 0] and d.x[2, :, 8, 8].tolist() == [0, 0, 255]
    grey = load_dataset("image_folder", path=tmp_path / "imgs", image_size=8, channels=1)
    assert grey.x.shape == (3, 1, 8, 8) and grey.x[1, 0, 4, 4].item() == 76  # luma of pure red
    # the cache notices a changed file
    _png(tmp_path / "imgs" / "zebra" / "a.png", (0, 255, 0), size=(40, 31))
    again = load_dataset("image_folder", path=tmp_path / "imgs", image_size=16)
    assert again.x[1, :, 8, 8].tolist() == [0, 255, 0]


def test_image_folder_interleaves_classes_and_reads_16_bit_grey(tmp_path):
    for cls, grey in (("a", 10), ("b", 20), ("c", 30)):
        for i in range(2):
            _png(tmp_path / "imgs" / cls / f"{i}.png", (grey, grey, grey))
    d = load_dataset("image_folder", path=tmp_path / "imgs", image_size=8)
    assert d.y.tolist() == [0, 1, 2, 0, 1, 2]  # the first N items (--subset N) cover every class
    assert d.x[:, 0, 0, 0].tolist() == [10, 20, 30, 10, 20, 30]
    # no test/ part: the test split is the training images, and it says so
    with pytest.warns(UserWarning, match="not on held-out data"):
        t = load_dataset("image_folder", path=tmp_path / "imgs", split="test", image_size=8)
    assert torch.equal(t.x, d.x) and "training images" in t.meta["note"]
    # a 16-bit grey PNG is scaled to 8 bits, not clipped at 255 (PIL's convert would make it white)
    deep = tmp_path / "deep" / "x"
    deep.mkdir(parents=True)
    Image.fromarray(np.full((8, 8), 32768, np.uint16)).save(deep / "half.png")
    half = load_dataset("image_folder", path=tmp_path / "deep", image_size=8, channels=1)
    assert half.x.unique().tolist() == [128]


def test_image_folder_warns_about_empty_class_folders(tmp_path, recwarn):
    for cls in ("ants", "cats"):
        _png(tmp_path / "imgs" / cls / "0.png", (9, 9, 9))
    (tmp_path / "imgs" / "bees").mkdir()  # would shift "cats" from label 2 to 1 without a word
    (tmp_path / "imgs" / ".cache").mkdir()  # hidden folders are not classes
    with pytest.warns(UserWarning, match=r"bees hold no images .* are ants, cats"):
        d = load_dataset("image_folder", path=tmp_path / "imgs", image_size=8, cache=False)
    assert d.classes == ["ants", "cats"]
    # the same in a zip with a wrapping folder, where the empty class is only a directory entry
    with zipfile.ZipFile(tmp_path / "set.zip", "w") as z:
        for cls in ("ants", "cats"):
            z.write(tmp_path / "imgs" / cls / "0.png", f"wrap/{cls}/0.png")
        z.writestr("wrap/bees/", "")
    with pytest.warns(UserWarning, match="bees hold no images"):
        load_dataset("image_folder", path=tmp_path / "set.zip", image_size=8, cache=False)
    recwarn.clear()
    (tmp_path / "imgs" / "bees").rmdir()
    load_dataset("image_folder", path=tmp_path / "imgs", image_size=8, cache=False)
    assert not [w for w in recwarn if "no images" in str(w.message)]


def test_image_folder_errors(tmp_path):
    _png(tmp_path / "imgs" / "cat" / "ok.png", (1, 2, 3))
    (tmp_path / "imgs" / "cat" / "broken.png").write_bytes(b"not an image at all")
    with pytest.raises(DataError, match=r"cannot read image .*broken\.png"):
        load_dataset("image_folder", path=tmp_path / "imgs", image_size=8)
    with pytest.raises(DataError, match="does not exist"):
        load_dataset("image_folder", path=tmp_path / "nowhere")
    with pytest.raises(GenlabError, match="path="):
        load_dataset("image_folder")
    # a folder without class sub-folders is one class
    _png(tmp_path / "flat" / "x.png", (9, 9, 9))
    flat = load_dataset("image_folder", path=tmp_path / "flat")
    assert flat.classes == ["flat"] and flat.x.shape == (1, 3, 30, 30)


def test_image_folder_reads_cifar_zip(data_dir, tmp_path):
    d = load_dataset("image_folder", path=data_dir / "cifar10-jpg", split="test", image_size=32)
    assert d.x.shape == (5000, 3, 32, 32) and d.classes == list(cifar.CLASSES)
    assert Path(d.meta["cache"]).is_file()
    cached = load_dataset("image_folder", path=data_dir / "cifar10-jpg" / "test.zip", image_size=32)
    assert torch.equal(cached.x, d.x) and torch.equal(cached.y, d.y)
    # a truncated zip is reported, not half-read
    cut = tmp_path / "cut.zip"
    cut.write_bytes((data_dir / "cifar10-jpg" / "test.zip").read_bytes()[:200_000])
    with pytest.raises(DataError, match=r"cut\.zip"):
        load_dataset("image_folder", path=cut)


def test_image_folder_unreadable_member_in_zip(tmp_path):
    with zipfile.ZipFile(tmp_path / "set.zip", "w") as z:
        buf = io.BytesIO()
        Image.new("RGB", (8, 8), (5, 5, 5)).save(buf, format="PNG")
        z.writestr("dog/good.png", buf.getvalue())
        z.writestr("dog/bad.jpg", b"\xff\xd8 truncated jpeg")
    with pytest.raises(DataError, match=r"set\.zip:dog/bad\.jpg"):
        load_dataset("image_folder", path=tmp_path / "set.zip")


# ----------------------------------------------------------------------------- toy2d


@pytest.mark.parametrize("shape", ["swiss_roll", "moons", "8gaussians", "checkerboard", "rings"])
def test_toy2d_standardised_and_deterministic(shape):
    d = load_dataset("toy2d", shape=shape, n=4000)
    assert d.kind == "points" and d.x.shape == (4000, 2) and d.x.dtype == torch.float32
    assert d.x.mean(0).abs().max() < 0.1 and 0.9 < d.x.std().item() < 1.1
    assert torch.equal(d.x, load_dataset("toy2d", shape=shape, n=4000).x)
    assert not torch.equal(d.x, load_dataset("toy2d", shape=shape, n=4000, split="test").x)


def test_toy2d_components_and_errors():
    d = load_dataset("toy2d", shape="8gaussians", n=2000)
    assert d.num_classes == 8
    for k in range(8):
        mean = d.x[d.y == k].mean(0)
        assert abs(torch.atan2(mean[1], mean[0]).item() % (2 * np.pi) - k * np.pi / 4) < 0.05
    mean, std = toy2d._standardiser("checkerboard")
    board = load_dataset("toy2d", shape="checkerboard", n=2000).x.double() * std + torch.from_numpy(mean)
    parity = torch.floor(board).sum(1) % 2  # only one colour of the 4x4 board is filled
    assert board.abs().max() <= 2 and (parity == parity[0]).all()
    with pytest.raises(GenlabError, match="swiss_roll"):
        load_dataset("toy2d", shape="spiral")
    with pytest.raises(GenlabError, match="not images"):
        load_dataset("toy2d", image_size=32)


# ----------------------------------------------------------------------------- registry


def test_list_datasets_and_table(data_dir, tmp_path):
    rows = {r["name"]: r for r in list_datasets()}
    assert {"mnist", "fashion_mnist", "cifar10", "image_folder", "shapes", "toy2d"} <= set(rows)
    assert rows["fashion_mnist"]["status"] == "found"
    assert rows["fashion_mnist"]["path"] == str(data_dir / "fashion-mnist")
    assert "test split only" in rows["mnist"]["status"]
    assert "JPEG subset" in rows["cifar10"]["status"]
    assert rows["shapes"]["status"] == "built-in" and rows["toy2d"]["kind"] == "points"
    empty = {r["name"]: r for r in list_datasets(tmp_path)}
    assert empty["fashion_mnist"]["status"].startswith("missing")
    assert empty["fashion_mnist"]["path"] == str(tmp_path / "fashion-mnist")
    table = format_datasets_table(list_datasets())
    assert table.splitlines()[0].split()[:3] == ["NAME", "KIND", "STATUS"]
    # a file that would fail to load is not reported as "found"
    broken = tmp_path / "broken" / "mnist"
    shutil.copytree(Path(rows["mnist"]["path"]), broken)
    images = broken / "t10k-images-idx3-ubyte.gz"
    images.write_bytes(gzip.compress(gzip.decompress(images.read_bytes())[:-1] + b"\x01"))
    status = {r["name"]: r for r in list_datasets(tmp_path / "broken")}["mnist"]["status"]
    assert status.startswith("unusable (test split: t10k-images-idx3-ubyte.gz corrupt)"), status
    assert all(name in table for name in rows)


def test_registry_errors_and_custom_dataset():
    with pytest.raises(GenlabError, match=r"unknown dataset 'nope'; valid names: .*fashion_mnist"):
        load_dataset("nope")
    with pytest.raises(GenlabError, match="valid: seed"):
        load_dataset("shapes", colour="red")
    with pytest.raises(GenlabError, match="no split 'valid'"):
        load_dataset("shapes", split="valid")

    @register_dataset("tiny_test", description="ten grey squares")
    def load_tiny(split="train", brightness=100):
        x = torch.full((10, 1, 8, 8), brightness, dtype=torch.uint8)
        return TensorDataset("whatever", "image", {"x": x})

    try:
        d = load_dataset("tiny_test", image_size=4, channels=3, n=3, brightness=50)
        assert d.name == "tiny_test" and d.x.shape == (3, 3, 4, 4) and d.x.unique().tolist() == [50]
    finally:
        DATASETS.pop("tiny_test")


def test_resize_and_channels():
    x = torch.randint(0, 256, (5, 3, 20, 10), dtype=torch.uint8)
    assert resize_images(x, 8).shape == (5, 3, 8, 8)
    flat = torch.full((2, 1, 28, 28), 77, dtype=torch.uint8)
    assert resize_images(flat, 13).unique().tolist() == [77]
    red = torch.zeros(1, 3, 2, 2, dtype=torch.uint8)
    red[:, 0] = 255
    assert convert_channels(red, 1).unique().tolist() == [76]
    assert convert_channels(flat, 3).shape == (2, 3, 28, 28)


# ----------------------------------------------------------------------------- BatchLoader


def test_batch_loader():
    data = load_dataset("shapes", n=100)
    loader = BatchLoader(data, batch_size=32, seed=1)
    batches = list(loader)
    assert len(batches) == len(loader) == 3
    b = batches[0]
    assert b["x"].shape == (32, 3, 32, 32) and b["x"].dtype == torch.float32
    assert b["x"].min() >= -1 and b["x"].max() <= 1 and b["y"].dtype == torch.int64
    assert set(b) == {"x", "y", "color", "size", "position"}
    # same epoch -> same batches; next epoch -> a new order
    assert all(torch.equal(p["y"], q["y"]) for p, q in zip(batches, BatchLoader(data, 32, seed=1)))
    loader.set_epoch(1)
    assert not torch.equal(next(iter(loader))["x"], b["x"])
    # hflip mirrors some images and leaves the others
    plain = next(iter(BatchLoader(data, 100, shuffle=False)))["x"]
    flipped = next(iter(BatchLoader(data, 100, shuffle=False, hflip=True)))["x"]
    same = (flipped == plain).flatten(1).all(1)
    mirrored = (flipped == plain.flip(-1)).flatten(1).all(1)
    assert (same | mirrored).all() and (mirrored & ~same).any() and (same & ~mirrored).any()
    # data-parallel ranks see disjoint slices
    points = TensorDataset("ids", "points", {"x": torch.arange(100.0)[:, None]})
    ranks = [torch.cat([b["x"] for b in BatchLoader(points, 10, rank=r, world_size=2, seed=4)]) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == 50
    assert sorted(torch.cat(ranks).flatten().tolist()) == list(range(100))
    with pytest.raises(GenlabError, match="batch"):
        BatchLoader(data, batch_size=1000)

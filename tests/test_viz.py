"""Grids, GIFs, loss plots and diffusion pictures: layout, padding, frame counts, smoothing."""

import numpy as np
import torch
from PIL import Image

from genlab.diffusion.schedules import make_schedule
from genlab.figures.diffusion import forward_panel, schedule_plot
from genlab.viz.grid import make_grid, save_gif, save_grid, save_strip
from genlab.viz.plots import moving_average, plot_loss



def _const_images(values, c=1, h=4, w=3):
    """Images whose pixels are the uint8 value v everywhere (stored in [-1, 1])."""
    v = torch.tensor(values, dtype=torch.float32).view(-1, 1, 1, 1)
    return (v / 127.5 - 1).expand(-1, c, h, w).clone()


def test_make_grid_layout_and_padding():
    values = [10, 40, 70, 100, 130]
    grid = make_grid(_const_images(values), nrow=3, padding=2, pad_value=255)
    # 2 rows of 3 cells of 4x3 pixels, 2 px of padding around and between; grey becomes RGB
    assert grid.shape == (2 * (4 + 2) + 2, 3 * (3 + 2) + 2, 3) and grid.dtype == np.uint8
    for i, v in enumerate(values):
        r, c = divmod(i, 3)
        y, x = 2 + r * 6, 2 + c * 5
        assert (grid[y : y + 4, x : x + 3] == v).all(), i
    # everything else is padding, including the empty sixth cell
    mask = np.ones(grid.shape[:2], bool)
    for i in range(len(values)):
        r, c = divmod(i, 3)
        mask[2 + r * 6 : 6 + r * 6, 2 + c * 5 : 5 + c * 5] = False
    assert (grid[mask] == 255).all()
    assert mask.sum() == grid.shape[0] * grid.shape[1] - 5 * 12


def test_make_grid_defaults_and_rgb():
    imgs = torch.rand(5, 3, 2, 2) * 2 - 1
    grid = make_grid(imgs, padding=0)
    assert grid.shape == (2 * 2, 3 * 2, 3)  # nrow = ceil(sqrt(5)) = 3
    np.testing.assert_array_equal(grid[0:2, 2:4], ((imgs[1] + 1) * 127.5).round().byte().permute(1, 2, 0).numpy())
    # values outside [-1, 1] are clamped, not wrapped around
    assert make_grid(torch.full((1, 1, 1, 1), 3.0), padding=0)[0, 0, 0] == 255
    assert make_grid(torch.full((1, 1, 1, 1), -3.0), padding=0)[0, 0, 0] == 0


def test_save_grid_and_strip_upscale(tmp_path):
    path = save_grid(_const_images([0, 255, 128, 64]), tmp_path / "sub" / "g.png", nrow=2)
    with Image.open(path) as im:
        w, h = im.size
        assert min(w, h) >= 256 and w % (2 * 5 + 2) == 0   # nearest-neighbour upscaling by a whole factor
    rows = [_const_images([1, 2, 3]), _const_images([4, 5, 6])]
    with Image.open(save_strip(rows, tmp_path / "s.png", min_side=1)) as im:
        assert im.size == (3 * 5 + 2, 2 * 6 + 2)


def test_save_gif_frame_count(tmp_path):
    frames = [_const_images([20 * k, 255 - 20 * k], c=3) for k in range(7)]
    path = save_gif(frames, tmp_path / "a.gif", nrow=2, duration_ms=40, hold_last_ms=500)
    with Image.open(path) as im:
        assert im.n_frames == 7
        durations = []
        for k in range(im.n_frames):
            im.seek(k)
            durations.append(im.info["duration"])
    assert durations[:-1] == [40] * 6 and durations[-1] == 500  # the final picture is held


def test_moving_average():
    np.testing.assert_allclose(moving_average([1, 2, 3, 4, 5], 3), [1, 1.5, 2, 3, 4])
    np.testing.assert_allclose(moving_average([4, 2], 10), [4, 3])         # window clipped to the data
    np.testing.assert_allclose(moving_average([3, 1, 2], 1), [3, 1, 2])
    rng = np.random.default_rng(0)
    v = rng.normal(size=50)
    naive = [v[max(0, i - 6) : i + 1].mean() for i in range(50)]             # trailing window of 7
    np.testing.assert_allclose(moving_average(v, 7), naive, rtol=1e-10, atol=1e-12)


def test_plot_loss(tmp_path):
    csv = tmp_path / "loss.csv"
    csv.write_text("step,loss\n" + "".join(f"{s},{1 / s}\n" for s in range(1, 40)))
    with Image.open(plot_loss(csv, tmp_path / "loss.png")) as im:
        assert im.size[0] > 300


def test_diffusion_pictures(tmp_path):
    s = make_schedule("cosine", 20)
    x0 = _const_images([0, 200], c=3, h=8, w=8)
    p = forward_panel(s, x0, [0, 10, 19], tmp_path / "f.png", torch.Generator().manual_seed(0))
    with Image.open(p) as im:
        assert im.size[0] > im.size[1] > 100  # 3 columns, 2 rows
    with Image.open(schedule_plot(30, tmp_path / "s.png")) as im:
        assert im.size[0] > 500

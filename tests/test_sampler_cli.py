"""`genlab sample` with every registered sampler and with trailing spacing, on a tiny untrained checkpoint."""

import pytest
import torch

from genlab.cli.main import main
from genlab.diffusion import samplers
from genlab.models import build_model
from genlab.train.checkpoint import save_checkpoint


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    torch.manual_seed(0)
    model = build_model("diffusion", dict(channels=1, image_size=8, base_width=8, channel_mult=(1,),
                                          num_res_blocks=1, attn_resolutions=(), timesteps=20))
    meta = {"data": {"name": "shapes", "kind": "image", "classes": [], "channels": 1, "image_size": 8,
                     "options": {}}}
    root = tmp_path_factory.mktemp("run")
    save_checkpoint(root / "m", model, meta=meta)
    return root / "m"


@pytest.mark.parametrize("sampler", [name for name in samplers.available() if name != "ddpm"])
def test_sample_cli_runs_every_sampler_with_trailing_spacing(run, tmp_path, sampler, capsys):
    out = tmp_path / sampler
    assert main(["sample", "--checkpoint", str(run), "--sampler", sampler, "--steps", "4", "--spacing", "trailing",
                 "--num-images", "2", "--out", str(out)]) == 0
    assert (out / "grid.png").exists()
    assert "2 images" in capsys.readouterr().out


def test_sample_cli_refuses_bad_sampler_options(run, capsys):
    for extra, message in ((["--sampler", "lms"], "unknown sampler 'lms'; choose one of: ddpm, ddim, dpmpp, euler"),
                           (["--sampler", "ddpm", "--spacing", "trailing"], "not ddpm"),
                           (["--sampler", "heun", "--eta", "0.5"], "heun sampler is deterministic"),
                           (["--sampler", "euler", "--steps", "21"], "between 1 and the model's 20")):
        assert main(["sample", "--checkpoint", str(run), "--num-images", "1", *extra]) == 2
        assert message in capsys.readouterr().err

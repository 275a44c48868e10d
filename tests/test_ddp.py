"""Data-parallel training: two gloo processes under torchrun train one tiny diffusion model in lock step."""

import json
import os
import socket
import subprocess
import sys
import textwrap

import pytest
import torch

from genlab.train.checkpoint import load_checkpoint

SCRIPT = textwrap.dedent('''
    import hashlib, json, os, sys
    import torch
    torch.set_num_threads(1)
    from genlab.data import load_dataset
    from genlab.models import build_model
    from genlab.train import TrainConfig, train
    from genlab.train import distributed as dist

    def digest(module):
        h = hashlib.sha256()
        for k, v in sorted(module.state_dict().items()):
            h.update(k.encode())
            h.update(v.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()

    base, rank = sys.argv[1], int(os.environ["RANK"])
    data = load_dataset("shapes", n=64, image_size=8, channels=1)  # 32 items per rank: 4 steps of 8 per epoch
    tiny = dict(channels=1, image_size=8, base_width=8, channel_mult=(1,), num_res_blocks=1, attn_resolutions=(),
                timesteps=10)
    cfg = dict(epochs=2, batch_size=8, lr=2e-3, warmup_steps=2, device="cpu", progress=False, precision="fp32",
               sample_every=1, num_samples=2, log_every=2, ema_decay=0.9)

    def model():
        torch.manual_seed(0)
        return build_model("diffusion", tiny)

    # 1. each rank names its own run folder: only rank 0 may create or write one
    straight = train(model(), data, TrainConfig(**cfg), f"{base}/own_rank{rank}")
    # 2. a shared folder: stopped mid-epoch by the step budget, then resumed by both ranks
    train(model(), data, TrainConfig(**cfg, max_steps=3), f"{base}/shared")
    resumed = train(model(), data, TrainConfig(**cfg), f"{base}/shared", resume=True)
    # 3. a family with two networks and its own train_step (not wrapped in DDP): gradients averaged in ctx.step
    sys.path.insert(0, sys.argv[2])
    from test_train_multi import GaussGAN, GaussGANConfig, points
    torch.manual_seed(0)
    gan = train(GaussGAN(GaussGANConfig()), points(n=128, seed=rank), TrainConfig(**{**cfg, "num_samples": 0}))
    out = {"world": dist.world()[1], "steps": [straight.steps, resumed.steps],
           "straight": [digest(straight.model), digest(straight.ema)],
           "resumed": [digest(resumed.model), digest(resumed.ema)], "gan": digest(gan.model)}
    with open(f"{base}/hash_rank{rank}.json", "w") as f:  # written by this script, not by genlab
        json.dump(out, f)
    dist.cleanup()
''')


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _digest(module) -> str:
    import hashlib

    h = hashlib.sha256()
    for k, v in sorted(module.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch built without torch.distributed")
def test_two_process_gloo_training(tmp_path):
    script = tmp_path / "ddp_train.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env.pop("RANK", None), env.pop("WORLD_SIZE", None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
           "--master_addr", "127.0.0.1", "--master_port", str(_free_port()), str(script), str(tmp_path),
           os.path.dirname(__file__)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    r0, r1 = (json.loads((tmp_path / f"hash_rank{r}.json").read_text()) for r in (0, 1))
    assert r0["world"] == r1["world"] == 2
    assert r0["steps"] == r1["steps"] == [8, 8]                   # 2 epochs of 4 steps on each rank
    # gradients are averaged every step, so both ranks hold the same weights and the same EMA
    assert r0["straight"] == r1["straight"]
    assert r0["resumed"] == r1["resumed"]
    # stop + resume reproduces the uninterrupted run exactly, every rank's noise stream included
    assert r0["resumed"] == r0["straight"]
    # the two-network family saw different data on each rank, yet its weights stayed in lock step
    assert r0["gan"] == r1["gan"]

    # only rank 0 writes: rank 1's own folder was never created
    assert not (tmp_path / "own_rank1").exists()
    own = tmp_path / "own_rank0"
    for name in ("config.json", "model.safetensors", "ema.safetensors", "state.pt", "loss.csv", "samples.png",
                 "samples/epoch_001.png"):
        assert (own / name).is_file(), name
    model, ema, _, state = load_checkpoint(own, with_state=True)
    assert state["step"] == 8 and [_digest(model), _digest(ema)] == r0["straight"]
    assert len(state["rng"]["torch"]) == 2                         # one noise stream per rank, for exact resume
    rows = (own / "loss.csv").read_text().strip().splitlines()
    assert rows[0].startswith("step,") and [r.split(",")[0] for r in rows[1:]] == ["2", "4", "6", "8"]

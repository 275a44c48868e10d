"""The one training loop: it learns, resumes bit for bit, stops cleanly on budgets and on NaN losses."""

import csv
import math
from dataclasses import dataclass

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from genlab.data import load_dataset
from genlab.errors import GenlabError
from genlab.models import MODELS, GenerativeModel, build_model
from genlab.train import TrainConfig, train
from genlab.train.checkpoint import load_checkpoint
from genlab.train.ema import EMA
from genlab.train.loop import lr_factor

TINY = dict(channels=1, image_size=8, base_width=8, channel_mult=(1,), num_res_blocks=1, attn_resolutions=(),
            timesteps=10)



@pytest.fixture(scope="module")
def tiny_data():
    return load_dataset("shapes", n=32, image_size=8, channels=1)  # 4 batches of 8


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return build_model("diffusion", TINY)


def tiny_cfg(**kw):
    base = dict(epochs=4, batch_size=8, lr=2e-3, warmup_steps=3, device="cpu", progress=False, precision="fp32",
                sample_every=1, num_samples=2, log_every=2, ema_decay=0.99)
    return TrainConfig(**{**base, **kw})


def _rows(run):
    """loss.csv without the wall-clock column."""
    with open(run / "loss.csv") as f:
        return [{k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader(f)]


def _assert_same_weights(a: nn.Module, b: nn.Module):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


# a test-only family: a parameter vector pulled towards a target, whose loss turns NaN after `nan_after` steps
@dataclass
class ToyConfig:
    dim: int = 3
    nan_after: int = 0  # 0: never


class Toy(GenerativeModel):
    family = "test_toy"
    Config = ToyConfig

    def __init__(self, cfg):
        super().__init__(cfg)
        self.w = nn.Parameter(torch.zeros(cfg.dim))
        self.register_buffer("calls", torch.zeros((), dtype=torch.long))

    def loss(self, batch):
        self.calls += 1
        loss = (self.w - 2 - batch["x"].mean()).pow(2).sum()
        if self.cfg.nan_after and int(self.calls) > self.cfg.nan_after:  # (torch.where would leak NaN grads early)
            loss = loss * float("nan")
        return loss, {"w0": self.w[0].detach()}


@pytest.fixture
def toy_family(monkeypatch):
    monkeypatch.setitem(MODELS, Toy.family, Toy)  # so load_checkpoint can rebuild it; gone after the test
    return Toy


def test_diffusion_loss_falls_on_shapes():
    data = load_dataset("shapes", n=256, image_size=16)
    torch.manual_seed(0)
    model = build_model("diffusion", dict(channels=3, image_size=16, base_width=8, channel_mult=(1, 2),
                                          num_res_blocks=1, attn_resolutions=(), timesteps=50,
                                          prediction="eps", weighting="none"))  # Ho et al.'s simple loss
    cfg = TrainConfig(epochs=6, batch_size=32, lr=2e-3, warmup_steps=5, device="cpu", progress=False,
                      precision="fp32", sample_every=0, log_every=4, ema_decay=0)
    result = train(model, data, cfg)
    losses = [float(r["loss"]) for r in result.history]
    assert result.steps == 48 and len(losses) == 12 and all(math.isfinite(v) for v in losses)
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert first > 0.8            # an untrained eps-predictor outputs ~0: loss ~ E[eps^2] = 1
    assert last < 0.6 * first, losses


@pytest.fixture(scope="module")
def straight_run(tiny_data, tmp_path_factory):
    """4 epochs in one go: the reference that interrupted runs must reproduce."""
    out = tmp_path_factory.mktemp("straight") / "run"
    result = train(tiny_model(), tiny_data, tiny_cfg(), out)
    assert result.steps == 16 and result.stopped == "done"
    return result


def test_resume_after_epochs_is_identical(straight_run, tiny_data, tmp_path):
    run = tmp_path / "run"
    half = train(tiny_model(), tiny_data, tiny_cfg(epochs=2), run)
    assert half.steps == 8
    _, _, _, state = load_checkpoint(run, with_state=True)
    assert (state["step"], state["epoch"], state["batch_in_epoch"]) == (8, 2, 0)
    # a different init: every weight must come from the checkpoint
    rest = train(tiny_model(seed=1), tiny_data, tiny_cfg(), run, resume=True)
    assert rest.steps == 16
    _assert_same_weights(rest.model, straight_run.model)
    _assert_same_weights(rest.ema, straight_run.ema)
    assert _rows(run) == _rows(straight_run.out_dir) and len(_rows(run)) == 8
    # (rows read back from loss.csv hold strings)
    assert [str(r["step"]) for r in rest.history] == [str(r["step"]) for r in straight_run.history]


def test_resume_after_max_steps_mid_epoch_is_identical(straight_run, tiny_data, tmp_path):
    run = tmp_path / "run"
    stopped = train(tiny_model(), tiny_data, tiny_cfg(max_steps=6), run)
    assert stopped.stopped == "steps" and stopped.steps == 6
    assert (run / "samples.png").exists() and (run / "model.safetensors").exists()
    _, _, _, state = load_checkpoint(run, with_state=True)
    assert (state["step"], state["epoch"], state["batch_in_epoch"]) == (6, 1, 2)
    spent = train(tiny_model(seed=1), tiny_data, tiny_cfg(max_steps=6), run, resume=True)
    assert spent.stopped == "steps" and spent.steps == 6                 # a spent budget trains no extra step
    rest = train(tiny_model(seed=1), tiny_data, tiny_cfg(), run, resume=True)
    assert rest.steps == 16
    _assert_same_weights(rest.model, straight_run.model)
    _assert_same_weights(rest.ema, straight_run.ema)
    assert _rows(run) == _rows(straight_run.out_dir)
    # a run that was never stopped is genuinely different from one trained for fewer steps
    assert not torch.equal(stopped.model.net.conv_in.weight, rest.model.net.conv_in.weight)


def test_resume_guards(straight_run, tiny_data, tmp_path):
    with pytest.raises(GenlabError, match=r"already holds a trained run; resume it \(resume=True\)"):
        train(tiny_model(), tiny_data, tiny_cfg(), straight_run.out_dir)
    with pytest.raises(GenlabError, match="^resume finds no run in"):
        train(tiny_model(), tiny_data, tiny_cfg(), tmp_path / "empty", resume=True)
    other = build_model("diffusion", dict(TINY, timesteps=20))
    with pytest.raises(GenlabError, match=r"model options differ from the run in .*: timesteps 10 \(now 20\)"):
        train(other, tiny_data, tiny_cfg(epochs=5), straight_run.out_dir, resume=True)


def test_resume_survives_a_lost_ema_file_and_a_damaged_loss_log(tiny_data, tmp_path, capsys):
    run = tmp_path / "run"
    train(tiny_model(), tiny_data, tiny_cfg(epochs=1), run)
    (run / "ema.safetensors").unlink()
    (run / "loss.csv").write_bytes(b"\xff\xfe not a csv\n1,2\n")
    rest = train(tiny_model(seed=1), tiny_data, tiny_cfg(epochs=2), run, resume=True)
    assert rest.steps == 8 and (run / "loss.csv.damaged").exists()
    assert [int(r["step"]) for r in _rows(run)] == [6, 8]               # a new log from the resumed step on
    # the EMA restarted from the resumed weights (not the fresh init): after 4 steps it is close to them
    gap = max((e - m).abs().max().item() for e, m in zip(rest.ema.parameters(), rest.model.parameters()))
    fresh = max((e - m).abs().max().item() for e, m in zip(tiny_model(seed=1).parameters(), rest.model.parameters()))
    assert gap < 0.5 * fresh
    assert "EMA restarts from the resumed weights" in capsys.readouterr().out


def test_resume_takes_the_learning_rate_and_weight_decay_given_now(tiny_data, tmp_path, capsys):
    run = tmp_path / "run"
    train(tiny_model(), tiny_data, tiny_cfg(epochs=1, log_every=1), run)
    rest = train(tiny_model(), tiny_data, tiny_cfg(epochs=2, log_every=1, lr=5e-4, weight_decay=0.1), run,
                 resume=True)
    assert [float(r["lr"]) for r in _rows(run)][4:] == [5e-4] * 4       # after the warm-up: the new rate
    assert rest.steps == 8 and "lr 0.002 -> 0.0005, weight decay 0 -> 0.1" in capsys.readouterr().out


@pytest.mark.parametrize("log_every", [1, 100])
def test_nan_loss_stops_with_last_good_checkpoint(toy_family, tiny_data, tmp_path, log_every):
    run = tmp_path / "run"
    model = build_model("test_toy", dict(nan_after=6))  # steps 1-6 fine, step 7 NaN; 4 steps per epoch
    cfg = tiny_cfg(epochs=3, log_every=log_every, ema_decay=0.9, lr=0.1)
    with pytest.raises(GenlabError, match=r"loss became nan at step (7|8) \(epoch 2\); the last good checkpoint") as e:
        train(model, tiny_data, cfg, run)
    assert "\n" not in str(e.value)
    loaded, ema, config, state = load_checkpoint(run, with_state=True)
    assert config["family"] == "test_toy" and state["step"] == 4       # the end of epoch 1
    assert torch.isfinite(loaded.w).all() and torch.isfinite(ema.w).all() and loaded.w.abs().sum() > 0
    assert not list(run.glob(".*.tmp"))
    assert all(math.isfinite(float(r["loss"])) for r in _rows(run))


def test_inf_weights_are_not_saved_over_a_good_checkpoint(toy_family, tiny_data, tmp_path):
    """The loss stays finite but a weight breaks: the checkpoint of epoch 1 must survive."""

    class BreaksAWeight(Toy):
        def __init__(self, cfg):
            super().__init__(cfg)
            self.spare = nn.Parameter(torch.zeros(1))  # not in the loss, so the loss never sees it

        def loss(self, batch):
            if int(self.calls) >= 5:
                with torch.no_grad():
                    self.spare.fill_(float("inf"))
            return super().loss(batch)

    run = tmp_path / "run"
    with pytest.raises(GenlabError, match=r"weights became inf/NaN at step 8; not saving them"):
        train(BreaksAWeight(ToyConfig()), tiny_data, tiny_cfg(epochs=3, sample_every=0), run)
    assert torch.load(run / "state.pt", weights_only=False)["step"] == 4  # the end of epoch 1
    assert all(torch.isfinite(v).all() for v in load_file(run / "model.safetensors").values())


def test_ema_warmup_decay_formula():
    lin = nn.BatchNorm1d(2)  # parameters and running-statistics buffers
    ema = EMA(lin, decay=0.95, warmup=True)
    assert ema.model is not lin and not any(p.requires_grad for p in ema.model.parameters())
    g = torch.Generator().manual_seed(0)
    for n in range(200):
        with torch.no_grad():
            lin.weight.copy_(torch.randn(2, generator=g))
            lin.running_mean.copy_(torch.randn(2, generator=g))
        prev = ema.model.weight.clone()
        d = min(0.95, (1 + n) / (10 + n))         # 0.1, 0.18, 0.25, ... then capped at 0.95
        assert ema.current_decay() == pytest.approx(d)
        ema.update(lin)
        torch.testing.assert_close(ema.model.weight, d * prev + (1 - d) * lin.weight)
        assert torch.equal(ema.model.running_mean, lin.running_mean)  # buffers are copied, not averaged
    assert ema.current_decay() == 0.95
    assert EMA(lin, decay=0.95, warmup=False).current_decay() == 0.95
    other = EMA(lin, 0.95)
    other.load_state_dict(ema.state_dict())
    assert other.updates == 200 and other.current_decay() == 0.95


def test_lr_warmup_factor(toy_family, tiny_data):
    cfg = tiny_cfg(warmup_steps=4)
    assert [lr_factor(s, cfg, 100) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    cos = tiny_cfg(warmup_steps=4, lr_schedule="cosine")
    assert lr_factor(4, cos, 104) == pytest.approx(1.0)
    assert lr_factor(54, cos, 104) == pytest.approx(0.55)     # half way: 0.1 + 0.9 * 0.5
    assert lr_factor(104, cos, 104) == pytest.approx(0.1)
    # in the loop: the first Adam step moves every weight by exactly lr * factor(0) (m / sqrt(v) = sign(g))
    model = build_model("test_toy", {})
    r = train(model, tiny_data, tiny_cfg(lr=0.01, warmup_steps=4, max_steps=1, ema_decay=0, grad_clip=0,
                                          log_every=1))
    torch.testing.assert_close(r.model.w.detach().abs(), torch.full((3,), 0.0025))
    r = train(build_model("test_toy", {}), tiny_data, tiny_cfg(lr=0.01, warmup_steps=4, epochs=2, log_every=1,
                                                                 ema_decay=0))
    # the lr logged after step s is the one step s + 1 uses: 0.01 * min(1, (s + 1) / 4)
    assert [float(row["lr"]) for row in r.history] == pytest.approx([0.01 * min(1, (s + 1) / 4) for s in range(1, 9)])
    assert [row["step"] for row in r.history] == list(range(1, 9))
    assert "w0" in r.history[0]                                   # the family's extra logs are kept


def test_time_budget_stops_cleanly(tiny_data, tmp_path):
    run = tmp_path / "run"
    result = train(tiny_model(), tiny_data, tiny_cfg(epochs=50, max_minutes=1e-6), run)
    assert result.stopped == "time" and result.steps == 1
    for name in ("model.safetensors", "ema.safetensors", "state.pt", "config.json", "samples.png", "loss.csv"):
        assert (run / name).exists(), name
    _, _, _, state = load_checkpoint(run, with_state=True)
    assert state["step"] == 1 and state["batch_in_epoch"] == 1


def test_num_samples_zero_trains_without_sample_grids(tiny_data, tmp_path):
    run = tmp_path / "run"
    result = train(tiny_model(), tiny_data, tiny_cfg(epochs=2, num_samples=0), run)
    assert result.stopped == "done" and (run / "ema.safetensors").exists()
    assert not (run / "samples.png").exists() and not (run / "samples").exists()


def test_progress_bar_total_under_a_time_budget(tiny_data, monkeypatch):
    """The bar's total is the steps the budget allows at the measured rate, never epochs x steps_per_epoch."""
    import genlab.train.loop as loop

    bars = []

    class Bar(loop.tqdm):
        def __init__(self, *a, **kw):
            super().__init__(*a, **{**kw, "disable": True})
            bars.append(self)

    monkeypatch.setattr(loop, "tqdm", Bar)
    train(tiny_model(), tiny_data, tiny_cfg(epochs=10_000, max_minutes=0.05, sample_every=0, log_every=1000,
                                            progress=True))
    # 40,000 steps of the epoch limit; the estimate after 10 steps is the ~3 s budget's worth
    assert bars and bars[0].total is not None and bars[0].total < 10_000


def test_bad_train_settings(tiny_data):
    # worded about TrainConfig's fields (the CLI says --epochs, ...: test_param_error.py)
    for kw, msg in [(dict(epochs=0), "^epochs must be at least 1"), (dict(batch_size=-2), "^batch_size must be"),
                    (dict(lr=0.0), "^lr must be positive"), (dict(ema_decay=1.0), "^ema_decay"),
                    (dict(lr_schedule="step"), "^lr_schedule 'step' is unknown"),
                    (dict(precision="fp8"), "unknown precision"),
                    (dict(num_samples=-1), "^num_samples must be >= 0"), (dict(max_steps=-1), "^max_steps must be"),
                    (dict(max_minutes=-1.0), "^max_minutes must be"), (dict(log_every=0), "^log_every must be"),
                    (dict(batch_size=64), "^batch_size 64 is too large: .* fewer than one batch")]:
        with pytest.raises(GenlabError, match=msg):
            train(tiny_model(), tiny_data, tiny_cfg(**kw))
    points = load_dataset("toy2d", n=64)
    with pytest.raises(GenlabError, match="trains on image data"):
        train(tiny_model(), points, tiny_cfg())
    with pytest.raises(GenlabError, match="^hflip mirrors images; dataset toy2d holds points"):
        train(build_model("toy-diffusion", {}), points, tiny_cfg(hflip=True))

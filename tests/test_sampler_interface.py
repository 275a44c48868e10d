"""The one sampler interface: a sampler defined in a test runs end to end, the step-count rule, trailing
spacing, Euler / Heun / Euler-ancestral against the samplers they equal or beat, and the loop's hooks
(RePaint and inversion) with samplers other than DDIM."""

import math

import pytest
import torch

from genlab.diffusion import samplers
from genlab.diffusion.ddim import ddim_invert
from genlab.diffusion.inpaint import inpaint
from genlab.diffusion.sampling import Sampler, register_sampler
from genlab.diffusion.schedules import abar, make_schedule
from genlab.diffusion.timesteps import spaced_timesteps
from genlab.errors import GenlabError, ParamError
from genlab.models import build_model

from test_samplers import MU, FixedNet, exact_ode_end, gaussian_eps


class Renoise(Sampler):
    """x_{t_next} = sqrt(abar_{t_next}) x0 + sqrt(1 - abar_{t_next}) eps: deterministic DDIM, in one line."""

    name = "renoise-test"
    default_steps = 7

    def step(self, denoise, x, t, t_next, state, generator=None):
        x0, eps = denoise(x, t)
        a = abar(state.schedule, t_next)
        return math.sqrt(a) * x0 + math.sqrt(1 - a) * eps


@pytest.fixture
def renoise_registered(monkeypatch):
    """register_sampler(Renoise), undone after the test."""
    monkeypatch.setattr(samplers, "SAMPLERS", dict(samplers.SAMPLERS))
    monkeypatch.setattr("genlab.diffusion.sampling.SAMPLERS", samplers.SAMPLERS)
    register_sampler(Renoise)


def test_a_sampler_defined_in_a_test_runs_end_to_end(renoise_registered):
    s = make_schedule("cosine", 50)
    net = FixedNet(8, 50)
    shape = (3, 2, 2, 2)
    assert Renoise.name in samplers.available()
    x_T = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    calls = []
    x, frames = samplers.sample(s, net, shape, Renoise.name, x_T=x_T, return_intermediates=3, progress=calls.append)
    assert sum(calls) == 7 and len(frames) == 3                       # its default_steps, the loop's frames
    ddim = samplers.sample(s, net, shape, "ddim", steps=7, x_T=x_T)
    torch.testing.assert_close(x, ddim, atol=1e-5, rtol=1e-5)
    # ... and through a model, which takes the sampler's name like any other
    model = build_model("diffusion", dict(channels=1, image_size=8, base_width=8, channel_mult=(1, 2),
                                          num_res_blocks=1, attn_resolutions=(), timesteps=20)).eval()
    assert model.sample(2, sampler=Renoise.name, generator=torch.Generator().manual_seed(0)).shape == (2, 1, 8, 8)


def test_resolve_steps_is_the_one_default():
    assert samplers.resolve_steps("ddpm", None, 40) == 40
    assert samplers.resolve_steps("ddim", None, 1000) == 50 and samplers.resolve_steps("ddim", None, 20) == 20
    assert samplers.resolve_steps("dpmpp", None, 1000) == 20 and samplers.resolve_steps("heun", None, 1000) == 25
    assert samplers.resolve_steps("euler", 7, 1000) == 7
    with pytest.raises(GenlabError, match="between 1 and the model's 10"):
        samplers.resolve_steps("euler", 11, 10)
    with pytest.raises(GenlabError, match="unknown sampler 'plms'; choose one of: ddpm, ddim, dpmpp, euler, heun"):
        samplers.resolve_steps("plms", None, 10)


def test_trailing_spacing_is_lin_et_al_table_2():
    assert spaced_timesteps(1000, 10, "trailing") == list(range(999, 0, -100))
    assert spaced_timesteps(1000, 3, "trailing") == [999, 666, 332]                # round(1000 - i 1000/3) - 1
    assert spaced_timesteps(50, 50, "trailing") == list(range(49, -1, -1))
    ts = spaced_timesteps(1000, 7, "trailing")
    assert ts[0] == 999 and len(set(ts)) == 7 and 0 not in ts
    # the first step starts at T - 1 and the last one from real noise, not from t = 0 as uniform's does
    assert spaced_timesteps(1000, 10, "uniform")[-1] == 0


def test_euler_is_deterministic_ddim_and_euler_ancestral_is_ddim_at_eta_1():
    """Both are DDIM written in x_t / sqrt(abar) (euler.py, euler_ancestral.py): the same samples."""
    s = make_schedule("linear", 100)
    net = FixedNet(8, 100)
    shape = (16, 2, 2, 2)
    for spacing in ("uniform", "trailing"):
        run = lambda name, eta=None: samplers.sample(s, net, shape, name, 12, eta=eta, spacing=spacing,  # noqa: E731
                                                     generator=torch.Generator().manual_seed(3))
        torch.testing.assert_close(run("euler"), run("ddim"), atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(run("euler_a"), run("ddim", 1.0), atol=1e-4, rtol=1e-4)


def test_heun_is_second_order():
    """On the linear schedule (sigma_max = 157; the clipped cosine one reaches 2e4, see heun.py)."""
    s = make_schedule("linear", 1000)
    model = gaussian_eps(s, MU, 0.5)
    x_T = torch.randn(2000, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ref = exact_ode_end(s, x_T, model, MU, 0.5)

    def err(name, steps):
        x = samplers.sample(s, model, x_T.shape, name, steps, x_T=x_T, clip=False)
        return float((x - ref).abs().max())

    heun = {n: err("heun", n) for n in (10, 20, 40)}
    assert 3.0 < heun[20] / heun[40] < 5.0                     # error / 4 when the steps double
    assert heun[20] < err("euler", 39) / 3                     # and far below Euler's for the same 39 network calls


def test_repaint_and_inversion_with_other_samplers():
    s = make_schedule("cosine", 100)
    net = FixedNet(4, 100)
    known = torch.rand(6, 1, 2, 2, generator=torch.Generator().manual_seed(0)) * 2 - 1
    mask = torch.tensor([1.0, 0.0, 1.0, 0.0]).view(1, 1, 2, 2)
    for name in ("dpmpp", "heun", "euler_a"):
        calls = []
        x = inpaint(s, net, known, mask, steps=8, resample=2, sampler=samplers.make_sampler(name),
                    generator=torch.Generator().manual_seed(1), progress=calls.append)
        assert torch.equal(x * mask, known * mask) and torch.isfinite(x).all()
        assert sum(calls) == 2 * samplers.make_sampler(name).network_calls(8)
    # inversion runs the loop backwards: DDIM only, other samplers say so
    z = ddim_invert(s, gaussian_eps(s), known, steps=10)
    assert z.shape == known.shape
    with pytest.raises(GenlabError, match="cannot be run backwards"):
        samplers.sample_loop(s, net, known.shape, samplers.make_sampler("heun"), 10, x_T=known, invert=True)


def test_sampler_options_are_checked():
    s = make_schedule("linear", 20)
    net = FixedNet(4, 20)
    for name in ("euler", "heun", "dpmpp"):
        # worded about the parameter (the CLI says "--eta 0.5 ..."; tests/test_param_error.py)
        with pytest.raises(ParamError, match=f"^eta 0.5 applies to the ddim sampler only; the {name} sampler is det"):
            samplers.sample(s, net, (1, 1, 2, 2), name, 5, eta=0.5)
    with pytest.raises(GenlabError, match="euler_a sampler is ancestral"):
        samplers.sample(s, net, (1, 1, 2, 2), "euler_a", 5, eta=1.0)
    with pytest.raises(GenlabError, match="^spacing applies to the ddim, dpmpp, .*euler_a samplers, not ddpm"):
        samplers.sample(s, net, (1, 1, 2, 2), "ddpm", spacing="trailing")
    with pytest.raises(GenlabError, match="unknown timestep spacing 'log'; choose one of: uniform, quadratic, trail"):
        samplers.sample(s, net, (1, 1, 2, 2), "heun", 5, spacing="log")

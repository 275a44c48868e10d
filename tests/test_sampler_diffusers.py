"""Every sampler against its diffusers scheduler, step for step (diffusers is a dev dependency).

The same fixed toy network (an exact Gaussian-data denoiser plus a small nonlinear term, so that where a
network is evaluated matters), the same x_T, the same noise stream (both draw from equally seeded torch
generators, one draw per stochastic step), the same betas (diffusers keeps them in float32, genlab in
float64: hence tolerances of ~1e-4 instead of bit equality). The state after every step is compared.

Where diffusers and genlab pick the same timesteps (trailing spacing for all; "linspace" = uniform for
DDPM and the Euler family, whose linspace timesteps are integers when (T-1)/(S-1) is) the whole
`samplers.sample` run is compared. Where they do not, genlab's step is driven with diffusers' timesteps:
- DDIMScheduler steps from t to t - T // S, not to the next timestep of its own linspace list;
- DPMSolverMultistepScheduler's linspace list is linspace(0, T-1, S+1)[:-1] (it never visits t = 0).
"""

import math

import pytest
import torch
from diffusers import (DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, EulerAncestralDiscreteScheduler,
                       EulerDiscreteScheduler, HeunDiscreteScheduler)

from genlab.diffusion import samplers
from genlab.diffusion.sampling import Denoise
from genlab.diffusion.schedules import make_schedule

# diffusers' own numpy-of-a-tensor conversion warns under numpy 2; not ours to fix
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

T = 1000
MU, SD = 0.2, 0.5
SHAPE = (6, 1, 2, 2)
TOL = dict(rtol=2e-4, atol=2e-4)


def toy_eps(schedule):
    """E[eps | x_t] for data N(MU, SD^2), plus 0.1 tanh(x_t + t / T): smooth, nonlinear, of realistic size."""
    ab_all = schedule.alphas_cumprod.float()

    def model(x, t, y=None):
        ab = ab_all[t].view(-1, *[1] * (x.ndim - 1))
        exact = (1 - ab).sqrt() * (x - ab.sqrt() * MU) / (ab * SD**2 + 1 - ab)
        return exact + 0.1 * torch.tanh(x + t.view_as(ab) / T)
    return model


def as_prediction(schedule, eps_model, prediction):
    """The same network re-expressed as a v-predicting one (v = sqrt(abar) eps - sqrt(1 - abar) x0)."""
    if prediction == "eps":
        return eps_model
    ab_all = schedule.alphas_cumprod.float()

    def model(x, t, y=None):
        ab = ab_all[t].view(-1, *[1] * (x.ndim - 1))
        eps = eps_model(x, t)
        x0 = (x - (1 - ab).sqrt() * eps) / ab.sqrt()
        return ab.sqrt() * eps - (1 - ab).sqrt() * x0
    return model


def setup(schedule_name, prediction, T=T):
    s = make_schedule(schedule_name, T)
    model = as_prediction(s, toy_eps(s), prediction)
    x_T = torch.randn(SHAPE, generator=torch.Generator().manual_seed(0))
    return s, model, x_T


def diffusers_model(model):
    """diffusers hands a scalar (float) timestep."""
    return lambda x, t: model(x, torch.full((x.shape[0],), int(round(float(t))), dtype=torch.long))


def config(s, prediction, spacing, **kw):
    return dict(num_train_timesteps=s.T, trained_betas=s.betas.numpy(),
                prediction_type={"eps": "epsilon", "v": "v_prediction"}[prediction],
                timestep_spacing={"uniform": "linspace", "trailing": "trailing"}[spacing], **kw)


def genlab_run(s, model, x_T, name, steps, spacing, prediction, clip=False, **kw):
    """samplers.sample's result and every state on the way (frames with one per step)."""
    x, frames = samplers.sample(s, model, SHAPE, name, steps, spacing=spacing, prediction=prediction, clip=clip,
                                x_T=x_T.clone(), generator=torch.Generator().manual_seed(5),
                                return_intermediates=s.T + 1, **kw)
    assert torch.equal(frames[-1], x)
    return frames[1:]


def assert_paths_close(ours, theirs):
    assert len(ours) == len(theirs)
    for i, (a, b) in enumerate(zip(ours, theirs)):
        torch.testing.assert_close(a, b, **TOL, msg=lambda m: f"step {i + 1} of {len(ours)}: {m}")


def lockstep(s, model, prediction, sampler, scheduler, pairs, x_T, step_kw=None, clip=False):
    """genlab's sampler.step and diffusers' scheduler.step side by side over diffusers' (t, t_next) pairs."""
    denoise = Denoise(s, model, None, prediction, clip=clip)
    state = sampler.init_state(s, [t for t, _ in pairs])
    ours, theirs, x, xd = [], [], x_T.clone(), x_T.clone()
    g, gd = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    for t, t_next in pairs:
        x = sampler.step(denoise, x, t, t_next, state, g)
        xd = scheduler.step(diffusers_model(model)(xd, t), t, xd, generator=gd, **(step_kw or {})).prev_sample
        ours.append(x)
        theirs.append(xd)
    assert_paths_close(ours, theirs)


# ----------------------------------------------------------------------------- DDPM
@pytest.mark.parametrize("prediction", ["eps", "v"])
@pytest.mark.parametrize("clip", [False, True])
def test_ddpm_is_ddpm_scheduler(prediction, clip):
    s, model, x_T = setup("linear", prediction, T=100)
    sched = DDPMScheduler(**config(s, prediction, "uniform", clip_sample=clip, variance_type="fixed_small"))
    sched.set_timesteps(s.T)
    assert sched.timesteps.tolist() == samplers.make_sampler("ddpm").timesteps(s.T, s.T)
    g, x, theirs = torch.Generator().manual_seed(5), x_T.clone(), []
    for t in sched.timesteps:
        x = sched.step(diffusers_model(model)(x, t), t, x, generator=g).prev_sample
        theirs.append(x)
    assert_paths_close(genlab_run(s, model, x_T, "ddpm", None, None, prediction, clip=clip), theirs)


# ----------------------------------------------------------------------------- DDIM
@pytest.mark.parametrize("eta", [0.0, 1.0])
@pytest.mark.parametrize("prediction", ["eps", "v"])
def test_ddim_trailing_is_ddim_scheduler(eta, prediction):
    s, model, x_T = setup("cosine", prediction)
    sched = DDIMScheduler(**config(s, prediction, "trailing", clip_sample=False, set_alpha_to_one=True))
    sched.set_timesteps(10)
    assert sched.timesteps.tolist() == samplers.make_sampler("ddim").timesteps(T, 10, "trailing")
    g, x, theirs = torch.Generator().manual_seed(5), x_T.clone(), []
    for t in sched.timesteps:
        x = sched.step(diffusers_model(model)(x, t), t, x, eta=eta, generator=g).prev_sample
        theirs.append(x)
    assert_paths_close(genlab_run(s, model, x_T, "ddim", 10, "trailing", prediction, eta=eta), theirs)


@pytest.mark.parametrize("eta", [0.0, 1.0])
@pytest.mark.parametrize("prediction,clip", [("eps", False), ("v", False), ("eps", True)])
def test_ddim_uniform_step_is_ddim_scheduler_step(eta, prediction, clip):
    """Same timesteps as diffusers' linspace; each step goes where DDIMScheduler sends it (t - T // S).
    clip: genlab's clipped x0 with eps recomputed from it is clip_sample + use_clipped_model_output."""
    s, model, x_T = setup("linear", prediction)
    sched = DDIMScheduler(**config(s, prediction, "uniform", clip_sample=clip, set_alpha_to_one=True))
    sched.set_timesteps(10)
    sampler = samplers.make_sampler("ddim", eta)
    ts = sched.timesteps.tolist()
    assert ts == sampler.timesteps(T, 10, "uniform")
    pairs = [(t, t - T // 10) for t in ts]
    lockstep(s, model, prediction, sampler, sched, pairs, x_T, dict(eta=eta, use_clipped_model_output=clip), clip)


# ----------------------------------------------------------------------------- DPM-Solver++(2M)
def dpm_scheduler(s, prediction, spacing):
    return DPMSolverMultistepScheduler(**config(s, prediction, spacing, algorithm_type="dpmsolver++", solver_order=2,
                                                solver_type="midpoint", lower_order_final=True,
                                                final_sigmas_type="zero"))


@pytest.mark.parametrize("steps", [10, 20])
@pytest.mark.parametrize("prediction", ["eps", "v"])
def test_dpmpp_trailing_is_dpm_solver_multistep_scheduler(steps, prediction):
    s, model, x_T = setup("cosine", prediction)
    sched = dpm_scheduler(s, prediction, "trailing")
    sched.set_timesteps(steps)
    assert sched.timesteps.tolist() == samplers.make_sampler("dpmpp").timesteps(T, steps, "trailing")
    x, theirs = x_T.clone(), []
    for t in sched.timesteps:
        x = sched.step(diffusers_model(model)(x, t), t, x).prev_sample
        theirs.append(x)
    assert_paths_close(genlab_run(s, model, x_T, "dpmpp", steps, "trailing", prediction), theirs)


@pytest.mark.parametrize("steps", [10, 20])
@pytest.mark.parametrize("prediction", ["eps", "v"])
def test_dpmpp_step_is_dpm_solver_multistep_scheduler_step_on_its_linspace_timesteps(steps, prediction):
    s, model, x_T = setup("linear", prediction)
    sched = dpm_scheduler(s, prediction, "uniform")
    sched.set_timesteps(steps)
    ts = sched.timesteps.tolist()
    assert 0 not in ts and len(ts) == steps  # (genlab's uniform list ends at t = 0; this one at ~T / S)
    lockstep(s, model, prediction, samplers.make_sampler("dpmpp"), sched, list(zip(ts, ts[1:] + [-1])), x_T)


# ----------------------------------------------------------------------------- Euler, Heun, Euler ancestral
K_DIFFUSION = {"euler": EulerDiscreteScheduler, "heun": HeunDiscreteScheduler,
               "euler_a": EulerAncestralDiscreteScheduler}


@pytest.mark.parametrize("name", list(K_DIFFUSION))
@pytest.mark.parametrize("spacing", ["uniform", "trailing"])
@pytest.mark.parametrize("prediction", ["eps", "v"])
def test_euler_family_is_its_diffusers_scheduler(name, spacing, prediction):
    """diffusers keeps x~ = x_t / sqrt(abar_t) (euler.py); its states are compared in genlab's x_t.
    10 steps of T = 1000: uniform = linspace(0, 999, 10) is integers (step 111), so both visit the same t."""
    s, model, x_T = setup("linear", prediction)
    sched = K_DIFFUSION[name](**config(s, prediction, spacing))
    sched.set_timesteps(10)
    ts = samplers.make_sampler(name).timesteps(T, 10, spacing)
    assert sorted(set(sched.timesteps.tolist()), reverse=True) == ts   # (Heun lists each t but the first twice)
    sigmas = [math.sqrt((1 - a) / a) for a in (float(s.alphas_cumprod[t]) for t in ts)] + [0.0]
    g, x, theirs = torch.Generator().manual_seed(5), x_T * math.sqrt(1 + sigmas[0] ** 2), []
    step_kw = {} if name == "heun" else {"generator": g}  # (HeunDiscreteScheduler draws no noise)
    for t in sched.timesteps:
        x = sched.step(diffusers_model(model)(sched.scale_model_input(x, t), t), t, x, **step_kw).prev_sample
        if getattr(sched, "state_in_first_order", True) or len(theirs) == len(ts) - 1:  # Heun: a whole step done
            theirs.append(x / math.sqrt(1 + sigmas[len(theirs) + 1] ** 2))
    assert_paths_close(genlab_run(s, model, x_T, name, 10, spacing, prediction), theirs)

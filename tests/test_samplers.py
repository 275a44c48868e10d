"""DDPM, DDIM and DPM-Solver++ against their papers' equations, against each other and against exact answers.

"Analytic" tests use Gaussian data x_0 ~ N(mu, sd^2), whose optimal denoiser is known in closed form,
    E[eps | x_t] = sqrt(1 - abar) (x_t - sqrt(abar) mu) / (abar sd^2 + 1 - abar),
and whose probability-flow ODE keeps z = (x_t - sqrt(abar) mu) / sqrt(abar sd^2 + 1 - abar) constant, so the
exact end point of every deterministic trajectory is known.
"""

import math

import pytest
import torch

from genlab.diffusion import gaussian, samplers
from genlab.diffusion.ddim import abar, ddim_invert, ddim_sample_loop, ddim_sigma, ddim_step, ddim_timesteps
from genlab.diffusion.dpm_solver import alpha_sigma_lambda, dpmpp_2m_step, dpmpp_sample_loop
from genlab.diffusion.schedules import make_schedule
from genlab.errors import GenlabError
from genlab.models import build_model

MU, SD = 0.2, 0.25  # inside [-1, 1] (3 sd): the image samplers clip x0 estimates there



def gaussian_eps(schedule, mu=MU, sd=SD):
    """The exact eps-prediction network for data N(mu, sd^2) (any shape, elementwise)."""
    def model(x, t, y=None):
        ab = schedule.alphas_cumprod[t].to(x.dtype).view(-1, *[1] * (x.ndim - 1))
        return (1 - ab).sqrt() * (x - ab.sqrt() * mu) / (ab * sd**2 + 1 - ab)
    return model


def exact_ode_end(schedule, x_T, model, mu=MU, sd=SD):
    """Where the probability-flow ODE takes x_T, then the same final x0 estimate at t = 0 as the samplers."""
    a_T, a_0 = abar(schedule, schedule.T - 1), abar(schedule, 0)
    z = (x_T - math.sqrt(a_T) * mu) / math.sqrt(a_T * sd**2 + 1 - a_T)
    x_t0 = math.sqrt(a_0) * mu + math.sqrt(a_0 * sd**2 + 1 - a_0) * z
    eps = model(x_t0, torch.zeros(len(x_T), dtype=torch.long))
    return (x_t0 - math.sqrt(1 - a_0) * eps) / math.sqrt(a_0)


class FixedNet(torch.nn.Module):
    """A fixed, smooth, random function (x_t, t) -> output, to compare samplers path by path."""

    def __init__(self, dim, T):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.w = torch.randn(dim, dim, generator=g) / dim**0.5
        self.b = torch.randn(T, dim, generator=g) * 0.1

    def forward(self, x, t, y=None):
        flat = x.flatten(1)
        return (torch.tanh(flat @ self.w) + self.b[t]).view_as(x)


# ----------------------------------------------------------------------------- timesteps
def test_timestep_spacings():
    assert ddim_timesteps(1000, 1000) == list(range(999, -1, -1))        # all steps: DDPM's sequence
    assert ddim_timesteps(1000, 1000, "quadratic") == list(range(999, -1, -1))
    ts = ddim_timesteps(1000, 10)
    assert ts[0] == 999 and ts[-1] == 0 and len(ts) == 10
    gaps = [a - b for a, b in zip(ts, ts[1:])]
    assert max(gaps) - min(gaps) <= 1                                     # uniform
    q = ddim_timesteps(1000, 50, "quadratic")[::-1]
    assert q[0] == 0 and q[-1] == 999 and len(set(q)) == 50
    qgaps = [b - a for a, b in zip(q, q[1:])]
    assert qgaps[0] < qgaps[-1] / 10                                      # dense at low noise
    assert sorted(q) == q
    assert ddim_timesteps(20, 1) == [19]
    with pytest.raises(GenlabError, match="spacing"):
        ddim_timesteps(100, 10, "cubic")
    with pytest.raises(GenlabError, match="between 1 and"):
        ddim_timesteps(100, 101)


# ----------------------------------------------------------------------------- step functions vs equations
def _fixed(shape=(3, 1, 2, 2), seed=1):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=g, dtype=torch.float64) for _ in range(3)]


def test_ddpm_p_sample_is_algorithm_2():
    """x_{t-1} = (x_t - beta_t / sqrt(1 - abar_t) eps) / sqrt(alpha_t) + sigma_t z, sigma_t^2 = beta~_t (Eq. 11)."""
    s = make_schedule("linear", 100)
    x_t, eps, _ = (v.float() for v in _fixed())
    t = 60
    out, _ = gaussian.p_sample(s, lambda x, tt, y: eps, x_t, t, clip=False, generator=torch.Generator().manual_seed(5))
    z = torch.randn(x_t.shape, generator=torch.Generator().manual_seed(5))
    beta, alpha, ab = float(s.betas[t]), float(s.alphas[t]), float(s.alphas_cumprod[t])
    beta_tilde = (1 - float(s.alphas_cumprod[t - 1])) / (1 - ab) * beta
    want = (x_t - beta / math.sqrt(1 - ab) * eps) / math.sqrt(alpha) + math.sqrt(beta_tilde) * z
    torch.testing.assert_close(out, want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
def test_ddim_step_is_eq_12(prediction):
    """x_s = sqrt(abar_s) x0 + sqrt(1 - abar_s - sigma^2) eps + sigma z, sigma from Eq. 16, for any output type."""
    s = make_schedule("cosine", 10)
    x_t, eps, z = _fixed()
    t, t_prev, eta = 7, 3, 0.6
    a_t, a_s = float(s.alphas_cumprod[t]), float(s.alphas_cumprod[t_prev])
    x0 = (x_t - math.sqrt(1 - a_t) * eps) / math.sqrt(a_t)
    sigma = eta * math.sqrt((1 - a_s) / (1 - a_t) * (1 - a_t / a_s))
    want = math.sqrt(a_s) * x0 + math.sqrt(1 - a_s - sigma**2) * eps + sigma * z
    out = {"eps": eps, "x0": x0, "v": math.sqrt(a_t) * eps - math.sqrt(1 - a_t) * x0}[prediction]
    got, got_x0 = ddim_step(s, out.float(), t, t_prev, x_t.float(), eta, prediction, noise=z.float())
    torch.testing.assert_close(got.double(), want, atol=2e-5, rtol=1e-5)
    torch.testing.assert_close(got_x0.double(), x0, atol=2e-5, rtol=1e-5)
    assert ddim_sigma(s, t, t_prev, eta) == pytest.approx(sigma)
    # the last step (to clean data) returns the x0 estimate, noise-free
    last, _ = ddim_step(s, out.float(), t, -1, x_t.float(), eta=1.0, prediction=prediction)
    torch.testing.assert_close(last.double(), x0, atol=2e-5, rtol=1e-5)


def test_ddim_sigma_eta_1_is_the_ddpm_posterior_variance():
    s = make_schedule("linear", 50)
    for t in (1, 10, 49):
        assert ddim_sigma(s, t, t - 1, 1.0) ** 2 == pytest.approx(float(s.posterior_variance[t]), rel=1e-10)
    assert ddim_sigma(s, 30, 10, 0.0) == 0.0


def test_dpmpp_2m_step_is_algorithm_2():
    """x_ti = (sigma_ti / sigma_ti-1) x - alpha_ti (e^-h - 1) D, D = (1 + 1/2r) x0 - 1/2r x0_prev (Lu et al. 2022)."""
    s = make_schedule("cosine", 100)
    x, x0, x0_prev = _fixed()
    t_prev, t, t_next = 80, 60, 30
    a = {k: float(s.alphas_cumprod[k]) for k in (t_prev, t, t_next)}
    lam = {k: 0.5 * math.log(a[k] / (1 - a[k])) for k in a}
    h, h_prev = lam[t_next] - lam[t], lam[t] - lam[t_prev]
    r = h_prev / h
    D = (1 + 1 / (2 * r)) * x0 - 1 / (2 * r) * x0_prev
    want = math.sqrt((1 - a[t_next]) / (1 - a[t])) * x - math.sqrt(a[t_next]) * (math.exp(-h) - 1) * D
    got = dpmpp_2m_step(s, x, x0, t, t_next, x0_prev, t_prev)
    torch.testing.assert_close(got, want, atol=1e-12, rtol=1e-10)
    assert alpha_sigma_lambda(s, t)[2] == pytest.approx(lam[t])
    # first order (no previous x0) is exactly the deterministic DDIM step (Lu et al. 2022, Sec. 4.1)
    eps = (x - math.sqrt(a[t]) * x0) / math.sqrt(1 - a[t])
    ddim, _ = ddim_step(s, eps, t, t_next, x, eta=0.0)
    torch.testing.assert_close(dpmpp_2m_step(s, x, x0, t, t_next), ddim, atol=1e-6, rtol=1e-6)  # float32 abar in x0
    # a constant data prediction makes the second-order correction vanish
    torch.testing.assert_close(dpmpp_2m_step(s, x, x0, t, t_next, x0, t_prev), dpmpp_2m_step(s, x, x0, t, t_next))
    # to clean data (sigma = 0): the x0 estimate
    assert torch.equal(dpmpp_2m_step(s, x, x0, 0, -1, x0_prev, 5), x0)


# ----------------------------------------------------------------------------- DDIM(eta=1, all steps) == DDPM
def test_ddim_eta_1_all_steps_is_ancestral_ddpm_path_by_path():
    s = make_schedule("linear", 60)
    net = FixedNet(16, 60)
    shape = (32, 1, 4, 4)
    a = samplers.sample(s, net, shape, "ddpm", generator=torch.Generator().manual_seed(3))
    b = samplers.sample(s, net, shape, "ddim", steps=60, eta=1.0, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    c = samplers.sample(s, net, shape, "ddim", steps=60, eta=1.0, generator=torch.Generator().manual_seed(4))
    assert (a - c).abs().mean() > 0.05  # and the noise matters: a different stream gives other samples


def test_ddim_eta_1_matches_ddpm_in_distribution():
    """Independent runs of both samplers give the data distribution N(mu, sd^2) (Gaussian data, exact network)."""
    s = make_schedule("cosine", 1000)
    model = gaussian_eps(s)
    n = 20000
    a = samplers.sample(s, model, (n, 1), "ddpm", generator=torch.Generator().manual_seed(0))
    b = samplers.sample(s, model, (n, 1), "ddim", steps=1000, eta=1.0, generator=torch.Generator().manual_seed(1))
    for x in (a, b):
        assert float(x.mean()) == pytest.approx(MU, abs=0.01)   # standard error 0.0018
        assert float(x.std()) == pytest.approx(SD, abs=0.01)
    # two-sample Kolmogorov-Smirnov statistic: the 1% critical value at n = m = 20000 is 0.016
    grid = torch.linspace(-2, 2, 801)
    cdf = lambda v: (v.flatten()[None, :] <= grid[:, None]).float().mean(1)  # noqa: E731
    assert float((cdf(a) - cdf(b)).abs().max()) < 0.016


# ----------------------------------------------------------------------------- deterministic samplers
def test_deterministic_ddim_is_reproducible():
    torch.manual_seed(0)
    model = build_model("diffusion", dict(channels=1, image_size=8, base_width=8, channel_mult=(1, 2),
                                          num_res_blocks=1, attn_resolutions=(), timesteps=40)).eval()
    torch.nn.init.normal_(model.net.out[-1].weight, std=0.05)  # a non-zero network
    g = lambda seed: torch.Generator().manual_seed(seed)  # noqa: E731
    a = model.sample(4, generator=g(7), sampler="ddim", steps=10)
    assert torch.equal(a, model.sample(4, generator=g(7), sampler="ddim", steps=10))
    assert not torch.allclose(a, model.sample(4, generator=g(8), sampler="ddim", steps=10))
    # given x_T, eta = 0 uses no randomness at all; eta = 1 does
    x_T = torch.randn(4, 1, 8, 8, generator=g(1))
    for sampler in ("ddim", "dpmpp"):
        u = model.sample(4, generator=g(1), sampler=sampler, steps=10, x_T=x_T)
        assert torch.equal(u, model.sample(4, generator=g(2), sampler=sampler, steps=10, x_T=x_T))
    u = model.sample(4, generator=g(1), sampler="ddim", steps=10, eta=1.0, x_T=x_T)
    assert not torch.allclose(u, model.sample(4, generator=g(2), sampler="ddim", steps=10, eta=1.0, x_T=x_T))
    # a T = 40 model takes the samplers' default step counts (50 for ddim) without complaint
    assert model.sample(2, generator=g(0), sampler="ddim").shape == (2, 1, 8, 8)


def test_configured_steps_belong_to_the_configured_sampler():
    """A model whose default is DDIM-5 runs DDPM with all T steps when asked for ddpm (not 5)."""
    model = build_model("diffusion", dict(channels=1, image_size=8, base_width=8, channel_mult=(1, 2),
                                          num_res_blocks=1, attn_resolutions=(), timesteps=40,
                                          sampler="ddim", sample_steps=5)).eval()
    calls = []
    model.net.register_forward_hook(lambda *a: calls.append(1))
    model.sample(2, generator=torch.Generator().manual_seed(0))
    assert len(calls) == 5
    calls.clear()
    model.sample(2, generator=torch.Generator().manual_seed(0), sampler="ddpm")
    assert len(calls) == 40
    calls.clear()
    model.sample(2, generator=torch.Generator().manual_seed(0), sampler="dpmpp")
    assert len(calls) == samplers.resolve_steps("dpmpp", None, 40) == 20  # the sampler's own default, not 5


def test_sample_bf16_only_where_the_hardware_has_it(monkeypatch):
    """A checkpoint with sample_bf16 samples in fp32 on a CPU without native bf16 (emulated bf16 is
    ~20x slower there) and in bf16 autocast where the hardware has it."""
    import genlab.models.diffusion as diffusion_model

    torch.manual_seed(0)
    model = build_model("diffusion", dict(channels=1, image_size=8, base_width=8, channel_mult=(1, 2),
                                          num_res_blocks=1, attn_resolutions=(), timesteps=40)).eval()
    torch.nn.init.normal_(model.net.out[-1].weight, std=0.05)
    x_T = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    fp32 = model.sample(2, sampler="ddim", steps=5, x_T=x_T)
    model.cfg.sample_bf16 = True
    monkeypatch.setattr(diffusion_model, "use_bf16", lambda precision, device, **kw: False)
    assert torch.equal(model.sample(2, sampler="ddim", steps=5, x_T=x_T), fp32)
    monkeypatch.setattr(diffusion_model, "use_bf16", lambda precision, device, **kw: True)
    bf16 = model.sample(2, sampler="ddim", steps=5, x_T=x_T)
    assert not torch.equal(bf16, fp32) and torch.allclose(bf16, fp32, atol=0.1)


def test_ode_solvers_converge_to_the_exact_flow():
    s = make_schedule("cosine", 1000)
    model = gaussian_eps(s, MU, 0.5)  # no clipping here, so a wider Gaussian (a less stiff flow) is fine
    x_T = torch.randn(2000, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ref = exact_ode_end(s, x_T, model, MU, 0.5)

    def err(loop, steps, **kw):
        return float((loop(s, model, x_T.shape, steps=steps, x_T=x_T, clip=False, **kw) - ref).abs().max())

    ddim = {n: err(ddim_sample_loop, n) for n in (10, 20, 50, 100)}
    dpm = {n: err(dpmpp_sample_loop, n) for n in (10, 20, 50, 100)}
    # DDIM is first order: the error halves when the steps double
    assert 1.6 < ddim[10] / ddim[20] < 2.4 and 1.6 < ddim[50] / ddim[100] < 2.4
    # DPM-Solver++(2M) is far more accurate for the same network calls, and 20 of its steps beat 50 of DDIM's
    assert all(dpm[n] < ddim[n] / 2 for n in dpm)
    assert dpm[20] < ddim[50] / 4
    assert dpm[100] < 0.003
    # quadratic spacing works too (and helps DDIM here: the flow bends most at low noise)
    assert err(ddim_sample_loop, 50, spacing="quadratic") < ddim[50]


def test_ddim_inversion_round_trip_is_exact_up_to_discretisation():
    s = make_schedule("cosine", 1000)
    model = gaussian_eps(s)
    x_T = torch.randn(500, 1, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    x0 = exact_ode_end(s, x_T, model)
    errors = []
    for refine in (0, 1):
        z = ddim_invert(s, model, x0, steps=50, refine=refine)
        back = ddim_sample_loop(s, model, x0.shape, steps=50, x_T=z, clip=False)
        errors.append(float((back - x0).abs().max()))
    assert errors[1] < errors[0] / 3 and errors[1] < 0.02
    z = ddim_invert(s, model, x0, steps=200)
    assert float((z - x_T).abs().mean()) < 0.05       # the latent is the noise that made x0
    assert float(z.std()) == pytest.approx(1.0, abs=0.1)


# ----------------------------------------------------------------------------- one interface, every sampler
@pytest.mark.parametrize("sampler,steps", [("ddpm", None)] + [(name, 10) for name in samplers.available()[1:]])
def test_every_sampler_returns_intermediates(sampler, steps):
    s = make_schedule("linear", 30)
    net = FixedNet(4, 30)
    x_T = torch.randn(5, 1, 2, 2, generator=torch.Generator().manual_seed(0))
    x, frames = samplers.sample(s, net, x_T.shape, sampler, steps=steps, x_T=x_T.clone(), return_intermediates=6,
                                generator=torch.Generator().manual_seed(0))
    assert len(frames) == 6
    assert torch.equal(frames[0], x_T) and torch.equal(frames[-1], x)
    calls = []
    samplers.sample(s, net, x_T.shape, sampler, steps=steps, x_T=x_T.clone(), progress=calls.append)
    assert sum(calls) == samplers.make_sampler(sampler).network_calls(steps or 30)  # one tick per network call


def test_samplers_work_on_points():
    s = make_schedule("cosine", 200)
    model = gaussian_eps(s)
    for name in samplers.available():
        x = samplers.sample(s, model, (4000, 2), name, generator=torch.Generator().manual_seed(0))
        assert x.shape == (4000, 2)
        assert float(x.mean()) == pytest.approx(MU, abs=0.02) and float(x.std()) == pytest.approx(SD, abs=0.03)


def test_bad_sampler_inputs_are_rejected():
    s = make_schedule("linear", 20)
    net = FixedNet(4, 20)
    shape = (2, 1, 2, 2)
    with pytest.raises(GenlabError, match="between 1 and the model's 20"):
        samplers.sample(s, net, shape, "ddim", steps=21)
    with pytest.raises(GenlabError, match="runs all 20 steps"):
        samplers.sample(s, net, shape, "ddpm", steps=10)
    with pytest.raises(GenlabError, match="unknown sampler"):
        samplers.sample(s, net, shape, "lms")
    with pytest.raises(GenlabError, match="eta"):
        samplers.sample(s, net, shape, "ddim", steps=5, eta=-0.5)
    with pytest.raises(GenlabError, match="deterministic"):
        samplers.sample(s, net, shape, "dpmpp", steps=5, eta=1.0)
    with pytest.raises(GenlabError, match="spacing"):
        samplers.sample(s, net, shape, "dpmpp", steps=5, spacing="log")
    model = build_model("diffusion", dict(channels=1, image_size=8, base_width=8, channel_mult=(1, 2),
                                          num_res_blocks=1, attn_resolutions=(), timesteps=20))
    with pytest.raises(GenlabError, match="not ddpm"):
        model.sample(1, sampler="ddpm", spacing="quadratic")
    assert {"ddpm", "ddim", "dpmpp"} <= set(samplers.available())

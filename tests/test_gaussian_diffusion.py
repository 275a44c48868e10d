"""The DDPM forward and reverse processes against closed forms, Bayes' rule and Monte-Carlo estimates."""

import math

import pytest
import torch

from genlab.diffusion.ddpm import p_sample_loop
from genlab.diffusion.gaussian import (diffusion_loss, p_mean_variance, p_sample, predict_eps,
                                       predict_x0, q_posterior, q_sample)
from genlab.diffusion.schedules import extract, make_schedule



def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _target(s, prediction, xt, t, x0_hat):
    """What a network of the given parametrisation outputs when its x_0 estimate is x0_hat."""
    ab = extract(s.alphas_cumprod, t, xt.ndim)
    eps = predict_eps(s, xt, t, x0_hat)
    return {"eps": eps, "x0": x0_hat, "v": ab.sqrt() * eps - (1 - ab).sqrt() * x0_hat}[prediction]


@pytest.mark.parametrize("name,t", [("linear", 3), ("cosine", 30)])
def test_q_sample_statistics(name, t):
    s = make_schedule(name, 50)
    n = 200_000
    x0 = torch.tensor([-1.0, -0.3, 0.5, 1.0]).expand(n, 4)
    tt = torch.full((n,), t)
    torch.manual_seed(0)
    xt = q_sample(s, x0, tt)
    ab = s.alphas_cumprod[t].item()
    # Eq. 4: x_t | x_0 ~ N(sqrt(abar_t) x_0, (1 - abar_t) I); standard errors ~ 0.002
    torch.testing.assert_close(xt.mean(0), math.sqrt(ab) * x0[0], atol=0.01, rtol=0)
    torch.testing.assert_close(xt.var(0), torch.full((4,), 1 - ab), atol=0.01, rtol=0.02)
    # with given noise it is the formula itself
    noise = torch.randn(3, 1, 2, 2, generator=_gen())
    x0s = torch.rand(3, 1, 2, 2, generator=_gen(1)) * 2 - 1
    tt = torch.tensor([0, t, 49])
    ab3 = s.alphas_cumprod[tt].float().view(3, 1, 1, 1)
    torch.testing.assert_close(q_sample(s, x0s, tt, noise), ab3.sqrt() * x0s + (1 - ab3).sqrt() * noise)


def test_q_posterior_matches_ddpm_eq_7_and_bayes_rule():
    s = make_schedule("linear", 60)
    t = torch.arange(1, 60)
    x0 = torch.rand(59, 3, generator=_gen()) * 2 - 1
    xt = torch.randn(59, 3, generator=_gen(1))
    mean, var = q_posterior(s, x0, xt, t)
    b = s.betas[t].view(-1, 1)
    ab, ab_prev = s.alphas_cumprod[t].view(-1, 1), s.alphas_cumprod[t - 1].view(-1, 1)
    # DDPM Eq. 7, in float64
    mu = ab_prev.sqrt() * b / (1 - ab) * x0.double() + (1 - b).sqrt() * (1 - ab_prev) / (1 - ab) * xt.double()
    torch.testing.assert_close(mean.double(), mu, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(var.double(), (1 - ab_prev) / (1 - ab) * b, rtol=1e-5, atol=0)
    # Bayes: q(x_{t-1} | x_t, x_0) ∝ N(x_t; sqrt(alpha_t) x_{t-1}, beta_t) N(x_{t-1}; sqrt(abar_{t-1}) x_0,
    # 1 - abar_{t-1}), a product of Gaussians in x_{t-1}: precisions add, precision-weighted means add
    prec = (1 - b) / b + 1 / (1 - ab_prev)
    bayes_mean = ((1 - b).sqrt() / b * xt.double() + ab_prev.sqrt() / (1 - ab_prev) * x0.double()) / prec
    torch.testing.assert_close(mean.double(), bayes_mean, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(var.double(), (1 / prec).expand_as(var), rtol=1e-5, atol=0)


@pytest.mark.parametrize("t", [1, 10, 40])
def test_q_posterior_monte_carlo(t):
    """Simulate x_{t-1} ~ q(.|x_0), x_t ~ q(.|x_{t-1}); regress x_{t-1} on x_t: E is linear, the residual is beta~."""
    s = make_schedule("cosine", 50)
    n, x0 = 400_000, 0.6
    g = _gen(t)
    ab_prev, beta = s.alphas_cumprod[t - 1].item(), s.betas[t].item()
    x_prev = math.sqrt(ab_prev) * x0 + math.sqrt(1 - ab_prev) * torch.randn(n, generator=g, dtype=torch.float64)
    x_t = math.sqrt(1 - beta) * x_prev + math.sqrt(beta) * torch.randn(n, generator=g, dtype=torch.float64)
    xc = x_t - x_t.mean()
    slope = (xc * (x_prev - x_prev.mean())).sum() / (xc * xc).sum()
    intercept = x_prev.mean() - slope * x_t.mean()
    resid_var = (x_prev - intercept - slope * x_t).var()
    assert slope.item() == pytest.approx(s.posterior_mean_coef2[t].item(), rel=0.01, abs=2e-3)
    assert intercept.item() == pytest.approx(s.posterior_mean_coef1[t].item() * x0, rel=0.01, abs=3e-3)
    assert resid_var.item() == pytest.approx(s.posterior_variance[t].item(), rel=0.015)
    # and q_posterior returns exactly that line and variance
    mean, var = q_posterior(s, torch.tensor([[x0]]), torch.tensor([[0.25]]), torch.tensor([t]))
    assert mean.item() == pytest.approx(intercept.item() + slope.item() * 0.25, abs=0.01)
    assert var.item() == pytest.approx(resid_var.item(), rel=0.015)


@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
@pytest.mark.parametrize("name", ["linear", "cosine"])
def test_predict_x0_inverts_q_sample(prediction, name):
    T = 100
    s = make_schedule(name, T)
    # the clipped last cosine step has alpha_bar ~ 2e-7; dividing by its root amplifies float32 rounding 2000x
    t = torch.arange(T if name == "linear" else T - 1)
    x0 = torch.rand(len(t), 2, 4, 4, generator=_gen()) * 2 - 1
    noise = torch.randn(x0.shape, generator=_gen(1))
    xt = q_sample(s, x0, t, noise)
    ab = extract(s.alphas_cumprod, t, 4)
    out = {"eps": noise, "x0": x0, "v": ab.sqrt() * noise - (1 - ab).sqrt() * x0}[prediction]
    torch.testing.assert_close(predict_x0(s, xt, t, out, prediction), x0, atol=2e-4, rtol=0)
    torch.testing.assert_close(predict_eps(s, xt, t, x0), noise, atol=2e-4, rtol=0)


@pytest.mark.parametrize("weighting", ["none", "min_snr"])
@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
def test_diffusion_loss_of_an_oracle_is_zero(prediction, weighting):
    s = make_schedule("cosine", 100)
    x0 = torch.rand(64, 1, 4, 4, generator=_gen()) * 2 - 1
    torch.manual_seed(0)
    oracle = lambda xt, t, y=None: _target(s, prediction, xt, t, x0)  # noqa: E731  (knows x_0, finds the true eps)
    loss = diffusion_loss(s, oracle, x0, prediction=prediction, weighting=weighting)
    assert loss.ndim == 0 and loss.item() < 1e-6
    # a network that outputs zeros is far from it: E[eps^2] = 1 for eps prediction
    zero = lambda xt, t, y=None: torch.zeros_like(xt)  # noqa: E731
    assert diffusion_loss(s, zero, x0, prediction=prediction, weighting=weighting).item() > 0.05


def test_min_snr_weights_and_equivalence_of_parametrisations():
    s = make_schedule("cosine", 100)
    x0 = torch.rand(32, 1, 4, 4, generator=_gen()) * 2 - 1
    t = torch.arange(0, 96, 3)
    noise = torch.randn(x0.shape, generator=_gen(1))
    # a network whose x_0 estimate is off by d, expressed as eps, x0 and v outputs
    d = 0.1 * torch.randn(x0.shape, generator=_gen(2))
    losses = {}
    for p in ("eps", "x0", "v"):
        model = lambda xt, tt, y=None, p=p: _target(s, p, xt, tt, x0 + d)  # noqa: E731
        losses[p] = diffusion_loss(s, model, x0, t, prediction=p, weighting="min_snr", noise=noise).item()
        plain = diffusion_loss(s, model, x0, t, prediction=p, noise=noise).item()
        # Min-SNR-5 (Hang et al. 2023) by hand: per item min(SNR, 5) / {SNR, 1, SNR + 1} times the squared error
        snr = s.snr()[t]
        err2 = (model(q_sample(s, x0, t, noise), t).double() - _target(s, p, q_sample(s, x0, t, noise), t, x0).double())
        err2 = err2.pow(2).mean((1, 2, 3))
        w = snr.clamp(max=5) / {"eps": snr, "x0": torch.ones_like(snr), "v": snr + 1}[p]
        assert losses[p] == pytest.approx((w * err2).mean().item(), rel=1e-3)
        assert plain == pytest.approx(err2.mean().item(), rel=1e-3)
    # ... all three weighted objectives are the same min(SNR, 5)-weighted x_0 error
    want = (s.snr()[t].clamp(max=5) * d.double().pow(2).mean((1, 2, 3))).mean().item()
    for p in losses:
        assert losses[p] == pytest.approx(want, rel=2e-3), p


@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
def test_p_sample_with_oracle_recovers_x0_at_t0(prediction):
    s = make_schedule("linear", 50)
    x0 = torch.rand(4, 3, 5, 5, generator=_gen()) * 2 - 1
    t0 = torch.zeros(4, dtype=torch.long)
    xt = q_sample(s, x0, t0, torch.randn(x0.shape, generator=_gen(1)))
    oracle = lambda x, t, y=None: _target(s, prediction, x, t, x0)  # noqa: E731
    x_prev, x0_hat = p_sample(s, oracle, xt, 0, prediction=prediction, generator=_gen(2))
    torch.testing.assert_close(x0_hat, x0, atol=1e-4, rtol=0)
    torch.testing.assert_close(x_prev, x0, atol=1e-4, rtol=0)  # no noise at the last step, mean = x_0


def test_p_sample_is_algorithm_2_line_4():
    s = make_schedule("cosine", 50)
    x0 = torch.rand(3, 1, 4, 4, generator=_gen()) * 2 - 1
    t = 20
    tt = torch.full((3,), t)
    xt = q_sample(s, x0, tt, torch.randn(x0.shape, generator=_gen(1)))
    oracle = lambda x, t, y=None: _target(s, "eps", x, t, x0)  # noqa: E731
    x_prev, _ = p_sample(s, oracle, xt, t, generator=_gen(5))
    z = torch.randn(xt.shape, generator=_gen(5))
    mean, var = q_posterior(s, x0, xt, tt)
    torch.testing.assert_close(x_prev, mean + var.sqrt() * z, atol=1e-5, rtol=0)
    # "large" variance uses beta_t (DDPM Sec. 3.2), "small" beta~_t
    _, var_large, _ = p_mean_variance(s, oracle, xt, tt, variance="large")
    assert var_large.flatten()[0].item() == pytest.approx(s.betas[t].item(), rel=1e-6)
    # clipping: an x_0 estimate outside [-1, 1] is clamped before it enters the posterior mean
    far = lambda x, t, y=None: torch.full_like(x, 3.0)  # noqa: E731
    _, _, x0_clip = p_mean_variance(s, far, xt, tt, prediction="x0")
    _, _, x0_raw = p_mean_variance(s, far, xt, tt, prediction="x0", clip=False)
    assert x0_clip.max().item() == 1.0 and x0_raw.min().item() == 3.0


def test_p_sample_loop_with_oracle_ends_at_x0():
    s = make_schedule("linear", 30)
    x0 = torch.rand(2, 1, 4, 4, generator=_gen()) * 2 - 1
    oracle = lambda x, t, y=None: x0  # noqa: E731
    out = p_sample_loop(s, oracle, x0.shape, prediction="x0", generator=_gen(1))
    torch.testing.assert_close(out, x0, atol=1e-5, rtol=0)


def test_p_sample_loop_on_gaussian_data_follows_the_linear_gaussian_recursion():
    """Data N(mu, sigma^2): E[x_0 | x_t] is linear in x_t, so every ancestral step is x <- a_t x + b_t + sqrt(beta~_t) z
    and the mean and variance of the samples follow a recursion we can run by hand (in float64)."""
    s = make_schedule("linear", 100)
    mu, sigma2 = 0.3, 0.25

    def gain(t):  # d E[x_0 | x_t] / d x_t for Gaussian data
        ab = s.alphas_cumprod[t]
        return ab.sqrt() * sigma2 / (ab * sigma2 + 1 - ab)

    def posterior_mean(x, t, y=None):
        ab = extract(s.alphas_cumprod, t, x.ndim)
        return mu + ab.sqrt() * sigma2 / (ab * sigma2 + 1 - ab) * (x - ab.sqrt() * mu)

    m, v = 0.0, 1.0  # x_T ~ N(0, 1)
    for t in reversed(range(s.T)):
        k, c1, c2 = gain(t), s.posterior_mean_coef1[t], s.posterior_mean_coef2[t]
        a = c1 * k + c2
        m = (c1 * mu * (1 - k * s.alphas_cumprod[t].sqrt()) + a * m).item()
        v = (a * a * v + (s.posterior_variance[t] if t > 0 else 0)).item()
    x = p_sample_loop(s, posterior_mean, (40_000, 1), prediction="x0", clip=False, generator=_gen(3))
    assert x.mean().item() == pytest.approx(m, abs=0.01)
    assert x.var().item() == pytest.approx(v, rel=0.03)
    # (the "small" variance beta~ ignores Var[x_0 | x_t], so 100 steps land below sigma^2; the recursion knows that)
    assert abs(m - mu) < 0.02 and 0.7 * sigma2 < v < sigma2


# k > T keeps every state once: x_T and the T steps (13; before the one sampler loop of issue #17, DDPM kept
# 12 and picked its frames by its own rule; every sampler now shares ddim's frame_steps)
@pytest.mark.parametrize("k,want", [(2, 2), (5, 5), (12, 12), (30, 13)])
def test_p_sample_loop_shapes_and_intermediates(k, want):
    s = make_schedule("cosine", 12)
    zero = lambda x, t, y=None: torch.zeros_like(x)  # noqa: E731
    x_T = torch.randn(3, 2, 4, 4, generator=_gen())
    calls = []
    out, frames = p_sample_loop(s, zero, (3, 2, 4, 4), generator=_gen(1), x_T=x_T, return_intermediates=k,
                                progress=calls.append)
    assert out.shape == (3, 2, 4, 4) and len(calls) == 12
    assert len(frames) == want                      # k snapshots (at most one per state)
    assert all(f.shape == (3, 2, 4, 4) for f in frames)
    assert torch.equal(frames[0], x_T) and torch.equal(frames[-1], out)
    plain = p_sample_loop(s, zero, (3, 2, 4, 4), generator=_gen(1), x_T=x_T)
    assert torch.equal(plain, out)                  # snapshots do not change the samples

"""Noise schedules against their closed forms (Ho et al. 2020; Nichol & Dhariwal 2021), in float64."""

import math

import pytest
import torch

from genlab.diffusion.schedules import NoiseSchedule, cosine_betas, extract, linear_betas, make_schedule
from genlab.errors import GenlabError



def test_linear_betas_endpoints_and_spacing():
    b = linear_betas(1000)
    assert b.dtype == torch.float64 and b.shape == (1000,)
    assert b[0].item() == pytest.approx(1e-4, abs=1e-15) and b[-1].item() == pytest.approx(0.02, abs=1e-15)
    diffs = b.diff()
    torch.testing.assert_close(diffs, torch.full_like(diffs, (0.02 - 1e-4) / 999), rtol=1e-9, atol=1e-15)
    # a shorter chain keeps the shape of the schedule: betas scaled by 1000 / T
    b100 = linear_betas(100)
    assert b100[0].item() == pytest.approx(1e-3) and b100[-1].item() == pytest.approx(0.2)


def _nichol_dhariwal_alpha_bar(t: float, T: int, s: float = 0.008) -> float:
    """Eq. 17 of Nichol & Dhariwal 2021: alpha_bar(t) = f(t) / f(0), f(t) = cos^2(((t/T + s)/(1 + s)) pi/2)."""
    f = lambda u: math.cos((u / T + s) / (1 + s) * math.pi / 2) ** 2  # noqa: E731
    return f(t) / f(0)


@pytest.mark.parametrize("T", [50, 1000])
def test_cosine_alpha_bar_matches_nichol_dhariwal(T):
    s = make_schedule("cosine", T)
    # 0-based step t has gone through t + 1 noising steps: alpha_bar at continuous time t + 1
    want = torch.tensor([_nichol_dhariwal_alpha_bar(t + 1, T) for t in range(T)], dtype=torch.float64)
    # every step but the last is unclipped and must match the formula exactly
    torch.testing.assert_close(s.alphas_cumprod[:-1], want[:-1], rtol=1e-10, atol=1e-14)
    # the last beta is clipped at 0.999 (f(T) = 0 would make it 1 and alpha_bar exactly 0)
    assert s.betas[-1].item() == pytest.approx(0.999)
    assert s.alphas_cumprod[-1].item() == pytest.approx(want[-2].item() * 0.001, rel=1e-9)
    assert s.alphas_cumprod[-1] > 0


def test_beta_clipping():
    b = cosine_betas(20, max_beta=0.3)
    unclipped = cosine_betas(20, max_beta=1.0)
    assert b.max().item() == pytest.approx(0.3)
    assert (unclipped > 0.3).any()  # the clip is active in this setting
    torch.testing.assert_close(b, unclipped.clamp(max=0.3))
    assert unclipped[-1].item() == pytest.approx(1.0)  # the singularity the default clip avoids


@pytest.mark.parametrize("name", ["linear", "cosine"])
def test_cumprod_and_posterior_coefficients_match_ddpm_eqs_6_7(name):
    T = 40
    s = make_schedule(name, T)
    betas = s.betas.tolist()
    # alpha_bar_t = prod_{s<=t} (1 - beta_s), accumulated by hand in float64
    ab, acc = [], 1.0
    for b in betas:
        acc *= 1 - b
        ab.append(acc)
    torch.testing.assert_close(s.alphas_cumprod, torch.tensor(ab, dtype=torch.float64), rtol=1e-13, atol=0)
    for t in range(T):
        ab_prev = ab[t - 1] if t > 0 else 1.0
        beta, alpha = betas[t], 1 - betas[t]
        # Eq. 7: beta~_t = (1 - abar_{t-1}) / (1 - abar_t) beta_t
        want_var = (1 - ab_prev) / (1 - ab[t]) * beta
        assert s.posterior_variance[t].item() == pytest.approx(want_var, rel=1e-12, abs=1e-300)
        # Eq. 7: mu~_t = sqrt(abar_{t-1}) beta_t / (1 - abar_t) x0 + sqrt(alpha_t) (1 - abar_{t-1}) / (1 - abar_t) x_t
        assert s.posterior_mean_coef1[t].item() == pytest.approx(math.sqrt(ab_prev) * beta / (1 - ab[t]), rel=1e-12)
        assert s.posterior_mean_coef2[t].item() == pytest.approx(math.sqrt(alpha) * (1 - ab_prev) / (1 - ab[t]),
                                                                 rel=1e-12, abs=1e-300)
    # x_{t-1} is known exactly at t = 0 (x_{-1} = x_0): zero variance, mean = x_0
    assert s.posterior_variance[0].item() == 0.0
    assert s.posterior_mean_coef1[0].item() == pytest.approx(1.0) and s.posterior_mean_coef2[0].item() == 0.0
    # the log variance is clipped to beta~_1 at t = 0 instead of log(0) = -inf
    assert s.posterior_log_variance_clipped[0].item() == pytest.approx(math.log(s.posterior_variance[1].item()))
    torch.testing.assert_close(s.posterior_log_variance_clipped[1:], s.posterior_variance[1:].log())
    torch.testing.assert_close(s.alphas_cumprod_prev[1:], s.alphas_cumprod[:-1])


@pytest.mark.parametrize("name", ["linear", "cosine"])
def test_monotonicity_and_ranges(name):
    s = make_schedule(name, 200)
    assert s.T == 200
    assert ((s.betas > 0) & (s.betas < 1)).all()
    assert (s.betas.diff() >= 0).all()                    # noise is added ever faster
    assert (s.alphas_cumprod.diff() < 0).all()            # signal only decreases
    assert s.alphas_cumprod[0] > 0.99 and s.alphas_cumprod[-1] < 1e-3
    assert (s.snr().diff() < 0).all()
    assert ((s.posterior_variance[1:] > 0) & (s.posterior_variance[1:] <= s.betas[1:])).all()  # beta~ <= beta


def test_custom_betas_and_extract():
    s = NoiseSchedule(torch.tensor([0.1, 0.2, 0.5]))
    assert s.betas.dtype == torch.float64
    torch.testing.assert_close(s.alphas_cumprod, torch.tensor([0.9, 0.72, 0.36], dtype=torch.float64))
    out = extract(s.alphas_cumprod, torch.tensor([2, 0]), 4)
    assert out.shape == (2, 1, 1, 1) and out.dtype == torch.float32
    torch.testing.assert_close(out.flatten(), torch.tensor([0.36, 0.9]))


def test_bad_schedule_arguments():
    with pytest.raises(GenlabError, match="unknown noise schedule 'quadratic'.*linear, cosine"):
        make_schedule("quadratic", 100)
    with pytest.raises(GenlabError, match="at least 2"):
        make_schedule("linear", 1)

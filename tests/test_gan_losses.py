"""GAN losses against numbers worked out by hand, and the penalties against independent gradients."""

import math

import pytest
import torch

from genlab.errors import GenlabError, ParamError
from genlab.gan import (
    LOSSES,
    check_loss,
    clip_weights_,
    d_loss,
    feature_matching_loss,
    g_loss,
    gradient_penalty,
    r1_penalty,
)

REAL, FAKE = torch.tensor([2.0, -1.0]), torch.tensor([0.5, -3.0])


def D(logit):
    """The discriminator's probability sigma(logit), written out."""
    return 1 / (1 + math.exp(-logit))


# ---- every loss on fixed logits: real [2, -1], fake [0.5, -3] ------------------------------------------
BCE_D = -(math.log(D(2.0)) + math.log(D(-1.0))) / 2 - (math.log(1 - D(0.5)) + math.log(1 - D(-3.0))) / 2
D_EXPECTED = {
    "saturating": BCE_D,
    "nonsaturating": BCE_D,
    "lsgan": 0.5 * ((2 - 1) ** 2 + (-1 - 1) ** 2) / 2 + 0.5 * (0.5 ** 2 + 3.0 ** 2) / 2,   # 1.25 + 2.3125
    "hinge": (max(0, 1 - 2) + max(0, 1 + 1)) / 2 + (max(0, 1 + 0.5) + max(0, 1 - 3)) / 2,  # 1 + 0.75
    "wgan": (0.5 - 3) / 2 - (2 - 1) / 2,                                                     # -1.25 - 0.5
    "wgan-gp": -1.75,
}
G_EXPECTED = {
    "saturating": (math.log(1 - D(0.5)) + math.log(1 - D(-3.0))) / 2,
    "nonsaturating": -(math.log(D(0.5)) + math.log(D(-3.0))) / 2,
    "lsgan": 0.5 * ((0.5 - 1) ** 2 + (-3 - 1) ** 2) / 2,                                     # 4.0625
    "hinge": 1.25, "wgan": 1.25, "wgan-gp": 1.25,
}


@pytest.mark.parametrize("name", LOSSES)
def test_every_loss_matches_the_hand_computed_value(name):
    assert set(D_EXPECTED) == set(G_EXPECTED) == set(LOSSES)
    assert d_loss(name, REAL, FAKE).item() == pytest.approx(D_EXPECTED[name], rel=1e-6)
    assert g_loss(name, FAKE).item() == pytest.approx(G_EXPECTED[name], rel=1e-6)
    assert D_EXPECTED["lsgan"] == 3.5625 and D_EXPECTED["hinge"] == 1.75 and G_EXPECTED["lsgan"] == 4.0625


def test_the_bce_losses_stay_finite_where_a_naive_log_sigmoid_would_not():
    extreme = torch.tensor([200.0, -200.0])
    for name in ("saturating", "nonsaturating"):
        assert torch.isfinite(d_loss(name, extreme, extreme)) and torch.isfinite(g_loss(name, extreme))
    # a confidently wrong logit l costs |l|: -log sigma(-200) = 200; real: (0 + 200) / 2, fake: (200 + 0) / 2
    assert d_loss("nonsaturating", extreme, extreme).item() == pytest.approx(100.0 + 100.0)


def test_the_saturating_generator_gradient_vanishes_where_the_nonsaturating_one_does_not():
    # Early in training D rejects the fakes confidently: logit -> very negative. The minimax G loss
    # log(1 - D) is flat there (gradient -sigma(l) ~ 0); -log D keeps a gradient of -sigma(-l) ~ -1.
    grads = {}
    for name in ("saturating", "nonsaturating"):
        logits = torch.tensor([-20.0, -15.0], requires_grad=True)
        g_loss(name, logits).backward()
        grads[name] = logits.grad
    assert grads["saturating"].abs().max() < 1e-6
    assert torch.all(grads["nonsaturating"] < -0.49)          # -sigma(20) / 2 per sample, mean over 2
    assert torch.all(grads["saturating"] < 0)                 # both push the logit up, only one noticeably


def test_losses_of_bf16_logits_are_computed_in_float32():
    real, fake = REAL.bfloat16(), FAKE.bfloat16()            # these values are exact in bf16
    with torch.autocast("cpu", dtype=torch.bfloat16):
        for name in LOSSES:
            d, g = d_loss(name, real, fake), g_loss(name, fake)
            assert d.dtype == g.dtype == torch.float32
            assert d.item() == pytest.approx(D_EXPECTED[name], rel=1e-6)
            assert g.item() == pytest.approx(G_EXPECTED[name], rel=1e-6)


def test_an_unknown_loss_is_a_param_error_that_lists_the_choices():
    with pytest.raises(ParamError) as e:
        check_loss("wasserstein")
    assert e.value.param == "loss"
    assert str(e.value) == ("loss unknown 'wasserstein'; choose one of: saturating, nonsaturating, lsgan, "
                            "hinge, wgan, wgan-gp")
    for call in (lambda: d_loss("bce", REAL, FAKE), lambda: g_loss("bce", FAKE)):
        with pytest.raises(ParamError, match="^loss unknown 'bce'"):
            call()


# ---- WGAN-GP ------------------------------------------------------------------------------------------
class Linear(torch.nn.Module):
    """D(x) = w . x: its input gradient is w everywhere, so the penalty is (||w|| - 1)^2 exactly."""

    def __init__(self, w):
        super().__init__()
        self.w = torch.nn.Parameter(w)

    def forward(self, x):
        logits = x.flatten(1) @ self.w
        return logits, x.flatten(1)                        # (logits, features), as the GAN critics return


def test_gradient_penalty_of_a_linear_critic_is_in_closed_form_and_trains_the_critic():
    torch.manual_seed(0)
    w = torch.tensor([2.0, 0.0, 1.0, -2.0])                # ||w|| = 3
    critic = Linear(w.clone())
    real, fake = torch.randn(5, 1, 2, 2), torch.randn(5, 1, 2, 2, requires_grad=True)
    gp = gradient_penalty(critic, real, fake, generator=torch.Generator().manual_seed(1))
    assert gp.item() == pytest.approx((3 - 1) ** 2, rel=1e-6)
    gp.backward()                                         # d/dw (||w|| - 1)^2 = 2 (||w|| - 1) w / ||w||
    assert torch.allclose(critic.w.grad, 2 * (3 - 1) * w / 3, atol=1e-6)
    assert fake.grad is None                              # the penalty does not reach the generator


class Tanh(torch.nn.Module):
    """A small nonlinear conditional critic: logits = v . tanh(A x + E[y])."""

    def __init__(self, dim, hidden=6, classes=3, dtype=torch.float64):
        super().__init__()
        g = torch.Generator().manual_seed(2)
        self.A = torch.nn.Parameter(torch.randn(hidden, dim, generator=g, dtype=dtype))
        self.E = torch.nn.Parameter(torch.randn(classes, hidden, generator=g, dtype=dtype))
        self.v = torch.nn.Parameter(torch.randn(hidden, generator=g, dtype=dtype))

    def forward(self, x, y):
        return torch.tanh(x.flatten(1) @ self.A.T + self.E[y]) @ self.v


def test_gradient_penalty_of_a_nonlinear_critic_matches_finite_differences():
    n, shape = 4, (2, 2, 2)
    g = torch.Generator().manual_seed(3)
    real, fake = torch.randn(n, *shape, generator=g, dtype=torch.float64), torch.randn(n, *shape, generator=g,
                                                                                      dtype=torch.float64)
    y = torch.tensor([0, 2, 1, 2])
    critic = Tanh(8)
    gp = gradient_penalty(critic, real, fake, y, generator=torch.Generator().manual_seed(7))
    # the same x_hat by hand: the same generator gives the same e, one per sample
    e = torch.rand(n, 1, 1, 1, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    x_hat = (e * real + (1 - e) * fake).flatten(1)
    def f(x):                                             # all samples at once: they do not interact
        return critic(x.view(n, *shape), y)

    h = 1e-6
    with torch.no_grad():
        grad = torch.stack([(f(x_hat + h * basis) - f(x_hat - h * basis)) / (2 * h)
                            for basis in torch.eye(8, dtype=torch.float64)], dim=1)
    expected = ((grad.norm(dim=1) - 1) ** 2).mean()
    assert gp.item() == pytest.approx(expected.item(), rel=1e-7)
    assert gp.item() != pytest.approx(gradient_penalty(critic, real, fake, y, torch.Generator().manual_seed(8)).item())


def test_gradient_penalty_accepts_bf16_fakes_under_autocast_and_returns_float32():
    critic = Linear(torch.tensor([2.0, 0.0, 1.0, -2.0]))
    real, fake = torch.randn(3, 4), torch.randn(3, 4).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        gp = gradient_penalty(critic, real, fake)
    assert gp.dtype == torch.float32 and gp.item() == pytest.approx(4.0, rel=2e-2)   # bf16 matmul


# ---- R1, feature matching, weight clipping ---------------------------------------------------------------
def test_r1_of_a_quadratic_critic_is_in_closed_form():
    # D(x) = 1/2 sum_k a_k x_k^2  ->  grad = a * x  ->  R1 = mean_n sum_k a_k^2 x_nk^2
    a = torch.tensor([1.0, -2.0, 0.5], requires_grad=True)
    real = torch.tensor([[1.0, 1.0, 2.0], [0.0, -1.0, 4.0]]).requires_grad_(True)
    r1 = r1_penalty(0.5 * (a * real ** 2).sum(1), real)
    # by hand: sample 1: 1 + 4 + 1 = 6; sample 2: 0 + 4 + 4 = 8; mean 7
    assert r1.item() == pytest.approx(7.0)
    r1.backward()                                          # d/da_k = mean_n 2 a_k x_nk^2, so create_graph worked
    assert torch.allclose(a.grad, torch.tensor([1.0 * 1, -2.0 * 2, 0.5 * 20]))


def test_r1_says_how_to_fix_a_missing_requires_grad():
    real = torch.ones(2, 3)
    with pytest.raises(GenlabError, match=r"requires_grad_\(True\) before the discriminator"):
        r1_penalty(real.sum(1), real)


def test_feature_matching_is_the_squared_distance_of_the_batch_means():
    real = torch.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)    # mean [2, 3]
    fake = torch.tensor([[0.0, 0.0], [2.0, 2.0]], requires_grad=True)    # mean [1, 1]
    loss = feature_matching_loss(real, fake)
    assert loss.item() == pytest.approx(1.0 ** 2 + 2.0 ** 2)
    loss.backward()                                       # 2 (mean_fake - mean_real) / N per sample
    assert torch.allclose(fake.grad, torch.tensor([[-1.0, -2.0], [-1.0, -2.0]]))
    assert real.grad is None                              # real features are a fixed target
    assert feature_matching_loss(torch.ones(3, 2, 2, 2), torch.zeros(5, 2, 2, 2)).item() == pytest.approx(8.0)


def test_weight_clipping_clamps_every_parameter():
    critic = torch.nn.Linear(3, 2)
    with torch.no_grad():
        critic.weight.copy_(torch.tensor([[0.5, -0.005, 0.0], [-2.0, 0.009, 0.02]]))
        critic.bias.copy_(torch.tensor([0.001, -1.0]))
    clip_weights_(critic, 0.01)
    assert torch.equal(critic.weight, torch.tensor([[0.01, -0.005, 0.0], [-0.01, 0.009, 0.01]]))
    assert torch.equal(critic.bias, torch.tensor([0.001, -0.01]))
    with pytest.raises(ParamError, match="^clip_value must be > 0, got 0"):
        clip_weights_(critic, 0)

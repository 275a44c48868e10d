"""VAE / HVAE / AE maths against closed forms, bounds on a tractable model, tiny training runs, bad inputs."""

import math

import pytest
import torch
from torch.distributions import Bernoulli, Normal, kl_divergence

from genlab.data import load_dataset
from genlab.data.base import TensorDataset
from genlab.errors import GenlabError
from genlab.metrics.likelihood import (active_units, bits_per_dim, iwae_per_item, latent_diagnostics, negative_elbo,
                                      negative_iwae)
from genlab.metrics.family import evaluate
from genlab.models import build_model
from genlab.models.vae import (bernoulli_log_likelihood, discretized_gaussian_log_likelihood, gaussian_kl,
                               gaussian_log_likelihood, gaussian_log_prob, iwae_bound, kl_weight_at,
                               reparameterize, vae_loss)

TINY = dict(width=8, hidden=64)


# ----------------------------------------------------------------------------- maths

def test_gaussian_kl_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    mu, log_var = torch.randn(5, 7, generator=g), torch.randn(5, 7, generator=g)
    mu_p, log_var_p = torch.randn(5, 7, generator=g), torch.randn(5, 7, generator=g)
    q = Normal(mu, torch.exp(0.5 * log_var))
    ref_std = kl_divergence(q, Normal(torch.zeros(5, 7), torch.ones(5, 7)))
    ref_two = kl_divergence(q, Normal(mu_p, torch.exp(0.5 * log_var_p)))
    torch.testing.assert_close(gaussian_kl(mu, log_var), ref_std)
    torch.testing.assert_close(gaussian_kl(mu, log_var, mu_p, log_var_p), ref_two)
    torch.testing.assert_close(gaussian_kl(mu, log_var, torch.zeros(5, 7), torch.zeros(5, 7)), ref_std)
    assert gaussian_kl(mu, log_var, mu, log_var).abs().max() < 1e-6


def test_log_probs_match_torch_distributions():
    g = torch.Generator().manual_seed(1)
    z, mu, lv = (torch.randn(4, 6, generator=g) for _ in range(3))
    torch.testing.assert_close(gaussian_log_prob(z, mu, lv), Normal(mu, torch.exp(0.5 * lv)).log_prob(z).sum(1))
    torch.testing.assert_close(gaussian_log_prob(z), Normal(0.0, 1.0).log_prob(z).sum(1))
    logits, target = torch.randn(3, 1, 4, 4, generator=g), (torch.rand(3, 1, 4, 4, generator=g) > 0.5).float()
    torch.testing.assert_close(bernoulli_log_likelihood(logits, target),
                               Bernoulli(logits=logits).log_prob(target).sum((1, 2, 3)))
    x, mean = torch.randn(2, 3, 2, 2, generator=g), torch.randn(2, 3, 2, 2, generator=g)
    ls = torch.randn(3, 2, 2, generator=g)
    torch.testing.assert_close(gaussian_log_likelihood(x, mean, ls), Normal(mean, ls.exp()).log_prob(x).sum((1, 2, 3)))


def test_reparameterize_gradient_flows():
    mu = torch.tensor([[0.5, -1.0, 2.0]], requires_grad=True)
    log_var = torch.tensor([[0.0, 1.0, -2.0]], requires_grad=True)
    z = reparameterize(mu, log_var, torch.Generator().manual_seed(7))
    eps = torch.randn(1, 3, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(z, mu + torch.exp(0.5 * log_var) * eps)
    z.sum().backward()
    # dz/dmu = 1, dz/dlog_var = 0.5 * sigma * eps
    torch.testing.assert_close(mu.grad, torch.ones(1, 3))
    torch.testing.assert_close(log_var.grad, (0.5 * torch.exp(0.5 * log_var) * eps).detach())


def test_vae_loss_hand_computed():
    # two images of two pixels; logits 0 -> p = 1/2 -> BCE = ln 2 per pixel
    logits = torch.zeros(2, 2)
    x = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    mu = torch.tensor([[0.0], [2.0]])          # KL = 0.5 * (mu^2 + e^lv - 1 - lv)
    log_var = torch.tensor([[0.0], [math.log(2.0)]])
    kl_expected = (0.0 + 0.5 * (4 + 2 - 1 - math.log(2.0))) / 2
    loss, recon, kl = vae_loss(logits, x, mu, log_var, kl_weight=0.5)
    assert recon.item() == pytest.approx(2 * math.log(2))
    assert kl.item() == pytest.approx(kl_expected)
    assert loss.item() == pytest.approx(2 * math.log(2) + 0.5 * kl_expected)
    # a confident, correct decoder: logit +-20 -> BCE = log(1 + e^-20) per pixel (float64: no rounding to 0)
    _, recon, _ = vae_loss(torch.tensor([[20.0, -20.0]], dtype=torch.float64),
                           torch.tensor([[1.0, 0.0]], dtype=torch.float64), mu[:1], log_var[:1])
    assert recon.item() == pytest.approx(2 * math.log1p(math.exp(-20)), rel=1e-4)


def test_discretized_gaussian_is_a_distribution_over_8bit_values():
    levels = torch.arange(256, dtype=torch.float64) / 127.5 - 1          # the 256 values of to_float_image
    x = levels.reshape(256, 1, 1, 1)
    for mean, sigma in [(0.0, 0.3), (-1.2, 0.05), (0.7, 1e-3), (0.9, 2.0), (0.31, 1e-3)]:
        logp = discretized_gaussian_log_likelihood(x, torch.full_like(x, mean), torch.full((1, 1, 1), math.log(sigma),
                                                                                           dtype=torch.float64))
        assert logp.exp().sum().item() == pytest.approx(1.0, abs=1e-6)
    # inner bins: log(Phi(upper) - Phi(lower)) written out, and ~ density x bin width for sigma >> bin
    mean, log_sigma = torch.full_like(x, 0.1), torch.full((1, 1, 1), math.log(0.2), dtype=torch.float64)
    got = discretized_gaussian_log_likelihood(x, mean, log_sigma)[1:-1]
    upper, lower = (x + 1 / 255 - 0.1) / 0.2, (x - 1 / 255 - 0.1) / 0.2
    ref = torch.log(torch.special.ndtr(upper) - torch.special.ndtr(lower)).flatten()[1:-1]
    torch.testing.assert_close(got, ref, atol=1e-6, rtol=0)
    approx = (gaussian_log_likelihood(x, mean, log_sigma) + math.log(2 / 255))[1:-1]
    torch.testing.assert_close(got, approx, atol=2e-3, rtol=0)
    # float32 (what training uses) agrees with float64 even 10+ sigmas out, where Phi(b) - Phi(a) underflows
    for sigma in (1e-3, 0.02, 0.3):
        ls = torch.full((1, 1, 1), math.log(sigma), dtype=torch.float64)
        ref = discretized_gaussian_log_likelihood(x, torch.full_like(x, 0.05), ls)
        f32 = discretized_gaussian_log_likelihood(x.float(), torch.full_like(x, 0.05).float(), ls.float())
        torch.testing.assert_close(f32.double(), ref, rtol=1e-5, atol=1e-4)
    # the far tail stays finite with a usable gradient (no log(0))
    m = torch.tensor([[[[0.9]]]], requires_grad=True)
    lp = discretized_gaussian_log_likelihood(torch.tensor([[[[-0.2]]]]), m, torch.tensor([[[math.log(1e-3)]]]))
    lp.sum().backward()
    assert torch.isfinite(lp).all() and torch.isfinite(m.grad).all() and m.grad.item() < 0


def test_iwae_bound_elementary():
    lw = torch.tensor([[0.0, -1.0], [0.0, -3.0], [0.0, -5.0]])
    torch.testing.assert_close(iwae_bound(lw[:, :1]), torch.tensor([0.0]))      # equal weights: exact
    expected = math.log((math.exp(-1) + math.exp(-3) + math.exp(-5)) / 3)
    assert iwae_bound(lw)[1].item() == pytest.approx(expected)
    assert iwae_bound(lw)[1].item() >= lw[:, 1].mean().item()                      # Jensen: IWAE >= ELBO
    torch.testing.assert_close(iwae_bound(lw[:1]), lw[0])                           # k = 1 is the ELBO
    assert bits_per_dim(784 * math.log(2), 784) == pytest.approx(1.0)


def test_kl_warmup_schedule():
    step = torch.tensor(0)
    assert kl_weight_at(step, 2.0, 0).item() == 2.0
    assert [kl_weight_at(torch.tensor(s), 2.0, 10).item() for s in (0, 5, 10, 50)] == [0.0, 1.0, 2.0, 2.0]
    m = build_model("vae", dict(latent_dim=4, kl_weight=2.0, kl_warmup_steps=10, **TINY))
    x = torch.rand(4, 1, 28, 28) * 2 - 1
    for _ in range(5):
        _, logs = m.loss({"x": x})
    assert logs["kl_weight"].item() == pytest.approx(0.8)   # weight of the 5th step (4 counted before it)
    m.eval()
    with torch.no_grad():
        m.loss({"x": x})                                      # evaluation passes do not advance the warm-up
    assert m.current_kl_weight().item() == pytest.approx(1.0)


# ----------------------------------------------------------------------------- bounds on a tractable model

class LinearGaussianVAE(torch.nn.Module):
    """Probabilistic PCA as a VAE: p(z) = N(0, I), p(x|z) = N(Wz + b, s^2 I), q(z|x) = N(A(x - b), diag(v)).

    W has orthogonal columns, so the exact posterior is diagonal:
    M = W^T W + s^2 I, mean M^-1 W^T (x - b), variance s^2 / diag(M). `shrink`
    and `var_scale` move q away from it. log p(x) = log N(x; b, W W^T + s^2 I).
    """

    def __init__(self, shrink=1.0, var_scale=1.0):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        q, _ = torch.linalg.qr(torch.randn(5, 2, generator=g, dtype=torch.float64))
        self.W = q * torch.tensor([2.0, 1.0], dtype=torch.float64)
        self.b = torch.randn(5, generator=g, dtype=torch.float64)
        self.s = 0.5
        m = (self.W.T @ self.W).diagonal() + self.s**2
        self.A = shrink * self.W.T / m[:, None]
        self.log_v = torch.log(var_scale * self.s**2 / m)
        self.dummy = torch.nn.Parameter(torch.zeros((), dtype=torch.float64))

    device = property(lambda self: self.dummy.device)

    def log_px(self, x):
        cov = self.W @ self.W.T + self.s**2 * torch.eye(5, dtype=torch.float64)
        return torch.distributions.MultivariateNormal(self.b, cov).log_prob(x)

    def q(self, x):
        mu = (x - self.b) @ self.A.T
        return mu, self.log_v.expand_as(mu)

    def log_lik(self, x, z):
        return gaussian_log_likelihood(x, z @ self.W.T + self.b, torch.tensor(math.log(self.s), dtype=torch.float64))

    def elbo_terms(self, x, generator=None):
        mu, lv = self.q(x)
        z = reparameterize(mu, lv, generator)
        log_px = self.log_lik(x, z)
        kl = gaussian_kl(mu, lv).sum(1)
        return {"log_px_z": log_px, "kl": kl, "elbo": log_px - kl}

    def log_weights(self, x, k, generator=None):
        mu, lv = self.q(x)
        mu_k, lv_k = mu.repeat(k, 1), lv.repeat(k, 1)
        z = reparameterize(mu_k, lv_k, generator)
        lw = self.log_lik(x.repeat(k, 1), z) + gaussian_log_prob(z) - gaussian_log_prob(z, mu_k, lv_k)
        return lw.reshape(k, x.shape[0])

    def analytic_elbo(self, x):
        # E_q ||x - Wz - b||^2 = ||x - W mu - b||^2 + sum_j v_j ||W_j||^2
        mu, lv = self.q(x)
        resid = (x - mu @ self.W.T - self.b).pow(2).sum(1) + (lv.exp() * self.W.pow(2).sum(0)).sum(1)
        e_log_lik = -0.5 * resid / self.s**2 - 5 * (math.log(self.s) + 0.5 * math.log(2 * math.pi))
        return e_log_lik - gaussian_kl(mu, lv).sum(1)


def _ppca_data(model, n=2000):
    z = torch.randn(n, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    x = z @ model.W.T + model.b + model.s * torch.randn(n, 5, generator=torch.Generator().manual_seed(2),
                                                         dtype=torch.float64)
    return TensorDataset("ppca", "points", {"x": x})


def test_elbo_le_iwae_le_log_likelihood_on_probabilistic_pca():
    exact = LinearGaussianVAE()
    data = _ppca_data(exact)
    log_px = exact.log_px(data.x).mean().item()
    # with the exact posterior every importance weight equals p(x): ELBO = IWAE = log p(x)
    lw = exact.log_weights(data.x[:20], 8)
    torch.testing.assert_close(lw, exact.log_px(data.x[:20]).expand(8, -1))

    approx = LinearGaussianVAE(shrink=0.6, var_scale=3.0)
    elbo_exact = approx.analytic_elbo(data.x).mean().item()
    elbo = -negative_elbo(approx, data, batch_size=500)["neg_elbo_nats"]
    # one-sample MC estimate of the closed-form ELBO (per-point std ~5.7 nats -> std of the mean ~0.13)
    assert elbo == pytest.approx(elbo_exact, abs=0.5)
    few = data.subset(slice(0, 300))
    log_px, elbo_exact = approx.log_px(few.x).mean().item(), approx.analytic_elbo(few.x).mean().item()
    iwae = {k: -negative_iwae(approx, few, k=k, batch_size=100)["neg_iwae_nats"] for k in (10, 100, 1000)}
    assert elbo_exact + 0.5 < iwae[10] < iwae[100] < iwae[1000] <= log_px + 1e-3
    assert log_px - iwae[1000] < 0.1 * (log_px - elbo_exact)      # the bound closes in on log p(x)
    # the standard error is that of the mean of the per-image bounds
    per = iwae_per_item(approx, few, k=10, batch_size=100)
    r = negative_iwae(approx, few, k=10, batch_size=100)
    assert per.shape == (300,) and r["neg_iwae_nats"] == pytest.approx(-per.mean().item())
    assert r["neg_iwae_se"] == pytest.approx(per.std().item() / math.sqrt(300))


# ----------------------------------------------------------------------------- the conv models

@pytest.mark.parametrize("family", ["ae", "vae", "hvae"])
@pytest.mark.parametrize("channels,size", [(1, 28), (3, 32)])
def test_shapes_grey_and_colour(family, channels, size):
    m = build_model(family, dict(channels=channels, image_size=size, **TINY))
    x = torch.rand(3, channels, size, size) * 2 - 1
    loss, logs = m.loss({"x": x})
    loss.backward()
    assert loss.ndim == 0 and all(v.ndim == 0 and not v.requires_grad for v in logs.values())
    assert all(p.grad is not None for p in m.parameters())
    with torch.no_grad():
        r = m.reconstruct(x)
    assert r.shape == x.shape and r.min() >= -1 and r.max() <= 1
    # channels_last input gives the same loss
    torch.manual_seed(0)
    a = m.loss({"x": x})[0]
    torch.manual_seed(0)
    b = m.to(memory_format=torch.channels_last).loss({"x": x.contiguous(memory_format=torch.channels_last)})[0]
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-3)
    if family != "ae":
        s = m.sample(5, generator=torch.Generator().manual_seed(0))
        assert s.shape == (5, channels, size, size) and s.min() >= -1 and s.max() <= 1
        torch.testing.assert_close(s, m.sample(5, generator=torch.Generator().manual_seed(0)))
    else:
        assert not m.can_sample


@pytest.mark.parametrize("family", ["vae", "hvae"])
@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_log_weights_agree_with_elbo_on_conv_models(family, likelihood):
    torch.manual_seed(0)
    m = build_model(family, dict(likelihood=likelihood, **TINY)).eval()
    x = torch.rand(6, 1, 28, 28) * 2 - 1
    x = torch.round((x + 1) * 127.5) / 127.5 - 1                 # on the 8-bit grid
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        elbo = torch.stack([m.elbo_terms(x, g)["elbo"] for _ in range(64)]).mean(0)
        lw = m.log_weights(x, 64, g, max_batch=100)            # several chunks
    assert lw.shape == (64, 6) and torch.isfinite(lw).all()
    assert (iwae_bound(lw) >= lw.mean(0)).all()
    # the mean log weight (log_weights path) and elbo_terms estimate the same ELBO
    torch.testing.assert_close(lw.mean(0), elbo, rtol=0, atol=5 * (lw.std(0) / 8).max().item())


def test_hvae_named_terms_sum_to_the_elbo():
    torch.manual_seed(0)
    m = build_model("hvae", dict(z1_dim=6, z2_dim=3, **TINY)).eval()
    x = (torch.rand(1, 1, 28, 28) * 2 - 1).repeat(3000, 1, 1, 1)
    with torch.no_grad():
        t = m.elbo_terms(x, torch.Generator().manual_seed(0))
    assert {"log_px_z1", "log_pz1_z2", "log_pz2", "log_qz1_x", "log_qz2_x", "kl_z1", "kl_z2"} <= set(t)
    # per sample: elbo_mc - elbo = (log p(z1|z2) - log q(z1|.) + KL1) + (log p(z2) - log q(z2|x) + KL2), mean 0
    diff = t["elbo_mc"] - t["elbo"]
    assert abs(diff.mean().item()) < 4 * diff.std().item() / math.sqrt(3000)
    d2 = t["log_qz2_x"] - t["log_pz2"] - t["kl_z2"]                # E_q[log q - log p] = KL(q(z2|x) || p(z2))
    assert abs(d2.mean().item()) < 4 * d2.std().item() / math.sqrt(3000)


def test_bad_inputs_are_rejected_with_clear_errors():
    m = build_model("vae", dict(latent_dim=8, **TINY))
    with pytest.raises(GenlabError, match="latent vectors of size 8"):
        m.decode(torch.zeros(2, 5))
    with pytest.raises(GenlabError, match="1x28x28"):
        m.loss({"x": torch.zeros(2, 3, 32, 32)})
    with pytest.raises(GenlabError, match="z2 must have shape"):
        build_model("hvae", dict(z2_dim=4, **TINY)).sample_z1(torch.zeros(2, 3))
    for family, cfg, msg in [("vae", dict(likelihood="poisson"), "unknown likelihood"),
                             ("vae", dict(likelihood="gaussian", binarize=True), "^binarize needs likelihood bernoulli"),
                             ("vae", dict(image_size=30), "multiple of 4"),
                             ("vae", dict(channels=2), "1- or 3-channel"),
                             ("vae", dict(kl_weight=-1.0), "^kl_weight must be"),
                             ("vae", dict(latent_dim=0), "^latent_dim must be"),
                             ("hvae", dict(z2_dim=0), "^z2_dim must be"),
                             ("ae", dict(recon_loss="l1"), "^recon_loss 'l1' is unknown"),
                             ("vae", dict(latent=3), "unknown VAEConfig option")]:
        with pytest.raises(GenlabError, match=msg):
            build_model(family, cfg)


def test_diagnostics_count_active_units():
    g = torch.Generator().manual_seed(0)
    means = torch.cat([torch.randn(500, 3, generator=g), 0.01 * torch.randn(500, 2, generator=g)], 1)
    assert active_units(means) == 3
    # an untrained VAE whose decoder ignores z: diagnostics run and KL per dim is non-negative
    m = build_model("vae", dict(latent_dim=4, **TINY))
    data = TensorDataset("r", "image", {"x": torch.randint(0, 256, (40, 1, 28, 28), dtype=torch.uint8)})
    scalars, per_dim = latent_diagnostics(m, data, batch_size=16)
    assert scalars["latent_dims_z"] == 4 and 0 <= scalars["active_units_z"] <= 4
    assert per_dim["z"].shape == (4,) and (per_dim["z"] >= 0).all()


# ----------------------------------------------------------------------------- tiny training runs

@pytest.fixture(scope="module")
def fashion():
    train = load_dataset("fashion_mnist", split="train", n=1500)
    test = load_dataset("fashion_mnist", split="test", n=300)
    return train, test


def _fit(model, data, steps=150, batch=32, lr=2e-3):
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr)
    g = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(steps):
        loss, _ = model.loss(data.batch(torch.randint(0, len(data), (batch,), generator=g)))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("family,cfg", [("ae", dict(latent_dim=16)), ("ae", dict(latent_dim=16, recon_loss="bce")),
                                        ("vae", dict(latent_dim=8)), ("hvae", dict(z1_dim=8, z2_dim=4)),
                                        ("vae", dict(latent_dim=8, likelihood="gaussian"))])
def test_tiny_training_learns(fashion, family, cfg):
    train, test = fashion
    torch.set_num_threads(1)
    m = build_model(family, dict(cfg, **TINY))
    losses = _fit(m, train)
    first, last = sum(losses[:15]) / 15, sum(losses[-15:]) / 15
    assert last < 0.8 * first
    metrics = evaluate(m, test, n=200) if family == "ae" else None
    if family != "ae":
        m.cfg.iwae_k = 8
        metrics = evaluate(m, test, n=200)
        assert metrics["neg_iwae_nats"] < metrics["neg_elbo_nats"]
        assert metrics["neg_elbo_bpd"] == pytest.approx(metrics["neg_elbo_nats"] / (784 * math.log(2)))
        if m.cfg.likelihood == "bernoulli":
            assert metrics["neg_elbo_nats"] < 0.7 * 543.4      # 543 nats: Bernoulli(1/2) on every pixel
        else:
            assert metrics["neg_elbo_bpd"] < 0.7 * 8.0         # 8 bits/dim: uniform over the 256 levels
    # reconstructions beat answering the mean image, in MSE and PSNR
    assert metrics["mse"] < 0.6 * metrics["mse_mean_image"]
    assert metrics["psnr"] > 10 * math.log10(1 / metrics["mse_mean_image"]) + 2
    assert 0 < metrics["ssim"] <= 1

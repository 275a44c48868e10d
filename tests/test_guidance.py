"""Classifier-free guidance, classifier guidance with a noisy classifier, and inpainting."""

import math

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from genlab.data import load_dataset
from genlab.diffusion.guidance import classifier_guidance, eps_from_output, output_from_eps
from genlab.diffusion.inpaint import inpaint, load_mask, mask_preset
from genlab.diffusion.schedules import make_schedule
from genlab.errors import GenlabError, ParamError
from genlab.figures.artifacts import save_artifacts
from genlab.models import build_model
from genlab.train import TrainConfig, train

TINY_UNET = dict(channels=1, image_size=28, base_width=8, channel_mult=(1, 2), num_res_blocks=1,
                 attn_resolutions=(), timesteps=50)



@pytest.fixture(scope="module")
def fashion():
    return load_dataset("fashion_mnist", n=2048), load_dataset("fashion_mnist", split="test", n=512)


@pytest.fixture(scope="module")
def noisy_classifier(fashion):
    """A noisy classifier trained for 128 steps (about 45% test accuracy; chance is 10%)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    clf = build_model("noisy-classifier", dict(channels=1, image_size=28, num_classes=10, base_width=16,
                                               channel_mult=(1, 2), timesteps=50))
    result = train(clf, fashion[0], TrainConfig(epochs=2, batch_size=32, lr=3e-3, warmup_steps=20, ema_decay=0,
                                                progress=False, device="cpu", sample_every=0))
    torch.set_num_threads(n)
    return result.model.eval()


def conditional_model(**kw):
    torch.manual_seed(0)
    model = build_model("diffusion", dict(TINY_UNET, conditional=True, num_classes=10, **kw)).eval()
    torch.nn.init.normal_(model.net.out[-1].weight, std=0.05)  # not the zero function,
    torch.nn.init.normal_(model.net.class_embed.weight, std=5.0)  # and one that listens to the label
    return model


class GaussianEps(torch.nn.Module):
    """Exact eps of pixelwise-independent Gaussian "images" N(mu, sd^2): a base model that needs no training."""

    def __init__(self, schedule, mu=-0.4, sd=0.6):
        super().__init__()
        self.s, self.mu, self.sd = schedule, mu, sd
        self.dummy = torch.nn.Parameter(torch.zeros(1))  # GenerativeModel.device looks at a parameter

    def forward(self, x, t, y=None):
        ab = self.s.alphas_cumprod[t].float().view(-1, 1, 1, 1)
        return (1 - ab).sqrt() * (x - ab.sqrt() * self.mu) / (ab * self.sd**2 + 1 - ab)


# ----------------------------------------------------------------------------- classifier-free guidance
def test_cfg_scales_0_and_1_and_the_mix():
    model = conditional_model()
    g = torch.Generator().manual_seed(0)
    x, t, y = torch.randn(4, 1, 28, 28, generator=g), torch.tensor([3, 10, 20, 49]), torch.tensor([0, 3, 7, 9])
    null = torch.full_like(y, 10)
    with torch.no_grad():
        cond, uncond = model.net(x, t, y), model.net(x, t, null)
        assert (cond - uncond).abs().max() > 1e-3                    # the label matters to this network
        torch.testing.assert_close(model.denoiser(1.0)(x, t, y), cond)
        torch.testing.assert_close(model.denoiser(0.0)(x, t, y), uncond)   # w = 0: the unconditional model
        torch.testing.assert_close(model.denoiser(0.0)(x, t, y), model.net(x, t, None))
        torch.testing.assert_close(model.denoiser(3.0)(x, t, y), uncond + 3.0 * (cond - uncond), atol=1e-5, rtol=1e-5)
        # the network runs in slices of micro_batch images (CPU speed); the output must not depend on it
        for w in (1.0, 0.0, 3.0):
            sliced, whole = model.denoiser(w, micro_batch=3)(x, t, y), model.denoiser(w, micro_batch=0)(x, t, y)
            torch.testing.assert_close(sliced, whole, atol=1e-5, rtol=1e-5)
    # sampling: w = 1 is plain conditional sampling, w = 0 ignores the requested class
    kw = dict(sampler="ddim", steps=5)
    s = lambda yy, w: model.sample(2, generator=torch.Generator().manual_seed(1), y=yy, guidance=w, **kw)  # noqa: E731
    assert torch.equal(s(torch.tensor([1, 2]), 0.0), s(torch.tensor([5, 6]), 0.0))
    assert not torch.equal(s(torch.tensor([1, 2]), 1.0), s(torch.tensor([5, 6]), 1.0))


def test_dropped_labels_are_ignored():
    """With label dropout p = 1 the loss cannot depend on the labels; with p = 0 it does."""
    batch = {"x": torch.randn(8, 1, 28, 28, generator=torch.Generator().manual_seed(0)).clamp(-1, 1),
             "y": torch.arange(8) % 10}
    other = dict(batch, y=(batch["y"] + 5) % 10)
    for p, same in ((1.0, True), (0.0, False)):
        model = conditional_model(label_dropout=p)
        torch.manual_seed(3)
        a, _ = model.loss(batch)
        torch.manual_seed(3)
        b, _ = model.loss(other)
        assert torch.equal(a, b) == same


def pix2pix_model(**kw):
    """A tiny text- and image-conditioned model with random weights (it listens to both)."""
    torch.manual_seed(0)
    model = build_model("diffusion", dict(TINY_UNET, image_size=8, attn_resolutions=(4,), context_dim=6,
                                          cond_channels=1, **kw)).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return model


def test_cfg_with_image_and_text_scales_is_brooks_eq3():
    """e(x, 0_I, 0_T) + s_I (e(x, c_I, 0_T) - e(x, 0_I, 0_T)) + s_T (e(x, c_I, c_T) - e(x, c_I, 0_T)),
    each term computed by hand from the network (InstructPix2Pix, Brooks et al. 2023, Eq. 3)."""
    model = pix2pix_model()
    g = torch.Generator().manual_seed(0)
    x, t = torch.randn(3, 1, 8, 8, generator=g), torch.tensor([2, 20, 45])
    image, text = torch.randn(3, 1, 8, 8, generator=g), torch.randn(3, 4, 6, generator=g)
    sI, sT = 1.5, 7.5
    with torch.no_grad():
        e00 = model.net(x, t, {"image": torch.zeros_like(image), "text": torch.zeros_like(text)})
        e10 = model.net(x, t, {"image": image, "text": torch.zeros_like(text)})
        e11 = model.net(x, t, {"image": image, "text": text})
        assert (e10 - e00).abs().max() > 1e-3 and (e11 - e10).abs().max() > 1e-3
        got = model.denoiser({"image": sI, "text": sT})(x, t, {"image": image, "text": text})
        torch.testing.assert_close(got, e00 + sI * (e10 - e00) + sT * (e11 - e10), atol=1e-4, rtol=1e-4)
        # one scale for both is Ho & Salimans' formula with both conditions as one
        torch.testing.assert_close(model.denoiser(3.0)(x, t, {"image": image, "text": text}),
                                   e00 + 3.0 * (e11 - e00), atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(model.denoiser(1.0)(x, t, {"image": image, "text": text}), e11)


def test_dropped_text_and_image_are_ignored():
    """With text and image dropout 1 the loss cannot depend on either; with 0 it depends on both."""
    g = torch.Generator().manual_seed(0)
    batch = {"x": torch.randn(4, 1, 8, 8, generator=g).clamp(-1, 1), "image": torch.randn(4, 1, 8, 8, generator=g),
             "text": torch.randn(4, 3, 6, generator=g)}
    for p, same in ((1.0, True), (0.0, False)):
        model = pix2pix_model(text_dropout=p, image_dropout=p)
        losses = []
        for b in (batch, dict(batch, text=-batch["text"]), dict(batch, image=-batch["image"])):
            torch.manual_seed(3)
            losses.append(model.loss(b)[0])
        assert torch.equal(losses[0], losses[1]) == same and torch.equal(losses[0], losses[2]) == same
    model = pix2pix_model(text_dropout=0.0, image_dropout=0.0, joint_dropout=1.0)  # the joint drop alone
    torch.manual_seed(3)
    a = model.loss(batch)[0]
    torch.manual_seed(3)
    assert torch.equal(a, model.loss(dict(batch, text=-batch["text"], image=-batch["image"]))[0])


# ----------------------------------------------------------------------------- classifier guidance
@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
def test_classifier_guidance_is_eq_14(prediction):
    """eps_hat = eps - sqrt(1 - abar_t) s grad log p(y | x_t), with grad of a linear classifier in closed form."""
    s = make_schedule("cosine", 20)
    g = torch.Generator().manual_seed(0)
    W = torch.randn(3, 8, generator=g)
    classifier = lambda x, t: x.flatten(1) @ W.T  # noqa: E731
    eps_true = torch.randn(4, 2, 2, 2, generator=g)
    x, t, y = torch.randn(4, 2, 2, 2, generator=g), torch.tensor([0, 5, 12, 19]), torch.tensor([0, 2, 1, 2])
    out = output_from_eps(s, x, t, eps_true, prediction)
    torch.testing.assert_close(eps_from_output(s, x, t, out, prediction), eps_true, atol=1e-4, rtol=1e-4)
    model = lambda xx, tt, yy: out  # noqa: E731
    scale = 2.5
    guided = classifier_guidance(model, classifier, s, scale, prediction)(x, t, y)
    p = F.softmax(x.flatten(1) @ W.T, dim=1)
    grad = (W[y] - p @ W).view_as(x)                      # d/dx log softmax(Wx)_y = W_y - sum_k p_k W_k
    ab = s.alphas_cumprod[t].float().view(-1, 1, 1, 1)
    want = eps_true - (1 - ab).sqrt() * scale * grad
    torch.testing.assert_close(eps_from_output(s, x, t, guided, prediction), want, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(classifier_guidance(model, classifier, s, 0.0, prediction)(x, t, y), out)
    with pytest.raises(ParamError, match="^classifier_scale must be >= 0"):
        classifier_guidance(model, classifier, s, -1.0)


def test_noisy_classifier_learns_and_is_told_the_noise_level(noisy_classifier, fashion, tmp_path):
    clf = noisy_classifier
    metrics = clf.evaluate(fashion[1], n=512)
    assert metrics["accuracy_t0"] > 0.3          # chance: 0.1
    acc = clf.accuracy_vs_t(fashion[1], [0, 49], n=512)
    assert acc[49] < 0.25 < acc[0]                # at t = T-1 the image is gone
    x = fashion[1].batch(torch.arange(8))["x"]
    with torch.no_grad():                         # the same input means something else at another t
        assert (clf.logits(x, torch.full((8,), 2)) - clf.logits(x, torch.full((8,), 30))).abs().max() > 0.1
    assert [p.name for p in save_artifacts(clf, fashion[1], tmp_path)] == ["accuracy_vs_t.png"]
    # a diffusion model with another T: timesteps are mapped to the classifier's nearest noise level
    s = make_schedule("cosine", 500)
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(clf.for_schedule(s)(x, torch.tensor([0, 499])), clf.logits(x, torch.tensor([0, 49])))
        assert clf.for_schedule(clf.schedule) == clf.logits


def test_classifier_guidance_steers_samples_to_the_class(noisy_classifier):
    clf = noisy_classifier
    model = build_model("diffusion", dict(TINY_UNET, prediction="eps")).eval()
    model.net = GaussianEps(model.schedule)         # the base model knows nothing about classes
    y = torch.arange(20) % 10

    def score(scale):
        x = model.sample(20, generator=torch.Generator().manual_seed(0), y=y, sampler="ddim", steps=10,
                         classifier=clf, classifier_scale=scale)
        with torch.no_grad():
            log_p = F.log_softmax(clf.logits(x, torch.zeros(20, dtype=torch.long)), -1)
        return float(log_p.gather(1, y[:, None]).mean()), float((log_p.argmax(1) == y).float().mean())

    (lp0, acc0), (lp10, acc10) = score(0.0), score(10.0)
    assert lp10 > lp0 + 1.0 and acc10 > acc0 + 0.15


def test_bad_guidance_inputs_are_rejected(noisy_classifier):
    uncond = build_model("diffusion", dict(TINY_UNET)).eval()
    cond = conditional_model()
    with pytest.raises(GenlabError, match="class index out of range: this model knows classes 0..9"):
        cond.sample(1, y=torch.tensor([10]), sampler="ddim", steps=2)
    with pytest.raises(GenlabError, match="unconditional"):
        uncond.sample(1, y=torch.tensor([3]), sampler="ddim", steps=2)
    with pytest.raises(GenlabError, match="^guidance needs a class-conditional checkpoint"):
        uncond.sample(1, guidance=3.0, sampler="ddim", steps=2)
    with pytest.raises(GenlabError, match="classifier-free guidance needs the class to generate: pass labels y"):
        cond.sample(1, guidance=3.0, sampler="ddim", steps=2)
    with pytest.raises(GenlabError, match=">= 0"):
        cond.sample(1, y=torch.tensor([3]), guidance=-1.0, sampler="ddim", steps=2)
    with pytest.raises(GenlabError, match="needs the class to generate"):
        uncond.sample(1, classifier=noisy_classifier, sampler="ddim", steps=2)
    with pytest.raises(GenlabError, match="the classifier knows classes 0..9"):
        uncond.sample(1, y=torch.tensor([12]), classifier=noisy_classifier, sampler="ddim", steps=2)
    small = build_model("diffusion", dict(TINY_UNET, image_size=16))
    with pytest.raises(GenlabError, match="takes 1x28x28 images"):
        small.sample(1, y=torch.tensor([1]), classifier=noisy_classifier)
    with pytest.raises(ParamError, match="^classifier_scale must be >= 0"):
        uncond.sample(1, y=torch.tensor([1]), classifier=noisy_classifier, classifier_scale=-2.0, sampler="ddim",
                      steps=2)


# ----------------------------------------------------------------------------- inpainting
def test_mask_presets_and_png_masks(tmp_path):
    left = mask_preset("left", 2, 8)
    assert left.shape == (2, 1, 8, 8) and left[..., :4].sum() == 0 and left[..., 4:].min() == 1
    assert mask_preset("bottom", 1, 8)[..., 4:, :].sum() == 0 and mask_preset("top", 1, 8)[..., 4:, :].min() == 1
    center = mask_preset("center", 1, 8)
    assert center.sum() == 64 - 16 and center[0, 0, 3, 3] == 0 and center[0, 0, 0, 0] == 1
    box = mask_preset("box", 3, 8, torch.Generator().manual_seed(0))
    assert (box.sum((1, 2, 3)) == 64 - 16).all()
    rnd = mask_preset("random", 1, 64, torch.Generator().manual_seed(0), ratio=0.25)
    assert 0.7 < float(rnd.mean()) < 0.8
    png = tmp_path / "mask.png"
    pixels = torch.full((16, 16), 255, dtype=torch.uint8)
    pixels[:, :8] = 0                                   # black = fill in
    Image.fromarray(pixels.numpy()).save(png)
    torch.testing.assert_close(load_mask(str(png), 2, 8), mask_preset("left", 2, 8))
    with pytest.raises(GenlabError, match="neither a preset"):
        load_mask("no-such-mask", 1, 8)
    Image.fromarray(torch.full((4, 4), 255, dtype=torch.uint8).numpy()).save(tmp_path / "white.png")
    with pytest.raises(GenlabError, match="all white"):
        load_mask(str(tmp_path / "white.png"), 1, 8)


def _correlated_gaussian_eps(schedule, sigma):
    """Exact eps of 2-pixel images x ~ N(0, Sigma), shaped (N, 1, 1, 2)."""
    def model(x, t, y=None):
        a = float(schedule.alphas_cumprod[int(t[0])])
        xf = x.reshape(-1, 2).double()
        cov = a * sigma + (1 - a) * torch.eye(2, dtype=torch.float64)
        x0 = math.sqrt(a) * xf @ torch.linalg.solve(cov, sigma)          # E[x0 | x_t]
        return ((xf - math.sqrt(a) * x0) / math.sqrt(1 - a)).float().view_as(x)
    return model


def test_repaint_samples_the_conditional_where_replacement_does_not():
    """Two pixels with correlation 0.9: given a = 0.8, b | a ~ N(0.72, 0.22^2)."""
    s = make_schedule("cosine", 1000)
    rho, sd = 0.9, 0.5
    model = _correlated_gaussian_eps(s, sd**2 * torch.tensor([[1, rho], [rho, 1]], dtype=torch.float64))
    known = torch.zeros(2000, 1, 1, 2)
    known[..., 0] = 0.8
    mask = torch.tensor([1.0, 0.0]).view(1, 1, 1, 2)
    run = lambda r: inpaint(s, model, known, mask, steps=50, resample=r, clip=False,  # noqa: E731
                            generator=torch.Generator().manual_seed(0))
    replaced, repainted = run(1), run(5)
    for x in (replaced, repainted):
        assert torch.equal(x[..., 0], known[..., 0])                    # known pixels are kept exactly
    target = rho * 0.8
    assert abs(float(repainted[..., 1].mean()) - target) < 0.08
    assert abs(float(replaced[..., 1].mean()) - target) > 0.15           # the replacement method's bias
    assert 0.15 < float(repainted[..., 1].std()) < 0.26                   # sd of b | a: 0.218
    calls = []
    inpaint(s, model, known[:4], mask, steps=10, resample=3, clip=False, progress=calls.append)
    assert sum(calls) == 30
    with pytest.raises(ParamError, match="^resample must be at least 1, got 0"):
        inpaint(s, model, known, mask, steps=10, resample=0)

"""Conditions beyond class labels: the condition dict, its null, condition dropout, classifier-free
guidance with one and two conditions (closed forms with a fake network), micro-batching of dict
conditions, and tiny text- and image-conditioned models that train and sample."""

import pytest
import torch

from genlab.diffusion.guidance import cfg_combine, classifier_free
from genlab.errors import GenlabError
from genlab.models import build_model
from genlab.nn.conditioning import cat_conditions, drop_condition, null_condition, slice_condition

K = 5  # classes in these tests: the null label is 5


def cond_dict(n=4, L=3, D=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"class": torch.arange(n) % K, "text": torch.randn(n, L, D, generator=g) + 2,
            "text_mask": torch.ones(n, L, dtype=torch.bool), "pooled": torch.randn(n, D, generator=g) + 2,
            "image": torch.randn(n, 1, 4, 4, generator=g) + 2}


# ----------------------------------------------------------------------------- the null condition
def test_null_condition_per_group():
    y = cond_dict()
    y["text_mask"][:, -1] = False
    null = null_condition(y, K)
    assert torch.equal(null["class"], torch.full((4,), K))
    assert not null["text"].any() and not null["pooled"].any() and not null["image"].any()
    assert null["text_mask"].all()  # every (zero) position is attended to
    text_only = null_condition(y, K, ["text"])
    assert not text_only["text"].any() and not text_only["pooled"].any() and text_only["text_mask"].all()
    for part in ("class", "image"):  # the other groups are untouched
        assert torch.equal(text_only[part], y[part])
    rows = null_condition(y, K, ["image"], where=torch.tensor([True, False, True, False]))
    assert not rows["image"][[0, 2]].any() and torch.equal(rows["image"][[1, 3]], y["image"][[1, 3]])
    # plain labels stay plain labels
    assert torch.equal(null_condition(torch.tensor([0, 3]), K), torch.tensor([K, K]))
    with pytest.raises(GenlabError, match="unknown condition part"):
        null_condition({"caption": torch.zeros(2)}, K)


def test_cat_and_slice_conditions_round_trip():
    y = cond_dict(6)
    both = cat_conditions([slice_condition(y, 0, 2), slice_condition(y, 2, 6)])
    assert all(torch.equal(both[k], y[k]) for k in y)
    labels = torch.arange(6)
    assert torch.equal(cat_conditions([slice_condition(labels, 0, 4), slice_condition(labels, 4, 6)]), labels)
    assert cat_conditions([None, None]) is None and slice_condition(None, 0, 1) is None


# ----------------------------------------------------------------------------- condition dropout
def test_label_dropout_is_the_old_formula():
    """Plain labels: one uniform per row, y -> num_classes where u < p (what both model families did)."""
    y = torch.arange(1000) % K
    torch.manual_seed(7)
    old = torch.where(torch.rand(y.shape) < 0.3, torch.full_like(y, K), y)
    torch.manual_seed(7)
    assert torch.equal(drop_condition(y, 0.3, K), old)
    assert torch.equal(drop_condition(y, 0.0, K), y)
    assert torch.equal(drop_condition(y, 1.0, K), torch.full_like(y, K))


def test_dropout_rates_with_a_joint_drop():
    """Each group drops with its own p, then all together with p_all: P(text null) = 1 - (1 - p_T)(1 - p_all)."""
    n, pT, pI, pA = 40_000, 0.2, 0.1, 0.05
    y = {"text": torch.ones(n, 2, 3), "image": torch.ones(n, 1, 2, 2), "class": torch.zeros(n, dtype=torch.long)}
    out = drop_condition(y, {"text": pT, "image": pI}, K, p_all=pA, generator=torch.Generator().manual_seed(0))
    text_null = ~out["text"].flatten(1).any(1)
    image_null = ~out["image"].flatten(1).any(1)
    class_null = out["class"] == K
    want = {"text": 1 - (1 - pT) * (1 - pA), "image": 1 - (1 - pI) * (1 - pA), "class": pA,
            "both": pT * pI * (1 - pA) + pA}
    got = {"text": text_null, "image": image_null, "class": class_null, "both": text_null & image_null}
    for k, p in want.items():
        sd = (p * (1 - p) / n) ** 0.5
        assert abs(got[k].float().mean().item() - p) < 4 * sd, k
    assert torch.equal(class_null, text_null & image_null & class_null)  # class (p 0) drops only jointly
    with pytest.raises(GenlabError, match="probability"):
        drop_condition(y, {"text": 1.5}, K)


def test_dropout_follows_a_cpu_generator_to_the_data_device():
    y = {"image": torch.ones(8, 1, 2, 2)}
    a = drop_condition(y, 0.5, generator=torch.Generator().manual_seed(3))
    b = drop_condition(y, 0.5, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a["image"], b["image"])


# ----------------------------------------------------------------------------- classifier-free guidance
class FakeNet:
    """A network whose output says which condition groups it was given: a known table e(I, T), and
    a record of the calls (the guided output must come from one batched call)."""

    def __init__(self):
        self.calls = []

    def __call__(self, x, t, y):
        self.calls.append(len(x))
        has_image = y["image"].flatten(1).any(1).float()
        has_text = y["text"].flatten(1).any(1).float()
        has_class = (y["class"] != K).float() if "class" in y else torch.zeros(len(x))
        # nonlinear in the flags, so every variant differs: e = x + 1 + 2 I + 3 T + 5 I T + 7 C
        e = 1 + 2 * has_image + 3 * has_text + 5 * has_image * has_text + 7 * has_class
        return x + e.view(-1, 1, 1, 1)


def test_cfg_combine_closed_forms():
    u, c = torch.tensor([1.0, -2.0]), torch.tensor([4.0, 0.5])
    torch.testing.assert_close(cfg_combine([u, c], [3.0]), u + 3.0 * (c - u))  # Ho & Salimans 2022
    e00, e10, e11 = torch.tensor([1.0]), torch.tensor([2.0]), torch.tensor([7.0])
    # Brooks et al. 2023, Eq. 3: e00 + s_I (e10 - e00) + s_T (e11 - e10)
    torch.testing.assert_close(cfg_combine([e00, e10, e11], [1.5, 4.0]), torch.tensor([1 + 1.5 * 1 + 4.0 * 5]))


def test_two_condition_guidance_is_instructpix2pix_eq3():
    net, x, t = FakeNet(), torch.zeros(3, 1, 4, 4), torch.tensor([1, 2, 3])
    y = {"image": torch.ones(3, 1, 4, 4), "text": torch.ones(3, 2, 6)}
    sI, sT = 1.5, 7.5
    out = classifier_free(net, {"image": sI, "text": sT}, K)(x, t, y)
    e00, e10, e11 = 1.0, 1.0 + 2, 1.0 + 2 + 3 + 5  # the table of FakeNet: (no I, no T), (I, no T), (I, T)
    torch.testing.assert_close(out, torch.full_like(x, e00 + sI * (e10 - e00) + sT * (e11 - e10)))
    assert net.calls == [9]  # one call over the three stacked variants
    # the other order is another formula: e00 + s_T (e01 - e00) + s_I (e11 - e01)
    out = classifier_free(net, {"text": sT, "image": sI}, K)(x, t, y)
    e01 = 1.0 + 3
    torch.testing.assert_close(out, torch.full_like(x, e00 + sT * (e01 - e00) + sI * (e11 - e01)))


def test_one_scale_guides_every_part_together_and_unnamed_parts_stay_given():
    net, x, t = FakeNet(), torch.zeros(2, 1, 4, 4), torch.tensor([1, 2])
    y = {"image": torch.ones(2, 1, 4, 4), "text": torch.ones(2, 2, 6), "class": torch.tensor([0, 1])}
    w = 3.0
    uncond, cond = 1.0, 1 + 2 + 3 + 5 + 7
    torch.testing.assert_close(classifier_free(net, w, K)(x, t, y), torch.full_like(x, uncond + w * (cond - uncond)))
    # guiding the text only: image and class are given in both variants
    base = 1 + 2 + 7
    torch.testing.assert_close(classifier_free(net, {"text": w}, K)(x, t, y),
                               torch.full_like(x, base + w * (3 + 5)))
    net.calls.clear()
    torch.testing.assert_close(classifier_free(net, 1.0, K)(x, t, y), torch.full_like(x, cond))
    torch.testing.assert_close(classifier_free(net, {"image": 1.0, "text": 1.0}, K)(x, t, y), torch.full_like(x, cond))
    torch.testing.assert_close(classifier_free(net, 0.0, K)(x, t, y), torch.full_like(x, uncond))
    assert net.calls == [2, 2, 2]  # scale 1: the conditional call alone; scale 0: the unconditional alone
    with pytest.raises(GenlabError, match="guidance scales for 'image'"):
        classifier_free(net, {"image": 2.0}, K)(x, t, {"text": y["text"]})


def tiny_model(**kw):
    cfg = dict(channels=1, image_size=8, base_width=8, channel_mult=(1, 2), num_res_blocks=1,
               attn_resolutions=(4,), timesteps=50, context_dim=6, cond_channels=1)
    torch.manual_seed(0)
    model = build_model("diffusion", dict(cfg, **kw)).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # random weights everywhere (the output conv and the cross-attention start at zero)
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return model


def test_dict_conditions_through_micro_batching():
    model = tiny_model()
    g = torch.Generator().manual_seed(2)
    n = 7
    x, t = torch.randn(n, 1, 8, 8, generator=g), torch.randint(0, 50, (n,), generator=g)
    y = {"text": torch.randn(n, 3, 6, generator=g), "text_mask": torch.rand(n, 3, generator=g) < 0.7,
         "image": torch.randn(n, 1, 8, 8, generator=g)}
    with torch.no_grad():
        for guidance in (1.0, 0.0, 2.5, {"image": 1.5, "text": 4.0}):
            whole = model.denoiser(guidance, micro_batch=0)(x, t, y)
            for mb in (2, 3):
                torch.testing.assert_close(model.denoiser(guidance, micro_batch=mb)(x, t, y), whole,
                                           atol=1e-5, rtol=1e-5)
        # and the sliced network matches row by row
        one = model.net(x[4:5], t[4:5], slice_condition(y, 4, 5))
        torch.testing.assert_close(model.denoiser(1.0, micro_batch=2)(x, t, y)[4:5], one, atol=1e-5, rtol=1e-5)


def test_guidance_options_are_checked():
    model = tiny_model()
    y = {"text": torch.randn(2, 3, 6)}
    with pytest.raises(GenlabError, match=r"^guidance\['text'\] must be a number >= 0"):
        model.check_guidance({"text": -1.0}, y)
    with pytest.raises(GenlabError, match="unknown guidance group 'caption'"):
        model.check_guidance({"caption": 2.0}, y)
    with pytest.raises(GenlabError, match="guidance scales for 'image', but the condition has only 'text'"):
        model.check_guidance({"image": 1.5, "text": 7.5}, y)
    model.check_guidance({"image": 1.5, "text": 7.5}, dict(y, image=torch.zeros(2, 1, 8, 8)))
    with pytest.raises(GenlabError, match="text_dropout is a probability"):
        build_model("diffusion", dict(image_size=8, channel_mult=(1,), context_dim=4, text_dropout=2.0))
    with pytest.raises(GenlabError, match="batch has only"):
        model.loss({"x": torch.zeros(2, 1, 8, 8), "image": torch.zeros(2, 1, 8, 8)})


# ----------------------------------------------------------------------------- data -> loop -> sampler
def _smooth_images(n, g):
    import torch.nn.functional as F

    return F.interpolate(torch.rand(n, 1, 2, 2, generator=g) * 2 - 1, size=8, mode="bilinear", align_corners=False)


def _u8(a):
    return ((a.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def test_batches_carry_an_image_condition_decoded_and_flipped_with_x():
    from genlab.data.base import BatchLoader, TensorDataset

    img = _u8(_smooth_images(8, torch.Generator().manual_seed(0)))
    data = TensorDataset("pairs", "image", {"x": img.clone(), "image": img.clone(), "text": torch.randn(8, 2, 3)})
    for batch in BatchLoader(data, 4, hflip=True, seed=1):
        assert batch["image"].dtype == torch.float32 and batch["image"].min() >= -1 and batch["image"].max() <= 1
        assert torch.equal(batch["x"], batch["image"])  # flipped together: the pair stays a pair
        assert batch["text"].shape == (4, 2, 3)


def test_an_instruction_editing_model_trains_in_the_loop_and_samples_with_two_scales():
    """A toy InstructPix2Pix: the image condition is a smooth 8x8 image, the "text" one of two
    instructions (2 embedding vectors each), keep it (x = image) or invert it (x = -image). Neither
    condition alone says what x is. The model trains through genlab's training loop on batches that
    carry "image" and "text", then samples with DDIM and separate image and text guidance scales."""
    from genlab.data.base import TensorDataset
    from genlab.diffusion import gaussian, samplers
    from genlab.train import TrainConfig, train

    g = torch.Generator().manual_seed(0)
    n = 512
    image, instruction = _smooth_images(n, g), torch.randint(0, 2, (n,), generator=g)
    words = torch.randn(2, 2, 6, generator=g)  # the two instructions' embeddings
    text = words[instruction] + 0.1 * torch.randn(n, 2, 6, generator=g)
    x = torch.where(instruction.view(-1, 1, 1, 1) == 0, image, -image)
    data = TensorDataset("toy-edit", "image", {"x": _u8(x), "image": _u8(image), "text": text})
    torch.manual_seed(0)
    model = build_model("diffusion", dict(channels=1, image_size=8, base_width=16, channel_mult=(1, 2),
                                          num_res_blocks=1, attn_resolutions=(4,), timesteps=50, context_dim=6,
                                          cond_channels=1, joint_dropout=0.05))
    result = train(model, data, TrainConfig(epochs=100, max_steps=300, batch_size=32, lr=3e-3, warmup_steps=20,
                                            ema_decay=0, progress=False, device="cpu", sample_every=0,
                                            num_samples=0, log_every=25))
    model = result.model.eval()
    losses = [float(row["loss"]) for row in result.history if "loss" in row]
    assert losses[-1] < 0.25 * losses[0]

    # held-out pairs at a high noise level (abar 0.016): x0 predicted from x_t with both conditions
    # is far better than with the image alone (the sign is in the text) or with none
    gt = torch.Generator().manual_seed(5)
    k = 256
    test_image, test_instruction = _smooth_images(k, gt), torch.arange(k) % 2
    target = torch.where(test_instruction.view(-1, 1, 1, 1) == 0, test_image, -test_image)
    cond = {"image": test_image, "text": words[test_instruction]}
    with torch.no_grad():
        t = torch.full((k,), 45)
        xt = gaussian.q_sample(model.schedule, target, t, torch.randn(target.shape, generator=gt))

        def x0_error(y):
            out = model.net(xt, t, y)
            return (gaussian.predict_x0(model.schedule, xt, t, out, model.cfg.prediction) - target).pow(2).mean()

        both, image_only, none = x0_error(cond), x0_error({"image": test_image}), x0_error(None)
        assert both < 0.4 * image_only and both < 0.4 * none, (both, image_only, none)  # seen: 0.23, 0.23
        # sampling: the same 8 images, each with both instructions
        k, image8 = 16, test_image[:8].repeat(2, 1, 1, 1)
        target = torch.cat([image8[:8], -image8[8:]])
        cond = {"image": image8, "text": words[torch.arange(k) // 8]}
        out = samplers.sample(model.schedule, model.denoiser({"image": 1.5, "text": 2.0}), (k, 1, 8, 8),
                              sampler="ddim", steps=20, y=cond, prediction=model.cfg.prediction,
                              generator=torch.Generator().manual_seed(1), device="cpu")
    # each sample follows its instruction: close to +image or -image, far from the other
    err = (out - target).pow(2).flatten(1).mean(1)
    wrong = (out + target).pow(2).flatten(1).mean(1)
    assert (err < 0.15).all() and (err < 0.25 * wrong).all(), (err, wrong)  # seen: err <= 0.06, wrong >= 0.64


def test_model_sample_takes_a_condition_dict():
    """DiffusionModel.sample passes a condition dict and per-condition scales through to the sampler."""
    from genlab.diffusion import samplers

    model = tiny_model()
    g = torch.Generator().manual_seed(0)
    y = {"image": torch.randn(2, 1, 8, 8, generator=g), "text": torch.randn(2, 3, 6, generator=g)}
    guidance = {"image": 1.5, "text": 3.0}
    got = model.sample(2, generator=torch.Generator().manual_seed(1), y=y, guidance=guidance, sampler="ddim", steps=4)
    with torch.no_grad():
        want = samplers.sample(model.schedule, model.denoiser(guidance), (2, 1, 8, 8), sampler="ddim", steps=4, y=y,
                               prediction=model.cfg.prediction, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(got, want)
    with pytest.raises(GenlabError, match="guidance scales for 'image'"):
        model.sample(1, y={"text": y["text"][:1]}, guidance={"image": 2.0}, sampler="ddim", steps=2)

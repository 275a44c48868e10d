"""The DDPM U-Net and its sinusoidal time embedding: shapes, conditioning, embedding properties, bad sizes."""

import math

import pytest
import torch

from genlab.errors import GenlabError
from genlab.models import build_model
from genlab.nn.embeddings import TimeEmbedding, timestep_embedding
from genlab.nn.unet import Attention, UNet, UNetConfig



def _randomize(net: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """The output conv starts at zero (a constant network); give every weight a random value instead."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return net


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("size,attn", [(28, (7,)), (32, ()), (64, (16,))])
def test_unet_output_shape(channels, size, attn):
    cfg = UNetConfig(channels=channels, image_size=size, base_width=8, channel_mult=(1, 2, 2), num_res_blocks=1,
                     attn_resolutions=attn)
    net = UNet(cfg).eval()
    n_attn = sum(isinstance(m, Attention) for m in net.modules())
    assert n_attn == 1 + 3 * len(attn)  # the middle block always, plus one per block at each listed resolution
    x = torch.randn(2, channels, size, size)
    out = net(x, torch.tensor([0, 999]))
    assert out.shape == x.shape
    assert torch.count_nonzero(out) == 0  # zero-initialised output layer: the untrained net is the zero function
    _randomize(net)
    out = net(x, torch.tensor([0, 999]))
    assert out.shape == x.shape and torch.isfinite(out).all()


# narrow widths are where a per-channel norm after the embedding would erase it (regression test)
@pytest.mark.parametrize("width", [8, 32, 64])
def test_unet_depends_on_time_and_class(width):
    cfg = UNetConfig(channels=1, image_size=8, base_width=width, channel_mult=(1, 2), num_res_blocks=1,
                     attn_resolutions=(4,), num_classes=3)
    net = _randomize(UNet(cfg)).eval()
    assert net.class_embed.num_embeddings == 4  # 3 classes + the null label of classifier-free guidance
    x = torch.randn(1, 1, 8, 8).expand(2, -1, -1, -1)
    with torch.no_grad():
        a = net(x, torch.tensor([5, 500]), torch.tensor([1, 1]))
        b = net(x, torch.tensor([5, 5]), torch.tensor([1, 2]))
        null = net(x, torch.tensor([5, 5]))                        # no label: the null class
        explicit = net(x, torch.tensor([5, 5]), torch.tensor([3, 3]))
    assert a.shape == (2, 1, 8, 8)
    assert not torch.allclose(a[0], a[1])          # time matters
    assert not torch.allclose(b[0], b[1])          # the label matters
    torch.testing.assert_close(a[0], b[0])         # same input, step and label: same output
    torch.testing.assert_close(null, explicit)


def test_unet_batch_items_are_independent():
    net = _randomize(UNet(UNetConfig(channels=3, image_size=8, base_width=8, channel_mult=(1, 2), num_res_blocks=1,
                                     attn_resolutions=(4,)))).eval()
    x, t = torch.randn(3, 3, 8, 8), torch.tensor([1, 2, 3])
    with torch.no_grad():
        full = net(x, t)
        one = net(x[1:2], t[1:2])
    torch.testing.assert_close(full[1:2], one, atol=1e-5, rtol=1e-4)


def test_unet_rejects_sizes_it_cannot_halve():
    with pytest.raises(ValueError, match="image size 30 cannot be halved 2 times"):
        UNet(UNetConfig(image_size=30, channel_mult=(1, 2, 2)))
    UNet(UNetConfig(image_size=30, base_width=8, channel_mult=(1, 2), num_res_blocks=1, attn_resolutions=()))
    # through the model family (what `genlab train diffusion --image-size 30` builds) it is a user error
    with pytest.raises(GenlabError, match="30"):
        build_model("diffusion", dict(image_size=30, base_width=8, channel_mult=(1, 2, 2), num_res_blocks=1))


def test_timestep_embedding_properties():
    t = torch.tensor([0, 1, 2, 10, 500, 999])
    e = timestep_embedding(t, 16)
    assert e.shape == (6, 16)
    # t = 0: cos 0 = 1, sin 0 = 0
    torch.testing.assert_close(e[0], torch.cat([torch.ones(8), torch.zeros(8)]))
    # each frequency contributes cos^2 + sin^2 = 1
    torch.testing.assert_close(e.pow(2).sum(1), torch.full((6,), 8.0))
    # the formula: frequency i is 10000^(-i / half)
    for i in range(8):
        w = 10000 ** (-i / 8)
        torch.testing.assert_close(e[:, i], torch.cos(t.double() * w).float(), atol=1e-4, rtol=0)
        torch.testing.assert_close(e[:, 8 + i], torch.sin(t.double() * w).float(), atol=1e-4, rtol=0)
    # nearby steps are nearby, distant ones are not, every step is distinct
    d = torch.cdist(e, e)
    assert d[1, 2] < d[1, 4] and d[4, 5] > 1.0
    assert (d + torch.eye(6) * 100).min() > 1e-3
    # odd dims are zero-padded; fractional t works
    e_odd = timestep_embedding(torch.tensor([3.5]), 7)
    assert e_odd.shape == (1, 7) and e_odd[0, -1].item() == 0.0
    assert e_odd[0, 0].item() == pytest.approx(math.cos(3.5), abs=1e-6)


def test_time_embedding_mlp():
    emb = TimeEmbedding(8, 32)
    out = emb(torch.tensor([0, 7, 7]))
    assert out.shape == (3, 32)
    torch.testing.assert_close(out[1], out[2])
    assert not torch.allclose(out[0], out[1])


# ----------------------------------------------------------------------------- conditions beyond class labels
def test_default_unet_is_unchanged():
    """The default U-Net (DiffusionConfig()) has the parameters it had before text / image conditions
    existed: same names, shapes, count, and the same values for a seed (so old checkpoints load and a
    seed builds the same model). The numbers were computed once with the code of commit e920c38."""
    import hashlib

    torch.manual_seed(0)
    net = build_model("diffusion", {}).net
    state = net.state_dict()
    assert sum(p.numel() for p in net.parameters()) == 1_742_881
    assert len(state) == 244
    names = "".join(f"{k}{tuple(v.shape)}" for k, v in state.items())
    assert hashlib.sha256(names.encode()).hexdigest()[:16] == "88a543b66e0b2c10"
    values = b"".join(v.numpy().tobytes() for v in state.values())
    assert hashlib.sha256(values).hexdigest()[:16] == "8be6f6b1faf2993f"
    assert not any(k.endswith(".kv.weight") or k.startswith("pooled_embed") for k in state)
    assert state["conv_in.weight"].shape == (32, 1, 3, 3)


def test_default_model_outputs_are_unchanged():
    """A fixed seed gives the outputs of commit e920c38 (unconditional net, and CFG at w = 3 of the
    class-conditional one). Bit-identical on the machine they were computed on; the tolerance allows
    for another CPU's float kernels."""
    from genlab.models import build_model as build

    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        torch.manual_seed(0)
        m = build("diffusion", {})
        for p in m.net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)
        x, t = torch.randn(3, 1, 28, 28, generator=g), torch.tensor([0, 500, 999])
        out = m.net(x, t)
        torch.manual_seed(0)
        mc = build("diffusion", dict(conditional=True, num_classes=10))
        for p in mc.net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)
        outc = mc.denoiser(3.0)(x, t, torch.tensor([1, 2, 10]))
    assert float(out.double().sum()) == pytest.approx(629.4767495319247, rel=1e-6, abs=1e-3)
    assert float(outc.double().sum()) == pytest.approx(271.08388861548156, rel=1e-6, abs=1e-3)


def _cond_unet(**kw):
    cfg = dict(channels=1, image_size=8, base_width=8, channel_mult=(1, 2), num_res_blocks=1,
               attn_resolutions=(4,), context_dim=6, pooled_dim=5, cond_channels=2)
    cfg.update(kw)
    return _randomize(UNet(UNetConfig(**cfg))).eval()


def test_cross_attention_reads_the_context():
    from genlab.nn.unet import CrossAttention

    net = _cond_unet()
    # one cross-attention after each self-attention: the 3 at resolution 4 plus the middle one
    assert sum(isinstance(m, CrossAttention) for m in net.modules()) == 4
    g = torch.Generator().manual_seed(0)
    x, t = torch.randn(2, 1, 8, 8, generator=g), torch.tensor([3, 3])
    text = torch.randn(2, 4, 6, generator=g)
    with torch.no_grad():
        a = net(x, t, {"text": text})
        b = net(x, t, {"text": text.flip(0)})
        # a masked position is not read: changing it changes nothing
        mask = torch.tensor([[True, True, False, False]] * 2)
        other = text.clone()
        other[:, 2:] = 100.0
        m1, m2 = net(x, t, {"text": text, "text_mask": mask}), net(x, t, {"text": other, "text_mask": mask})
        # no text = zero text (any length, all positions attended): the null condition
        none, zeros = net(x, t), net(x, t, {"text": torch.zeros(2, 4, 6)})
        # an all-False mask row reads every position instead of producing NaN
        empty = net(x, t, {"text": text, "text_mask": torch.zeros(2, 4, dtype=torch.bool)})
    assert (a - b).abs().max() > 1e-3
    torch.testing.assert_close(m1, m2)
    assert (m1 - a).abs().max() > 1e-3
    torch.testing.assert_close(none, zeros, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(empty, a)
    # a fresh block is the identity (zero output projection)
    block = CrossAttention(8, 6)
    h = torch.randn(2, 8, 4, 4)
    torch.testing.assert_close(block(h, text), h)


def test_image_and_pooled_conditions():
    net = _cond_unet()
    assert net.conv_in.weight.shape[1] == 3  # x_t's channel + the image condition's 2
    g = torch.Generator().manual_seed(0)
    x, t = torch.randn(2, 1, 8, 8, generator=g), torch.tensor([3, 3])
    image, pooled = torch.randn(2, 2, 8, 8, generator=g), torch.randn(2, 5, generator=g)
    with torch.no_grad():
        base = net(x, t, {"image": image, "pooled": pooled})
        assert (base - net(x, t, {"image": -image, "pooled": pooled})).abs().max() > 1e-3
        assert (base - net(x, t, {"image": image, "pooled": -pooled})).abs().max() > 1e-3
        torch.testing.assert_close(net(x, t), net(x, t, {"image": torch.zeros_like(image),
                                                           "pooled": torch.zeros_like(pooled)}))


def test_conditions_the_unet_cannot_read_are_refused():
    plain = _randomize(UNet(UNetConfig(channels=1, image_size=8, base_width=8, channel_mult=(1, 2),
                                       num_res_blocks=1, attn_resolutions=()))).eval()
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([1, 2])
    with pytest.raises(GenlabError, match="does not read the condition part.*'text'"):
        plain(x, t, {"text": torch.zeros(2, 3, 6)})
    plain(x, t, torch.tensor([0, 1]))  # labels given to a class-less U-Net are ignored, as always
    net = _cond_unet()
    with pytest.raises(GenlabError, match="'text' has shape \\(2, 3, 4\\).*\\(2, 'L', 6\\)"):
        net(x, t, {"text": torch.zeros(2, 3, 4)})
    with pytest.raises(GenlabError, match="'image' has shape"):
        net(x, t, {"image": torch.zeros(2, 2, 4, 4)})


@pytest.mark.parametrize("context_dim", [0, 6])
def test_grad_checkpointing_gives_the_same_loss_and_gradients(context_dim, monkeypatch):
    from genlab.nn import unet
    from genlab.nn.unet import CrossAttention

    calls = []
    real = unet.checkpoint
    monkeypatch.setattr(unet, "checkpoint", lambda fn, *a, **kw: calls.append(type(fn).__name__) or real(fn, *a, **kw))

    net = _cond_unet(context_dim=context_dim, pooled_dim=0, dropout=0.2).train()  # dropout: the RNG is replayed
    assert UNet.grad_checkpoint is False and net.grad_checkpoint is False
    g = torch.Generator().manual_seed(0)
    x, t = torch.randn(3, 1, 8, 8, generator=g), torch.tensor([1, 20, 40])
    y = {"image": torch.randn(3, 2, 8, 8, generator=g)}
    if context_dim:
        y["text"] = torch.randn(3, 4, context_dim, generator=g)
    runs = []
    for on in (False, True):
        net.grad_checkpoint = on
        net.zero_grad()
        torch.manual_seed(5)
        loss = net(x, t, y).pow(2).mean()
        loss.backward()
        runs.append((loss.detach(), {k: p.grad.clone() for k, p in net.named_parameters()}))
    (l0, g0), (l1, g1) = runs
    assert torch.equal(l0, l1)
    assert g0.keys() == g1.keys()
    for k in g0:
        torch.testing.assert_close(g1[k], g0[k], atol=1e-6, rtol=1e-5, msg=k)
    assert any(isinstance(m, CrossAttention) for m in net.modules()) == bool(context_dim)
    # checkpointed: every res/attention block of the second run, and nothing else
    blocks = [m for m in net.modules() if isinstance(m, (unet.ResBlock, unet.Attention, CrossAttention))]
    assert len(calls) == len(blocks) and set(calls) <= {"ResBlock", "Attention", "CrossAttention"}
    with torch.no_grad():  # not when there is no backward pass
        net(x, t, y)
    net.eval()
    net(x, t, y)
    assert len(calls) == len(blocks)

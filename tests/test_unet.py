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

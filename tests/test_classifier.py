"""The CNN classifier: shapes, the maths its docstring teaches, learning, checkpoints."""

import pytest
import torch
import torch.nn.functional as F

from genlab.data import load_dataset
from genlab.errors import GenlabError
from genlab.figures.artifacts import save_artifacts
from genlab.models import build_model
from genlab.models.classifier import Classifier, ClassifierConfig
from genlab.nn.classifier import CNNClassifier, num_stages




@pytest.mark.parametrize("k,p,s", [(3, 1, 1), (3, 0, 1), (5, 2, 2), (3, 1, 2), (4, 1, 2), (7, 3, 3)])
def test_conv_output_size_formula(k, p, s):
    """H_out = floor((H + 2p - k) / s) + 1, the formula in the module docstring."""
    for h in (7, 28, 31):
        y = torch.nn.Conv2d(1, 1, k, stride=s, padding=p)(torch.zeros(1, 1, h, h))
        assert y.shape[-1] == (h + 2 * p - k) // s + 1


def test_convolution_is_a_sliding_dot_product():
    x = torch.randn(1, 2, 5, 5)
    conv = torch.nn.Conv2d(2, 3, 3, padding=1)
    xp = F.pad(x, (1, 1, 1, 1))  # p = 1: one ring of zeros
    i, j = 0, 3
    manual = (conv.weight * xp[:, :, i : i + 3, j : j + 3]).sum(dim=(1, 2, 3)) + conv.bias
    torch.testing.assert_close(conv(x)[0, :, i, j], manual)
    # 2x2 max-pool, stride 2: the largest of each block
    torch.testing.assert_close(F.max_pool2d(x, 2)[0, 1, 1, 0], x[0, 1, 2:4, 0:2].max())


@pytest.mark.parametrize("channels,size,stages", [(1, 28, 3), (3, 32, 3), (3, 64, 4), (1, 8, 1)])
def test_shapes(channels, size, stages):
    assert num_stages(size) == stages
    net = CNNClassifier(channels, num_classes=7, image_size=size, width=4, feature_dim=12).eval()
    x = torch.randn(3, channels, size, size)
    assert net(x).shape == (3, 7)
    f = net.features(x)
    assert f.shape == (3, 12) and (f >= 0).all()  # after ReLU
    torch.testing.assert_close(net.head(f), net(x))  # logits = head(features) in eval mode
    # channels_last gives the same answer
    cl = net.to(memory_format=torch.channels_last)
    torch.testing.assert_close(cl(x.contiguous(memory_format=torch.channels_last)), net(x), rtol=1e-4, atol=1e-4)


def test_eval_features_do_not_depend_on_the_batch():
    net = CNNClassifier(width=4).eval()
    x = torch.randn(6, 1, 28, 28)
    torch.testing.assert_close(net.features(x)[:2], net.features(x[:2]), rtol=1e-4, atol=1e-5)


def test_loss_logs_detached_accuracy_and_label_smoothing():
    torch.manual_seed(0)
    model = Classifier(ClassifierConfig(width=4))
    batch = {"x": torch.randn(8, 1, 28, 28), "y": torch.randint(0, 10, (8,))}
    model.eval()  # no dropout: compare losses on the same logits
    loss, logs = model.loss(batch)
    assert loss.ndim == 0 and loss.requires_grad
    assert isinstance(logs["acc"], torch.Tensor) and not logs["acc"].requires_grad and 0 <= logs["acc"] <= 1
    model.cfg.label_smoothing = 0.1
    smoothed, _ = model.loss(batch)
    logits = model.net(batch["x"])
    expect = 0.9 * F.cross_entropy(logits, batch["y"]) - 0.1 * F.log_softmax(logits, 1).mean(1).mean()
    torch.testing.assert_close(smoothed, expect)


def test_bad_configs_and_batches():
    with pytest.raises(GenlabError, match="at least 2 classes"):
        Classifier(ClassifierConfig(num_classes=0))
    with pytest.raises(GenlabError, match="^label_smoothing must be"):
        Classifier(ClassifierConfig(label_smoothing=1.0))
    with pytest.raises(GenlabError, match="needs labels"):
        Classifier(ClassifierConfig(width=4)).loss({"x": torch.randn(2, 1, 28, 28)})
    data = load_dataset("shapes", "test", image_size=16, n=10)
    with pytest.raises(GenlabError, match="16 px images but the classifier takes 3x32"):
        Classifier(ClassifierConfig(channels=3, image_size=32, width=4)).evaluate(data)


def test_registered_and_not_a_sampler():
    model = build_model("classifier", {"width": 4, "num_classes": 3})
    assert isinstance(model, Classifier) and not model.can_sample


def test_tiny_run_learns_fashion_mnist(one_thread):
    """~90 steps on 2,000 images: well above the 10% of guessing on held-out images."""
    torch.manual_seed(0)
    data = load_dataset("fashion_mnist", "test")
    train, held_out = data.subset(slice(0, 2000)), data.subset(slice(9000, 10000))
    model = Classifier(ClassifierConfig(width=8, feature_dim=32))
    before = model.evaluate(held_out)["accuracy"]
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for epoch in range(3):
        perm = torch.randperm(len(train))
        for b in range(0, len(train) - 63, 64):
            loss, _ = model.loss(train.batch(perm[b : b + 64]))
            opt.zero_grad()
            loss.backward()
            opt.step()
    metrics = model.evaluate(held_out)
    assert before < 0.3
    assert metrics["accuracy"] > 0.7, metrics  # ~0.79 over seeds 0-3
    # predict and evaluate agree
    pred = model.predict(held_out.batch(torch.arange(1000))["x"])
    assert (pred == held_out.y).float().mean().item() == pytest.approx(metrics["accuracy"])
    assert model.confusion_matrix(held_out).sum() == 1000 and model.training  # eval helpers restore train mode


def test_checkpoint_round_trip(tmp_path):
    from genlab.metrics.features import load_classifier, network_hash
    from genlab.train.checkpoint import save_checkpoint

    torch.manual_seed(0)
    model = Classifier(ClassifierConfig(width=4, num_classes=5))
    model.net.body[0][1].running_mean.fill_(0.3)  # buffers must survive too
    model.eval()
    save_checkpoint(tmp_path / "run", model)
    loaded = load_classifier(tmp_path / "run")
    x = torch.randn(4, 1, 28, 28)
    torch.testing.assert_close(loaded.logits(x), model.logits(x))
    assert network_hash(loaded) == network_hash(model)


def test_save_artifacts_confusion_matrix(tmp_path):
    data = load_dataset("shapes", "test", image_size=16, n=60, channels=1)
    model = Classifier(ClassifierConfig(channels=1, image_size=16, num_classes=6, width=4))
    paths = save_artifacts(model, data, tmp_path)
    assert [p.name for p in paths] == ["confusion.png"] and paths[0].stat().st_size > 1000

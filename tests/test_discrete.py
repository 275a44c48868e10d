"""Discrete diffusion: process maths vs closed forms, losses, samplers, a tiny model that
must learn, infilling, the word / image-token data, text references, and bad inputs."""

import math

import pytest
import torch

from genlab.cli.main import main
from genlab.data.base import TensorDataset
from genlab.diffusion import discrete as dd
from genlab.errors import GenlabError
from genlab.metrics.text import NGramModel, UnigramModel, bits_per_token, word_novelty
from genlab.figures.artifacts import save_artifacts
from genlab.metrics.text import discrete_metrics
from genlab.models.discrete import DiscreteConfig, DiscreteDiffusion, config_for_data
from genlab.viz.samples import save_samples

torch.set_num_threads(1)

KINDS = [("absorbing", "linear"), ("absorbing", "cosine"), ("uniform", "linear"), ("uniform", "cosine")]


def make_process(kind, schedule, K=6, T=10):
    # 5 data tokens + mask (absorbing); uniform over the 5 data tokens
    return dd.DiscreteProcess(kind, K, data_vocab=K - 1, schedule=schedule, num_steps=T)


# --------------------------------------------------------------------------- process maths

@pytest.mark.parametrize("kind,schedule", KINDS)
def test_transition_matrices_compose(kind, schedule):
    p = make_process(kind, schedule)
    prod = torch.eye(p.K, dtype=torch.float64)
    for t in range(1, p.T + 1):
        Qt = p.Q(t)
        assert torch.allclose(Qt.sum(1), torch.ones(p.K, dtype=torch.float64))
        assert (Qt >= 0).all()
        prod = prod @ Qt
        assert torch.allclose(prod, p.Q_bar(t), atol=1e-12), f"Q_1...Q_{t} != Q_bar_{t}"
    # the chain ends in pi from every data state
    assert torch.allclose(p.Q_bar(p.T)[: p.D], p.pi.expand(p.D, -1), atol=1e-12)
    assert torch.allclose(p.Q_bar(0), torch.eye(p.K, dtype=torch.float64))


@pytest.mark.parametrize("kind,schedule", KINDS)
def test_q_sample_matches_closed_form_marginals(kind, schedule):
    p = make_process(kind, schedule)
    g = torch.Generator().manual_seed(0)
    n = 20000
    x0 = torch.tensor([[0, 3]]).expand(n, -1)
    for t in (0, 3, 7, 10):
        xt = p.q_sample_discrete(x0, t, generator=g)
        closed = p.q_probs(x0[:1], t)[0]                           # (2, K)
        assert torch.allclose(closed.double(), p.Q_bar(t)[x0[0]].to(closed.dtype).double(), atol=1e-6)
        for pos in range(2):
            emp = torch.bincount(xt[:, pos], minlength=p.K).double() / n
            sd = (closed[pos].double() * (1 - closed[pos].double()) / n).sqrt()
            assert ((emp - closed[pos].double()).abs() <= 5 * sd + 1e-9).all(), (t, pos, emp, closed[pos])


@pytest.mark.parametrize("kind,schedule", KINDS)
def test_posterior_is_bayes_rule_on_the_matrices(kind, schedule):
    p = make_process(kind, schedule)
    for t in (1, 4, 10):
        Qt, Qbar_s, Qbar_t = p.Q(t), p.Q_bar(t - 1), p.Q_bar(t)
        for i in range(p.D):                                       # x0 = i
            for k in range(p.K):                                   # x_t = k
                if Qbar_t[i, k] == 0:
                    continue                                       # impossible x_t
                expect = Qt[:, k] * Qbar_s[i, :] / Qbar_t[i, k]  # q(x_{t-1}=j | x_t=k, x0=i)
                got = p.q_posterior(torch.tensor([[k]]), torch.tensor([[i]]), t)[0, 0].double()
                assert torch.allclose(got, expect, atol=1e-5), (t, i, k)


def test_schedules_endpoints_and_inverse():
    for name in ("linear", "cosine"):
        s = dd.get_schedule(name)
        u = torch.linspace(0, 1, 11)
        a = s.alpha(u)
        assert a[0] == 1 and a[-1] == 0 and (a.diff() < 0).all()
        assert torch.allclose(s.inverse(a), u, atol=1e-3)
        mid = torch.tensor([0.3])  # derivative vs finite differences
        fd = (s.alpha(mid + 1e-3) - s.alpha(mid - 1e-3)) / 2e-3
        assert torch.allclose(s.dalpha(mid), fd, atol=1e-3)


def test_bad_process_arguments():
    with pytest.raises(GenlabError, match="unknown discrete process"):
        dd.DiscreteProcess("gaussian", 5)
    with pytest.raises(GenlabError, match="unknown corruption schedule"):
        dd.DiscreteProcess("absorbing", 5, schedule="sqrt")
    p = make_process("absorbing", "linear")
    with pytest.raises(GenlabError, match="step t must lie"):
        p.q_sample_discrete(torch.zeros(2, 3, dtype=torch.long), 11)


# --------------------------------------------------------------------------- losses

def uniform_denoiser(D):
    return lambda x, u, y=None: torch.zeros(*x.shape, D)


def test_x0_loss_is_zero_at_t0_and_largest_at_T():
    # an uninformed denoiser: every masked token costs log D, so the summed x0 loss
    # is L (1 - a(u)) log D: exactly 0 with nothing masked, largest when all is masked
    p = make_process("absorbing", "cosine")
    x0 = torch.randint(0, p.D, (4000, 8), generator=torch.Generator().manual_seed(0))
    means = []
    for u in torch.linspace(0, 1, 6):
        _, aux = dd.masked_diffusion_loss(p, uniform_denoiser(p.D), x0, u=u.expand(len(x0)),
                                          generator=torch.Generator().manual_seed(1))
        summed = torch.where(aux["masked"], aux["nll"], torch.zeros_like(aux["nll"])).sum(1).mean()
        means.append(float(summed))
        ce = dd.x0_cross_entropy(p, aux["x_t"], x0, aux["nll"])
        if u == 0:
            assert float(ce) == 0.0
    assert means[0] == 0.0
    assert means[-1] == pytest.approx(8 * math.log(p.D), rel=1e-6)
    assert max(means) == means[-1] and all(b > a for a, b in zip(means, means[1:]))


def test_uninformed_model_elbo_is_uniform_code_length():
    # with uniform predictions the continuous-time bound is exactly L log D in expectation
    p = make_process("absorbing", "linear")
    x0 = torch.randint(0, p.D, (20000, 6), generator=torch.Generator().manual_seed(0))
    nelbo, _ = dd.masked_diffusion_loss(p, uniform_denoiser(p.D), x0, generator=torch.Generator().manual_seed(2))
    assert float(nelbo.mean()) == pytest.approx(6 * math.log(p.D), rel=0.02)


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_d3pm_bound_equals_masked_bound_for_absorbing(schedule):
    # the general KL form of the T-step bound reduces to the weighted cross-entropy
    p = make_process("absorbing", schedule, T=20)
    torch.manual_seed(0)
    net = torch.nn.Linear(1, p.D)  # any denoiser: logits from a position-dependent input
    den = lambda x, u, y=None: net(x.float()[..., None] + u[:, None, None])  # noqa: E731
    x0 = torch.randint(0, p.D, (64, 5))
    t = torch.randint(1, p.T + 1, (64,))
    a, _ = dd.d3pm_vlb_loss(p, den, x0, t=t, generator=torch.Generator().manual_seed(3))
    b, _ = dd.masked_diffusion_loss(p, den, x0, u=t.float() / p.T, num_steps=p.T,
                                    generator=torch.Generator().manual_seed(3))
    assert torch.allclose(a, b, rtol=1e-4, atol=1e-4)


# --------------------------------------------------------------------------- a tiny model that must learn

def toy_data(n=4096, seed=0):
    """Pairs (a, a, b, b) with a, b uniform over 4 tokens: 1 bit/token, the unigram needs 2."""
    g = torch.Generator().manual_seed(seed)
    a, b = torch.randint(0, 4, (2, n, 1), generator=g)
    x = torch.cat([a, a, b, b], 1)
    meta = dict(vocab_size=5, seq_len=4, data_vocab=4, mask_id=4, grid=(), alphabet="")
    return TensorDataset("toy", "tokens", {"x": x}, meta=meta)


@pytest.fixture(scope="module", params=["absorbing", "uniform"])
def toy_model(request):
    torch.manual_seed(0)
    data = toy_data()
    kw = dict(process=request.param, dim=32, depth=2, heads=2, mlp_ratio=2.0)
    if request.param == "uniform":
        kw.update(num_steps=50, ce_weight=0.1)
    model = DiscreteDiffusion(config_for_data(data, **kw))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(300):
        idx = torch.randint(0, len(data), (128,), generator=g)
        loss, logs = model.loss(data.batch(idx))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval(), data


def test_tiny_model_beats_unigram_and_samples_the_pattern(toy_model):
    model, data = toy_model
    test = toy_data(1000, seed=1).x
    unigram = UnigramModel(4).fit(data.x).bits_per_token(test)
    assert unigram == pytest.approx(2.0, abs=0.01)
    bits = float(model.nelbo(test, passes=4, generator=torch.Generator().manual_seed(0)).mean() / (4 * math.log(2)))
    # the true entropy is 1 bit/token; the bound must be close to it and far below the unigram's 2
    assert 0.95 < bits < 1.25 < unigram, f"{model.cfg.process}: {bits:.3f} bits/token vs unigram {unigram:.3f}"

    def pattern_rate(**kw):
        x = model.sample_tokens(1000, torch.Generator().manual_seed(0), **kw)
        return float(((x[:, 0] == x[:, 1]) & (x[:, 2] == x[:, 3])).float().mean())

    # ancestral steps reveal positions independently: tokens revealed in the same step
    # ignore each other, so quality must rise with the number of steps
    few, many = pattern_rate(steps=2), pattern_rate(steps=64)
    assert few < 0.6 and many > 0.9, (few, many)
    if model.process.absorbing:  # MaskGIT with one token per step is exact for this distribution
        assert pattern_rate(sampler="maskgit", steps=4) > 0.97


@pytest.mark.parametrize("sampler,steps", [("ancestral", 1), ("ancestral", 3), ("ancestral", 50),
                                           ("maskgit", 1), ("maskgit", 3), ("maskgit", 50)])
def test_samplers_never_leave_masks(toy_model, sampler, steps):
    model, _ = toy_model
    if sampler == "maskgit" and not model.process.absorbing:
        with pytest.raises(GenlabError, match="absorbing"):
            model.sample_tokens(4, sampler=sampler, steps=steps)
        return
    x = model.sample_tokens(300, torch.Generator().manual_seed(1), sampler=sampler, steps=steps, temperature=1.3)
    assert x.shape == (300, 4) and x.dtype == torch.long
    assert (x >= 0).all() and (x < model.cfg.D).all(), "a mask or special token survived sampling"


def test_maskgit_reveals_on_schedule(toy_model):
    model, _ = toy_model
    if not model.process.absorbing:
        pytest.skip("MaskGIT is for the mask process")
    _, traj = model.sample_tokens(10, torch.Generator().manual_seed(0), sampler="maskgit", steps=4, trajectory=True)
    masked = [int((x == model.cfg.mask).sum(1)[0]) for x in traj]
    assert masked[0] == 4 and masked[-1] == 0
    assert all(b < a for a, b in zip(masked, masked[1:])), masked  # at least one per step
    for prev, nxt in zip(traj, traj[1:]):                          # revealed tokens stay
        known = prev != model.cfg.mask
        assert (nxt[known] == prev[known]).all()


@pytest.mark.parametrize("sampler", ["ancestral", "maskgit"])
def test_infilling_keeps_fixed_tokens_and_completes_them(toy_model, sampler):
    model, _ = toy_model
    if sampler == "maskgit" and not model.process.absorbing:
        pytest.skip("MaskGIT is for the mask process")
    n = 200
    fixed = torch.tensor([[2, 0, 0, 3]]).expand(n, -1)
    fixed_mask = torch.tensor([[True, False, False, True]]).expand(n, -1)
    x = model.sample_tokens(n, torch.Generator().manual_seed(2), sampler=sampler, steps=32,
                            fixed=fixed, fixed_mask=fixed_mask)
    assert (x[:, 0] == 2).all() and (x[:, 3] == 3).all()
    # the model learned the pattern: the free positions copy their partner (chance: 1/16).
    # Uniform diffusion cannot know that the given tokens are clean (any token may be
    # noise), so it infills less reliably than the mask process, where they are.
    rate = float(((x[:, 1] == 2) & (x[:, 2] == 3)).float().mean())
    assert rate > (0.9 if model.process.absorbing else 0.6), rate


def test_bad_inputs_are_rejected(toy_model):
    model, _ = toy_model
    with pytest.raises(GenlabError, match=r"token ids must lie in \[0, 5\)"):
        model.nelbo(torch.tensor([[0, 1, 2, 7]]))
    with pytest.raises(GenlabError, match="token ids must lie"):
        model.nelbo(torch.tensor([[0, -1, 2, 3]]))
    with pytest.raises(GenlabError, match="longer than the model's seq_len 4"):
        model.nelbo(torch.zeros(2, 6, dtype=torch.long))
    with pytest.raises(GenlabError, match="integer token ids"):
        model.nelbo(torch.zeros(2, 4))
    with pytest.raises(GenlabError, match="fixed tokens must be data tokens"):
        model.sample_tokens(2, fixed=torch.full((2, 4), 4), fixed_mask=torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(GenlabError, match="fixed tokens and mask must have shape"):
        model.sample_tokens(2, fixed=torch.zeros(2, 3, dtype=torch.long), fixed_mask=torch.ones(2, 3, dtype=torch.bool))
    with pytest.raises(GenlabError, match="unconditional"):
        model.sample_tokens(2, y=torch.tensor([0, 1]))
    for bad in (0.0, float("nan"), float("inf")):
        with pytest.raises(GenlabError, match="temperature must be positive"):
            model.sample_tokens(2, temperature=bad)
    with pytest.raises(GenlabError, match="needs a class-conditional checkpoint"):
        model.sample_tokens(2, guidance=3.0)
    with pytest.raises(GenlabError, match="unknown sampler"):
        model.sample_tokens(2, sampler="beam")
    with pytest.raises(GenlabError, match="at least 1"):
        model.sample_tokens(2, steps=-1)
    # the first training batch is checked too
    fresh = DiscreteDiffusion(model.cfg)
    with pytest.raises(GenlabError, match="token ids must lie"):
        fresh.loss({"x": torch.tensor([[0, 1, 2, 9]])})
    with pytest.raises(GenlabError, match="not trained on words"):
        model.sample_text(2)


# --------------------------------------------------------------------------- words, references, novelty

@pytest.fixture(scope="module")
def words():
    from genlab.data import load_dataset

    return load_dataset("words", split="train"), load_dataset("words", split="test")


def test_word_dataset_split_and_vocabulary(words):
    from genlab.data.words import decode_words, encode_words

    train, test = words
    m = train.meta
    assert (m["pad_id"], m["mask_id"], m["bos_id"], m["vocab_size"], m["data_vocab"]) == (0, 28, 27, 29, 27)
    assert train.x.shape[1] == test.x.shape[1] == 10 and train.kind == "tokens"
    assert len(train) + len(test) == 52271 and 0.09 < len(test) / (len(train) + len(test)) < 0.11
    assert not set(train.captions) & set(test.captions)
    assert decode_words(test.x[:50], m["alphabet"]) == test.captions[:50]
    assert int(train.x.max()) < m["data_vocab"]
    x = encode_words(["cat", "zebra"], m["alphabet"], 10)
    assert x[0].tolist() == [3, 1, 20] + [0] * 7
    assert decode_words(torch.tensor([[3, 0, 1] + [0] * 7, [28] * 10]), m["alphabet"]) == [None, None]
    with pytest.raises(GenlabError, match="more than seq_len"):
        encode_words(["elephantine"], m["alphabet"], 10)
    with pytest.raises(GenlabError, match="outside the alphabet"):
        encode_words(["café"], m["alphabet"], 10)


def test_ngram_is_a_distribution_and_learns_a_markov_chain():
    g = torch.Generator().manual_seed(0)
    # a 2-state-memory chain over 3 tokens: x_l = x_{l-1} with p 0.9, else uniform among others
    n, L = 3000, 8
    x = torch.zeros(n, L, dtype=torch.long)
    x[:, 0] = torch.randint(0, 3, (n,), generator=g)
    for l in range(1, L):
        stay = torch.rand(n, generator=g) < 0.9
        other = (x[:, l - 1] + torch.randint(1, 3, (n,), generator=g)) % 3
        x[:, l] = torch.where(stay, x[:, l - 1], other)
    bigram = NGramModel(2, 3, bos_id=3).fit(x[:2500])
    for ctx in [(3,), (0,), (2,), (1,)]:
        assert sum(bigram.prob(ctx, w) for w in range(3)) == pytest.approx(1.0, abs=1e-12)
    tri = NGramModel(3, 3, bos_id=3).fit(x[:2500])
    for ctx in [(3, 3), (0, 1), (2, 2), (1, 0)]:
        assert sum(tri.prob(ctx, w) for w in range(3)) == pytest.approx(1.0, abs=1e-12)
    # true entropy rate: (log2 3 + 7 H(0.9, 0.05, 0.05)) / 8 bits per token
    h = -(0.9 * math.log2(0.9) + 2 * 0.05 * math.log2(0.05))
    true = (math.log2(3) + 7 * h) / 8
    test = x[2500:]
    assert bigram.bits_per_token(test) == pytest.approx(true, abs=0.05)
    assert UnigramModel(3).fit(x[:2500]).bits_per_token(test) == pytest.approx(math.log2(3), abs=0.02)
    with pytest.raises(GenlabError, match="token ids must lie"):
        bigram.log_prob(torch.tensor([[0, 5]]))
    assert bits_per_token(torch.tensor([-math.log(2) * 4]), [[0, 0]]) == pytest.approx(2.0)


def test_word_novelty_fractions():
    train, dictionary = {"cat", "dog"}, {"cat", "dog", "cot", "cut"}
    r = word_novelty(["cat", "cot", "cxt", None, "cat"], train, dictionary)
    assert r == dict(memorised=0.4, novel=0.2, non_word=0.4, malformed=0.2, unique=0.6)


def tiny_word_model(train, **kw):
    torch.manual_seed(0)
    return DiscreteDiffusion(config_for_data(train, dim=32, depth=1, heads=2, **kw)).eval()


def test_word_model_text_infill_and_render(words, tmp_path):
    train, _ = words
    model = tiny_word_model(train)
    x = model.sample(5, torch.Generator().manual_seed(0))
    assert x.dtype == torch.long and x.shape == (5, 10)  # words: sample() returns tokens
    assert len(model.sample_text(3)) == 3
    out = model.infill("c__t", 20, torch.Generator().manual_seed(0))
    # even untrained: the '_' of a pattern become letters, never padding, so every result is c??t
    assert all(len(w) == 4 and w[0] == "c" and w[3] == "t" and "." not in w for w in out), out
    out = model.infill("pre*", 6, torch.Generator().manual_seed(0))
    assert all(w.startswith("pre") for w in out), out
    with pytest.raises(GenlabError, match="longer than the model's seq_len"):
        model.infill("abcdefghijkl")
    with pytest.raises(GenlabError, match="outside the alphabet"):
        model.infill("c3_t")
    with pytest.raises(GenlabError, match="the pattern is empty"):
        model.infill("")
    paths = save_samples(model.present(x), tmp_path / "samples.png")
    assert paths[0].name == "samples.txt" and len(paths[0].read_text().splitlines()) == 5


def test_word_model_trains_with_the_loop_and_saves_artifacts(words, tmp_path, capsys):
    from genlab.train import TrainConfig, train as train_loop
    from genlab.train.checkpoint import load_checkpoint

    train, test = words
    model = tiny_word_model(train, schedule="cosine")
    res = train_loop(model, train.subset(slice(0, 2048)), TrainConfig(epochs=1, batch_size=256, max_steps=6,
                                                                       progress=False, device="cpu"), tmp_path / "run")
    m2, ema, _, _ = load_checkpoint(tmp_path / "run")
    assert isinstance(m2, DiscreteDiffusion) and tuple(m2.cfg.grid) == () and m2.cfg.alphabet == train.meta["alphabet"]
    for a, b in zip(res.model.state_dict().values(), m2.state_dict().values()):
        assert torch.equal(a.cpu(), b)
    metrics = discrete_metrics(m2, test, n=200, passes=1, num_samples=50, steps=(2,), orders=(3,))
    for key in ("bits_per_token", "unigram_bits_per_token", "ngram3_bits_per_token", "ancestral_s2_novel",
                "maskgit_s2_memorised"):
        assert key in metrics and math.isfinite(metrics[key])
    assert 3.0 < metrics["unigram_bits_per_token"] < 4.5
    names = {p.name for p in save_artifacts(m2, test, tmp_path / "art")}
    assert {"forward_process.txt", "forward_process.png", "reverse_process_ancestral.txt", "reverse_process_maskgit.png",
            "samples.txt", "infill.txt", "quality_vs_steps.png"} <= names
    table = (tmp_path / "art" / "forward_process.txt").read_text()
    assert "q(x_u = MASK)" in table and "a(u) = 1.000" in table and "a(u) = 0.000" in table
    reverse = (tmp_path / "art" / "reverse_process_ancestral.txt").read_text().splitlines()
    assert reverse[1].endswith("_" * 10) and "_" not in reverse[-1]  # all masks -> none
    # the CLI: options a word checkpoint cannot use are one clear line, not silently dropped
    for argv, message in [(["eval", str(tmp_path / "run"), "--steps", "4"], "--steps: not for discrete checkpoints"),
                          (["sample", "--checkpoint", str(tmp_path / "run"), "--image-size", "28"], "makes no images"),
                          (["sample", "--checkpoint", str(tmp_path / "run"), "--gif"], "visualize discrete-reverse")]:
        assert main(argv) == 2, argv
        assert message in capsys.readouterr().err, argv


# --------------------------------------------------------------------------- image tokens

def tiny_images(n=64, c=1, size=6):
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n, c, size, size), generator=g, dtype=torch.uint8)
    y = torch.arange(n) % 3
    return TensorDataset("toyimg", "image", {"x": x, "y": y}, classes=["a", "b", "c"])


@pytest.mark.parametrize("levels", [2, 4, 256])
def test_quantised_images_round_trip(levels):
    from genlab.data.words import quantize_images, tokens_to_images

    imgs = tiny_images()
    tok = quantize_images(imgs, levels)
    assert tok.kind == "tokens" and tok.x.shape == (64, 36) and tok.meta["grid"] == (1, 6, 6)
    assert int(tok.x.max()) < levels and tok.meta["mask_id"] == levels and torch.equal(tok.y, imgs.y)
    back = tokens_to_images(tok.x, (1, 6, 6), levels)
    err = (back - (imgs.x.float() / 127.5 - 1)).abs().max()
    assert err <= 1.0 / (levels - 1) + 1e-6  # at most half a level step (in [-1, 1] units: 2 / (2 (k-1)))
    if levels == 2:
        assert torch.equal(tok.x.reshape(64, 1, 6, 6), (imgs.x >= 128).long())
    masked = tok.x.clone()
    masked[:, 0] = levels
    rgb = tokens_to_images(masked, (1, 6, 6), levels, mask_id=levels)
    assert rgb.shape == (64, 3, 6, 6) and (rgb[:, :, 0, 0] == torch.tensor([1.0, -1.0, -1.0])).all()
    with pytest.raises(GenlabError, match="needs an image dataset"):
        quantize_images(tok, 2)
    with pytest.raises(GenlabError, match="levels must be between"):
        quantize_images(imgs, 1)


def test_image_token_model_is_conditional_and_returns_images(tmp_path):
    from genlab.data.words import quantize_images

    data = quantize_images(tiny_images(), 2)
    model = DiscreteDiffusion(config_for_data(data, conditional=True, dim=32, depth=1, heads=2, sample_steps=4))
    loss, logs = model.loss(data.batch(torch.arange(16)))
    assert torch.isfinite(loss) and set(logs) == {"nelbo_bits", "ce"}
    model.eval()
    img = model.sample(6, torch.Generator().manual_seed(0), y=torch.tensor([0, 1, 2, 0, 1, 2]))
    assert img.shape == (6, 1, 6, 6) and img.dtype == torch.float32 and set(img.unique().tolist()) <= {-1.0, 1.0}
    with pytest.raises(GenlabError, match="class index out of range"):
        model.sample(2, y=torch.tensor([0, 3]))
    assert "bits_per_token" in discrete_metrics(model, data, n=32, passes=1)
    names = {p.name for p in save_artifacts(model, data, tmp_path)}
    assert {"forward_process.png", "forward_process.txt", "reverse_process_ancestral.png",
            "reverse_process_maskgit.gif", "samples.png"} <= names
    assert save_samples(model.present(img), tmp_path / "s.png")[0].name == "s.png"


def test_config_checks():
    with pytest.raises(GenlabError, match="unknown objective"):
        DiscreteDiffusion(DiscreteConfig(objective="mse"))
    with pytest.raises(GenlabError, match="^sampler maskgit needs the absorbing process"):
        DiscreteDiffusion(DiscreteConfig(process="uniform", sampler="maskgit"))
    with pytest.raises(GenlabError, match="image grid"):
        DiscreteDiffusion(DiscreteConfig(grid=(1, 4, 4), seq_len=10))
    with pytest.raises(GenlabError, match="token datasets"):
        config_for_data(tiny_images())
    with pytest.raises(GenlabError, match="unknown discrete model option"):
        config_for_data(toy_data(8), width=3)


def test_visualize_forward_cli_writes_the_probability_table(tmp_path, capsys):
    out = tmp_path / "fw"
    assert main(["visualize", "discrete-forward", "--word", "cat", "--times", "0,0.5,1", "--process", "uniform",
                 "--out", str(out)]) == 0
    text = (tmp_path / "fw.txt").read_text()
    assert "x_0 = cat......." in text and "uniform diffusion" in text and (tmp_path / "fw.png").exists()
    # u = 0.5 on the linear schedule: keep 0.5 + 0.5/27, any other token 0.5/27
    assert f"{0.5 + 0.5 / 27:.3f}" in text and f"{0.5 / 27:.3f}" in text
    assert main(["visualize", "discrete-forward", "--times", "0,2", "--out", str(out)]) != 0
    assert "--times must be numbers in [0, 1]" in capsys.readouterr().err
    # a file where the output folder must go: one line, no traceback
    assert main(["visualize", "discrete-forward", "--out", str(tmp_path / "fw.txt" / "x")]) == 2
    assert "cannot create the output folder" in capsys.readouterr().err

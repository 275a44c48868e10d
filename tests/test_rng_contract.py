"""The generator/device contract: a CPU generator must drive draws for a model on any device.

torch raises "Expected a 'cuda' device type for generator but found 'cpu'" when a draw
names both a CPU generator and a CUDA device; genlab seeds on the CPU and samples on
the model's device, so every such draw goes through genlab.rng. No GPU is needed to
check it: (1) genlab.rng draws onto the "meta" device (no storage, any device but the
generator's) and gives the numbers of a plain CPU draw; (2) a scan of the source finds
no call of torch's samplers that names a generator and a device (outside rng.py).
"""

import ast
from pathlib import Path

import pytest
import torch

from genlab import rng

SRC = Path(__file__).resolve().parents[1] / "src" / "genlab"
SAMPLERS = {"randn", "rand", "randint", "randperm", "randn_like", "rand_like", "randint_like",
            "normal", "multinomial", "bernoulli", "poisson"}


@pytest.fixture
def strict_generators(monkeypatch):
    """torch's samplers as a CUDA build checks them: the generator must live on the draw's device.

    (A CPU-only torch does not check a CPU generator against device="meta"; a CUDA one raises
    for a CPU generator and device="cuda" with this message.)
    """
    for name in ("randn", "rand", "randint", "randperm"):
        def strict(*args, _real=getattr(torch, name), **kw):
            g, d = kw.get("generator"), kw.get("device")
            if g is not None and d is not None and torch.device(d).type != g.device.type:
                raise RuntimeError(f"Expected a '{torch.device(d).type}' device type for generator but found "
                                   f"'{g.device.type}'")
            return _real(*args, **kw)
        monkeypatch.setattr(torch, name, strict)


def draws(fn, *args, seed=0, device="cpu", **kw):
    return fn(*args, generator=torch.Generator().manual_seed(seed), device=device, **kw)


@pytest.mark.parametrize("fn, args", [(rng.randn, ((3, 4),)), (rng.rand, ((3, 4),)),
                                      (rng.randint, (0, 7, (3, 4))), (rng.randperm, (9,))])
def test_a_cpu_generator_draws_onto_another_device(strict_generators, fn, args):
    on_meta = draws(fn, *args, device="meta")
    assert on_meta.device.type == "meta"
    cpu = draws(fn, *args)
    assert on_meta.shape == cpu.shape and on_meta.dtype == cpu.dtype


def test_plain_torch_with_both_fails_where_rng_works(strict_generators):
    with pytest.raises(RuntimeError, match="Expected a 'meta' device type for generator but found 'cpu'"):
        torch.randn(3, generator=torch.Generator().manual_seed(0), device="meta")
    assert rng.randn((3,), generator=torch.Generator().manual_seed(0), device="meta").device.type == "meta"


def test_rng_gives_the_numbers_of_a_plain_cpu_draw():
    g = lambda: torch.Generator().manual_seed(5)  # noqa: E731
    assert torch.equal(rng.randn((2, 3), generator=g()), torch.randn(2, 3, generator=g()))
    assert torch.equal(rng.rand((4,), generator=g()), torch.rand(4, generator=g()))
    assert torch.equal(rng.randint(0, 10, (6,), generator=g()), torch.randint(0, 10, (6,), generator=g()))
    assert torch.equal(rng.randperm(8, generator=g()), torch.randperm(8, generator=g()))
    # the same seed gives the same numbers whatever the target device
    assert torch.equal(rng.randn((5,), generator=g(), device="cpu", dtype=torch.float64),
                       torch.randn(5, generator=g(), dtype=torch.float64))


def test_rng_without_a_generator_draws_on_the_target_device():
    x = rng.randn((2, 2), device="meta")
    assert x.device.type == "meta" and x.shape == (2, 2)
    torch.manual_seed(3)
    a = rng.rand((3,))
    torch.manual_seed(3)
    assert torch.equal(a, torch.rand(3))


def offending_calls(source: str, filename: str = "<source>") -> list[str]:
    """'file:line name(...)' for every torch sampler call that passes both generator= and device=.

    Calls of genlab.rng (`rng.randn(...)`, or a name imported from it) are the fix, not the bug.
    """
    tree = ast.parse(source, filename)
    from_rng = {a.asname or a.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                and (node.module or "").split(".")[-1] == "rng" for a in node.names}
    out = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Attribute):
            name, via_rng = func.attr, isinstance(func.value, ast.Name) and func.value.id == "rng"
        elif isinstance(func, ast.Name):
            name, via_rng = func.id, func.id in from_rng
        else:
            continue
        if name in SAMPLERS and not via_rng and {"generator", "device"} <= {k.arg for k in node.keywords}:
            out.append((node.lineno, f"{filename}:{node.lineno} {name}(..., generator=..., device=...)"))
    return [hit for _, hit in sorted(out)]


def test_the_scan_finds_the_bug_it_is_for():
    bad = ("x = torch.randn(shape, generator=generator, device=device)\n"
           "y = torch.rand(3, generator=g,\n               device=g.device).to(d)\n"
           "z = torch.multinomial(p, 1, generator=g, device=d)\n")
    assert offending_calls(bad) == ["<source>:1 randn(..., generator=..., device=...)",
                                    "<source>:2 rand(..., generator=..., device=...)",
                                    "<source>:4 multinomial(..., generator=..., device=...)"]
    good = ("from genlab.rng import randint\nfrom genlab import rng\n"
            "x = rng.randn(shape, generator=generator, device=device)\n"
            "i = randint(0, 3, (2,), generator=g, device=d)\n"
            "z = torch.randn(3, device=d)\nw = torch.randn(3, generator=g)\n")
    assert offending_calls(good) == []


def test_no_draw_names_a_generator_and_a_device_outside_rng():
    offenders = [hit for path in sorted(SRC.rglob("*.py")) if path != SRC / "rng.py"
                 for hit in offending_calls(path.read_text(), str(path.relative_to(SRC.parent)))]
    assert not offenders, ("draws that name both a generator and a device fail for a CPU generator and a CUDA "
                           "model; use genlab.rng.randn/rand/randint/randperm instead:\n" + "\n".join(offenders))

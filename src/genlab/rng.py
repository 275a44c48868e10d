"""Random draws that follow a torch.Generator wherever the tensors live.

torch insists that a generator and the tensor it fills are on the same device:
`torch.randn(shape, generator=cpu_gen, device="cuda")` raises. genlab seeds on
the CPU (so a seed gives the same images on every machine) and moves the draw
to the model's device. Every draw that takes a generator goes through here;
`tests/test_rng_contract.py` checks that no other code calls torch's samplers
with both a generator and a device.
"""

from __future__ import annotations

import torch


def _gen_device(generator: torch.Generator | None, device) -> torch.device:
    return generator.device if generator is not None else torch.device(device)


def randn(shape, generator: torch.Generator | None = None, device="cpu", dtype=None) -> torch.Tensor:
    """N(0, I) of `shape` drawn on the generator's device, returned on `device`."""
    return torch.randn(tuple(shape), generator=generator, device=_gen_device(generator, device),
                       dtype=dtype).to(device)


def rand(shape, generator: torch.Generator | None = None, device="cpu", dtype=None) -> torch.Tensor:
    """U[0, 1) of `shape`, drawn like `randn`."""
    return torch.rand(tuple(shape), generator=generator, device=_gen_device(generator, device),
                      dtype=dtype).to(device)


def randint(low: int, high: int, shape, generator: torch.Generator | None = None, device="cpu") -> torch.Tensor:
    """Integers in [low, high) of `shape`, drawn like `randn`."""
    return torch.randint(low, high, tuple(shape), generator=generator,
                         device=_gen_device(generator, device)).to(device)


def randperm(n: int, generator: torch.Generator | None = None, device="cpu") -> torch.Tensor:
    """A random permutation of 0..n-1, drawn like `randn`."""
    return torch.randperm(n, generator=generator, device=_gen_device(generator, device)).to(device)

"""Seeded random draws that give the same numbers on every device.

Every seeded draw in the package is made on the CPU from a CPU generator and then moved to
the device of the tensors it is used with. A seed therefore means the same forget set, the
same particles and the same minibatches on a GPU (``torch.set_default_device("cuda")``, as
``pyro-unlearn --device cuda`` does) as on the CPU, and a CPU generator never meets a CUDA
draw, which torch refuses.
"""

from __future__ import annotations

import torch

CPU = torch.device("cpu")


def generator(seed: int) -> torch.Generator:
    """A CPU generator seeded with ``seed``."""
    return torch.Generator(device=CPU).manual_seed(seed)


def permutation(n: int, generator: torch.Generator) -> torch.Tensor:
    """A random permutation of ``range(n)`` (CPU indices index tensors on any device)."""
    return torch.randperm(n, generator=generator, device=CPU)


def integers(low: int, high: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """``size`` integers drawn uniformly from ``[low, high)``, on the CPU."""
    return torch.randint(low, high, (size,), generator=generator, device=CPU)


def normal(shape: tuple[int, ...], generator: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    """Standard normal draws with the dtype and device of ``like``."""
    draws = torch.randn(shape, generator=generator, dtype=like.dtype, device=CPU)
    return draws.to(like.device)


def uniform(shape: tuple[int, ...], generator: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    """Uniform draws on [0, 1) with the dtype and device of ``like``."""
    draws = torch.rand(shape, generator=generator, dtype=like.dtype, device=CPU)
    return draws.to(like.device)


def multinomial(probs: torch.Tensor, num: int, generator: torch.Generator) -> torch.Tensor:
    """``num`` indices drawn with replacement in proportion to ``probs``, as CPU indices."""
    return torch.multinomial(probs.detach().to(CPU), num, replacement=True, generator=generator)

"""What the evaluator's modules share: its constants, the records of a model's sites and plate
chunks, and small helpers over draws (``{site: (S, *shape)}``) and traces."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch.overrides import TorchFunctionMode

from .messengers import ModelEvaluationError

PATHS = ("vectorized", "vmap", "loop")
PARTICLE_PLATE = "_unlearn_particles"
CHUNK_SIZE = 2048  # most draws per vectorized or vmapped run
MIN_CHUNK_SIZE = 32  # fewest: below it the per-run overhead of Pyro's handlers dominates
BYTES_PER_RUN = 2**24  # 16 MB: a run's largest tensor, to stay in a CPU's cache


def draws_per_run(largest_tensor_bytes: int) -> int:
    """Draws per vectorized or vmapped run when the caller does not fix it.

    ``largest_tensor_bytes`` is the largest tensor a run of the model makes at one draw (the
    model's intermediates included: ``X * w`` before its sum, a network's activations). A run
    of ``B`` draws makes it ``B`` times larger; keeping that within :data:`BYTES_PER_RUN`
    keeps it in a CPU's cache, and fewer runs of more draws pay Pyro's per-run overhead less.
    Measured on breast_cancer (569 rows, 31 weights, 10,000 draws), the broadcasting
    ``(X * w).sum(-1)`` ran twice as fast in blocks of 118 as of 2048, and ``X @ w`` (whose
    largest tensor is the logits) 1.4 times faster in blocks of 2048 than of 118.

    >>> draws_per_run(569 * 31 * 8), draws_per_run(569 * 8), draws_per_run(10**8)
    (118, 2048, 32)
    """
    fit = BYTES_PER_RUN // max(largest_tensor_bytes, 1)
    return max(MIN_CHUNK_SIZE, min(CHUNK_SIZE, fit))


class LargestTensor(TorchFunctionMode):
    """Records the bytes of the largest tensor any torch function returns inside it."""

    def __init__(self) -> None:
        super().__init__()
        self.bytes = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for value in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(value, torch.Tensor):
                self.bytes = max(self.bytes, value.numel() * value.element_size())
        return out


@dataclass(frozen=True)
class SiteInfo:
    """One sample site as a single run of the model shows it."""

    name: str
    is_observed: bool
    batch_shape: torch.Size  # shape of its log probability in one run
    plates: tuple[str, ...]
    plate_dims: tuple[int, ...]
    enumerated: bool = False
    event_shape: torch.Size = torch.Size()
    support: object = None


@dataclass(frozen=True)
class _Chunk:
    """One run's plate indexing: ``indices`` of plate ``plate`` (``num_valid`` real ones)."""

    plate: str
    indices: torch.Tensor
    num_valid: int


def _check_observed_shape(site) -> None:
    """Observed data must not broadcast its distribution to a larger shape (``y`` of shape
    ``(N, 1)`` against a distribution of shape ``(N,)`` gives an ``(N, N)`` log-likelihood)."""
    value, fn = site["value"], site["fn"]
    shape = fn.batch_shape + fn.event_shape
    try:
        joint = torch.broadcast_shapes(torch.as_tensor(value).shape, shape)
    except RuntimeError:
        joint = None
    if joint != shape:
        raise ModelEvaluationError(
            f"observed site {site['name']!r} has data of shape {tuple(torch.as_tensor(value).shape)} "
            f"but its distribution has shape {tuple(shape)}"
            + (f": they broadcast to {tuple(joint)}" if joint is not None else "")
            + f"; pass the observations with the distribution's shape {tuple(shape)} "
            "(e.g. y.squeeze(-1))"
        )


def _expand_to_batch(value: torch.Tensor, fn) -> torch.Tensor:
    """A statistic of ``fn`` (batch + event dims) expanded to ``fn``'s full shape."""
    return torch.as_tensor(value).expand(fn.batch_shape + fn.event_shape)


def _chunked(plate: str, indices: torch.Tensor, size: int | None) -> list[_Chunk]:
    indices = torch.as_tensor(indices).long()
    if size is None:
        return [_Chunk(plate, indices, len(indices))]
    chunks = []
    for start in range(0, len(indices), size):
        part = indices[start : start + size]
        valid = len(part)
        if valid < size:  # pad with the last index, masked out
            part = torch.cat([part, part[-1:].expand(size - valid)])
        chunks.append(_Chunk(plate, part, valid))
    return chunks


def _num_draws(values) -> int:
    return len(next(iter(values.values())))


def _dtype(values):
    return next(iter(values.values())).dtype


def _device(values):
    return next(iter(values.values())).device


def _disagreement(candidate, reference) -> str | None:
    for name, ref in reference.items():
        got = candidate.get(name)
        if got is None or got.shape != ref.shape:
            return f"site {name!r}: shape {None if got is None else tuple(got.shape)} vs {tuple(ref.shape)}"
        tol = 1e-4 if ref.dtype in (torch.float32, torch.float16, torch.bfloat16) else 1e-7
        scale = 1.0 + float(ref.abs().max()) if ref.numel() else 1.0
        if not torch.allclose(got, ref, rtol=tol, atol=tol * scale, equal_nan=True):
            return f"site {name!r}: values differ from a plain run by {float((got - ref).abs().max()):.3g}"
    return None


def as_values(layout: Sequence, z: torch.Tensor) -> dict[str, torch.Tensor]:
    """Flat unconstrained rows ``z`` (``(S, d)``) -> constrained site values ``{site: (S, *shape)}``."""
    return {site.name: site.constrain(z[..., site.slice]) for site in layout}

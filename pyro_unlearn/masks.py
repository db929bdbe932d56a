"""Forget masks: a boolean mask over a plate, or integer indices into it (or a set of ids).

:func:`as_index_tensor` is the one place a mask is read and checked; the handlers, the ledger,
the evaluator, the methods and the checks all go through it.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

MaskLike = torch.Tensor | Iterable[int] | Iterable[bool]


def as_index_tensor(
    mask: MaskLike, size: int | None = None, allow_empty: bool = False
) -> torch.Tensor:
    """Turn a boolean mask or an index set into a sorted tensor of unique indices.

    Raises a ``ValueError`` naming the problem for an empty set, indices out of
    range, repeated indices, or a boolean mask of the wrong length.

    >>> as_index_tensor(torch.tensor([True, False, True]), 3)
    tensor([0, 2])
    >>> as_index_tensor([4, 1], 5)
    tensor([1, 4])
    """
    if isinstance(mask, set | frozenset):
        mask = sorted(mask)  # a set of ids
    try:
        mask = torch.as_tensor(mask)
    except (TypeError, ValueError, RuntimeError) as error:
        raise ValueError(
            f"forget mask must be a bool tensor or integer indices, got {type(mask).__name__}"
        ) from error
    if mask.numel() == 0:
        mask = mask.long()  # an empty list arrives as a float tensor
    if mask.dim() != 1:
        raise ValueError(f"forget mask must be one-dimensional, got shape {tuple(mask.shape)}")
    if mask.dtype == torch.bool:
        if size is not None and mask.numel() != size:
            raise ValueError(f"forget mask has length {mask.numel()} but the plate has size {size}")
        index = mask.nonzero().reshape(-1)
    elif mask.dtype.is_floating_point or mask.dtype.is_complex:
        raise ValueError(
            f"forget mask must be a bool tensor or integer indices, got dtype {mask.dtype}"
        )
    else:
        index = mask.long()
        if index.numel() and index.min() < 0:
            raise ValueError(f"forget index {int(index.min())} is negative")
        if size is not None and index.numel() and index.max() >= size:
            raise ValueError(
                f"forget index {int(index.max())} is out of range for a plate of size {size}"
            )
        unique, counts = index.unique(return_counts=True)
        if (counts > 1).any():
            repeated = unique[counts > 1].tolist()
            if set(unique.tolist()) <= {0, 1}:
                raise ValueError(
                    f"forget mask of integers 0/1 (length {index.numel()}): integers are read "
                    "as indices; pass a boolean mask (mask.bool()) to select elements"
                )
            raise ValueError(f"forget indices are repeated: {repeated[:10]}")
        index = unique
    if index.numel() == 0 and not allow_empty:
        raise ValueError("empty forget set: the mask selects no element to forget")
    return index.sort().values

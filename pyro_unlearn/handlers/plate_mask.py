"""Shared machinery of :func:`forget` and :func:`retain`: selecting plate elements.

Both handlers take a *forget mask* over the full size of a named plate: a boolean
tensor of that length, or a tensor of integer indices into it. When the plate is
subsampled, the batch positions are mapped back to global indices through the
plate's own subsample site, so the same mask works for full-batch and mini-batch
runs of the model.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from pyro.poutine.enum_messenger import EnumMessenger
from pyro.poutine.messenger import Messenger
from pyro.poutine.runtime import _PYRO_STACK
from pyro.poutine.subsample_messenger import _Subsample

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
    mask = torch.as_tensor(mask)
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
            raise ValueError(f"forget indices are repeated: {repeated[:10]}")
        index = unique
    if index.numel() == 0 and not allow_empty:
        raise ValueError("empty forget set: the mask selects no element to forget")
    return index.sort().values


class PlateMaskMessenger(Messenger):
    """Base class: find the elements of plate ``plate`` selected by ``mask``.

    Subclasses implement :meth:`_process_observed`, called for every observed
    sample site, and use :meth:`_selected` to get a boolean tensor over the
    current batch of the plate, shaped to broadcast against the site.
    """

    allow_empty = False  # an empty forget set is a caller's bug, except when retaining

    def __init__(self, mask: MaskLike | None, plate: str | None) -> None:
        if (mask is None) != (plate is None):
            raise ValueError(
                "mask and plate go together: pass mask=<bool or index tensor> and "
                "plate=<name of the data plate>, or neither"
            )
        super().__init__()
        self.plate = plate
        self._index = None if mask is None else as_index_tensor(mask, allow_empty=self.allow_empty)
        self._raw_mask = None if mask is None else torch.as_tensor(mask)
        self._full_mask: torch.Tensor | None = None
        self._batch_index: torch.Tensor | None = None

    def __enter__(self):
        self._batch_index = None
        return super().__enter__()

    def _full_size_mask(self, full_size: int) -> torch.Tensor:
        if self._full_mask is None or self._full_mask.numel() != full_size:
            index = as_index_tensor(self._raw_mask, full_size, self.allow_empty)
            full = torch.zeros(full_size, dtype=torch.bool, device=index.device)
            full[index] = True
            self._full_mask = full
        return self._full_mask

    def _selected(self, msg) -> torch.Tensor:
        """Boolean tensor over the plate's current batch, at the plate's dim."""
        frame = next((f for f in msg["cond_indep_stack"] if f.name == self.plate), None)
        if frame is None:
            plates = [f.name for f in msg["cond_indep_stack"]] or "none"
            raise ValueError(
                f"observed site {msg['name']!r} is not inside plate {self.plate!r} "
                f"(its plates: {plates}); name the data plate in plate=..., or restrict "
                "the handler to the sites inside it with sites=[...]"
            )
        if frame.dim is None:
            raise ValueError(
                f"plate {self.plate!r} is sequential; a forget mask needs a vectorized plate "
                "(use `with pyro.plate(...)` rather than `for i in pyro.plate(...)`)"
            )
        full_size = frame.full_size or frame.size
        full = self._full_size_mask(full_size)
        if self._batch_index is not None and frame.size != full_size:
            selected = full[self._batch_index.to(full.device)]
        else:
            selected = full
        return selected.reshape((-1,) + (1,) * (-1 - frame.dim))

    def _postprocess_message(self, msg) -> None:
        # The plate's subsample indices come through its own sample site.
        if (
            self.plate is not None
            and msg["type"] == "sample"
            and msg["name"] == self.plate
            and isinstance(msg["fn"], _Subsample)
        ):
            self._batch_index = msg["value"]


def under_enumeration() -> bool:
    """Whether the current model run is enumerated (as under ``TraceEnum_ELBO``)."""
    return any(isinstance(m, EnumMessenger) for m in _PYRO_STACK)

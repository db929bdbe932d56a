"""Shared machinery of :func:`forget` and :func:`retain`: selecting plate elements.

Both handlers take a *forget mask* over the full size of a named plate: a boolean
tensor of that length, or a tensor of integer indices into it. When the plate is
subsampled, the batch positions are mapped back to global indices through the
plate's own subsample site, so the same mask works for full-batch and mini-batch
runs of the model.
"""

from __future__ import annotations

import torch
from pyro.poutine.enum_messenger import EnumMessenger
from pyro.poutine.messenger import Messenger
from pyro.poutine.runtime import _PYRO_STACK
from pyro.poutine.subsample_messenger import _Subsample

from ..masks import MaskLike, as_index_tensor


class PlateMaskMessenger(Messenger):
    """Base class: find the elements of plate ``plate`` selected by ``mask``.

    ``plate`` names the data plate, or, for observed sites outside any plate (the observed
    vector of eight schools as Pyro's examples write it), is a negative int: the batch
    dimension of the observed sites that indexes the data points. Subclasses handle observed
    sites through :meth:`_selected`, a boolean tensor over the current batch of the plate
    shaped to broadcast against the site, or ``None`` for a site outside the plate (left
    untouched); a run in which no observed site lies inside the plate is an error.
    """

    allow_empty = False  # an empty forget set is a caller's bug, except when retaining

    def __init__(self, mask: MaskLike | None, plate: str | int | None) -> None:
        if (mask is None) != (plate is None):
            raise ValueError(
                "mask and plate go together: pass mask=<bool or index tensor> and "
                "plate=<name of the data plate>, or neither"
            )
        if isinstance(plate, int) and not isinstance(plate, bool) and plate >= 0:
            raise ValueError(
                f"plate={plate}: an int plate is a batch dimension counted from the right "
                "(negative, e.g. -1)"
            )
        if plate is not None and not isinstance(plate, str | int):
            raise ValueError(f"plate must be a plate name or a negative int, got {plate!r}")
        super().__init__()
        if isinstance(mask, set | frozenset):
            mask = sorted(mask)  # a set of ids
        self.plate = plate
        self._index = None if mask is None else as_index_tensor(mask, allow_empty=self.allow_empty)
        self._raw_mask = None if mask is None else torch.as_tensor(mask)
        self._full_mask: torch.Tensor | None = None
        self._batch_index: torch.Tensor | None = None
        self._inside: set[str] = set()
        self._outside: dict[str, list[str]] = {}

    def __enter__(self):
        self._batch_index = None
        self._inside, self._outside = set(), {}
        return super().__enter__()

    def __exit__(self, exc_type, exc_value, traceback):
        super().__exit__(exc_type, exc_value, traceback)
        if exc_type is None and self.plate is not None and not self._inside and self._outside:
            name, plates = next(iter(self._outside.items()))
            where = (
                f"plate {self.plate!r}"
                if isinstance(self.plate, str)
                else f"batch dim {self.plate} of size {self._size_hint()}"
            )
            raise ValueError(
                f"observed site {name!r} is not inside {where} (its plates: {plates or 'none'}), "
                "and no other observed site is: name the data plate in plate=..., or, for an "
                "observed vector outside any plate, pass the batch dim (plate=-1)"
            )

    def _size_hint(self):
        return "?" if self._raw_mask is None else self._raw_mask.numel()

    def _full_size_mask(self, full_size: int) -> torch.Tensor:
        if self._full_mask is None or self._full_mask.numel() != full_size:
            index = as_index_tensor(self._raw_mask, full_size, self.allow_empty)
            full = torch.zeros(full_size, dtype=torch.bool, device=index.device)
            full[index] = True
            self._full_mask = full
        return self._full_mask

    def _selected(self, msg) -> torch.Tensor | None:
        """Boolean tensor over the plate's current batch, at the plate's dim (or ``None``)."""
        if isinstance(self.plate, int):
            return self._selected_along_dim(msg)
        frame = next((f for f in msg["cond_indep_stack"] if f.name == self.plate), None)
        if frame is None:
            self._outside[msg["name"]] = [f.name for f in msg["cond_indep_stack"]]
            return None
        if frame.dim is None:
            raise ValueError(
                f"plate {self.plate!r} is sequential; a forget mask needs a vectorized plate "
                "(use `with pyro.plate(...)` rather than `for i in pyro.plate(...)`)"
            )
        self._inside.add(msg["name"])
        full_size = frame.full_size or frame.size
        full = self._full_size_mask(full_size)
        if self._batch_index is not None and frame.size != full_size:
            selected = full[self._batch_index.to(full.device)]
        else:
            selected = full
        return selected.reshape((-1,) + (1,) * (-1 - frame.dim))

    def _selected_along_dim(self, msg) -> torch.Tensor | None:
        fn, dim = msg["fn"], self.plate
        batch = fn.batch_shape
        if len(batch) < -dim:
            if len(batch) + len(fn.event_shape) >= -dim:
                raise ValueError(
                    f"observed site {msg['name']!r} keeps its data points in an event dimension "
                    f"(batch shape {tuple(batch)}, event shape {tuple(fn.event_shape)}): a mask "
                    "selects along a batch dimension; drop .to_event(...) there, or put the "
                    "observation inside `with pyro.plate('data', N):`"
                )
            self._outside[msg["name"]] = [f.name for f in msg["cond_indep_stack"]]
            return None
        self._inside.add(msg["name"])
        full = self._full_size_mask(batch[dim])
        return full.reshape((-1,) + (1,) * (-1 - dim))

    def _postprocess_message(self, msg) -> None:
        # The plate's subsample indices come through its own sample site.
        if (
            isinstance(self.plate, str)
            and msg["type"] == "sample"
            and msg["name"] == self.plate
            and isinstance(msg["fn"], _Subsample)
        ):
            self._batch_index = msg["value"]


def under_enumeration() -> bool:
    """Whether the current model run is enumerated by ``TraceEnum_ELBO`` (which refuses
    negative and per-element scales); an enumeration that marks itself as summing out the
    scaled log probabilities itself (the model evaluator's) does not count."""
    return any(
        isinstance(m, EnumMessenger) and not getattr(m, "sums_out_itself", False)
        for m in _PYRO_STACK
    )

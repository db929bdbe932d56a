"""Forget requests and the ledger of what a posterior has already forgotten.

Subtracting a data point's likelihood twice silently corrupts a posterior: it is then
as if the point had been observed with weight -1. A :class:`ForgetLedger` records the
ids removed so far and refuses any request that would do that.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .errors import BadRequestError, UnlearningError
from .masks import MaskLike, as_index_tensor


class RepeatedDeletionError(UnlearningError, ValueError):
    """A forget request names data that were already forgotten."""


@dataclass(frozen=True)
class ForgetLedger:
    """Which of ``num_data`` data ids have been forgotten from one posterior.

    Ledgers are immutable: :meth:`after` returns the ledger of the posterior that
    results from honouring a request, so the original posterior keeps its own.

    >>> ledger = ForgetLedger(5)
    >>> ledger = ledger.after([3, 1])
    >>> ledger.forgotten, ledger.num_remaining
    ((1, 3), 3)
    >>> ledger.after([3])
    Traceback (most recent call last):
    ...
    pyro_unlearn.ledger.RepeatedDeletionError: data ids [3] were already forgotten from this posterior; forgetting them again would subtract their likelihood twice

    Parameters
    ----------
    num_data : int
        Size of the data set the posterior was fitted to (the data plate's size).
    forgotten : tuple of int
        Ids already forgotten, sorted.
    """

    num_data: int
    forgotten: tuple[int, ...] = field(default=())

    def __post_init__(self) -> None:
        size = self.num_data
        if isinstance(size, bool) or not isinstance(size, int | torch.Tensor) or int(size) != size:
            raise BadRequestError(f"num_data must be a positive integer, got {size!r}")
        if int(size) < 1:
            raise BadRequestError(f"num_data must be a positive integer, got {size!r}")
        object.__setattr__(self, "num_data", int(size))
        ids = tuple(int(i) for i in self.forgotten)
        if ids != tuple(sorted(set(ids))) or (ids and (ids[0] < 0 or ids[-1] >= self.num_data)):
            raise BadRequestError(
                f"forgotten must be sorted, unique ids in [0, {self.num_data}), got {ids[:10]}"
            )
        object.__setattr__(self, "forgotten", ids)

    def to_dict(self) -> dict:
        """A JSON-ready record: ``{"num_data": N, "forgotten": [...]}``."""
        return {"num_data": self.num_data, "forgotten": list(self.forgotten)}

    @classmethod
    def from_dict(cls, record: dict) -> ForgetLedger:
        """The ledger :meth:`to_dict` wrote (checked as a new one is)."""
        try:
            return cls(int(record["num_data"]), tuple(record["forgotten"]))
        except (KeyError, TypeError) as error:
            raise BadRequestError(f"not a ForgetLedger record: {record!r}") from error

    def save(self, path) -> None:
        """Write the ledger as JSON (atomically), to keep it beside a saved posterior."""
        import json
        import os
        import tempfile

        folder = os.path.dirname(os.path.abspath(path))
        handle, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
        with os.fdopen(handle, "w") as file:
            json.dump(self.to_dict(), file)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path) -> ForgetLedger:
        import json

        with open(path) as file:
            try:
                record = json.load(file)
            except json.JSONDecodeError as error:
                raise BadRequestError(f"{path} is not a ForgetLedger file ({error})") from error
        return cls.from_dict(record)

    @property
    def num_remaining(self) -> int:
        return self.num_data - len(self.forgotten)

    def check(self, ids: MaskLike) -> torch.Tensor:
        """Validate a request; return its ids as a sorted index tensor.

        Refuses empty requests, ids out of range, repeated ids, and ids already forgotten.
        """
        index = as_index_tensor(ids, self.num_data)
        again = sorted(set(index.tolist()) & set(self.forgotten))
        if again:
            raise RepeatedDeletionError(
                f"data ids {again[:10]} were already forgotten from this posterior; "
                "forgetting them again would subtract their likelihood twice"
            )
        return index

    def after(self, ids: MaskLike) -> ForgetLedger:
        """The ledger once ``ids`` have been forgotten too."""
        index = self.check(ids)
        return ForgetLedger(self.num_data, tuple(sorted(self.forgotten + tuple(index.tolist()))))

    def forgets_everything(self, ids: MaskLike) -> bool:
        """Whether honouring ``ids`` leaves no data (the posterior becomes the prior)."""
        return len(self.check(ids)) == self.num_remaining

    def mask(self, ids: MaskLike | None = None) -> torch.Tensor:
        """Boolean mask over all data: ``ids`` if given, else everything forgotten so far."""
        mask = torch.zeros(self.num_data, dtype=torch.bool)
        if ids is None:
            mask[list(self.forgotten)] = True
        else:
            mask[self.check(ids)] = True
        return mask

    @property
    def retained_mask(self) -> torch.Tensor:
        """Boolean mask of the data the posterior still reflects."""
        return ~self.mask()

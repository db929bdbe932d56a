"""Forget requests and the ledger of what a posterior has already forgotten.

Subtracting a data point's likelihood twice silently corrupts a posterior: it is then
as if the point had been observed with weight -1. A :class:`ForgetLedger` records the
ids removed so far and refuses any request that would do that.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .handlers.plate_mask import MaskLike, as_index_tensor


class RepeatedDeletionError(ValueError):
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
        if self.num_data < 1:
            raise ValueError(f"num_data must be positive, got {self.num_data}")

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

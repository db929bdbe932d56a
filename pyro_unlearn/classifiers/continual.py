"""Continual deletion requests through a ledger, one method call per request."""

from __future__ import annotations

from torch import nn

from ..errors import UnreliableResultError
from .training import accuracy


def continual(method, net: nn.Module, x, y, requests, ledger, x_test=None, y_test=None, **options):
    """Honour forget requests one after another, each from the previous step's network.

    ``requests`` is a sequence of id tensors into ``(x, y)``; the ledger refuses repeats.
    Returns the final network, the final ledger and one metrics dict per step (accuracy on
    everything forgotten so far, on the retained data and on the test set).

    A request the method judges unreliable (under its default ``on_unreliable="raise"``)
    stops the sequence with that :class:`~pyro_unlearn.UnreliableResultError`; the work
    done before it is on the error as ``error.completed = (network, ledger, steps)``, the
    state after the last request honoured.
    """
    steps = []
    for ids in requests:
        honoured = ledger
        ledger = ledger.after(ids)  # refuses repeated deletions before any work
        try:
            net, info = method(net, x[ids], y[ids], **options)
        except UnreliableResultError as error:  # net is still the last honoured request's
            error.completed = (net, honoured, steps)
            raise
        forgotten = ledger.mask()
        steps.append(
            {
                "forgotten": len(ledger.forgotten),
                "forget_acc": accuracy(net, x[forgotten], y[forgotten]),
                "retain_acc": accuracy(net, x[~forgotten], y[~forgotten]),
                **({"test_acc": accuracy(net, x_test, y_test)} if x_test is not None else {}),
                **{k: v for k, v in info.items() if k in ("steps", "reached_target")},
            }
        )
    return net, ledger, steps


#: ``unlearn(..., method=name)`` for the classifier methods (the API's method table reads it)

"""Forget requests: the ledger, repeated deletions and order invariance."""

import pytest
import torch
from conftest import exact_guide, relative_error, synthetic

import pyro_unlearn as pu

N = 90
A = torch.tensor([3, 10, 44, 45, 80])
B = torch.tensor([0, 1, 2, 60, 61, 62, 89])


def test_ledger_records_and_refuses_repeats():
    ledger = pu.ForgetLedger(10)
    after = ledger.after(torch.tensor([2, 7]))
    assert after.forgotten == (2, 7) and after.num_remaining == 8
    assert ledger.forgotten == ()  # immutable: the original posterior keeps its own ledger
    with pytest.raises(pu.RepeatedDeletionError, match=r"\[7\] were already forgotten"):
        after.after([7, 8])
    assert after.mask().nonzero().flatten().tolist() == [2, 7]
    assert after.retained_mask.sum() == 8
    assert after.forgets_everything([0, 1, 3, 4, 5, 6, 8, 9])
    assert not after.forgets_everything([0])


def test_bool_and_index_requests_agree():
    ledger = pu.ForgetLedger(6)
    as_bool = torch.tensor([False, True, False, False, True, False])
    assert ledger.after(as_bool) == ledger.after([4, 1])


def test_sequential_requests_equal_one_union_request(blr):
    X, y = synthetic(n=N, d=4)
    guide = exact_guide(blr, X, y)
    ledger = pu.ForgetLedger(N)
    first = pu.unlearn(blr.model, guide, X[A], y[A], ids=A, ledger=ledger)
    second = pu.unlearn(blr.model, first.guide, X[B], y[B], ids=B)  # ledger rides on the guide
    union = torch.cat([A, B])
    together = pu.unlearn(blr.model, guide, X[union], y[union], ids=union, ledger=ledger)
    assert second.ledger.forgotten == together.ledger.forgotten == tuple(sorted(union.tolist()))
    assert relative_error(second.guide.loc, together.guide.loc) <= 1e-10
    assert relative_error(second.guide.precision, together.guide.precision) <= 1e-10
    keep = second.ledger.retained_mask
    exact = blr.posterior(X[keep], y[keep])
    assert relative_error(second.guide.loc, exact.mean) <= 1e-8
    # B then A reaches the same posterior
    b_first = pu.unlearn(blr.model, guide, X[B], y[B], ids=B, ledger=ledger)
    b_then_a = pu.unlearn(blr.model, b_first.guide, X[A], y[A], ids=A)
    assert relative_error(b_then_a.guide.loc, second.guide.loc) <= 1e-10


def test_repeated_deletion_through_unlearn_is_refused(blr):
    X, y = synthetic(n=N, d=4)
    first = pu.unlearn(
        blr.model, exact_guide(blr, X, y), X, y, mask=A, plate="data", ledger=pu.ForgetLedger(N)
    )
    assert first.ledger.forgotten == tuple(A.tolist())
    with pytest.raises(pu.RepeatedDeletionError, match="subtract their likelihood twice"):
        pu.unlearn(blr.model, first.guide, X, y, mask=torch.tensor([10, 11]), plate="data")


def test_forgetting_everything_in_steps_returns_the_prior(blr):
    X, y = synthetic(n=N, d=3)
    ledger = pu.ForgetLedger(N)
    guide = exact_guide(blr, X, y)
    halves = torch.arange(N).chunk(2)
    assert not ledger.forgets_everything(halves[0])
    step = pu.unlearn(blr.model, guide, X, y, mask=halves[0], plate="data", ledger=ledger)
    assert step.ledger.forgets_everything(halves[1])
    step = pu.unlearn(blr.model, step.guide, X, y, mask=halves[1], plate="data")
    assert step.ledger.num_remaining == 0
    assert relative_error(step.guide.precision, blr.prior(3).precision) <= 1e-8
    assert step.guide.loc.abs().max() < 1e-10

"""Bad input gets a clear error naming the problem, and never a corrupted posterior."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from conftest import exact_guide, synthetic
from pyro import poutine
from pyro.infer import TraceEnum_ELBO
from pyro.infer.autoguide import AutoDelta, AutoLaplaceApproximation, AutoMultivariateNormal

import pyro_unlearn as pu

N = 30


@pytest.fixture
def setup(blr):
    X, y = synthetic(n=N, d=3)
    return blr, X, y, exact_guide(blr, X, y)


def trace(fn, *args):
    return poutine.trace(fn).get_trace(*args)


def test_wrong_mask_length(setup):
    blr, X, y, guide = setup
    with pytest.raises(ValueError, match="forget mask has length 29 but the plate has size 30"):
        trace(pu.forget(blr.model, mask=torch.ones(29, dtype=torch.bool), plate="data"), X, y)


def test_mask_for_unknown_plate(setup):
    blr, X, y, guide = setup
    with pytest.raises(ValueError, match="observed site 'y' is not inside plate 'rows'"):
        trace(pu.forget(blr.model, mask=[0, 1], plate="rows"), X, y)


def test_index_out_of_range(setup):
    blr, X, y, guide = setup
    with pytest.raises(ValueError, match="forget index 30 is out of range for a plate of size 30"):
        pu.unlearn(blr.model, guide, X, y, mask=torch.tensor([0, 30]), plate="data")
    with pytest.raises(ValueError, match="out of range"):
        pu.ForgetLedger(N).after([31])
    with pytest.raises(ValueError, match="negative"):
        pu.ForgetLedger(N).after([-1])


def test_repeated_indices_in_one_request(setup):
    with pytest.raises(ValueError, match=r"forget indices are repeated: \[4\]"):
        pu.ForgetLedger(N).after([4, 5, 4])


def test_repeated_deletion(setup):
    blr, X, y, guide = setup
    first = pu.unlearn(blr.model, guide, X[:3], y[:3], ids=[0, 1, 2], ledger=pu.ForgetLedger(N))
    with pytest.raises(pu.RepeatedDeletionError, match=r"data ids \[2\] were already forgotten"):
        pu.unlearn(blr.model, first.guide, X[2:4], y[2:4], ids=[2, 3])


def test_empty_forget_set(setup):
    blr, X, y, guide = setup
    with pytest.raises(ValueError, match="empty forget set"):
        pu.unlearn(blr.model, guide, X, y, mask=torch.zeros(N, dtype=torch.bool), plate="data")
    with pytest.raises(ValueError, match="empty forget set"):
        pu.ForgetLedger(N).after([])


def test_guide_never_fitted(setup):
    blr, X, y, _ = setup
    with pytest.raises(pu.GuideNotFittedError, match="AutoMultivariateNormal was never fitted"):
        pu.unlearn(blr.model, AutoMultivariateNormal(blr.model), X[:2], y[:2])
    with pytest.raises(pu.GuideNotFittedError, match="never fitted"):
        pu.anchor(blr.model, guide=AutoMultivariateNormal(blr.model))


def test_non_pd_downdate_with_psd_raise(setup):
    blr, X, y, guide = setup
    weak = pu.LaplaceGuide.from_precision(blr.model, guide.loc, guide.precision / 50, like=guide)
    with pytest.raises(pu.NotPositiveDefiniteError, match=r"smallest eigenvalue -?\d"):
        pu.unlearn(blr.model, weak, X, y, mask=torch.arange(20), plate="data", psd="raise")


def test_forget_args_that_do_not_match_the_model(setup):
    blr, X, y, guide = setup
    with pytest.raises(
        ValueError, match="latent site 'w' has shape \\(5,\\) under these arguments but \\(3,\\)"
    ):
        pu.unlearn(blr.model, guide, torch.randn(4, 5), y[:4])
    with pytest.raises(ValueError, match="running the model on the given data failed"):
        pu.unlearn(blr.model, guide, X[:4], y[:3])


def test_point_estimate_without_full_data(setup):
    blr, X, y, _ = setup
    guide = AutoLaplaceApproximation(blr.model)
    guide(X, y)
    with pytest.raises(ValueError, match="pass full_args"):
        pu.unlearn(blr.model, guide, X[:2], y[:2])
    delta = AutoDelta(blr.model)
    delta(X, y)
    with pytest.raises(TypeError, match="AutoDelta is a point estimate"):
        pu.anchor(blr.model, guide=delta)


def test_unknown_options(setup):
    blr, X, y, guide = setup
    with pytest.raises(
        ValueError, match="unknown unlearning method 'magic'; available: .*'laplace'"
    ):
        pu.unlearn(blr.model, guide, X[:2], y[:2], method="magic")
    with pytest.raises(ValueError, match="hessian must be one of"):
        pu.unlearn(blr.model, guide, X[:2], y[:2], hessian="kron")
    with pytest.raises(ValueError, match="psd must be one of"):
        pu.unlearn(blr.model, guide, X[:2], y[:2], psd="ignore")
    with pytest.raises(ValueError, match="newton_steps must be a non-negative int"):
        pu.unlearn(blr.model, guide, X[:2], y[:2], newton_steps=-1)


def test_mask_and_plate_go_together(setup):
    blr, X, y, _ = setup
    with pytest.raises(ValueError, match="mask and plate go together"):
        pu.forget(blr.model, mask=[0])
    with pytest.raises(ValueError, match="mask and plate go together"):
        pu.forget(blr.model, plate="data")
    with pytest.raises(ValueError, match="forget mask must be a bool tensor or integer indices"):
        pu.forget(blr.model, mask=torch.tensor([0.5]), plate="data")


def test_unknown_site_and_non_finite_weight(setup):
    blr, X, y, _ = setup
    with pytest.raises(ValueError, match=r"sites \['z'\] were not observed sites"):
        trace(pu.forget(blr.model, sites=["y", "z"]), X, y)
    with pytest.raises(ValueError, match="forget weight must be finite"):
        pu.forget(blr.model, weight=float("nan"))


def test_model_without_observations(setup):
    blr, X, _, _ = setup
    with pytest.raises(ValueError, match="no observed site to forget"):
        trace(pu.forget(blr.model), X)


def test_trace_enum_elbo_is_refused_with_the_alternatives():
    def model(y):
        p = pyro.sample("p", dist.Beta(2.0, 2.0))
        with pyro.plate("data", len(y)):
            pyro.sample("y", dist.Bernoulli(p), obs=y)

    def guide(y):
        pyro.sample("p", dist.Beta(pyro.param("a", torch.tensor(2.0)), 2.0))

    with pytest.raises(
        ValueError, match="TraceEnum_ELBO supports only positive scalar scales.*Trace_ELBO"
    ):
        TraceEnum_ELBO(max_plate_nesting=1).loss(pu.forget(model), guide, torch.ones(3))


def test_sequential_plate_is_refused(setup):
    def model(y):
        for i in pyro.plate("data", len(y)):
            pyro.sample(f"y_{i}", dist.Normal(0.0, 1.0), obs=y[i])

    with pytest.raises(ValueError, match="plate 'data' is sequential"):
        trace(pu.forget(model, mask=[0], plate="data"), torch.ones(3))

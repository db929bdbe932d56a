"""Retraining references agree with the closed form; caches round-trip."""

import pytest
import torch
from conftest import synthetic

import pyro_unlearn as pu
from pyro_unlearn.references.retrain import Reference, retrain

FORGET = torch.arange(0, 60, 3)


@pytest.fixture
def data(blr):
    X, y = synthetic(n=60, d=3)
    keep = torch.ones(60, dtype=torch.bool)
    keep[FORGET] = False
    return blr, X, y, blr.posterior(X[keep], y[keep])


def check_moments(reference, exact, ess):
    w = reference.flat("w")
    sd = exact.covariance.diagonal().sqrt()
    assert ((w.mean(0) - exact.mean).abs() < 4 * sd / ess**0.5).all()
    assert ((w.std(0) / sd - 1).abs() < 4 / (2 * ess) ** 0.5).all()


def test_exact_reference(data):
    blr, X, y, exact = data
    ref = retrain(
        blr.model, X, y, forget_mask=FORGET, plate="data", method="exact", num_samples=4000
    )
    check_moments(ref, exact, 4000)


@pytest.mark.parametrize("method", ["nuts", "hmc"])
def test_mcmc_reference_agrees_with_the_closed_form_and_is_checked(data, method):
    blr, X, y, exact = data
    ref = retrain(
        blr.model,
        X,
        y,
        forget_mask=FORGET,
        plate="data",
        method=method,
        num_samples=500,
        warmup_steps=300,
        progress_bar=False,
    )
    assert ref.samples["w"].shape == (2, 500, 3)
    assert ref.trustworthy, ref.diagnostics["problems"]
    assert ref.diagnostics["rhat_max"] < 1.01 and ref.diagnostics["ess_bulk_min"] >= 400
    check_moments(ref, exact, ref.diagnostics["ess_bulk_min"])


def test_short_chains_are_flagged(data):
    blr, X, y, _ = data
    ref = retrain(
        blr.model,
        X,
        y,
        forget_mask=FORGET,
        plate="data",
        method="nuts",
        num_samples=30,
        warmup_steps=20,
        progress_bar=False,
    )
    assert not ref.trustworthy
    assert any("ESS" in p for p in ref.diagnostics["problems"])


def test_svi_reference_agrees_with_the_closed_form(data):
    blr, X, y, exact = data
    ref = retrain(
        blr.model,
        X,
        y,
        forget_mask=FORGET,
        plate="data",
        method="svi",
        num_samples=4000,
        svi_steps=2000,
        lr=0.02,
    )
    w = ref.flat("w")
    sd = exact.covariance.diagonal().sqrt()
    # SVI optimisation error on top of 4000-draw Monte Carlo error: 0.1 sd
    assert ((w.mean(0) - exact.mean).abs() < 0.1 * sd).all()
    assert ((w.std(0) / sd - 1).abs() < 0.1).all()


def test_reference_cache_round_trip(data, tmp_path):
    blr, X, y, _ = data
    path = tmp_path / "ref.nc"
    first = retrain(
        blr.model,
        X,
        y,
        forget_mask=FORGET,
        plate="data",
        method="nuts",
        num_samples=200,
        warmup_steps=100,
        num_chains=2,
        progress_bar=False,
        cache=path,
    )
    assert path.exists()
    same = dict(num_samples=200, warmup_steps=100, num_chains=2)
    second = retrain(
        blr.model, X, y, forget_mask=FORGET, plate="data", method="nuts", cache=path, **same
    )  # loaded, not rerun
    assert torch.equal(first.samples["w"], second.samples["w"])
    assert second.method == "nuts" and second.seconds == first.seconds
    assert second.diagnostics["rhat_max"] == first.diagnostics["rhat_max"]
    assert second.trustworthy == first.trustworthy
    with pytest.raises(ValueError, match="another request"):  # a stale cache is refused
        retrain(blr.model, X, y, forget_mask=FORGET[1:], plate="data", cache=path, **same)
    with pytest.raises(ValueError, match="another data"):  # same ids, other data
        retrain(blr.model, X, -y, forget_mask=FORGET, plate="data", cache=path, **same)
    other_model = pu.BayesianLinearRegression(noise_scale=0.3, prior_scale=1.5).model
    with pytest.raises(ValueError, match="another model"):
        retrain(other_model, X, y, forget_mask=FORGET, plate="data", cache=path, **same)
    with pytest.raises(ValueError, match="another settings"):
        retrain(blr.model, X, y, forget_mask=FORGET, plate="data", cache=path, seed=3, **same)
    assert Reference.load(path).samples["w"].shape == first.samples["w"].shape
    truncated = tmp_path / "truncated.nc"
    truncated.write_bytes(path.read_bytes()[:500])
    with pytest.raises(ValueError, match="truncated.nc.*delete it"):
        retrain(blr.model, X, y, forget_mask=FORGET, plate="data", cache=truncated, **same)
    # the atomic write left no temporary file behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ref.nc", "truncated.nc"]


def test_unknown_method(data):
    blr, X, y, _ = data
    with pytest.raises(ValueError, match="retrain method must be one of"):
        retrain(blr.model, X, y, forget_mask=FORGET, plate="data", method="gibbs")
    with pytest.raises(
        ValueError, match="method='exact' needs the model method of a conjugate reference"
    ):
        retrain(
            lambda X, y: blr.model(X, y), X, y, forget_mask=FORGET, plate="data", method="exact"
        )

"""PSIS unlearning of posterior draws against the exact retrained posterior."""

import pytest
import torch
from conftest import synthetic
from pyro.infer import MCMC, NUTS

import pyro_unlearn as pu


@pytest.fixture
def conjugate(blr):
    X, y = synthetic(n=60, d=3)
    full = blr.posterior(X, y)
    g = torch.Generator().manual_seed(1)
    draws = (
        full.mean + torch.randn(20000, 3, generator=g) @ torch.linalg.cholesky(full.covariance).T
    )
    return blr, X, y, {"w": draws}


def test_psis_matches_exact_retrained_mean(conjugate):
    blr, X, y, draws = conjugate
    result = pu.unlearn(blr.model, draws, X[:3], y[:3], method="psis")
    weighted = result.guide
    exact = blr.posterior(X[3:], y[3:])
    assert weighted.pareto_k < 0.7 and result.diagnostics["pareto_k"] == weighted.pareto_k
    standard_error = exact.covariance.diagonal().sqrt() / weighted.ess**0.5
    assert ((weighted.mean("w") - exact.mean).abs() < 4 * standard_error).all()
    resampled = weighted.resample(20000)["w"]
    assert ((resampled.mean(0) - exact.mean).abs() < 6 * standard_error).all()


def test_psis_refuses_or_flags_a_large_structured_forget_set(conjugate):
    blr, X, y, draws = conjugate
    structured = y.argsort()[-40:]  # two thirds of the data: those with the largest targets
    with pytest.raises(pu.DegenerateWeightsError, match=r"Pareto k = \d\.\d\d > 0.7"):
        pu.methods.psis_unlearn(blr.model, draws, X[structured], y[structured])
    with pytest.warns(pu.errors.UnreliableResultWarning, match=r"Pareto k = \d\.\d\d > 0.7"):
        weighted = pu.methods.psis_unlearn(
            blr.model, draws, X[structured], y[structured], on_unreliable="warn"
        )
    assert weighted.pareto_k > 0.7 and not weighted.reliable
    result = pu.unlearn(
        blr.model, draws, X[structured], y[structured], method="psis", on_unreliable="ignore"
    )
    assert result.reliable is False and "Pareto k" in result.diagnostics["unreliable"][0]


def test_psis_accepts_an_mcmc_object(blr):
    X, y = synthetic(n=30, d=2)
    mcmc = MCMC(NUTS(blr.model), num_samples=200, warmup_steps=100, disable_progbar=True)
    mcmc.run(X, y)
    weighted = pu.methods.psis_unlearn(blr.model, mcmc, X[:2], y[:2])
    assert weighted.samples["w"].shape == (200, 2) and weighted.pareto_k < 0.7


def test_psis_trusts_nearly_uniform_weights_whatever_k_hat_says():
    """A point the model fits perfectly: p(y|theta) = 1 - 1e-12 for every draw, the weights
    are 1 +- 1e-12 and k-hat is fitted to rounding noise; the result is reliable."""
    X = torch.tensor([[8.0], [7.5], [-9.0]])
    y = torch.tensor([1.0, 1.0, 0.0])
    model = pu.BayesianLogisticRegression(1.0).model
    g = torch.Generator().manual_seed(0)
    draws = {"w": 4.0 + 0.3 * torch.randn(2000, 1, generator=g)}
    result = pu.unlearn(model, draws, X[:1], y[:1], method="psis")
    assert result.reliable
    assert result.diagnostics["ess"] > 0.99 * 2000


def test_psis_takes_its_relative_efficiency_from_the_chains():
    """As ArviZ's loo: reff = ESS of the mean of the ratios / draws; 1 for a dict of draws."""
    blr = pu.BayesianLinearRegression(noise_scale=0.7, prior_scale=1.5)
    X, y = synthetic(n=30, d=2)
    post = blr.posterior(X, y)
    g = torch.Generator().manual_seed(1)
    noise = torch.randn(2, 1000, 2, generator=g)
    walk = torch.zeros_like(noise)
    for t in range(1, 1000):  # AR(1) chains, phi = 0.9: strongly autocorrelated
        walk[:, t] = 0.9 * walk[:, t - 1] + 0.44 * noise[:, t]
    chains = post.mean + walk @ torch.linalg.cholesky(post.covariance).T
    reference = pu.references.Reference({"w": chains}, "nuts", 0.0, {})
    correlated = pu.unlearn(blr.model, reference, X[:3], y[:3], method="psis")
    independent = pu.unlearn(blr.model, {"w": chains.reshape(-1, 2)}, X[:3], y[:3], method="psis")
    assert correlated.diagnostics["reff"] < 0.3 and independent.diagnostics["reff"] == 1.0

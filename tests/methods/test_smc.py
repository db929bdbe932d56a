"""Sequential (SMC) unlearning against the exact retrained posterior, beyond where one-shot
reweighting fails."""

import pytest
import torch
from conftest import exact_guide, moment_kl, synthetic

import pyro_unlearn as pu


@pytest.mark.parametrize("chunk_size", [None, 10])
def test_smc_matches_the_exact_retrained_mean_and_covariance(blr, chunk_size):
    """120 of 200 points forgotten: far beyond plain reweighting (k-hat > 0.7), exact here.

    Tolerances: 4000 particles after 10 Metropolis moves per chunk behave like >= 2000
    independent draws, so the mean is within 4.5 of its standard errors and the
    moment-matched KL within 3x its bias (d + d(d+1)/2)/(2N) = 3.4e-3.
    """
    X, y = synthetic(n=200, d=6)
    retrained = blr.posterior(X[120:], y[120:])
    result = pu.unlearn(
        blr.model,
        exact_guide(blr, X, y),
        X[:120],
        y[:120],
        method="smc",
        chunk_size=chunk_size,
        lam=0.0,  # q(theta|D) is exact: the plain divided target is the retrained posterior
    )
    w = result.guide.samples["w"]
    standard_error = retrained.covariance.diagonal().sqrt() / (len(w) / 2) ** 0.5
    assert ((w.mean(0) - retrained.mean).abs() / standard_error).max() < 4.5
    assert moment_kl(w, retrained) < 0.01
    steps = result.diagnostics["steps"]
    assert steps[0]["chunk"][0] == 0 and steps[-1]["chunk"][1] == 120.0
    assert all(a["chunk"][1] == b["chunk"][0] for a, b in zip(steps, steps[1:], strict=False))
    if chunk_size is None:
        assert result.diagnostics["min_ess"] >= 0.5 * 4000
    plain = pu.infer.importance_samples(
        blr.model,
        pu.flat_gaussian(exact_guide(blr, X, y)),
        pu.guides.latent_layout(exact_guide(blr, X, y)),
        (X[:120], y[:120]),
        on_unreliable="ignore",
    )
    assert plain.pareto_k > 0.7  # one-shot reweighting would have failed here


def test_smc_is_deterministic_and_checks_its_options(blr):
    X, y = synthetic(n=60, d=3)
    guide = exact_guide(blr, X, y)
    a = pu.unlearn(blr.model, guide, X[:10], y[:10], method="smc", num_particles=500, seed=3)
    b = pu.unlearn(blr.model, guide, X[:10], y[:10], method="smc", num_particles=500, seed=3)
    assert torch.equal(a.guide.samples["w"], b.guide.samples["w"])
    with pytest.raises(ValueError, match="ess_threshold"):
        pu.unlearn(blr.model, guide, X[:10], y[:10], method="smc", ess_threshold=1.5)
    with pytest.raises(ValueError, match="chunk_size"):
        pu.unlearn(blr.model, guide, X[:10], y[:10], method="smc", chunk_size=0)
    with pytest.raises(pu.SMCStalledError, match="stalled"):
        pu.unlearn(blr.model, guide, X[:10], y[:10], method="smc", chunk_size=1, max_steps=3)

"""rKL unlearning (``pu.RKL`` and ``method="rkl"``): importance-weighted moments against the exact
retrained posterior, and its degenerate-weights guard."""

import pyro
import pytest
from conftest import N_FORGET, exact_guide, synthetic
from pyro.infer import SVI
from pyro.infer.autoguide import AutoMultivariateNormal, AutoNormal

import pyro_unlearn as pu


def test_rkl_matches_retrained_moments_within_monte_carlo_error(problem):
    blr, X, y, q_full, retrained = problem
    result = pu.unlearn(
        blr.model, q_full, X[:N_FORGET], y[:N_FORGET], method="rkl", num_samples=20000
    )
    d = result.diagnostics
    assert d["weights_finite_variance"] and d["pareto_k"] < 0.7
    g = pu.flat_gaussian(result.guide)
    sd = retrained.covariance.diagonal().sqrt()
    assert ((g.loc - retrained.mean).abs() < 4 * sd / d["ess"] ** 0.5).all()
    rel_sd = (g.covariance.diagonal().sqrt() / sd - 1).abs()
    assert (rel_sd < 4 / (2 * d["ess"]) ** 0.5).all()


@pytest.mark.parametrize("guide_class", [AutoNormal, AutoMultivariateNormal])
def test_rkl_loss_constructs_and_runs_under_svi(problem, guide_class):
    """pu.RKL is a Pyro ELBO: SVI with a fresh autoguide minimises it to the weighted moments,
    which estimate the retrained mean to Monte Carlo error sd / sqrt(ESS)."""
    blr, X, y, q_full, retrained = problem
    pyro.clear_param_store()
    loss = pu.RKL(q_full, num_samples=4000, seed=1)
    q_u = guide_class(blr.model)
    svi = SVI(blr.model, q_u, pyro.optim.Adam({"lr": 0.02}), loss)
    for _ in range(1000):
        svi.step(X[:N_FORGET], y[:N_FORGET])
    assert loss.samples.pareto_k < 0.7
    sd = retrained.covariance.diagonal().sqrt()
    loc = q_u.median(X, y)["w"].detach()
    # five Monte Carlo standard errors, plus 0.02 sd for where Adam stops
    assert ((loc - retrained.mean).abs() < 5 * sd / loss.samples.ess**0.5 + 0.02 * sd).all()
    pyro.clear_param_store()


def test_rkl_reports_degenerate_weights(blr):
    X, y = synthetic(n=100, d=4)
    q_full = exact_guide(blr, X, y)
    # forgetting 70% breaks Lambda_D - 2 Lambda_e > 0: weights with infinite variance
    check = pu.divided_target_check(blr.model, q_full, (X[:70], y[:70]), {})
    assert check["target_proper"] and not check["weights_finite_variance"]
    with pytest.raises(pu.DegenerateWeightsError, match=r"Pareto k = \d+\.\d+ > 0.7"):
        pu.unlearn(blr.model, q_full, X[:70], y[:70], method="rkl", num_samples=5000)
    with pytest.warns(UserWarning, match="degenerate"):
        result = pu.unlearn(
            blr.model, q_full, X[:70], y[:70], method="rkl", num_samples=5000, on_unreliable="warn"
        )
    assert result.diagnostics["pareto_k"] > 0.7 and result.diagnostics["ess_raw"] < 500
    # the Laplace proposal repairs it here: the reweighting is then exact
    fixed = pu.unlearn(
        blr.model, q_full, X[:70], y[:70], method="rkl", num_samples=5000, proposal="laplace"
    )
    assert fixed.diagnostics["pareto_k"] < 0.7

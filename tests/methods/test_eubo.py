"""EUBO unlearning (``pu.EUBO`` and ``method="eubo"``) against the exact retrained posterior."""

import copy

import pyro
import pyro.distributions as dist
import pytest
import torch
from conftest import N_FORGET, exact_guide
from pyro import poutine
from pyro.infer import SVI, Trace_ELBO
from pyro.infer.autoguide import (
    AutoDiagonalNormal,
    AutoLaplaceApproximation,
    AutoLowRankMultivariateNormal,
    AutoMultivariateNormal,
    AutoNormal,
)

import pyro_unlearn as pu


def as_posterior(guide):
    g = pu.flat_gaussian(guide)
    return pu.FlatGaussian(g.loc, precision=g.precision)


def eubo_estimates(loss, model, guide, args, repeats=20):
    values = torch.tensor([loss.loss(model, guide, *args) for _ in range(repeats)])
    return values.mean(), values.std() / repeats**0.5


def test_eubo_at_the_retrained_posterior_is_the_log_predictive(problem):
    """U(p(theta|D_r)) = log p(D_e | D_r) when q(theta|D) is exact (linear-Gaussian)."""
    blr, X, y, q_full, retrained = problem
    Xe, ye = X[:N_FORGET], y[:N_FORGET]
    q_r = pu.LaplaceGuide.from_precision(
        blr.model, retrained.mean, retrained.precision, like=q_full
    )
    loss = pu.EUBO(q_full, num_particles=2000, vectorize_particles=True, max_plate_nesting=1)
    mean, standard_error = eubo_estimates(loss, blr.model, q_r, (Xe, ye))
    target = blr.log_predictive(Xe, ye, retrained)
    assert abs(mean - target) < 4 * standard_error + 1e-6
    # at the optimum the integrand is constant: zero-variance estimator
    assert standard_error < 1e-8


def test_eubo_with_mvn_guide_converges_to_retrained_posterior(problem):
    blr, X, y, q_full, retrained = problem
    result = pu.unlearn(
        blr.model,
        q_full,
        X[:N_FORGET],
        y[:N_FORGET],
        method="eubo",
        optimizer="adam",
        num_steps=1500,
        lr=0.02,
        num_particles=64,
        progress_bar=False,
    )
    kl = float(as_posterior(result.guide).kl(retrained))
    assert kl <= 1e-3, kl
    assert result.diagnostics["losses"][-1] < result.diagnostics["losses"][0]
    assert result.diagnostics["target_proper"]


@pytest.mark.parametrize("curvature", ["expected", "mode"])
@pytest.mark.parametrize("family", ["multivariate", "diagonal"])
def test_one_natural_gradient_step_is_exact_on_linear_gaussian(problem, family, curvature):
    """Expected curvature is constant and the expected gradient linear: one step is exact."""
    blr, X, y, q_full, retrained = problem
    if family == "diagonal":  # a mean-field q(theta|D) and its own mean-field retraining target
        q_full = pu.LaplaceGuide.from_precision(
            blr.model, q_full.loc, torch.diag(q_full.precision.diagonal()), like=q_full
        )
    result = pu.unlearn(
        blr.model, q_full, X[:N_FORGET], y[:N_FORGET], method="eubo", family=family, num_samples=64
    )
    assert result.diagnostics["optimizer"] == "natural" and result.diagnostics["step_sizes"] == [
        1.0
    ]
    expected = pu.laplace_unlearn(
        blr.model,
        q_full,
        X[:N_FORGET],
        y[:N_FORGET],
        hessian="diag" if family == "diagonal" else "full",
    )
    g = pu.flat_gaussian(result.guide)
    assert torch.allclose(g.loc, expected.loc, rtol=1e-9, atol=1e-12)
    assert torch.allclose(g.precision, expected.precision, rtol=1e-9)
    if family == "multivariate":
        assert float(as_posterior(result.guide).kl(retrained)) < 1e-10


def test_lambda_one_returns_the_full_posterior_unchanged(problem):
    blr, X, y, q_full, _ = problem
    result = pu.unlearn(
        blr.model, q_full, X[:N_FORGET], y[:N_FORGET], method="eubo", lam=1.0, progress_bar=False
    )
    assert torch.allclose(pu.flat_gaussian(result.guide).loc, q_full.loc, rtol=1e-12)
    assert torch.allclose(
        pu.flat_gaussian(result.guide).covariance, torch.linalg.inv(q_full.precision), rtol=1e-10
    )
    started_elsewhere = pu.unlearn(
        blr.model,
        q_full,
        X[:N_FORGET],
        y[:N_FORGET],
        method="eubo",
        lam=1.0,
        init="laplace",
        progress_bar=False,
    )
    assert torch.allclose(pu.flat_gaussian(started_elsewhere.guide).loc, q_full.loc, rtol=1e-12)
    rkl = pu.unlearn(
        blr.model, q_full, X[:N_FORGET], y[:N_FORGET], method="rkl", lam=1.0, num_samples=4000
    )
    assert rkl.diagnostics["ess_raw"] == pytest.approx(4000)
    # lam >= 1: the loss is the KL term alone, zero at q_u = q_full
    loss = pu.EUBO(
        q_full, lam=1.0, num_particles=100, vectorize_particles=True, max_plate_nesting=1
    )
    assert abs(loss.loss(blr.model, q_full, X[:N_FORGET], y[:N_FORGET])) < 1e-9


def test_lambda_zero_is_the_plain_objective(problem):
    blr, X, y, q_full, _ = problem
    Xe, ye = X[:N_FORGET], y[:N_FORGET]
    plain = pu.anchor(pu.forget(blr.model), guide=q_full)
    pyro.set_rng_seed(3)
    a = pu.EUBO(q_full, lam=0.0).loss(blr.model, q_full, Xe, ye)
    pyro.set_rng_seed(3)
    b = Trace_ELBO().loss(plain, q_full, Xe, ye)
    assert a == b


def test_adjusted_likelihood_switches_off_outside_the_ball(problem):
    """Per sample: integrand = log q_u - log q_D + 1[maha^2 < -2 log lam] log p(D_e|w)."""
    blr, X, y, q_full, _ = problem
    Xe, ye = X[:N_FORGET], y[:N_FORGET]
    lam = 0.05  # threshold -2 log(0.05) = 5.99 on a chi2(6): about half the draws are outside
    model = pu.infer.unlearning_model(blr.model, q_full, lam=lam)
    chol = torch.linalg.cholesky(torch.linalg.inv(q_full.precision))
    seen = set()
    for _ in range(30):
        guide_tr = poutine.trace(q_full).get_trace(Xe, ye)
        model_tr = poutine.trace(poutine.replay(model, trace=guide_tr)).get_trace(Xe, ye)
        w = guide_tr.nodes["w"]["value"]
        maha = (
            torch.linalg.solve_triangular(chol, (w - q_full.loc)[:, None], upper=False).pow(2).sum()
        )
        inside = bool(maha < -2 * torch.log(torch.tensor(lam)))
        seen.add(inside)
        loglik = dist.Normal(Xe @ w, blr.noise_scale).log_prob(ye).sum()
        integrand = guide_tr.log_prob_sum() - model_tr.log_prob_sum()  # q_u = q_D here
        assert torch.isclose(integrand, float(inside) * loglik, rtol=1e-10, atol=1e-10)
    assert seen == {True, False}


def test_mean_field_pitfall_is_detected(blr):
    """diag(Lambda_D) - Lambda_e is indefinite although the exact Lambda_r is PD."""
    g = torch.Generator().manual_seed(4)
    base = torch.randn(120, 1, generator=g)
    X = torch.cat(
        [
            base + 0.05 * torch.randn(120, 1, generator=g),
            base + 0.05 * torch.randn(120, 1, generator=g),
        ],
        -1,
    )
    y = X.sum(-1) + 0.7 * torch.randn(120, generator=g)
    exact = exact_guide(blr, X, y)
    mean_field = pu.LaplaceGuide.from_precision(
        blr.model, exact.loc, torch.diag(exact.precision.diagonal()), like=exact
    )
    forget_args = (X[:72], y[:72])
    assert pu.divided_target_check(blr.model, exact, forget_args, {})["target_proper"]
    report = pu.divided_target_check(blr.model, mean_field, forget_args, {})
    assert not report["target_proper"] and report["target_min_eigenvalue"] < 0
    options = dict(method="eubo", family="diagonal", num_steps=5, progress_bar=False)
    with pytest.raises(pu.ImproperTargetError, match="smallest eigenvalue -"):
        pu.unlearn(blr.model, mean_field, *forget_args, **options)
    with pytest.warns(pu.errors.UnreliableResultWarning, match="improper"):
        result = pu.unlearn(blr.model, mean_field, *forget_args, on_unreliable="warn", **options)
    assert result.diagnostics["target_proper"] is False and not result.reliable


def constrained_model(x, y):
    """A positive latent scale (a Jacobian to get right), known noise (a proper divided target)."""
    tau = pyro.sample("tau", dist.LogNormal(0.0, 1.0))
    w = pyro.sample("w", dist.Normal(torch.zeros(2), tau.unsqueeze(-1)).to_event(1))
    with pyro.plate("data", len(x)):
        pyro.sample("y", dist.Normal(w[..., 0] * x + w[..., 1], 0.4), obs=y)


def fit(guide, x, y, steps=1000):
    svi = SVI(constrained_model, guide, pyro.optim.Adam({"lr": 0.05}), Trace_ELBO())
    for _ in range(steps):
        svi.step(x, y)
    return guide


FULL_GUIDES = {
    "AutoNormal": lambda x, y: fit(AutoNormal(constrained_model), x, y),
    "AutoDiagonalNormal": lambda x, y: fit(AutoDiagonalNormal(constrained_model), x, y),
    "AutoMultivariateNormal": lambda x, y: fit(AutoMultivariateNormal(constrained_model), x, y),
    "AutoLowRankMultivariateNormal": lambda x, y: fit(
        AutoLowRankMultivariateNormal(constrained_model, rank=2), x, y
    ),
    "laplace_approximation": lambda x, y: fit(
        AutoLaplaceApproximation(constrained_model), x, y
    ).laplace_approximation(x, y),
}


@pytest.fixture
def constrained_data():
    g = torch.Generator().manual_seed(7)
    x = torch.randn(80, generator=g)
    y = 1.5 * x - 0.5 + 0.4 * torch.randn(80, generator=g)
    y[:20] += 1.0  # the forget set: shifted records
    refit = fit(AutoLaplaceApproximation(constrained_model), x[20:], y[20:], 600)
    intercept = refit.laplace_approximation(x[20:], y[20:]).median()["w"][1]
    pyro.clear_param_store()
    return x, y, float(intercept)


CASES = [(full, None) for full in FULL_GUIDES] + [
    ("AutoMultivariateNormal", family) for family in ("delta", "diagonal", "lowrank")
]


@pytest.mark.parametrize("full, family", CASES)
def test_every_guide_type_unlearns(constrained_data, full, family):
    """Forgetting the shifted records moves the intercept most of the way to a refit's."""
    x, y, refit_intercept = constrained_data
    q_full = FULL_GUIDES[full](x, y)
    store = {k: v.detach().clone() for k, v in pyro.get_param_store().items()}
    state = copy.deepcopy(q_full.state_dict())
    result = pu.unlearn(
        constrained_model,
        q_full,
        x[:20],
        y[:20],
        method="eubo",
        family=family,
        num_steps=300,
        lr=0.02,
        num_particles=8,
        progress_bar=False,
    )
    before = float(q_full.median(x, y)["w"][1])
    after = float(result.guide.median(x[:20], y[:20])["w"][1])
    assert abs(after - refit_intercept) < 0.6 * abs(before - refit_intercept)
    assert set(pyro.get_param_store().keys()) == set(store)
    assert all(torch.equal(v.detach(), store[k]) for k, v in pyro.get_param_store().items())
    assert all(torch.equal(v, state[k]) for k, v in q_full.state_dict().items())


def test_hand_written_guide_with_pyro_svi(problem):
    blr, X, y, q_full, retrained = problem

    def guide(X, y=None):
        loc = pyro.param("loc", q_full.loc.clone())
        scale = pyro.param(
            "scale",
            torch.linalg.inv(q_full.precision).diagonal().sqrt(),
            constraint=dist.constraints.positive,
        )
        pyro.sample("w", dist.Normal(loc, scale).to_event(1))

    svi = SVI(
        blr.model,
        guide,
        pyro.optim.ClippedAdam({"lr": 0.02, "lrd": 0.995}),
        pu.EUBO(q_full, num_particles=16, vectorize_particles=True, max_plate_nesting=1),
    )
    for _ in range(800):
        svi.step(X[:N_FORGET], y[:N_FORGET])
    sd = retrained.covariance.diagonal().sqrt()
    assert ((pyro.param("loc") - retrained.mean).abs() < 0.1 * sd).all()


def test_eubo_is_deterministic_given_the_seed(problem):
    blr, X, y, q_full, _ = problem
    runs = [
        pu.unlearn(
            blr.model,
            q_full,
            X[:N_FORGET],
            y[:N_FORGET],
            method="eubo",
            num_steps=50,
            progress_bar=False,
            seed=5,
        )
        for _ in range(2)
    ]
    assert torch.equal(pu.flat_gaussian(runs[0].guide).loc, pu.flat_gaussian(runs[1].guide).loc)


def test_catastrophic_unlearning_is_caught_not_returned():
    """Plain EUBO with Adam on breast_cancer runs off (measured: KL 3 -> 700); the guard refuses it."""
    from pyro_unlearn.datasets import breast_cancer

    X, y = breast_cancer()
    model = pu.BayesianLogisticRegression(1.0).model
    q_full = pu.fit_laplace(model, X, y)
    forget = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))[:57]
    options = dict(method="eubo", optimizer="adam", num_steps=300, progress_bar=False)
    with pytest.raises(pu.UnlearningDivergedError, match="catastrophic unlearning suspected"):
        pu.unlearn(model, q_full, X[forget], y[forget], **options)
    with pytest.warns(UserWarning, match="catastrophic"):
        kept = pu.unlearn(model, q_full, X[forget], y[forget], on_unreliable="warn", **options)
    assert kept.diagnostics["drift"] > 3 * kept.diagnostics["laplace_drift"] + 1

"""Laplace unlearning against closed-form retrained posteriors."""

import copy

import pyro
import pyro.distributions as dist
import pytest
import torch
from conftest import diabetes, exact_guide, relative_error, synthetic
from pyro.infer import SVI, Predictive, Trace_ELBO
from pyro.infer.autoguide import (
    AutoDelta,
    AutoDiagonalNormal,
    AutoLaplaceApproximation,
    AutoMultivariateNormal,
)

import pyro_unlearn as pu

TOL = 1e-8


def forget_set(n, fraction, structure, y):
    """Random ids, or a structured subset: the largest targets (a region of the data)."""
    k = max(1, int(round(fraction * n)))
    if structure == "random":
        return torch.randperm(n, generator=torch.Generator().manual_seed(3))[:k].sort().values
    return y.argsort(descending=True)[:k].sort().values


@pytest.mark.parametrize("dataset", ["diabetes", "synthetic"])
@pytest.mark.parametrize("fraction", [0.05, 0.3])
@pytest.mark.parametrize("structure", ["random", "structured"])
@pytest.mark.parametrize("mode", ["slice", "mask"])
def test_exact_on_linear_regression(blr, dataset, fraction, structure, mode):
    X, y = diabetes() if dataset == "diabetes" else synthetic()
    idx = forget_set(len(y), fraction, structure, y)
    keep = torch.ones(len(y), dtype=torch.bool)
    keep[idx] = False
    retrained = blr.posterior(X[keep], y[keep])
    guide = exact_guide(blr, X, y)
    if mode == "slice":
        result = pu.unlearn(blr.model, guide, X[idx], y[idx], method="laplace")
    else:
        result = pu.unlearn(blr.model, guide, X, y, mask=idx, plate="data")
    assert relative_error(result.guide.loc, retrained.mean) <= TOL
    assert relative_error(result.guide.precision, retrained.precision) <= TOL
    assert result.method == "laplace" and result.seconds > 0
    assert result.diagnostics["min_eigenvalue"] > 0


@pytest.mark.parametrize(
    "source", ["laplace_approximation", "AutoLaplaceApproximation", "AutoDelta"]
)
def test_exact_from_pyro_guides(blr, source):
    X, y = synthetic(n=120, d=4)
    full = blr.posterior(X, y)
    idx = torch.arange(0, 120, 5)
    keep = torch.ones(120, dtype=torch.bool)
    keep[idx] = False
    retrained = blr.posterior(X[keep], y[keep])
    if source == "AutoDelta":
        guide = AutoDelta(blr.model, init_loc_fn=lambda site: full.mean)
        guide(X, y)
        options = {"full_args": (X, y)}
    else:
        guide = AutoLaplaceApproximation(blr.model)
        guide(X, y)
        with torch.no_grad():
            guide.loc.copy_(full.mean)
        options = {"full_args": (X, y)}
        if source == "laplace_approximation":
            guide, options = guide.laplace_approximation(X, y), {}
    result = pu.unlearn(blr.model, guide, X[idx], y[idx], **options)
    assert relative_error(result.guide.loc, retrained.mean) <= TOL
    assert relative_error(result.guide.precision, retrained.precision) <= 1e-8


@pytest.mark.parametrize("hessian", ["full", "ggn"])
def test_ggn_equals_hessian_for_gaussian_likelihood(blr, hessian):
    X, y = synthetic()
    idx = torch.arange(30)
    retrained = blr.posterior(X[30:], y[30:])
    result = pu.laplace_unlearn(blr.model, exact_guide(blr, X, y), X[idx], y[idx], hessian=hessian)
    assert relative_error(result.precision, retrained.precision) <= TOL
    assert relative_error(result.loc, retrained.mean) <= TOL


def logistic_model(X, y=None):
    w = pyro.sample("w", dist.Normal(torch.zeros(X.shape[1]), 2.0).to_event(1))
    with pyro.plate("data", len(X)):
        return pyro.sample("y", dist.Bernoulli(logits=(X * w).sum(-1)), obs=y)


@pytest.fixture
def logistic_data():
    g = torch.Generator().manual_seed(5)
    X = torch.cat([torch.randn(150, 3, generator=g), torch.ones(150, 1)], -1)
    y = torch.bernoulli(torch.sigmoid(X @ torch.tensor([1.5, -1.0, 0.5, 0.2])), generator=g)
    guide = AutoLaplaceApproximation(logistic_model)
    svi = SVI(logistic_model, guide, pyro.optim.Adam({"lr": 0.05}), Trace_ELBO())
    for _ in range(600):
        svi.step(X, y)
    return X, y, guide.laplace_approximation(X, y)


def test_ggn_equals_hessian_for_canonical_logistic(logistic_data):
    X, y, guide = logistic_data
    full = pu.laplace_unlearn(logistic_model, guide, X[:20], y[:20], hessian="full")
    ggn = pu.laplace_unlearn(logistic_model, guide, X[:20], y[:20], hessian="ggn")
    assert relative_error(ggn.precision, full.precision) <= 1e-10


def test_ggn_against_brute_force_fisher(logistic_data):
    X, y, guide = logistic_data
    Xe = X[:15]
    z = guide.loc
    p = torch.sigmoid(Xe @ z)
    brute = sum(p_i * (1 - p_i) * torch.outer(x_i, x_i) for x_i, p_i in zip(Xe, p, strict=True))
    result = pu.laplace_unlearn(logistic_model, guide, Xe, y[:15], hessian="ggn", newton_steps=0)
    h_full = torch.cholesky_inverse(guide.scale[:, None] * guide.scale_tril)
    assert torch.allclose(h_full - result.precision, brute, rtol=1e-8, atol=1e-10)


def test_newton_iterations_reach_the_mode_of_the_divided_target(logistic_data):
    X, y, guide = logistic_data
    Xe, ye = X[:30], y[:30]
    z_full = guide.loc
    h_full = torch.cholesky_inverse(guide.scale[:, None] * guide.scale_tril)
    one = pu.laplace_unlearn(logistic_model, guide, Xe, ye, newton_steps=1)
    many = pu.laplace_unlearn(logistic_model, guide, Xe, ye, newton_steps=6)

    def grad_j(z):  # J(z) = 1/2 (z - z_D)' H_D (z - z_D) + log p(D_e | z)
        z = z.detach().requires_grad_()
        loglik = dist.Bernoulli(logits=Xe @ z).log_prob(ye).sum()
        j = 0.5 * (z - z_full) @ h_full @ (z - z_full) + loglik
        return torch.autograd.grad(j, z)[0]

    assert grad_j(many.loc).abs().max() < 1e-9
    assert grad_j(many.loc).norm() < grad_j(one.loc).norm()
    assert many.diagnostics["forget_nll_after"] > one.diagnostics["forget_nll_before"]


def test_diag_hessian_is_the_mean_field_formula(blr):
    X, y = synthetic(n=80, d=4)
    guide = exact_guide(blr, X, y)
    Xe, ye = X[:10], y[:10]
    result = pu.laplace_unlearn(blr.model, guide, Xe, ye, hessian="diag")
    h_r = guide.precision.diagonal() - (Xe**2).sum(0) / blr.noise_scale**2
    grad = Xe.T @ (Xe @ guide.loc - ye) / blr.noise_scale**2  # gradient of l_e = -log p(D_e|w)
    assert torch.allclose(result.precision, torch.diag(h_r), rtol=1e-12)
    assert torch.allclose(result.loc, guide.loc + grad / h_r, rtol=1e-10)


def test_mean_field_guide_is_accepted(blr):
    X, y = synthetic(n=80, d=4)
    guide = AutoDiagonalNormal(blr.model)
    guide(X, y)
    result = pu.unlearn(blr.model, guide, X[:5], y[:5], hessian="diag")
    assert result.guide.precision.shape == (4, 4)
    assert (
        torch.count_nonzero(result.guide.precision - torch.diag(result.guide.precision.diagonal()))
        == 0
    )


def test_non_pd_downdate_raises_or_clips(blr):
    X, y = synthetic(n=100, d=4)
    post = blr.posterior(X, y)
    # a mean-field q(theta|D) much wider than the truth: downdating it goes indefinite
    loose = pu.LaplaceGuide.from_precision(
        blr.model,
        post.mean,
        torch.diag(post.precision.diagonal()) / 20,
        like=exact_guide(blr, X, y),
    )
    with pytest.raises(pu.NotPositiveDefiniteError, match="smallest eigenvalue"):
        pu.laplace_unlearn(blr.model, loose, X[:60], y[:60])
    with pytest.warns(UserWarning, match="clipped"):
        repaired = pu.laplace_unlearn(blr.model, loose, X[:60], y[:60], psd="clip")
    assert torch.linalg.eigvalsh(repaired.precision).min() > 0
    assert repaired.diagnostics["num_clipped"] >= 1


def test_forgetting_everything_returns_the_prior(blr):
    X, y = synthetic(n=50, d=3)
    result = pu.unlearn(blr.model, exact_guide(blr, X, y), X, y)
    prior = blr.prior(3)
    assert result.guide.loc.abs().max() < 1e-10
    assert relative_error(result.guide.precision, prior.precision) <= TOL


def test_callers_guide_and_param_store_untouched(blr):
    X, y = synthetic(n=80, d=3)
    guide = AutoMultivariateNormal(blr.model)
    svi = SVI(blr.model, guide, pyro.optim.Adam({"lr": 0.05}), Trace_ELBO())
    for _ in range(300):
        svi.step(X, y)
    store_before = {k: v.detach().clone() for k, v in pyro.get_param_store().items()}
    state_before = copy.deepcopy(guide.state_dict())
    result = pu.unlearn(blr.model, guide, X[:10], y[:10])
    assert set(pyro.get_param_store().keys()) == set(store_before)
    for k, v in pyro.get_param_store().items():
        assert torch.equal(v.detach(), store_before[k])
    for k, v in guide.state_dict().items():
        assert torch.equal(v, state_before[k])
    assert not torch.equal(result.guide.loc, guide.loc.detach())


def test_result_works_with_predictive_and_is_deterministic(blr):
    X, y = synthetic(n=60, d=3)
    guide = exact_guide(blr, X, y)
    a = pu.unlearn(blr.model, guide, X[:6], y[:6])
    b = pu.unlearn(blr.model, guide, X[:6], y[:6])
    assert torch.equal(a.guide.loc, b.guide.loc) and torch.equal(
        a.guide.precision, b.guide.precision
    )
    samples = Predictive(blr.model, guide=a.guide, num_samples=2000)(X[:4])
    assert samples["y"].shape == (2000, 4)
    cov = torch.linalg.inv(a.guide.precision)
    mc_se = cov.diagonal().sqrt() / 2000**0.5
    assert ((samples["w"].squeeze(-2).mean(0) - a.guide.loc).abs() < 5 * mc_se).all()

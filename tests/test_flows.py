"""Flow guides: their layers and snapshots, the anchor on a flow, EUBO / rKL unlearning of a flow
against the exact retrained posterior, and fit_flow."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from conftest import exact_guide, moment_kl, synthetic
from pyro.infer import SVI, Trace_ELBO
from pyro.infer.autoguide import AutoIAFNormal

import pyro_unlearn as pu
from pyro_unlearn.flows import (
    CholeskyAffine,
    flow_guide,
    flow_posterior,
    identity_autoregressive,
    residual_flow,
)
from pyro_unlearn.guides import freeze
from pyro_unlearn.posteriors import log_density_max

N_FORGET = 40


def exact_flow(blr, X, y):
    """A flow guide whose posterior is exactly the conjugate posterior (identity IAF + affine)."""
    post = blr.posterior(X, y)
    with pyro.settings.context(module_local_params=True):
        guide = flow_guide(
            blr.model, loc=post.mean, scale_tril=torch.linalg.cholesky(post.covariance)
        )
        guide(X, y)
    return freeze(guide)


def flow_draws(guide, n=40000):
    with torch.no_grad():
        return flow_posterior(guide).sample((n,))


@pytest.fixture
def problem(blr):
    X, y = synthetic(n=200, d=6)
    return blr, X, y, blr.posterior(X[N_FORGET:], y[N_FORGET:])


def test_identity_initialised_layers_are_the_identity():
    z = torch.randn(5, 4)
    for transform in (identity_autoregressive(4), CholeskyAffine(4)):
        assert torch.allclose(transform(z), z)
        assert torch.allclose(transform.log_abs_det_jacobian(z, transform(z)), torch.zeros(5))


def test_cholesky_affine_inverts_and_has_the_right_jacobian():
    scale_tril = torch.tensor([[2.0, 0.0], [0.5, 0.3]])
    affine = CholeskyAffine(2, torch.tensor([1.0, -1.0]), scale_tril)
    z = torch.randn(7, 2)
    x = affine(z)
    assert torch.allclose(x, torch.tensor([1.0, -1.0]) + z @ scale_tril.T)
    assert torch.allclose(affine.inv(x.clone()), z)
    log_det = torch.linalg.slogdet(scale_tril).logabsdet
    assert torch.allclose(affine.log_abs_det_jacobian(z, x), log_det.expand(7))


def test_flow_anchor_log_joint_is_the_flow_density(problem):
    """anchor(model) with a flow guide: log joint = log q(z|D) - log|dtheta/dz| (here 0)."""
    blr, X, y, _ = problem
    full = exact_flow(blr, X, y)
    trace = pyro.poutine.trace(pu.anchor(blr.model, guide=full)).get_trace(X[:3], y[:3])
    w = trace.nodes["w"]["value"]
    post = blr.posterior(X, y)
    expected = dist.MultivariateNormal(post.mean, post.covariance).log_prob(w)
    assert torch.isclose(trace.nodes["w"]["fn"].log_prob(w), expected, atol=1e-8)


def test_flow_snapshot_is_detached_from_the_guide():
    def model():
        pyro.sample("a", dist.Normal(torch.zeros(2), 1.0).to_event(1))

    guide = AutoIAFNormal(model, hidden_dim=[4])
    svi = SVI(model, guide, pyro.optim.Adam({"lr": 0.05}), Trace_ELBO())
    svi.step()
    snapshot = flow_posterior(guide)
    z = torch.randn(3, 2)
    before = snapshot.log_prob(z.clone())
    for _ in range(20):
        svi.step()
    assert torch.equal(snapshot.log_prob(z.clone()), before)
    assert not torch.allclose(guide.get_posterior().log_prob(z.clone()), before)
    assert not any(p.requires_grad for t in snapshot.transforms for p in t.parameters())


def test_numerical_maximum_of_a_gaussian_flow_matches_the_closed_form(problem):
    blr, X, y, _ = problem
    post = blr.posterior(X, y)
    found = log_density_max(flow_posterior(exact_flow(blr, X, y)))
    exact = dist.MultivariateNormal(post.mean, post.covariance).log_prob(post.mean)
    assert abs(found - float(exact)) < 1e-6


def test_flow_eubo_reaches_the_exact_retrained_posterior(problem):
    """Moment-matching 40000 draws biases the KL by about (d + d(d+1)/2)/(2N) = 3e-4."""
    blr, X, y, retrained = problem
    full = exact_flow(blr, X, y)
    before = flow_draws(full, 10)
    result = pu.unlearn(
        blr.model,
        full,
        X[:N_FORGET],
        y[:N_FORGET],
        method="eubo",
        num_steps=1500,
        lr=0.02,
        num_particles=64,
        progress_bar=False,
    )
    assert moment_kl(flow_draws(result.guide), retrained) < 1e-3
    assert moment_kl(flow_draws(full), retrained) > 0.1  # doing nothing is far
    torch.manual_seed(0)
    after = flow_draws(full, 10)
    torch.manual_seed(0)
    assert torch.equal(flow_draws(full, 10), after)  # the caller's guide is unchanged
    assert before.shape == after.shape
    assert result.diagnostics["optimizer"] == "adam"


def test_flow_rkl_matches_the_retrained_moments(problem):
    """The importance draws (ESS ~ 14000 here) bound the accuracy: KL a few 1e-3 at most."""
    blr, X, y, _ = problem
    forget = 15
    retrained = blr.posterior(X[forget:], y[forget:])
    full = exact_flow(blr, X, y)
    result = pu.unlearn(blr.model, full, X[:forget], y[:forget], method="rkl")
    assert result.diagnostics["pareto_k"] < 0.7
    assert moment_kl(flow_draws(result.guide), retrained) < 5e-3


def test_flow_lambda_one_returns_the_full_posterior(problem):
    blr, X, y, _ = problem
    full = exact_flow(blr, X, y)
    result = pu.unlearn(
        blr.model, full, X[:N_FORGET], y[:N_FORGET], method="eubo", lam=1.0, progress_bar=False
    )
    z = flow_draws(full, 100)
    q_full, q_u = flow_posterior(full), flow_posterior(result.guide)
    assert torch.allclose(q_u.log_prob(z.clone()), q_full.log_prob(z.clone()), atol=1e-10)


def test_flow_adjusted_likelihood_uses_the_flow_maximum(problem):
    """With an exactly Gaussian flow, log q - max log q is minus half the Mahalanobis distance."""
    blr, X, y, _ = problem
    post = blr.posterior(X, y)
    anchor = pu.handlers.AnchorMessenger(exact_flow(blr, X, y))
    with anchor:
        trace = pyro.poutine.trace(blr.model).get_trace(X[:3], y[:3])
        ratio = anchor.log_ratio
    diff = trace.nodes["w"]["value"] - post.mean
    assert torch.isclose(ratio, -0.5 * diff @ post.precision @ diff, atol=1e-6)


def test_residual_flow_starts_at_the_full_posterior(problem):
    blr, X, y, _ = problem
    full = exact_guide(blr, X, y)
    q_u = residual_flow(full, blr.model, X[:5], y[:5])
    post = blr.posterior(X, y)
    z = torch.randn(10, 6)
    expected = dist.MultivariateNormal(post.mean, post.covariance).log_prob(z)
    assert torch.allclose(q_u.get_posterior().log_prob(z), expected)
    trainable = [p for p in q_u.parameters() if p.requires_grad]
    assert trainable and len(pyro.get_param_store()) == 0


def test_flow_anchor_reads_several_sites_jointly():
    """Two sites, one constrained: log joint = log q(z) - log|d theta/d z| of the positive site."""

    def model():
        pyro.sample("a", dist.Normal(torch.zeros(2), 1.0).to_event(1))
        pyro.sample("b", dist.LogNormal(0.0, 1.0))

    guide = AutoIAFNormal(model, hidden_dim=[6])
    svi = SVI(model, guide, pyro.optim.Adam({"lr": 0.05}), Trace_ELBO())
    for _ in range(10):  # a flow that is not the identity
        svi.step()
    trace = pyro.poutine.trace(pu.anchor(model, guide=guide)).get_trace()
    z = torch.cat([trace.nodes["a"]["value"], trace.nodes["b"]["value"].log().reshape(1)])
    expected = flow_posterior(guide).log_prob(z) - z[2]
    assert torch.isclose(trace.log_prob_sum(), expected, atol=1e-8)


def test_flow_results_work_with_masks_ledgers_sequels_and_arviz(problem):
    """A careful user's path: masked request, ledger, a second request, the ArviZ check."""
    blr, X, y, _ = problem
    full = exact_flow(blr, X, y)
    first = pu.unlearn(
        blr.model,
        full,
        X,
        y,
        mask=torch.arange(10),
        plate="data",
        method="eubo",
        num_steps=100,
        progress_bar=False,
        ledger=pu.ForgetLedger(len(y)),
    )
    second = pu.unlearn(
        blr.model,
        first.guide,
        X,
        y,
        mask=torch.arange(10, 20),
        plate="data",
        method="eubo",
        num_steps=100,
        progress_bar=False,
    )
    assert second.guide.ledger.forgotten == tuple(range(20))
    with pytest.raises(pu.RepeatedDeletionError):
        pu.unlearn(blr.model, second.guide, X, y, mask=[3], plate="data", method="eubo")
    reference = pu.retrain(
        blr.model, X, y, forget_mask=torch.arange(20), plate="data", method="exact"
    )
    frame = pu.compare_posteriors(
        {"original": full, "unlearned": second, "retrained": reference},
        blr.model,
        X,
        y,
        forget_mask=torch.arange(20),
        num_samples=500,
    )
    assert frame.loc["unlearned", "kl_mm"] < frame.loc["original", "kl_mm"]


def test_fit_flow_starts_at_laplace_and_ends_frozen(problem):
    """On a linear-Gaussian model the Laplace start is exact; SVI must not spoil it much."""
    blr, X, y, _ = problem
    guide = pu.fit_flow(blr.model, X, y, num_steps=200)
    post = blr.posterior(X, y)
    assert moment_kl(flow_draws(guide, 20000), post) < 0.01
    assert not any(p.requires_grad for p in guide.parameters())
    assert len(pyro.get_param_store()) == 0

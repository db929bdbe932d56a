"""Natural-gradient steps: the log joint they differentiate, and fit_svi's finish at the ELBO's fixed point."""

import pyro
import pyro.distributions as dist
import torch
from conftest import relative_error, synthetic
from pyro.infer.autoguide import AutoMultivariateNormal

import pyro_unlearn as pu
from pyro_unlearn.guides import flat_gaussian, latent_layout
from pyro_unlearn.model_eval import ModelEvaluator, SetLatents


def scaled_regression(x, y):
    """A constrained site (the noise scale) and a vector site, vectorisable over particles."""
    s = pyro.sample("s", dist.LogNormal(0.0, 1.0))
    w = pyro.sample("w", dist.Normal(torch.zeros(2), 1.0).to_event(1))
    with pyro.plate("data", len(y)):
        pyro.sample("y", dist.Normal((x * w).sum(-1), s), obs=y)


def test_log_joint_is_the_traced_log_joint_with_jacobians():
    x, y = synthetic(n=20, d=2)
    guide = AutoMultivariateNormal(scaled_regression)
    guide(x, y)
    layout = latent_layout(guide)
    z = torch.randn(5, 3, generator=torch.Generator().manual_seed(0))
    batched = ModelEvaluator(scaled_regression, (x, y)).log_joint(layout, z)
    for i in range(5):
        values = {s.name: s.constrain(z[i][s.slice]) for s in layout}
        trace = pyro.poutine.trace(SetLatents(values)(scaled_regression)).get_trace(x, y)
        jacobian = sum(
            s.transform.log_abs_det_jacobian(
                z[i][s.slice].reshape(s.unconstrained_shape), trace.nodes[s.name]["value"]
            ).sum()
            for s in layout
        )
        assert torch.isclose(batched[i], trace.log_prob_sum() + jacobian, rtol=1e-12)


def test_fit_svi_ends_at_the_exact_posterior_of_a_conjugate_model(blr):
    """Gaussians contain the posterior: the ELBO's fixed point is exact, and one natural step
    reaches it from wherever Adam stopped (the expected gradient of a quadratic is exact)."""
    X, y = synthetic(n=200, d=6)
    exact = blr.posterior(X, y)
    guide = pu.fit_svi(blr.model, X, y, num_steps=200)
    g = flat_gaussian(guide)
    assert relative_error(g.loc, exact.mean) < 1e-10
    assert relative_error(g.precision, exact.precision) < 1e-8
    assert guide.natural_steps == [1.0, 1.0]  # the second step moves nothing: stop
    adam_only = flat_gaussian(pu.fit_svi(blr.model, X, y, num_steps=200, natural_steps=0))
    assert relative_error(adam_only.loc, exact.mean) > 1e-3  # the finish is what makes it exact


def test_fit_svi_finish_is_deterministic_and_leaves_other_guides_alone(blr):
    X, y = synthetic(n=60, d=3)
    a = flat_gaussian(pu.fit_svi(scaled_regression, X[:, :2], y, num_steps=100))
    b = flat_gaussian(pu.fit_svi(scaled_regression, X[:, :2], y, num_steps=100))
    assert torch.equal(a.loc, b.loc) and torch.equal(a.precision, b.precision)
    diagonal = pu.fit_svi(
        blr.model, X, y, num_steps=50, guide_class=pyro.infer.autoguide.AutoDiagonalNormal
    )
    assert not hasattr(diagonal, "natural_steps")

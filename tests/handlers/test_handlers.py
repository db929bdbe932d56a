"""forget / retain / anchor against hand-computed log-likelihood sums."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from conftest import exact_guide, synthetic
from pyro import poutine
from pyro.infer import Trace_ELBO, TraceGraph_ELBO, TraceMeanField_ELBO
from pyro.infer.autoguide import (
    AutoDiagonalNormal,
    AutoLaplaceApproximation,
    AutoLowRankMultivariateNormal,
    AutoMultivariateNormal,
    AutoNormal,
)

import pyro_unlearn as pu
from pyro_unlearn.model_eval import SetLatents

N = 12


def fix(fn, values):
    """Set latent values without marking them observed (as ``condition`` would)."""
    return SetLatents(values)(fn)


FORGET = torch.tensor([1, 4, 5, 11])


def two_site_model(x, y, c):
    """Two observed sites (Normal and Bernoulli) in one plate."""
    w = pyro.sample("w", dist.Normal(0.0, 1.0))
    b = pyro.sample("b", dist.Normal(0.0, 1.0))
    with pyro.plate("data", len(x)):
        pyro.sample("y", dist.Normal(w * x, 0.5), obs=y)
        pyro.sample("c", dist.Bernoulli(logits=b * x), obs=c)


def nested_model(x, y):
    """Observations y[j, i]: 3 repeats (inner plate, dim -2) of N units (data plate, dim -1)."""
    w = pyro.sample("w", dist.Normal(0.0, 1.0))
    with pyro.plate("data", x.shape[-1], dim=-1), pyro.plate("repeat", 3, dim=-2):
        pyro.sample("y", dist.Normal(w * x, 0.5), obs=y)


@pytest.fixture
def data():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(N, generator=g)
    y = 0.7 * x + 0.5 * torch.randn(N, generator=g)
    c = (torch.rand(N, generator=g) < 0.5).double()
    return x, y, c


def latent_log_prob(tr):
    return sum(
        s["log_prob_sum"]
        for s in tr.nodes.values()
        if s["type"] == "sample" and not s["is_observed"]
    )


def observed_log_prob(tr):
    tr.compute_log_prob()
    return sum(
        s["log_prob_sum"] for s in tr.nodes.values() if s["type"] == "sample" and s["is_observed"]
    )


def hand_forget_term(x, y, c, w, b, index, weight=-1.0):
    ll = dist.Normal(w * x[index], 0.5).log_prob(y[index]).sum()
    ll = ll + dist.Bernoulli(logits=b * x[index]).log_prob(c[index]).sum()
    return weight * ll


@pytest.mark.parametrize("weight", [-1.0, -0.3, 2.0])
def test_masked_and_unmasked_modes_equal_hand_sum(data, weight):
    x, y, c = data
    values = {"w": torch.tensor(0.4), "b": torch.tensor(-1.2)}
    fixed = fix(two_site_model, values)
    masked = pu.forget(fixed, weight=weight, mask=FORGET, plate="data", sites=["y", "c"])
    unmasked = pu.forget(fixed, weight=weight, sites=["y", "c"])
    tr_m = poutine.trace(masked).get_trace(x, y, c)
    tr_u = poutine.trace(unmasked).get_trace(x[FORGET], y[FORGET], c[FORGET])
    expected = hand_forget_term(x, y, c, values["w"], values["b"], FORGET, weight)
    sites = ("y", "c")
    tr_m.compute_log_prob()
    tr_u.compute_log_prob()
    assert torch.isclose(sum(tr_m.nodes[s]["log_prob_sum"] for s in sites), expected, rtol=1e-12)
    assert torch.isclose(sum(tr_u.nodes[s]["log_prob_sum"] for s in sites), expected, rtol=1e-12)


def test_bool_mask_equals_index_mask(data):
    x, y, c = data
    as_bool = torch.zeros(N, dtype=torch.bool)
    as_bool[FORGET] = True
    fixed = fix(two_site_model, {"w": torch.tensor(0.3), "b": torch.tensor(0.2)})
    a = observed_log_prob(
        poutine.trace(pu.forget(fixed, mask=as_bool, plate="data", sites=["y", "c"])).get_trace(
            x, y, c
        )
    )
    b = observed_log_prob(
        poutine.trace(pu.forget(fixed, mask=FORGET, plate="data", sites=["y", "c"])).get_trace(
            x, y, c
        )
    )
    assert torch.equal(a, b)


def test_forget_leaves_latent_sites_alone(data):
    x, y, c = data
    tr = poutine.trace(pu.forget(two_site_model)).get_trace(x, y, c)
    tr.compute_log_prob()
    assert tr.nodes["w"]["scale"] == 1.0
    assert tr.nodes["y"]["scale"] == -1.0


def test_subsampled_plate_maps_batch_to_global_indices(blr):
    X, y = synthetic(n=30, d=3)
    w = torch.tensor([0.5, -1.0, 2.0])
    fixed = fix(blr.model, {"w": w})
    forget_idx = torch.tensor([0, 3, 7, 8, 20, 29])
    batch = torch.tensor([29, 3, 5, 8, 11, 0, 14, 22])  # hits forget ids 29, 3, 8, 0

    def batch_model(X, y):
        w_ = pyro.sample("w", dist.Normal(torch.zeros(3), blr.prior_scale).to_event(1))
        with pyro.plate("data", len(y), subsample=batch) as idx:
            pyro.sample("y", dist.Normal((X[idx] * w_).sum(-1), blr.noise_scale), obs=y[idx])

    tr = poutine.trace(
        pu.forget(fix(batch_model, {"w": w}), mask=forget_idx, plate="data")
    ).get_trace(X, y)
    hits = torch.tensor([29, 3, 8, 0])
    expected = (
        -(len(y) / len(batch)) * dist.Normal(X[hits] @ w, blr.noise_scale).log_prob(y[hits]).sum()
    )
    assert torch.isclose(observed_log_prob(tr), expected, rtol=1e-12)
    # random subsampling: the subsample-scaled estimate is unbiased for the full forget term
    full = -dist.Normal(X[forget_idx] @ w, blr.noise_scale).log_prob(y[forget_idx]).sum()
    sub = pu.forget(fixed, mask=forget_idx, plate="data")
    estimates = torch.stack(
        [
            observed_log_prob(poutine.trace(sub).get_trace(X, y, subsample_size=10))
            for _ in range(4000)
        ]
    )
    standard_error = estimates.std() / len(estimates) ** 0.5
    assert abs(estimates.mean() - full) < 4 * standard_error


def test_nested_plates(data):
    x, _, _ = data
    g = torch.Generator().manual_seed(2)
    y = 0.7 * x + 0.5 * torch.randn(3, N, generator=g)
    w = torch.tensor(0.9)
    fixed = fix(nested_model, {"w": w})
    masked = observed_log_prob(
        poutine.trace(pu.forget(fixed, mask=FORGET, plate="data")).get_trace(x, y)
    )
    unmasked = observed_log_prob(poutine.trace(pu.forget(fixed)).get_trace(x[FORGET], y[:, FORGET]))
    expected = -dist.Normal(w * x[FORGET], 0.5).log_prob(y[:, FORGET]).sum()
    assert torch.isclose(masked, expected, rtol=1e-12)
    assert torch.isclose(unmasked, expected, rtol=1e-12)


def test_context_manager_and_decorator(data):
    x, y, c = data
    fixed = fix(two_site_model, {"w": torch.tensor(0.3), "b": torch.tensor(0.2)})

    @pu.forget(mask=FORGET, plate="data")
    def decorated(x, y, c):
        return fixed(x, y, c)

    with poutine.trace() as tr_ctx, pu.forget(mask=FORGET, plate="data"):
        fixed(x, y, c)
    a = observed_log_prob(poutine.trace(decorated).get_trace(x, y, c))
    assert torch.isclose(a, observed_log_prob(tr_ctx.trace), rtol=1e-12)


def test_retain_reproduces_retained_posterior(blr):
    X, y = synthetic(n=60, d=4)
    drop = torch.arange(0, 60, 4)
    keep = torch.ones(60, dtype=torch.bool)
    keep[drop] = False
    exact = blr.posterior(X[keep], y[keep])
    model = pu.retain(blr.model, mask=drop, plate="data")
    guide = AutoLaplaceApproximation(model)
    guide(X, y)
    with torch.no_grad():
        guide.loc.copy_(exact.mean)
    laplace = guide.laplace_approximation(X, y)
    precision = torch.cholesky_inverse(laplace.scale[:, None] * laplace.scale_tril)
    assert torch.allclose(precision, exact.precision, rtol=1e-8)
    # the exact retained mean is a stationary point of the retained log joint
    w = exact.mean.clone().requires_grad_()
    log_joint = poutine.trace(fix(model, {"w": w})).get_trace(X, y).log_prob_sum()
    (grad,) = torch.autograd.grad(log_joint, w)
    assert grad.abs().max() < 1e-8


def test_retain_nothing_is_identity(blr):
    X, y = synthetic(n=20, d=3)
    w = torch.tensor([0.1, 0.2, 0.3])
    nothing = torch.zeros(20, dtype=torch.bool)
    a = poutine.trace(pu.retain(fix(blr.model, {"w": w}), mask=nothing, plate="data")).get_trace(
        X, y
    )
    b = poutine.trace(fix(blr.model, {"w": w})).get_trace(X, y)
    assert torch.equal(a.log_prob_sum(), b.log_prob_sum())


# ---------------------------------------------------------------- anchor


def constrained_model(x, y):
    """A model with a vector site and a positive site, so Jacobians matter."""
    w = pyro.sample("w", dist.Normal(torch.zeros(2), 1.0).to_event(1))
    sigma = pyro.sample("sigma", dist.LogNormal(0.0, 1.0))
    with pyro.plate("data", len(x)):
        pyro.sample("y", dist.Normal(w[..., 0] * x + w[..., 1], sigma), obs=y)


def fitted(guide_cls, x, y, steps=200, **kw):
    guide = guide_cls(constrained_model, **kw)
    svi = pyro.infer.SVI(constrained_model, guide, pyro.optim.Adam({"lr": 0.05}), Trace_ELBO())
    for _ in range(steps):
        svi.step(x, y)
    return guide


GUIDES = {
    "AutoNormal": lambda x, y: fitted(AutoNormal, x, y),
    "AutoDiagonalNormal": lambda x, y: fitted(AutoDiagonalNormal, x, y),
    "AutoMultivariateNormal": lambda x, y: fitted(AutoMultivariateNormal, x, y),
    "AutoLowRankMultivariateNormal": lambda x, y: fitted(
        AutoLowRankMultivariateNormal, x, y, rank=2
    ),
    "laplace_approximation": lambda x, y: fitted(
        AutoLaplaceApproximation, x, y
    ).laplace_approximation(x, y),
}


@pytest.mark.parametrize("name", list(GUIDES))
def test_anchor_log_density_equals_guide_density(data, name):
    """Under anchor(model, guide=q), log q(theta) of the model equals the guide's own."""
    x, y, _ = data
    guide = GUIDES[name](x, y)
    for _ in range(3):
        guide_tr = poutine.trace(guide).get_trace(x, y)
        model_tr = poutine.trace(
            poutine.replay(pu.anchor(constrained_model, guide=guide), trace=guide_tr)
        ).get_trace(x, y)
        guide_tr.compute_log_prob()
        model_tr.compute_log_prob()
        assert torch.isclose(latent_log_prob(model_tr), guide_tr.log_prob_sum(), rtol=1e-10)


def test_anchor_with_site_distributions(data):
    x, y, _ = data
    priors = {"w": dist.Normal(torch.ones(2), 0.1).to_event(1), "sigma": dist.Gamma(2.0, 2.0)}
    tr = poutine.trace(pu.anchor(constrained_model, guide=priors)).get_trace(x, y)
    tr.compute_log_prob()
    expected = priors["w"].log_prob(tr.nodes["w"]["value"]) + priors["sigma"].log_prob(
        tr.nodes["sigma"]["value"]
    )
    assert torch.isclose(latent_log_prob(tr), expected)


def test_anchored_samples_follow_the_joint_gaussian(blr):
    """Ancestral sampling through the chain-rule factorisation reproduces the covariance."""
    X, y = synthetic(n=40, d=3)
    guide = exact_guide(blr, X, y)
    with pyro.plate("particles", 40000, dim=-2):
        w = (
            poutine.trace(pu.anchor(blr.model, guide=guide))
            .get_trace(X, y)
            .nodes["w"]["value"]
            .squeeze(-2)
        )
    cov = torch.linalg.inv(guide.precision)
    assert torch.allclose(w.mean(0), guide.loc, atol=5 * cov.diagonal().max().sqrt() / 200)
    assert torch.allclose(torch.cov(w.T), cov, atol=0.05 * cov.diagonal().max())


@pytest.mark.parametrize("elbo_cls", [Trace_ELBO, TraceMeanField_ELBO, TraceGraph_ELBO])
def test_negative_elbo_of_anchor_forget_is_the_eubo(blr, elbo_cls):
    r"""-ELBO of anchor(forget(model)) on D_e = E_q[log p(D_e|w)] + KL(q || q_D), analytically."""
    X, y = synthetic(n=40, d=3)
    full = blr.posterior(X, y)
    q_full = exact_guide(blr, X, y)
    shifted = pu.FlatGaussian(full.mean + 0.1, precision=full.precision * 1.3)
    q_u = pu.LaplaceGuide.from_precision(blr.model, shifted.mean, shifted.precision, like=q_full)
    Xe, ye = X[:8], y[:8]
    s2 = blr.noise_scale**2
    cov = shifted.covariance
    expected_ll = -0.5 * len(ye) * torch.log(torch.tensor(2 * torch.pi * s2)) - 0.5 / s2 * (
        ((ye - Xe @ shifted.mean) ** 2).sum() + torch.trace(Xe @ cov @ Xe.T)
    )
    eubo = expected_ll + shifted.kl(full)
    model = pu.anchor(pu.forget(blr.model), guide=q_full)
    elbo = elbo_cls(num_particles=2000, vectorize_particles=True, max_plate_nesting=1)
    estimates = torch.tensor([elbo.loss(model, q_u, Xe, ye) for _ in range(20)])
    standard_error = estimates.std() / len(estimates) ** 0.5
    assert abs(estimates.mean() - eubo) < 4 * standard_error + 1e-9
    # and per sample, the integrand is log q_u - log q_D + log p(D_e | w), exactly
    guide_tr = poutine.trace(q_u).get_trace(Xe, ye)
    model_tr = poutine.trace(poutine.replay(model, trace=guide_tr)).get_trace(Xe, ye)
    w = guide_tr.nodes["w"]["value"]
    integrand = guide_tr.log_prob_sum() - model_tr.log_prob_sum()
    by_hand = (
        dist.MultivariateNormal(shifted.mean, precision_matrix=shifted.precision).log_prob(w)
        - dist.MultivariateNormal(full.mean, precision_matrix=full.precision).log_prob(w)
        + dist.Normal(Xe @ w, blr.noise_scale).log_prob(ye).sum()
    )
    assert torch.isclose(integrand, by_hand, rtol=1e-10)

"""ArviZ conversion, comparison metrics (moment-matched KL, energy distance, predictive KL) and
plots."""

import matplotlib

matplotlib.use("Agg")

import pyro  # noqa: E402
import pyro.distributions as dist  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from conftest import exact_guide, synthetic  # noqa: E402

import pyro_unlearn as pu  # noqa: E402
from pyro_unlearn import arviz_compat  # noqa: E402
from pyro_unlearn.diagnostics import predictive_kl  # noqa: E402
from pyro_unlearn.references.retrain import retrain  # noqa: E402


def test_to_inference_data_splits_forget_and_retained_log_likelihood(blr):
    X, y = synthetic(n=40, d=3)
    guide = exact_guide(blr, X, y)
    idata = pu.to_inference_data(
        guide, blr.model, X, y, forget_mask=torch.arange(4), num_samples=300, predictive_args=(X,)
    )
    # the installed ArviZ's own container: InferenceData on 0.2x, DataTree on 1.x
    assert type(idata).__name__ == ("DataTree" if arviz_compat.ARVIZ_1 else "InferenceData")
    names = set(arviz_compat.group_names(idata))
    assert names >= {"posterior", "log_likelihood", "posterior_predictive"}
    posterior = arviz_compat.group(idata, "posterior")
    log_lik = arviz_compat.group(idata, "log_likelihood")
    assert posterior["w"].shape == (1, 300, 3)
    assert log_lik["y_forget"].shape == (1, 300, 4)
    assert log_lik["y_retained"].shape == (1, 300, 36)
    w = torch.as_tensor(posterior["w"].values[0, 7])
    by_hand = dist.Normal(X @ w, blr.noise_scale).log_prob(y)
    assert torch.allclose(torch.as_tensor(log_lik["y_forget"].values[0, 7]), by_hand[:4])
    assert torch.allclose(torch.as_tensor(log_lik["y_retained"].values[0, 7]), by_hand[4:])
    assert arviz_compat.group(idata, "posterior_predictive")["y"].shape == (1, 300, 40)


def test_compare_posteriors_gap_closed(blr):
    X, y = synthetic(n=60, d=3)
    forget = torch.arange(15)
    guide = exact_guide(blr, X, y)
    unlearned = pu.unlearn(blr.model, guide, X, y, mask=forget, plate="data")
    ref = retrain(
        blr.model, X, y, forget_mask=forget, plate="data", method="exact", num_samples=4000
    )
    ref2 = retrain(
        blr.model, X, y, forget_mask=forget, plate="data", method="exact", num_samples=4000, seed=1
    )
    frame = pu.compare_posteriors(
        {"original": guide, "unlearned": unlearned, "retrained": ref},
        blr.model,
        X,
        y,
        forget_mask=forget,
        noise_floor=ref2,
        num_samples=4000,
    )
    assert frame.loc["original", "gap_closed"] == 0.0 and frame.loc[
        "retrained", "kl_mm"
    ] == pytest.approx(0, abs=1e-9)
    # exact unlearning is as close to the reference as a second reference run is
    assert frame.loc["unlearned", "gap_closed"] > 0.95
    assert (
        frame.loc["unlearned", "kl_mm"]
        < 3 * frame.loc["noise floor (2nd reference)", "kl_mm"] + 1e-3
    )
    assert frame.loc["original", "pred_kl_forget"] > 10 * frame.loc["unlearned", "pred_kl_forget"]


def test_moment_matched_kl_against_closed_form():
    a = pu.FlatGaussian(torch.tensor([0.0, 1.0]), precision=torch.tensor([[2.0, 0.3], [0.3, 1.0]]))
    b = pu.FlatGaussian(torch.tensor([0.5, 0.0]), precision=torch.eye(2))
    draws = (
        a.mean
        + torch.randn(200000, 2, generator=torch.Generator().manual_seed(0))
        @ torch.linalg.cholesky(a.covariance).T
    )
    estimate = pu.moment_matched(draws).kl(b)
    # closed form: 0.5 * (tr(Sigma_a) + |m_b - m_a|^2 - 2 + log|Lambda_a|)
    closed = 0.5 * (
        torch.trace(a.covariance) + (b.mean - a.mean).pow(2).sum() - 2 + torch.logdet(a.precision)
    )
    assert torch.isclose(a.kl(b), closed, rtol=1e-12)
    assert abs(estimate - closed) < 0.01


def test_energy_distance_of_shifted_gaussians():
    # E|X - Y| for X, Y ~ N(0,1), N(d,1) in 1-D: 2 phi(d/sqrt2) sqrt2 + d (2 Phi(d/sqrt2) - 1)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(5000, 1, generator=g), torch.randn(5000, 1, generator=g) + 1.0
    s = torch.tensor(2.0).sqrt()
    normal = dist.Normal(0.0, 1.0)
    exy = 2 * s * normal.log_prob(1.0 / s).exp() + (2 * normal.cdf(1.0 / s) - 1)
    exx = 2 / torch.pi**0.5
    closed = 2 * exy - 2 * exx  # E|X-X'| = E|Y-Y'| = 2/sqrt(pi)
    # sampling sd of the estimate at n = 5000: 0.015 (measured over 8 seeds); 4 sd
    assert abs(pu.diagnostics.energy_distance(x, y, max_points=5000) - float(closed)) < 0.06
    assert (
        abs(pu.diagnostics.energy_distance(x, torch.randn(5000, 1, generator=g), max_points=5000))
        < 0.06
    )


def test_predictive_kl_closed_forms():
    """Point-mass posteriors: predictive KL is the KL between the likelihoods."""

    def logistic(x, y):
        w = pyro.sample("w", dist.Normal(0.0, 1.0))
        with pyro.plate("data", len(x)):
            pyro.sample("y", dist.Bernoulli(logits=w * x), obs=y)

    def gaussian(x, y):
        w = pyro.sample("w", dist.Normal(0.0, 1.0))
        with pyro.plate("data", len(x)):
            pyro.sample("y", dist.Normal(w * x, 0.5), obs=y)

    x = torch.tensor([0.5, -1.0, 2.0])
    a, b = {"w": torch.tensor([0.7])}, {"w": torch.tensor([-0.2])}
    kl = predictive_kl(logistic, a, b, (x, torch.ones(3)))["y"]
    pa, pb = torch.sigmoid(0.7 * x), torch.sigmoid(-0.2 * x)
    closed = pa * (pa / pb).log() + (1 - pa) * ((1 - pa) / (1 - pb)).log()
    assert torch.allclose(kl, closed, rtol=1e-10)
    kl = predictive_kl(gaussian, a, b, (x, torch.zeros(3)), num_y=4000)["y"]
    closed = (0.9 * x) ** 2 / (2 * 0.25)
    # per point, log p_a(y) - log p_b(y) has sd 0.9|x|/0.5 under y ~ p_a: 4 standard errors
    assert ((kl - closed).abs() < 4 * 0.9 * x.abs() / 0.5 / 4000**0.5).all()


def test_plots_render_to_png(blr, tmp_path):
    X, y = synthetic(n=40, d=2)
    forget = torch.arange(6)
    guide = exact_guide(blr, X, y)
    posteriors = {
        "original": guide,
        "unlearned": pu.unlearn(blr.model, guide, X, y, mask=forget, plate="data"),
        "retrained": retrain(
            blr.model, X, y, forget_mask=forget, plate="data", method="exact", num_samples=1000
        ),
    }
    figures = pu.plot_posteriors(posteriors, blr.model, X, y, forget_mask=forget, num_samples=500)
    assert set(figures) == {"forest", "density", "forget_predictive"}
    for name, figure in figures.items():
        path = tmp_path / f"{name}.png"
        figure.savefig(path)
        assert path.stat().st_size > 5000

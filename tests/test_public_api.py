"""Every public class is constructed and every public function called once, on tiny problems.

The table ``CALLS`` has one entry per public name (the top level and each group's
``__all__``); the first test fails when a name is added without an entry. Each call checks
something about its result that a broken function would not give.
"""

import math

import matplotlib
import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import SVI
from pyro.infer.autoguide import AutoNormal

import pyro_unlearn as pu
from pyro_unlearn import classifiers as unn
from pyro_unlearn.guides import latent_layout

matplotlib.use("Agg")

GROUPS = ("handlers", "infer", "methods", "references", "diagnostics", "classifiers", "flows")
ERRORS = [n for n in pu.__all__ if n.endswith(("Error", "Warning"))]


def public_names() -> set[str]:
    names = {n for n in pu.__all__ if not isinstance(getattr(pu, n), type(pu))}
    for group in GROUPS:
        names |= {f"{group}.{n}" for n in getattr(pu, group).__all__}
    return names


@pytest.fixture(scope="module")
def ctx():
    """A conjugate regression (exact posteriors), its fits, and a tiny classifier."""
    torch.set_num_threads(1)
    dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        g = torch.Generator().manual_seed(0)
        blr = pu.BayesianLinearRegression(noise_scale=0.5)
        X = torch.randn(40, 3, generator=g)
        y = X @ torch.tensor([1.0, -0.5, 0.25]) + 0.5 * torch.randn(40, generator=g)
        forget = torch.arange(40) < 4
        exact = blr.posterior(X, y)
        guide = pu.LaplaceGuide.from_precision(
            blr.model, exact.loc, exact.precision, model_args=(X, y)
        )
        draws = {"w": exact.sample(400, torch.Generator().manual_seed(1))}
        flow = pu.flows.flow_guide(blr.model, loc=exact.loc, scale_tril=exact.cholesky())
        flow(X, y)
        reference = pu.retrain(
            blr.model,
            X,
            y,
            forget_mask=forget,
            plate="data",
            method="svi",
            svi_steps=50,
            progress_bar=False,
        )
    finally:
        torch.set_default_dtype(dtype)
    torch.set_default_dtype(torch.float32)  # the classifiers are float32 networks
    gc = torch.Generator().manual_seed(2)
    xc = torch.rand(60, 64, generator=gc)
    yc = torch.arange(60) % 10
    net = unn.train(unn.mlp(hidden=(16,)), xc, yc, epochs=2)
    torch.set_default_dtype(dtype)
    return dict(
        blr=blr,
        model=blr.model,
        X=X,
        y=y,
        forget=forget,
        Xf=X[forget],
        yf=y[forget],
        exact=exact,
        guide=guide,
        draws=draws,
        flow=flow,
        reference=reference,
        net=net,
        xc=xc,
        yc=yc,
    )


@pytest.fixture(autouse=True)
def _float64_for_the_regression(request):
    dtype = torch.get_default_dtype()
    classifier = request.node.name.startswith("test_call[classifiers.")
    torch.set_default_dtype(torch.float32 if classifier else torch.float64)
    yield
    torch.set_default_dtype(dtype)


def _sites(trace):
    return {n for n, s in trace.nodes.items() if s["type"] == "sample"}


def _trace(fn, *args):
    return pyro.poutine.trace(fn).get_trace(*args)


def _svi_rkl(c):
    pyro.clear_param_store()
    loss = pu.RKL(c["guide"], num_samples=200, seed=1)
    with pyro.settings.context(module_local_params=True):
        svi = SVI(c["model"], AutoNormal(c["model"]), pyro.optim.Adam({"lr": 0.01}), loss)
        return svi.step(c["Xf"], c["yf"])


def _side_by_side(check, c, **options):
    posteriors = {"original": c["guide"], "retrained": c["reference"]}
    return check(posteriors, c["model"], c["X"], c["y"], forget_mask=c["forget"], **options)


def _importance(c):
    layout = latent_layout(c["guide"])
    full = pu.flat_gaussian(c["guide"])
    return pu.infer.importance_samples(
        c["model"], full, layout, (c["Xf"], c["yf"]), num_samples=200
    )


def _params(net):
    return {k: v.detach().clone() for k, v in net.named_parameters()}


def _unlearner(net, xf, yf, xr, yr):
    return net


CALLS = {
    # unlearning
    "unlearn": (lambda c: pu.unlearn(c["model"], c["guide"], c["Xf"], c["yf"]), pu.UnlearnResult),
    "available_methods": (lambda c: pu.available_methods(), lambda r: "laplace" in r),
    "UnlearnResult": (lambda c: pu.UnlearnResult(c["guide"], "laplace", 0.0), lambda r: r.reliable),
    "Method": (lambda c: pu.Method("eubo"), lambda r: r is pu.Method.EUBO),
    "Family": (lambda c: pu.Family("flow"), lambda r: r == "flow"),
    "OnUnreliable": (lambda c: pu.OnUnreliable("warn"), lambda r: r == "warn"),
    "ForgetLedger": (lambda c: pu.ForgetLedger(40).after([0, 1]), lambda r: r.forgotten == (0, 1)),
    "laplace_unlearn": (
        lambda c: pu.laplace_unlearn(c["model"], c["guide"], c["Xf"], c["yf"]),
        pu.LaplaceGuide,
    ),
    "certify": (
        lambda c: pu.certify(c["guide"], c["model"], c["X"], c["y"], forget_mask=c["forget"]),
        lambda r: r.scope == "retained" and r.reliable,
    ),
    "Certificate": (
        lambda c: pu.Certificate(0.1, "retained", 0.01, 0.2, 900.0, 1000, 0.1),
        lambda r: r.reliable and "0.1 ± 0.01 nats" in r.summary(),
    ),
    "divided_target_check": (
        lambda c: pu.divided_target_check(c["model"], c["guide"], (c["Xf"], c["yf"]), {}),
        lambda r: r["target_proper"],
    ),
    # handlers and objectives
    "forget": (
        lambda c: _trace(pu.forget(c["model"], mask=c["forget"], plate="data"), c["X"], c["y"]),
        lambda r: "y" in _sites(r),
    ),
    "retain": (
        lambda c: _trace(pu.retain(c["model"], mask=c["forget"], plate="data"), c["X"], c["y"]),
        lambda r: "y" in _sites(r),
    ),
    "anchor": (
        lambda c: _trace(pu.anchor(c["model"], guide=c["guide"]), c["Xf"], c["yf"]),
        lambda r: "w" in _sites(r),
    ),
    "EUBO": (
        lambda c: pu.EUBO(c["guide"]).loss(c["model"], c["guide"], c["Xf"], c["yf"]),
        math.isfinite,
    ),
    "RKL": (_svi_rkl, math.isfinite),
    # fitting and posteriors
    "fit_svi": (lambda c: pu.fit_svi(c["model"], c["X"], c["y"], num_steps=20), latent_layout),
    "fit_laplace": (lambda c: pu.fit_laplace(c["model"], c["X"], c["y"]), pu.LaplaceGuide),
    "fit_flow": (
        lambda c: pu.fit_flow(c["model"], c["X"], c["y"], num_steps=5),
        lambda r: pu.flows.is_flow(r),
    ),
    "posterior_view": (lambda c: pu.posterior_view(c["guide"]), lambda r: r.kind == "gaussian"),
    "PosteriorView": (
        lambda c: pu.posterior_view(c["flow"]),
        lambda r: isinstance(r, pu.PosteriorView) and r.kind == "flow",
    ),
    "FlatGaussian": (
        lambda c: pu.FlatGaussian(c["exact"].loc, scale=torch.ones(3)).kl(c["exact"]),
        lambda r: float(r) > 0,
    ),
    "LaplaceGuide": (
        lambda c: pu.LaplaceGuide.from_precision(
            c["model"], c["exact"].loc, c["exact"].precision, like=c["guide"]
        ),
        lambda r: r.latent_dim == 3,
    ),
    "WeightedSamples": (
        lambda c: pu.WeightedSamples(c["draws"], torch.full((400,), -math.log(400))),
        lambda r: torch.allclose(r.mean("w"), r.samples["w"].mean(0)),
    ),
    "flat_gaussian": (lambda c: pu.flat_gaussian(c["guide"]), lambda r: r.dim == 3),
    "flow_posterior": (lambda c: pu.flow_posterior(c["flow"]), lambda r: r.event_shape == (3,)),
    # references and checks
    "retrain": (lambda c: c["reference"], lambda r: r.samples["w"].shape[-1] == 3),
    "BayesianLinearRegression": (
        lambda c: pu.BayesianLinearRegression().posterior(c["X"], c["y"]),
        pu.FlatGaussian,
    ),
    "BayesianLogisticRegression": (
        lambda c: _trace(pu.BayesianLogisticRegression().model, c["X"], (c["y"] > 0).double()),
        lambda r: "y" in _sites(r),
    ),
    "compare_posteriors": (
        lambda c: _side_by_side(pu.compare_posteriors, c, num_samples=100),
        lambda r: len(r) >= 1,
    ),
    "to_inference_data": (
        lambda c: pu.to_inference_data(c["guide"], c["model"], c["X"], c["y"], num_samples=50),
        lambda r: r is not None,
    ),
    "plot_posteriors": (
        lambda c: _side_by_side(pu.plot_posteriors, c, num_samples=50),
        lambda r: len(r) > 0,
    ),
    "moment_matched": (lambda c: pu.moment_matched(c["draws"]["w"]), lambda r: r.dim == 3),
    # groups
    "handlers.AnchorMessenger": (
        lambda c: _trace(pu.handlers.AnchorMessenger(c["guide"])(c["model"]), c["Xf"], c["yf"]),
        lambda r: "w" in _sites(r),
    ),
    "handlers.ForgetMessenger": (
        lambda c: _trace(pu.handlers.ForgetMessenger(weight=-1.0)(c["model"]), c["Xf"], c["yf"]),
        lambda r: float(r.nodes["y"]["scale"]) == -1.0,
    ),
    "handlers.RetainMessenger": (
        lambda c: _trace(
            pu.handlers.RetainMessenger(mask=c["forget"], plate="data")(c["model"]), c["X"], c["y"]
        ),
        lambda r: "y" in _sites(r),
    ),
    "handlers.anchor": (
        lambda c: pu.handlers.anchor(guide=c["guide"]),
        pu.handlers.AnchorMessenger,
    ),
    "handlers.forget": (lambda c: pu.handlers.forget(), pu.handlers.ForgetMessenger),
    "handlers.retain": (
        lambda c: pu.handlers.retain(mask=c["forget"], plate="data"),
        pu.handlers.RetainMessenger,
    ),
    "infer.EUBO": (lambda c: pu.infer.EUBO(c["guide"], lam=0.1), pu.EUBO),
    "infer.RKL": (lambda c: pu.infer.RKL(c["guide"]), pu.RKL),
    "infer.ImportanceSamples": (
        lambda c: _importance(c),
        pu.infer.ImportanceSamples,
    ),
    "infer.importance_samples": (
        lambda c: _importance(c),
        lambda r: r.pareto_k < 0.7,
    ),
    "infer.unlearning_model": (
        lambda c: _trace(pu.infer.unlearning_model(c["model"], c["guide"]), c["Xf"], c["yf"]),
        lambda r: float(r.nodes["y"]["scale"]) == -1.0,
    ),
    "methods.eubo_unlearn": (
        lambda c: pu.methods.eubo_unlearn(c["model"], c["guide"], c["Xf"], c["yf"])[0],
        pu.LaplaceGuide,
    ),
    "methods.laplace_unlearn": (
        lambda c: pu.methods.laplace_unlearn(c["model"], c["guide"], c["Xf"], c["yf"]),
        pu.LaplaceGuide,
    ),
    "methods.psis_unlearn": (
        lambda c: pu.methods.psis_unlearn(c["model"], c["draws"], c["Xf"], c["yf"]),
        pu.WeightedSamples,
    ),
    "methods.rkl_unlearn": (
        lambda c: pu.methods.rkl_unlearn(c["model"], c["guide"], c["Xf"], c["yf"], num_samples=500)[
            0
        ],
        pu.LaplaceGuide,
    ),
    "methods.smc_unlearn": (
        lambda c: pu.methods.smc_unlearn(
            c["model"], c["guide"], c["Xf"], c["yf"], num_particles=200
        )[0],
        pu.WeightedSamples,
    ),
    "references.BayesianLinearRegression": (
        lambda c: pu.references.BayesianLinearRegression().prior(3),
        lambda r: torch.equal(r.precision, torch.eye(3)),
    ),
    "references.BetaBernoulli": (
        lambda c: pu.references.BetaBernoulli().posterior(torch.tensor([1.0, 0.0, 1.0])),
        lambda r: r == (3.0, 2.0),
    ),
    "references.Reference": (
        lambda c: pu.references.Reference(c["reference"].samples, "svi", 0.0),
        lambda r: r.method == "svi",
    ),
    "references.convergence": (
        lambda c: pu.references.convergence(c["reference"].samples),
        lambda r: isinstance(r, dict),
    ),
    "references.retrain": (lambda c: c["reference"], pu.references.Reference),
    "diagnostics.compare_posteriors": (
        lambda c: pu.diagnostics.compare_posteriors(
            {"retrained": c["reference"], "exact": c["guide"]},
            c["model"],
            c["X"],
            c["y"],
            forget_mask=c["forget"],
            original=None,
            num_samples=100,
        ),
        lambda r: len(r) >= 1,
    ),
    "diagnostics.energy_distance": (
        lambda c: pu.diagnostics.energy_distance(c["draws"]["w"], c["draws"]["w"] + 1.0),
        lambda r: r > 0,
    ),
    "diagnostics.forget_predictive_means": (
        lambda c: pu.diagnostics.forget_predictive_means(
            c["model"], c["guide"], c["X"], c["y"], forget_mask=c["forget"], num_samples=50
        ),
        lambda r: len(r) > 0,
    ),
    "diagnostics.gap_closed": (lambda c: pu.diagnostics.gap_closed(0.1, 1.0), lambda r: r == 0.9),
    "diagnostics.moment_matched": (
        lambda c: pu.diagnostics.moment_matched(c["draws"]["w"]),
        pu.FlatGaussian,
    ),
    "diagnostics.plot_posteriors": (
        lambda c: pu.diagnostics.plot_posteriors(
            {"exact": c["guide"]},
            c["model"],
            c["X"],
            c["y"],
            forget_mask=c["forget"],
            num_samples=50,
        ),
        lambda r: len(r) > 0,
    ),
    "diagnostics.posterior_draws": (
        lambda c: pu.diagnostics.posterior_draws(c["guide"], c["model"], num_samples=30),
        lambda r: r["w"].shape == (1, 30, 3),
    ),
    "diagnostics.predictive_kl": (
        lambda c: pu.diagnostics.predictive_kl(
            c["model"],
            {"w": c["draws"]["w"][:5]},
            {"w": c["draws"]["w"][5:10]},
            (c["Xf"], c["yf"]),
            num_y=10,
        ),
        lambda r: r["y"].shape == (4,) and bool(torch.isfinite(r["y"]).all()),
    ),
    "diagnostics.to_inference_data": (
        lambda c: pu.diagnostics.to_inference_data(c["draws"], c["model"], c["X"], c["y"]),
        lambda r: r is not None,
    ),
    "flows.CholeskyAffine": (
        lambda c: pu.flows.CholeskyAffine(3)(torch.zeros(3)),
        lambda r: torch.equal(r, torch.zeros(3)),
    ),
    "flows.flow_guide": (lambda c: c["flow"], lambda r: pu.flows.is_flow(r)),
    "flows.flow_posterior": (
        lambda c: pu.flows.flow_posterior(c["flow"]).log_prob(c["exact"].loc),
        lambda r: torch.isfinite(r),
    ),
    "flows.identity_autoregressive": (
        lambda c: pu.flows.identity_autoregressive(3)(torch.ones(3)),
        lambda r: torch.allclose(r, torch.ones(3)),
    ),
    "flows.residual_flow": (
        lambda c: pu.flows.residual_flow(c["guide"], c["model"], c["Xf"], c["yf"]),
        lambda r: pu.flows.is_flow(r),
    ),
    # classifiers (float32)
    "classifiers.ClassifierModel": (
        lambda c: _trace(unn.ClassifierModel(c["net"]), c["xc"], c["yc"]),
        lambda r: "y" in _sites(r),
    ),
    "classifiers.accuracy": (
        lambda c: unn.accuracy(c["net"], c["xc"], c["yc"]),
        lambda r: 0 <= r <= 1,
    ),
    "classifiers.batch_output_importance": (
        lambda c: unn.batch_output_importance(c["net"], c["xc"][:8]),
        lambda r: all((v >= 0).all() for v in r.values()),
    ),
    "classifiers.bucket_points": (
        lambda c: unn.bucket_points([0.1, 0.7]),
        lambda r: r.tolist() == [1.0, 0.5],
    ),
    "classifiers.challenge_score": (
        lambda c: unn.challenge_score(
            [c["net"], c["net"]],
            [c["net"], c["net"]],
            *(c["xc"][:5], c["yc"][:5], c["xc"][5:], c["yc"][5:], c["xc"], c["yc"]),
            bootstrap=3,
        ),
        lambda r: r["num_models"] == 2 and r["retain_ratio"] == 1.0 and 0 < r["score"] <= 1,
    ),
    "classifiers.class_distillation": (
        lambda c: unn.class_distillation(
            c["net"],
            c["xc"][c["yc"] == 3],
            c["yc"][c["yc"] == 3],
            c["xc"][c["yc"] != 3],
            c["yc"][c["yc"] != 3],
            min_steps=1,
            max_steps=3,
        ),
        lambda r: r[1]["steps"] <= 3 and isinstance(r[0], torch.nn.Module),
    ),
    "classifiers.forgotten_class_targets": (
        lambda c: unn.forgotten_class_targets(c["net"], c["xc"][:4], torch.tensor([3])).exp(),
        lambda r: bool((r[:, 3] == 0).all()) and torch.allclose(r.sum(-1), torch.ones(4)),
    ),
    "classifiers.continual": (
        lambda c: unn.continual(
            unn.neggrad,
            c["net"],
            c["xc"],
            c["yc"],
            [torch.tensor([0, 1])],
            pu.ForgetLedger(60),
            max_steps=2,
        ),
        lambda r: r[1].forgotten == (0, 1),
    ),
    "classifiers.instance_loss": (
        lambda c: unn.instance_loss(
            c["net"],
            _params(c["net"]),
            unn.mas_importance(c["net"], c["xc"][:4]),
            c["xc"][:4],
            c["yc"][:4],
            c["xc"][4:8],
            c["yc"][4:8],
        ),
        lambda r: torch.isfinite(r),
    ),
    "classifiers.instance_unlearn": (
        lambda c: unn.instance_unlearn(
            c["net"], c["xc"][:3], c["yc"][:3], num_adversarial=2, pgd_iterations=2, max_steps=2
        ),
        lambda r: r is not None,
    ),
    "classifiers.mas_importance": (
        lambda c: unn.mas_importance(c["net"], c["xc"][:8]),
        lambda r: all((v >= 0).all() for v in r.values()),
    ),
    "classifiers.minibatch_importance": (
        lambda c: unn.minibatch_importance(c["net"], c["xc"], c["yc"]),
        lambda r: all((v >= 0).all() for v in r.values()),
    ),
    "classifiers.targeted_pgd": (
        lambda c: unn.targeted_pgd(c["net"], c["xc"][:2], c["yc"][2:4], iterations=2),
        lambda r: r.shape == (2, 64),
    ),
    "classifiers.diagonal_fisher": (
        lambda c: unn.diagonal_fisher(c["net"], c["xc"][:8]),
        lambda r: all((v >= 0).all() for v in r.values()),
    ),
    "classifiers.distillation_divergence": (
        lambda c: unn.distillation_divergence(c["net"](c["xc"]), c["net"](c["xc"]), 4.0).detach(),
        lambda r: abs(float(r)) < 1e-6,
    ),
    "classifiers.finetune": (
        lambda c: unn.finetune(c["net"], c["xc"], c["yc"], epochs=1) is not c["net"],
        lambda r: r is True,
    ),
    "classifiers.forgetting_epsilon": (
        lambda c: unn.forgetting_epsilon(np.zeros((4, 3)), np.ones((4, 3))),
        lambda r: r.shape == (3,) and bool((r > 0).all()),
    ),
    "classifiers.jit": (lambda c: unn.jit(c["net"], c["xc"][:4]), lambda r: r is not None),
    "classifiers.l1_sparse": (
        lambda c: unn.l1_sparse(c["net"], c["xc"], c["yc"], epochs=1),
        lambda r: r[1]["steps"] == 1,
    ),
    "classifiers.js_divergence": (
        lambda c: unn.js_divergence(c["net"], c["net"], c["xc"]),
        lambda r: abs(r) < 1e-6,
    ),
    "classifiers.lipschitz_loss": (
        lambda c: unn.lipschitz_loss(c["net"], c["xc"][:2], 0.1 * torch.ones(3, 2, 64)),
        lambda r: torch.isfinite(r),
    ),
    "classifiers.logit_confidence": (
        lambda c: unn.logit_confidence(c["net"], c["xc"], c["yc"]),
        lambda r: r.shape == (60,),
    ),
    "classifiers.membership_attack": (
        lambda c: unn.membership_attack(
            c["net"], c["xc"][:30], c["yc"][:30], c["xc"][30:], c["yc"][30:]
        ),
        lambda r: 0 <= r <= 1,
    ),
    "classifiers.mlp": (lambda c: unn.mlp(hidden=(8,))(c["xc"]), lambda r: r.shape == (60, 10)),
    "classifiers.neggrad": (
        lambda c: unn.neggrad(c["net"], c["xc"][:4], c["yc"][:4], max_steps=2),
        lambda r: r is not None,
    ),
    "classifiers.output_sensitivity": (
        lambda c: unn.output_sensitivity(c["net"], c["xc"][:8]),
        lambda r: all((v >= 0).all() for v in r.values()),
    ),
    "classifiers.pbu": (
        lambda c: unn.pbu(c["net"], c["xc"][:4], c["yc"][:4], max_steps=2),
        lambda r: r is not None,
    ),
    "classifiers.pbu_anchor": (
        lambda c: unn.pbu_anchor(c["net"], unn.diagonal_fisher(c["net"], c["xc"][:8]), 1.0, 1.0),
        lambda r: len(r) > 0,
    ),
    "classifiers.pbu_loss": (
        lambda c: (
            unn.pbu_loss(
                c["net"],
                _params(c["net"]),
                unn.diagonal_fisher(c["net"], c["xc"][:8]),
                c["xc"][:4],
                c["yc"][:4],
                2.0,
                1.0,
                1.0,
            )
            + 2 * torch.nn.functional.cross_entropy(c["net"](c["xc"][:4]), c["yc"][:4])
        ),
        lambda r: abs(float(r)) < 1e-5,  # at the reference only the ascent term is left
    ),
    "classifiers.per_sample": (
        lambda c: unn.per_sample(c["net"], c["xc"], c["yc"]),
        lambda r: len(r) > 0,
    ),
    "classifiers.random_other_labels": (
        lambda c: bool((unn.random_other_labels(c["yc"], 10, torch.Generator()) != c["yc"]).all()),
        lambda r: r is True,
    ),
    "classifiers.retrain": (
        lambda c: unn.retrain(lambda: unn.mlp(hidden=(8,)), c["xc"], c["yc"], epochs=1),
        lambda r: isinstance(r, torch.nn.Module),
    ),
    "classifiers.runner_up_labels": (
        lambda c: bool((unn.runner_up_labels(c["net"], c["xc"], c["yc"]) != c["yc"]).all()),
        lambda r: r is True,
    ),
    "classifiers.salun": (
        lambda c: unn.salun(c["net"], c["xc"][:4], c["yc"][:4], c["xc"][4:], c["yc"][4:], epochs=1),
        lambda r: r[1]["frozen"] > 0,
    ),
    "classifiers.scrub": (
        lambda c: unn.scrub(
            c["net"], c["xc"][:4], c["yc"][:4], c["xc"][4:], c["yc"][4:], epochs=1, max_epochs=1
        ),
        lambda r: r[1]["steps"] == 2,
    ),
    "classifiers.small_cnn": (
        lambda c: unn.small_cnn()(c["xc"][:2]),
        lambda r: r.shape == (2, 10),
    ),
    "classifiers.ssd": (
        lambda c: unn.ssd(c["net"], c["xc"][:4], c["yc"][:4], c["xc"], c["yc"]),
        lambda r: r is not None,
    ),
    "classifiers.train": (
        lambda c: unn.train(unn.mlp(hidden=(8,)), c["xc"], c["yc"], epochs=1),
        lambda r: isinstance(r, torch.nn.Module),
    ),
    "classifiers.weight_saliency": (
        lambda c: unn.weight_saliency(c["net"], c["xc"][:4], c["yc"][:4]),
        lambda r: all(set(m.unique().tolist()) <= {0.0, 1.0} for m in r.values()),
    ),
    "classifiers.ulira": (
        lambda c: unn.ulira(
            lambda: unn.mlp(hidden=(8,)),
            _unlearner,
            c["xc"][:40],
            c["yc"][:40],
            num_targets=4,
            num_shadows=4,
            train_options={"epochs": 1},
        ),
        lambda r: 0 <= r["accuracy"] <= 1,
    ),
}
for _name in ERRORS:
    CALLS[_name] = (lambda c, n=_name: getattr(pu, n)("a message"), lambda r: "a message" in str(r))


def test_every_public_name_has_a_call():
    assert set(CALLS) == public_names()


@pytest.mark.parametrize("name", sorted(CALLS))
def test_call(name, ctx):
    call, check = CALLS[name]
    result = call(ctx)
    if isinstance(check, type):
        assert isinstance(result, check)
    else:
        assert check(result)


def test_errors_share_one_base():
    for name in ERRORS:
        cls = getattr(pu, name)
        assert issubclass(cls, pu.UnlearningError) or issubclass(cls, Warning), name


def test_weighted_draws_are_a_guide_for_predictive(ctx):
    """UnlearnResult.guide is always usable with Predictive: weighted draws pick one draw per
    run by its weight, so predictive means are the weighted means."""
    torch.set_default_dtype(torch.float64)
    samples = pu.methods.psis_unlearn(ctx["model"], ctx["draws"], ctx["Xf"], ctx["yf"])
    predictive = pyro.infer.Predictive(ctx["model"], guide=samples, num_samples=4000)
    with torch.random.fork_rng():
        torch.manual_seed(3)
        y = predictive(ctx["X"][:2])["y"]
    expected = ctx["X"][:2] @ samples.mean("w")
    # the predictive sd is at most sqrt(0.25 + Var(x w)) < 1; 4000 draws: se < 0.02
    assert torch.allclose(y.mean(0), expected, atol=0.08)
    result = pu.unlearn(ctx["model"], ctx["draws"], ctx["Xf"], ctx["yf"], method="psis")
    assert isinstance(result.guide, pu.WeightedSamples) and callable(result.guide)


def test_classifier_results_carry_the_network_apart(ctx):
    net = ctx["net"]
    result = pu.unlearn(
        unn.ClassifierModel(net), net, ctx["xc"][:4], ctx["yc"][:4], method="neggrad", max_steps=2
    )
    assert result.guide is None and isinstance(result.network, torch.nn.Module)
    assert result.network is not net and result.unlearned is result.network


def test_posterior_view_is_read_once_and_shared(ctx):
    """unlearn() reads the guide once: the flow's log-density maximum is found once."""
    view = pu.posterior_view(ctx["flow"])
    assert pu.posterior_view(view) is view
    first = view.log_max
    assert view._log_max == first and view.log_max == first
    draws = pu.posterior_view(ctx["draws"])
    with pytest.raises(pu.UnsupportedPosteriorError, match="no density"):
        draws.log_prob(torch.zeros(3))
    with pytest.raises(pu.UnsupportedPosteriorError, match="density"):
        pu.anchor(guide=pu.WeightedSamples(ctx["draws"], torch.full((400,), -math.log(400))))
    assert dist.Normal(0, 1).log_prob(torch.tensor(0.0)) < 0  # (sanity of the test's imports)

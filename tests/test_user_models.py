"""Every method and check on models written the way Pyro's tutorials write them.

The models (``user_models.py``) do not broadcast over a batch of draws: ``PyroModule`` with
``nn.Linear``, ``X @ w`` / ``torch.mm``, an ``(N, k)`` observation under ``to_event(1)``, local
latents in a plate, a subsampled plate, no plate at all, an enumerated mixture, a Poisson GLM,
a small Bayesian neural network. Conjugate models are checked against their exact retrained
posteriors (computed here by hand, not by the library); the others against cached NUTS
references (``build_references.py``).

Tolerances: exact methods (Laplace, the natural EUBO step from an exact q(theta|D)) to
floating-point rounding, KL < 1e-8. Sampling methods by Monte Carlo error: the mean of each
coordinate within 5 standard errors sd/sqrt(ESS) (a max over at most 12 coordinates of
|N(0,1)| exceeds 5 with probability below 1e-5).
"""

import functools

import pyro
import pyro.distributions as dist
import pytest
import torch
import user_models as um
from build_references import reference
from pyro.infer import SVI, TraceEnum_ELBO
from pyro.infer.autoguide import (
    AutoDelta,
    AutoLaplaceApproximation,
    AutoLowRankMultivariateNormal,
    AutoMultivariateNormal,
    AutoNormal,
)

import pyro_unlearn as pu
from pyro_unlearn.model_eval import forget_evaluator

ALL = None  # sentinel: every element


def conjugate_case(name):
    """(model, args, forget ids, plate, exact(keep) -> (mean, precision), local latents?)."""
    if name == "pyromodule":
        X, y = um.regression_data()
        return (
            um.BayesianRegression(3),
            (X, y),
            torch.arange(8),
            "data",
            _exact(um.regression_exact, X, y),
            False,
        )
    if name == "matmul":
        X, y = um.regression_data(seed=5)
        return (
            um.matmul_regression,
            (X, y),
            torch.tensor([1, 7, 30, 41, 79]),
            "data",
            _exact(um.regression_exact, X, y),
            False,
        )
    if name == "event_dim":
        X, Y = um.multi_output_data()
        return (
            um.MultiOutputRegression(),
            (X, Y),
            torch.arange(0, 60, 9),
            "data",
            _exact(um.multi_output_exact, X, Y),
            False,
        )
    if name == "local_latents":
        sigma, y = um.SCHOOLS_SIGMA, um.SCHOOLS_Y
        return (
            um.schools_known_scale,
            (sigma, y),
            torch.tensor([0, 6]),  # the two most influential schools (KL 0.08, 0.13 alone)
            "schools",
            _exact(um.schools_exact, sigma, y),
            True,
        )
    if name == "subsampled":
        X, y = um.regression_data(n=100)
        return (
            um.subsampled_regression,
            (X, y),
            torch.arange(0, 100, 7),
            "data",
            _exact(um.subsampled_exact, X, y),
            False,
        )
    raise KeyError(name)


def _exact(fn, *data):
    n = len(data[-1])

    def exact(keep=ALL):
        keep = torch.ones(n, dtype=torch.bool) if keep is ALL else keep
        return fn(*data, keep)

    return exact


CONJUGATE = ["pyromodule", "matmul", "event_dim", "local_latents", "subsampled"]


def exact_guide(model, args, exact):
    mean, precision = exact()
    return pu.LaplaceGuide.from_precision(model, mean, precision, model_args=args)


def kl_to(result, mean, precision):
    g = pu.flat_gaussian(result.guide)
    return um.gaussian_kl(g.loc, g.precision, mean, precision)


def forget_modes(args, forget, plate, local, subsampled=False):
    """Masked mode (all data and a mask) always; unmasked mode (the forget rows) where the
    model's latents do not depend on the plate's size (a plate of 15 rows cannot be
    subsampled 16 at a time: Pyro refuses it, so the subsampled model is run unsubsampled)."""
    yield "masked", args, {"mask": forget, "plate": plate}
    if not local:
        extra = {"model_kwargs": {"subsample_size": None}} if subsampled else {}
        yield "unmasked", tuple(a[forget] for a in args), extra


@pytest.mark.parametrize("name", CONJUGATE)
@pytest.mark.parametrize("method", ["laplace", "eubo"])
def test_exact_methods_give_the_exact_retrained_posterior(name, method):
    model, args, forget, plate, exact, local = conjugate_case(name)
    q_full = exact_guide(model, args, exact)
    mean_r, precision_r = exact(um.keep_mask(len(args[-1]), forget))
    for mode, forget_args, options in forget_modes(
        args, forget, plate, local, name == "subsampled"
    ):
        result = pu.unlearn(model, q_full, *forget_args, method=method, **options)
        assert kl_to(result, mean_r, precision_r) < 1e-8, (mode, result.diagnostics["evaluator"])
        assert result.diagnostics["evaluator"]["path"] in (
            "single draw",
            "vectorized",
            "vmap",
            "loop",
        )
        if mode == "masked" and name != "local_latents":
            # only the forget elements are evaluated, not the whole data under a mask
            assert result.diagnostics["evaluator"]["forget_set"] in ("plate index", "sliced data")


def sd_and_ess(weighted_mean_draws, log_weights):
    w = log_weights.exp()
    return 1.0 / float(w.pow(2).sum())


@pytest.mark.parametrize("name", CONJUGATE)
def test_sampling_methods_match_the_exact_moments(name):
    model, args, forget, plate, exact, _ = conjugate_case(name)
    q_full = exact_guide(model, args, exact)
    mean_r, precision_r = exact(um.keep_mask(len(args[-1]), forget))
    sd_r = torch.linalg.inv(precision_r).diagonal().sqrt()
    layout = pu.guides.latent_layout(q_full)

    def flat(samples):
        return torch.cat(
            [s.unconstrain(samples[s.name]).reshape(len(samples[s.name]), -1) for s in layout], -1
        )

    rkl = pu.unlearn(
        model, q_full, *args, mask=forget, plate=plate, method="rkl", num_samples=20000
    )
    g = pu.flat_gaussian(rkl.guide)
    assert ((g.loc - mean_r).abs() / (sd_r / rkl.diagnostics["ess"] ** 0.5)).max() < 5

    smc = pu.unlearn(model, q_full, *args, mask=forget, plate=plate, method="smc", lam=0.0)
    z = flat(smc.guide.samples)
    assert ((z.mean(0) - mean_r).abs() / (sd_r / (len(z) / 2) ** 0.5)).max() < 5

    mean_d, precision_d = exact()
    draws = torch.distributions.MultivariateNormal(mean_d, precision_matrix=precision_d)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        z_full = draws.sample((8000,))
    samples = pu.guides.unpack(layout, z_full)
    psis = pu.unlearn(model, samples, *args, mask=forget, plate=plate, method="psis")
    z = flat(psis.guide.samples)
    weighted = psis.guide.log_weights.exp() @ z
    assert ((weighted - mean_r).abs() / (sd_r / psis.guide.ess**0.5)).max() < 5


@pytest.mark.parametrize("name", ["pyromodule", "event_dim", "local_latents"])
def test_checks_line_up_sites_by_name(name):
    model, args, forget, plate, exact, _ = conjugate_case(name)
    q_full = exact_guide(model, args, exact)
    draws = pu.diagnostics.posterior_draws(q_full, model, args, num_samples=500)
    flat = {k: v[0] for k, v in draws.items()}
    reversed_order = dict(reversed(list(flat.items())))
    assert list(reversed_order) != list(flat) or len(flat) == 1
    frame = pu.compare_posteriors(
        {"original": q_full, "retrained": flat, "draws reversed": reversed_order},
        model,
        *args,
        forget_mask=forget,
        plate=plate,
        num_samples=500,
    )
    # the same draws in another site order are the same posterior: distance 0 to rounding
    # (lined up by dict order instead, the same draws gave kl_mm 13648)
    assert abs(frame.loc["draws reversed", "kl_mm"]) < 1e-10
    assert abs(frame.loc["draws reversed", "energy"]) < 1e-10
    missing = dict(list(flat.items())[1:])
    with pytest.raises(KeyError, match=f"no draws of latent site.*{list(flat)[0]}"):
        pu.compare_posteriors(
            {"original": q_full, "retrained": missing},
            model,
            *args,
            forget_mask=forget,
            plate=plate,
            num_samples=100,
        )
    idata = pu.to_inference_data(
        q_full, model, *args, forget_mask=forget, plate=plate, num_samples=100
    )
    from pyro_unlearn import arviz_compat

    assert set(arviz_compat.group(idata, "posterior").data_vars) == set(flat)
    log_lik = arviz_compat.group(idata, "log_likelihood")
    assert set(log_lik.data_vars) == {"obs_forget", "obs_retained"}
    assert log_lik["obs_forget"].shape[2] == len(forget)


def test_local_latents_of_forgotten_elements_go_back_to_their_prior():
    """theta_j | mu of a forgotten school is N(mu, tau): regression slope 1, residual sd tau."""
    model, args, forget, plate, exact, _ = conjugate_case("local_latents")
    result = pu.unlearn(model, exact_guide(model, args, exact), *args, mask=forget, plate=plate)
    cov = pu.flat_gaussian(result.guide).covariance
    j = 1 + int(forget[0])  # flat layout: mu, theta_1..8
    slope = cov[j, 0] / cov[0, 0]
    residual = cov[j, j] - cov[j, 0] ** 2 / cov[0, 0]
    mean = pu.flat_gaussian(result.guide).loc
    assert abs(float(slope) - 1.0) < 1e-9
    assert abs(float(residual) - um.TAU**2) < 1e-9
    assert abs(float(mean[j] - mean[0])) < 1e-9


def fitted_guide(name):
    """One fit per guide family, shared by the laplace and eubo cases (the library's fits
    are seeded and frozen; Pyro's own SVI fit lives in the param store, which every test
    clears, so it is refitted)."""
    if name == "AutoLaplaceApproximation":
        return fitted_guides()[name]()
    return _library_fit(name)


@functools.cache
def _library_fit(name):
    return fitted_guides()[name]()  # inside a test: float64 (conftest)


def fitted_guides():
    sigma, y = um.SCHOOLS_SIGMA, um.SCHOOLS_Y
    model = um.schools_known_scale

    def svi(cls, **options):
        return lambda: pu.fit_svi(model, sigma, y, guide_class=cls, num_steps=2000, **options)

    def laplace():
        return pu.fit_laplace(model, sigma, y)

    def auto_laplace():
        guide = AutoLaplaceApproximation(model)
        svi_ = SVI(model, guide, pyro.optim.Adam({"lr": 0.05}), pyro.infer.Trace_ELBO())
        for _ in range(1500):
            svi_.step(sigma, y)
        return guide

    return {
        "AutoNormal": svi(AutoNormal),
        "AutoMultivariateNormal": svi(AutoMultivariateNormal),
        "AutoLowRankMultivariateNormal": svi(AutoLowRankMultivariateNormal),
        "fit_laplace": laplace,
        "AutoLaplaceApproximation": auto_laplace,
    }


@pytest.mark.parametrize("guide_name", list(fitted_guides()))
@pytest.mark.parametrize("method", ["laplace", "eubo"])
def test_local_latents_with_every_gaussian_guide_family(guide_name, method):
    """Forgetting two schools with each Gaussian family: their theta go back to their prior
    given mu (mean E[mu], sd between tau and sqrt(tau^2 + Var mu)); correlated families end
    within 0.1 nats of the exact retrained posterior beyond q(theta|D)'s own distance from
    the exact full-data posterior (forgetting these schools moves the exact posterior by
    0.38 nats)."""
    model, args, forget, plate, exact, _ = conjugate_case("local_latents")
    q_full = fitted_guide(guide_name)
    options = {}
    if guide_name == "AutoLaplaceApproximation":  # a point estimate: H_D from the full data
        if method == "laplace":
            options = {"full_args": args}
        else:  # eubo takes its Gaussian
            q_full = q_full.laplace_approximation(*args)
    result = pu.unlearn(model, q_full, *args, mask=forget, plate=plate, method=method, **options)
    g = pu.flat_gaussian(result.guide)
    sd = g.covariance.diagonal().sqrt()
    # a family that holds the exact posterior (the model is Gaussian) lands on it; the
    # low-rank and mean-field fits carry their own error (0.7 and 1.7 nats from the exact
    # full-data posterior), so their means are checked to a tenth of a posterior sd
    approximate = guide_name in ("AutoNormal", "AutoLowRankMultivariateNormal")
    for j in (1 + forget).tolist():  # flat layout: mu, theta_1..8
        tolerance = 0.1 * float(sd[j]) if approximate else 1e-6 * um.TAU
        assert abs(float(g.loc[j] - g.loc[0])) < tolerance
        assert 0.95 * um.TAU < float(sd[j]) < 1.05 * (um.TAU**2 + float(sd[0]) ** 2) ** 0.5
    if guide_name == "AutoNormal":
        return  # mean-field: 1.7 nats from the exact posterior before and after
    mean_d, precision_d = exact()
    mean_r, precision_r = exact(um.keep_mask(8, forget))
    if guide_name == "AutoLaplaceApproximation":
        own = 0.0  # its MAP and Hessian are exact on a Gaussian model
    else:
        d = pu.flat_gaussian(q_full)
        own = um.gaussian_kl(d.loc, d.precision, mean_d, precision_d)
    assert kl_to(result, mean_r, precision_r) < own + 0.1


def test_subsampled_plate_gives_the_unsubsampled_answer_every_time():
    model, args, forget, plate, exact, _ = conjugate_case("subsampled")
    q_full = exact_guide(model, args, exact)
    whole = pu.unlearn(
        model, q_full, *args, mask=forget, plate=plate, model_kwargs={"subsample_size": None}
    )
    for _ in range(2):  # a random subsample would give a different answer each run
        sub = pu.unlearn(model, q_full, *args, mask=forget, plate=plate)
        assert torch.allclose(
            pu.flat_gaussian(sub.guide).loc,
            pu.flat_gaussian(whole.guide).loc,
            rtol=1e-10,
            atol=1e-12,
        )
        assert torch.allclose(sub.guide.precision, whole.guide.precision, rtol=1e-10)
    assert sub.diagnostics["evaluator"]["forget_set"] == "plate index"


def test_fits_of_pyromodule_models_are_exact_and_leave_the_caller_alone():
    model, args, _, _, exact, _ = conjugate_case("pyromodule")
    mean, precision = exact()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    laplace = pu.flat_gaussian(pu.fit_laplace(model, *args))
    assert um.gaussian_kl(laplace.loc, laplace.precision, mean, precision) < 1e-10
    svi = pu.flat_gaussian(pu.fit_svi(model, *args, num_steps=300))
    assert um.gaussian_kl(svi.loc, svi.precision, mean, precision) < 1e-8
    assert model.state_dict().keys() == state.keys()
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


# ---------------------------------------------------------------- sites outside a plate
def test_observed_vector_without_a_plate_is_forgotten_by_its_batch_dim():
    """Eight schools as Pyro's examples write it: forget school 0 with plate=-1."""
    sigma, y = um.SCHOOLS_SIGMA, um.SCHOOLS_Y
    values = {
        "eta": torch.randn(3, 8, generator=torch.Generator().manual_seed(0)),
        "mu": torch.tensor([[1.0], [2.0], [-1.0]]),
        "tau": torch.tensor([[3.0], [0.5], [10.0]]),
    }
    evaluator = forget_evaluator(um.schools_no_plate, (sigma, y), mask=torch.tensor([0]), plate=-1)
    theta = values["mu"] + values["tau"] * values["eta"]
    expected = dist.Normal(theta[:, 0], sigma[0]).log_prob(y[0])
    assert torch.allclose(evaluator.log_likelihood(values), expected, rtol=1e-12)

    def event_model(sigma, y=None):
        mu = pyro.sample("mu", dist.Normal(0.0, 5.0))
        pyro.sample("obs", dist.Normal(mu.expand(8), sigma).to_event(1), obs=y)

    with pytest.raises(ValueError, match="event dimension.*drop .to_event"):
        forget_evaluator(event_model, (sigma, y), mask=[0], plate=-1).log_likelihood(
            {"mu": torch.zeros(2)}
        )


def test_psis_on_mcmc_draws_of_the_no_plate_model_matches_nuts_retraining():
    full, retained = reference("no_plate", "full"), reference("no_plate", "retained")
    forget, plate = torch.tensor([0]), -1
    result = pu.unlearn(
        um.schools_no_plate,
        full,
        um.SCHOOLS_SIGMA,
        um.SCHOOLS_Y,
        mask=forget,
        plate=plate,
        method="psis",
    )
    _within_mc_error_of_the_reference(result.guide, retained, ["mu"])


def _within_mc_error_of_the_reference(weighted, reference_, sites, z=5.0):
    w = weighted.log_weights.exp()
    for site in sites:
        mean = torch.einsum("s,s...->...", w, weighted.samples[site])
        ref = reference_.flat(site)
        se = (ref.std(0).pow(2) / weighted.ess + ref.std(0).pow(2) / len(ref) * 4).sqrt()
        assert ((mean - ref.mean(0)).abs() / se).max() < z, site


def test_a_conditioned_global_outside_the_plate_is_left_untouched():
    model, args, forget, plate, exact, _ = conjugate_case("matmul")
    conditioned = pyro.poutine.condition(model, data={"b": torch.tensor(0.5)})
    trace = pyro.poutine.trace(pu.forget(conditioned, mask=forget, plate=plate)).get_trace(*args)
    assert trace.nodes["b"]["is_observed"] and trace.nodes["b"]["scale"] == 1.0
    assert float(trace.nodes["obs"]["scale"]) == -1.0
    with pytest.raises(ValueError, match="not inside plate 'rows'"):
        pyro.poutine.trace(pu.forget(conditioned, mask=forget, plate="rows")).get_trace(*args)


# ---------------------------------------------------------------- the right posterior
def test_a_posterior_the_method_cannot_use_is_refused_naming_the_alternatives():
    model, args, forget, plate, exact, _ = conjugate_case("pyromodule")
    q_full = exact_guide(model, args, exact)
    full = reference("poisson", "full")  # any Reference: posterior draws
    for method in ("laplace", "eubo", "rkl", "smc"):
        with pytest.raises(pu.UnsupportedPosteriorError, match="use method='psis'"):
            pu.unlearn(model, full, *args, mask=forget, plate=plate, method=method)
    with pytest.raises(
        pu.UnsupportedPosteriorError, match=r"methods \['eubo', 'laplace', 'rkl', 'smc'\]"
    ):
        pu.unlearn(model, q_full, *args, mask=forget, plate=plate, method="psis")

    def guide(x, y=None):
        pyro.sample("linear.weight", dist.Normal(torch.zeros(1, 3), 1.0).to_event(2))

    with pytest.raises(pu.UnsupportedPosteriorError, match="guide function.*fit a Gaussian guide"):
        pu.unlearn(model, guide, *args, mask=forget, plate=plate, method="eubo")


def test_a_latent_the_posterior_lacks_is_an_error_not_a_prior_draw():
    model, args, forget, plate, exact, _ = conjugate_case("matmul")
    evaluator = forget_evaluator(model, args, mask=forget, plate=plate)
    with pytest.raises(pu.model_eval.MissingLatentError, match="latent site 'b'"):
        evaluator.log_likelihood({"w": torch.zeros(2, 3)})


# ---------------------------------------------------------------- enumerated mixture
@pytest.fixture(scope="module")
def mixture_fit():
    dtype = torch.get_default_dtype()  # module scope: set here, restored below
    torch.set_default_dtype(torch.float64)
    data = um.mixture_data()
    forget = data.argsort()[-10:]
    pyro.clear_param_store()
    guide = AutoDelta(
        pyro.poutine.block(um.mixture, expose=["weights", "locs", "scale"]),
        init_loc_fn=lambda site: {"locs": torch.tensor([-1.0, 1.0])}.get(
            site["name"], pyro.infer.autoguide.init_to_median(site)
        ),
    )
    svi = SVI(um.mixture, guide, pyro.optim.Adam({"lr": 0.05}), TraceEnum_ELBO(max_plate_nesting=1))
    pyro.set_rng_seed(0)
    for _ in range(600):
        svi.step(data)
    yield data, forget, guide
    torch.set_default_dtype(dtype)


def test_enumerated_mixture_checks_marginalise_the_assignment(mixture_fit):
    data, forget, guide = mixture_fit
    from pyro_unlearn import arviz_compat

    idata = pu.to_inference_data(guide, um.mixture, data, forget_mask=forget, num_samples=20)
    posterior = arviz_compat.group(idata, "posterior")
    assert set(posterior.data_vars) == {"weights", "scale", "locs"}  # no "assignment"
    assert posterior.attrs["marginalised"] == "assignment"
    point = {k: v.detach() for k, v in guide.median().items()}
    expected = um.mixture_log_likelihood(data, point["weights"], point["locs"], point["scale"])
    log_lik = arviz_compat.group(idata, "log_likelihood")
    got = torch.as_tensor(log_lik["obs_forget"].values[0, 0])
    assert torch.allclose(got, expected[forget.sort().values], rtol=1e-10)


def test_enumerated_mixture_through_laplace_then_every_gaussian_method(mixture_fit):
    """Laplace on the tutorial's MAP (AutoDelta fitted with TraceEnum_ELBO; the full data give
    H_D), and EUBO and SMC from the Laplace approximation, against NUTS retrained on the
    remaining points: each closes at least half the gap (measured 0.84-0.94). rKL's weights
    degenerate for this request (k-hat 1.13 measured) and it refuses, as it must."""
    data, forget, guide = mixture_fit
    args = (data,)
    options = dict(mask=forget, plate="data")
    laplace = pu.unlearn(um.mixture, guide, *args, method="laplace", full_args=args, **options)
    assert laplace.diagnostics["evaluator"]["marginalised"] == ["assignment"]
    init = pyro.infer.autoguide.init_to_value(
        values={k: v.detach() for k, v in guide.median().items()}
    )
    q_full = pu.fit_laplace(um.mixture, *args, init_loc_fn=init)
    results = {"original": q_full, "laplace from the MAP": laplace}
    for method in ("eubo", "smc"):
        results[method] = pu.unlearn(um.mixture, q_full, *args, method=method, **options)
    try:
        results["rkl"] = pu.unlearn(um.mixture, q_full, *args, method="rkl", **options)
    except pu.DegenerateWeightsError as error:
        assert "Pareto k" in str(error)
    frame = pu.compare_posteriors(
        {**results, "retrained": reference("mixture", "retained")},
        um.mixture,
        *args,
        forget_mask=forget,
        num_samples=1000,
    )
    for name in results:
        if name != "original":
            assert frame.loc[name, "gap_closed"] > 0.5, frame


# ---------------------------------------------------------------- non-conjugate models
def gap_frame(model, args, forget, plate, q_full, name, methods, **frame_options):
    """Each method's result (an unreliable one returned flagged, with a warning: the
    assertions then say whether it still moved towards retraining) against NUTS."""
    results = {"original": q_full}
    for method in methods:
        options = {"psd": "clip"} if method == "laplace" else {"on_unreliable": "warn"}
        results[method] = pu.unlearn(
            model, q_full, *args, mask=forget, plate=plate, method=method, **options
        )
    results["psis (NUTS draws)"] = pu.unlearn(
        model,
        reference(name, "full"),
        *args,
        mask=forget,
        plate=plate,
        method="psis",
        on_unreliable="ignore",
    )
    return results, pu.compare_posteriors(
        {**results, "retrained": reference(name, "retained")},
        model,
        *args,
        forget_mask=forget,
        plate=plate,
        **frame_options,
    )


def test_poisson_glm_every_method_closes_most_of_the_gap_to_nuts():
    X, y = um.poisson_data()
    forget = X[:, 1].argsort()[-10:]
    q_full = pu.fit_svi(um.poisson_glm, X, y, num_steps=1000)
    results, frame = gap_frame(
        um.poisson_glm, (X, y), forget, "data", q_full, "poisson", ["laplace", "eubo", "rkl", "smc"]
    )
    for name in results:
        if name != "original":
            assert frame.loc[name, "gap_closed"] > 0.5, frame


def test_noncentred_hierarchical_model_moves_towards_nuts_retraining():
    args = (8, um.SCHOOLS_SIGMA, um.SCHOOLS_Y)
    forget = torch.tensor([0])
    q_full = pu.fit_svi(um.schools_noncentred, *args, num_steps=2000)
    results, frame = gap_frame(
        um.schools_noncentred, args, forget, "J", q_full, "noncentred", ["laplace", "eubo", "smc"]
    )
    for name in results:
        if name != "original":
            assert frame.loc[name, "pred_kl_forget"] < frame.loc["original", "pred_kl_forget"], (
                frame
            )


@pytest.mark.slow  # 35-40 s: keeps the default suite under 10 minutes
def test_small_bayesian_neural_network_forgets_a_region_of_inputs():
    """The BNN's reference is an SVI retrain in the same family (fit_svi on the retained data):
    NUTS does not converge on this posterior (measured, 2 x 500 draws: r-hat 1.08 on the
    retained data, 1.83 on the full data: it is multimodal), so it cannot be the truth here.
    Compared by predictive KL on the forgotten inputs, which weight-space symmetries leave
    unchanged: each method lands closer to retraining than doing nothing."""
    x, t = um.bnn_data()
    model = um.BNN()
    forget = torch.arange(32, 40)
    q_full = pu.fit_svi(model, x, t, num_steps=2000)
    retrained = pu.retrain(
        model, x, t, forget_mask=forget, plate="data", method="svi", svi_steps=2000
    )
    results = {"original": q_full}
    for method in ("laplace", "eubo", "smc"):
        options = {"psd": "clip"} if method == "laplace" else {}
        results[method] = pu.unlearn(
            model, q_full, x, t, mask=forget, plate="data", method=method, **options
        )
    frame = pu.compare_posteriors(
        {**results, "retrained": retrained}, model, x, t, forget_mask=forget, num_samples=1000
    )
    for name in results:
        if name != "original":
            assert frame.loc[name, "pred_kl_forget"] < frame.loc["original", "pred_kl_forget"], (
                frame
            )


def test_plots_take_a_pyromodule_and_an_enumerated_mixture(mixture_fit):
    import matplotlib

    matplotlib.use("Agg")
    model, args, forget, plate, exact, _ = conjugate_case("pyromodule")
    q_full = exact_guide(model, args, exact)
    result = pu.unlearn(model, q_full, *args, mask=forget, plate=plate)
    figures = pu.plot_posteriors(
        {"original": q_full, "unlearned": result}, model, *args, forget_mask=forget, num_samples=200
    )
    assert set(figures) == {"forest", "density", "forget_predictive"}
    assert all(f.axes for f in figures.values())
    data, forget, guide = mixture_fit
    laplace = pu.unlearn(um.mixture, guide, data, mask=forget, plate="data", full_args=(data,))
    figures = pu.plot_posteriors(
        {"original": laplace, "unlearned": laplace},
        um.mixture,
        data,
        forget_mask=forget,
        num_samples=200,
    )
    # the mixture's predictive mean per component is not defined: the panel says so
    texts = [t.get_text() for t in figures["forget_predictive"].axes[0].texts]
    assert any("enumerated" in t for t in texts)


@pytest.mark.parametrize("name", CONJUGATE)
def test_the_certificate_takes_every_conjugate_user_model(name):
    """PyroModule, X @ w, an event-dim observation, local latents, a subsampled plate: the
    certificate of a perturbed retrained posterior (mean 0.2 sd off) matches the closed-form
    KL within 3 standard errors, or is flagged (a lower bound, never above it by much)."""
    model, args, forget, plate, exact, _ = conjugate_case(name)
    keep = um.keep_mask(len(args[-1]), forget)
    mean, precision = exact(keep)
    sd = torch.linalg.inv(precision).diagonal().sqrt()
    shifted = mean + 0.2 * sd
    q = pu.LaplaceGuide.from_precision(model, shifted, precision, model_args=args)
    cert = pu.certify(q, model, *args, forget_mask=forget, plate=plate, num_samples=4000)
    true = um.gaussian_kl(shifted, precision, mean, precision)
    if cert.reliable:
        assert abs(cert.kl - true) <= 3 * cert.standard_error + 1e-9
    else:
        assert cert.kl <= true + 0.05


def test_draws_per_run_follow_the_models_largest_tensor_and_never_change_the_answer():
    """The evaluator runs as many draws at once as keep the largest tensor a model makes at
    one draw within 16 MB: a BNN with 50 hidden units on 569 inputs (a 569 x 50 activation
    per draw) gets fewer draws per run than with 3, and the broadcasting ``(X * w).sum(-1)``
    fewer than ``X @ w``. Blocks change the speed only: the log-likelihoods are those of
    blocks of 2048 (to rounding)."""
    from pyro_unlearn.bench.evaluator import broadcasting_logistic, matmul_logistic
    from pyro_unlearn.model_eval import ModelEvaluator

    g = torch.Generator().manual_seed(0)
    X, y = torch.randn(569, 31, generator=g), (torch.rand(569, generator=g) < 0.5).double()
    x1, y1 = torch.randn(569, 1, generator=g), torch.randn(569, generator=g)
    w = {"w": 0.1 * torch.randn(300, 31, generator=g)}
    sizes = {}
    for name, model, args, draws in (
        ("broadcasting", broadcasting_logistic, (X, y), w),
        ("matmul", matmul_logistic, (X, y), w),
        ("bnn 50", um.BNN(hidden=50), (x1, y1), None),
        ("bnn 3", um.BNN(hidden=3), (x1, y1), None),
    ):
        if draws is None:
            trace = pyro.poutine.trace(model).get_trace(*args)
            draws = {
                n: s["value"] + 0.1 * torch.randn((300,) + s["value"].shape, generator=g)
                for n, s in trace.nodes.items()
                if s["type"] == "sample" and not s["is_observed"]
            }
        chosen = ModelEvaluator(model, args)
        with torch.no_grad():
            ours = chosen.log_likelihood(draws)
            big = ModelEvaluator(model, args, chunk_size=2048).log_likelihood(draws)
        assert torch.allclose(ours, big, rtol=1e-12, atol=1e-9), name
        sizes[name] = chosen.chunk_size
    assert sizes["broadcasting"] < sizes["matmul"] and sizes["bnn 50"] < sizes["bnn 3"]
    assert sizes["broadcasting"] == pu.model_eval.draws_per_run(569 * 31 * 8)

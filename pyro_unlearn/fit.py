"""Fitting full-data posteriors to unlearn from: SVI (with a natural-gradient finish), Laplace, flows.

Every fit evaluates the model through :class:`~pyro_unlearn.model_eval.ModelEvaluator`, so
models written for one draw (``PyroModule`` with ``nn.Linear``, ``X @ w``) are fitted as
written; randomness is seeded locally (the caller's RNG state is untouched) and parameters
are module-local (the global param store is untouched).
"""

from __future__ import annotations

import functools
import warnings

import pyro
import torch
from pyro.infer import Trace_ELBO
from pyro.infer.autoguide import (
    AutoLaplaceApproximation,
    AutoMultivariateNormal,
    AutoNormalizingFlow,
)
from pyro.infer.autoguide.initialization import init_to_median

from . import _checks
from ._user_model import user_call
from .certificate import certify
from .errors import UnlearningError
from .flows import flow_guide
from .guides import (
    LaplaceGuide,
    flat_gaussian,
    freeze,
    latent_layout,
    set_gaussian_buffers,
    trainable_view,
)
from .model_eval import ModelEvaluator
from .natural import (
    antithetic_normals,
    expected_derivatives,
    expected_value,
    natural_gradient_steps,
)


class LaplaceFitError(UnlearningError, ValueError):
    """The Hessian at the MAP is not positive definite: no Laplace approximation there."""


def fit_laplace(
    model,
    *args,
    max_iter: int = 200,
    init_loc_fn=init_to_median,
    seed: int = 0,
    certificate_samples: int = 4000,
    **kwargs,
) -> LaplaceGuide:
    r"""A Laplace approximation :math:`\mathcal N(z^*, H^{-1})` in the unconstrained space.

    :math:`z^* = \arg\max_z \log p(\theta(z), D) + \log|\det\partial\theta/\partial z|` by
    L-BFGS on the whole data (a subsampled plate is evaluated whole), started where
    ``init_loc_fn`` says (Pyro's initialisation strategies; ``init_to_sample`` breaks the
    symmetry of a neural network's weights, whose prior median is a saddle point), and
    :math:`H` the Hessian of the negative log joint there. ``seed`` seeds the initialisation.
    A Hessian that is not positive definite (a MAP at the edge of a hierarchical model's
    funnel, a saddle) raises :class:`LaplaceFitError` naming its smallest eigenvalue.
    The returned guide carries its own error, :math:`\mathrm{KL}(q_D\,\|\,p(\theta\mid D))`,
    as ``guide.certificate`` (:func:`~pyro_unlearn.certify` with ``certificate_samples``
    draws; 0 skips it).
    """
    _checks.count("max_iter", max_iter)
    _checks.seed(seed)
    _checks.model_keywords(fit_laplace, model, kwargs)
    _checks.finite_data(args, kwargs)
    model = user_call(model)
    with pyro.settings.context(module_local_params=True), torch.random.fork_rng():
        torch.manual_seed(seed)
        guide = AutoLaplaceApproximation(continuous_part(model), init_loc_fn=init_loc_fn)
        guide._setup_prototype(*args, **kwargs)
        start = guide.loc.detach().clone()
    layout = latent_layout(guide)
    evaluator = ModelEvaluator(model, args, kwargs)

    def neg_log_joint(z: torch.Tensor) -> torch.Tensor:
        return -evaluator.log_joint(layout, z.unsqueeze(0))[0]

    z = start.clone().requires_grad_()
    optim = torch.optim.LBFGS(
        [z],
        max_iter=max_iter,
        line_search_fn="strong_wolfe",
        tolerance_grad=1e-9,
        tolerance_change=1e-12,
    )

    def closure():
        optim.zero_grad()
        value = neg_log_joint(z)
        value.backward()
        return value

    optim.step(closure)
    z = z.detach()
    precision = torch.autograd.functional.hessian(neg_log_joint, z)
    precision = (precision + precision.T) / 2
    eigenvalues = torch.linalg.eigvalsh(precision)
    if not bool(torch.isfinite(z).all()) or not eigenvalues[0] > 0:
        raise LaplaceFitError(
            f"the Hessian of the negative log joint at the MAP is not positive definite "
            f"(smallest eigenvalue {float(eigenvalues[0]):.4g}): the MAP lies on a ridge or at "
            "the edge of the support (a hierarchical scale going to 0, a saddle), where no "
            "Gaussian approximates the posterior. Fit with fit_svi (AutoNormal or "
            "AutoMultivariateNormal), reparametrise the model (non-centred), or use MCMC draws "
            "with method='psis'"
        )
    result = LaplaceGuide.from_precision(model, z, precision, like=guide)
    result.fitted_by = "laplace"
    return _with_certificate(result, model, args, kwargs, certificate_samples, seed)


def fit_svi(
    model,
    *args,
    num_steps: int = 3000,
    lr: float = 0.02,
    num_particles: int = 16,
    guide_class=AutoMultivariateNormal,
    natural_steps: int = 20,
    seed: int = 0,
    certificate_samples: int = 4000,
    **kwargs,
):
    r"""Fit ``guide_class(model)`` by SVI and return it frozen (parameters as buffers).

    Adam with learning rate ``lr`` decayed 100x over ``num_steps``, ``num_particles``
    particles (vectorized where the model broadcasts over them, one run each otherwise, as
    the model evaluator finds), module-local parameters (the param store is untouched), a
    locally seeded RNG. Only the guide's parameters are trained: the model's own
    ``pyro.param`` / ``nn.Parameter`` values stay as they are. An AutoMultivariateNormal of
    up to 200 dimensions is then taken to the fixed point of its ELBO by up to
    ``natural_steps`` natural-gradient steps on the log joint
    (:func:`~pyro_unlearn.natural.natural_gradient_steps`, 1000 antithetic draws reused at
    every step, stopping once a step moves :math:`q` by less than :math:`10^{-4}` nats;
    ``natural_steps=0`` skips it; four steps sufficed on breast_cancer, about 5 s each for
    31 dimensions and 569 points). A step is taken only if it does not lower the ELBO
    estimated with the same draws (halved otherwise), so the finish cannot run away on a
    posterior far from Gaussian. Why: removing the forget set's contribution (EUBO's
    natural step) is exact only from that fixed point. On breast_cancer, 3000 Adam steps
    left :math:`q` 0.18 nats from it, and the same unlearning step then closed 0.74 of the
    gap to retraining instead of 0.83 (``python -m pyro_unlearn.bench.bayes``).

    The returned guide carries its own error, :math:`\mathrm{KL}(q_D\,\|\,p(\theta\mid D))`,
    as ``guide.certificate`` (:func:`~pyro_unlearn.certify` with ``certificate_samples``
    draws, each one model evaluation; 0 skips it).
    """
    _checks.count("num_steps", num_steps)
    _checks.count("num_particles", num_particles)
    _checks.count("natural_steps", natural_steps, minimum=0)
    _checks.positive("lr", lr)
    _checks.seed(seed)
    _checks.model_keywords(fit_svi, model, kwargs)
    _checks.finite_data(args, kwargs)
    model = user_call(model)
    evaluator = ModelEvaluator(model, args, kwargs)
    with pyro.settings.context(module_local_params=True), torch.random.fork_rng():
        torch.manual_seed(seed)
        guided = continuous_part(model)  # enumerated sites are summed out, not guided
        guide = (
            guide_class(guided, init_scale=0.05)
            if guide_class is AutoMultivariateNormal
            else guide_class(guided)
        )
        guide(*args, **kwargs)
        with torch.random.fork_rng():
            nesting, vectorize = _particle_plan(evaluator, guide, args, kwargs)
        if vectorize:  # the model broadcasts: Pyro's own vectorized Trace_ELBO
            elbo = Trace_ELBO(
                num_particles=num_particles, vectorize_particles=True, max_plate_nesting=nesting
            )
            negative_elbo = functools.partial(elbo(model, guide), *args, **kwargs)
        else:  # one draw at a time: the same estimate, the model run by the evaluator
            negative_elbo = _evaluator_elbo(evaluator, guide, num_particles)
        params = [p for p in guide.parameters() if p.requires_grad]
        optim = torch.optim.Adam(params, lr=lr)
        decay = torch.optim.lr_scheduler.ExponentialLR(optim, 0.01 ** (1 / max(num_steps, 1)))
        for _ in range(num_steps):
            optim.zero_grad()
            negative_elbo().backward()
            optim.step()
            decay.step()
    guide = freeze(guide)
    guide.evaluator = evaluator.describe()
    if natural_steps and type(guide) is AutoMultivariateNormal and guide.latent_dim <= 200:
        _to_fixed_point(guide, evaluator, natural_steps, seed)
    return _with_certificate(guide, model, args, kwargs, certificate_samples, seed)


def _with_certificate(guide, model, args, kwargs, num_samples: int, seed: int):
    """``guide`` with ``guide.certificate``: its KL to the exact full-data posterior."""
    guide.certificate = None
    if num_samples:
        try:
            guide.certificate = certify(
                guide, model, *args, model_kwargs=kwargs, num_samples=num_samples, seed=seed
            )
        except Exception as error:  # a fit must not fail for its check; say why it is missing
            warnings.warn(
                f"the fitted posterior has no certificate: {type(error).__name__}: {error}",
                stacklevel=3,
            )
    return guide


def continuous_part(model):
    """``model`` with its enumerated discrete sites hidden: what an autoguide covers (the
    evaluator sums those sites out of the likelihood)."""
    return pyro.poutine.block(
        model, hide_fn=lambda msg: msg["infer"].get("enumerate") == "parallel"
    )


def _evaluator_elbo(evaluator: ModelEvaluator, guide, num_particles: int):
    r""":math:`-\frac1P\sum_p \log p(\theta(z_p), D) + \log|J| - \log q(z_p)`, :math:`z_p \sim q`
    reparameterised, in the unconstrained space (Trace_ELBO's estimate for autoguides)."""
    layout = latent_layout(guide)
    draw = trainable_view(guide, layout)

    def negative_elbo():
        z, log_q = draw(num_particles)
        return -(evaluator.log_joint(layout, z) - log_q).mean()

    return negative_elbo


def _particle_plan(evaluator: ModelEvaluator, guide, args, kwargs) -> tuple[int, bool]:
    """``(max_plate_nesting, vectorize_particles)``: vectorize where the model broadcasts."""
    with torch.no_grad():
        draws = [pyro.poutine.trace(guide).get_trace(*args, **kwargs) for _ in range(2)]
    names = [n for n, s in draws[0].nodes.items() if s["type"] == "sample" and not s["is_observed"]]
    names = [n for n in names if n in {s.name for s in latent_layout(guide)}]
    values = {n: torch.stack([d.nodes[n]["value"] for d in draws]) for n in names}
    evaluator.site_log_probs(values)
    vectorize = evaluator.path == "vectorized" and not evaluator.enumerated_sites
    return evaluator.max_plate_nesting, vectorize


def _to_fixed_point(
    guide, evaluator: ModelEvaluator, num_steps: int, seed: int, num_samples: int = 1000
):
    """Natural-gradient steps on the log joint, written into the frozen guide's buffers."""
    layout = latent_layout(guide)
    start = flat_gaussian(guide)
    eps = antithetic_normals(num_samples, len(start.loc), seed, like=start.loc)

    def neg_log_joint(z):
        return -evaluator.log_joint(layout, z)

    def elbo(m, chol):  # E_q[log p(theta(z), D) + log|J|] + entropy, up to a constant
        return -expected_value(neg_log_joint, m, chol, eps) + float(chol.diagonal().log().sum())

    loc, precision, steps = natural_gradient_steps(
        lambda m, chol: expected_derivatives(neg_log_joint, m, chol, eps),
        start.loc,
        start.precision,
        num_steps,
        tol=1e-4,
        objective=elbo,
    )
    set_gaussian_buffers(guide, loc, precision)
    guide.natural_steps = steps


def fit_flow(
    model,
    *args,
    num_transforms: int = 2,
    hidden_dims: list[int] | None = None,
    num_steps: int = 2000,
    lr: float = 0.005,
    num_particles: int = 32,
    seed: int = 0,
    certificate_samples: int = 4000,
    **kwargs,
) -> AutoNormalizingFlow:
    """Fit a flow posterior (:func:`flow_guide`) started at a Laplace approximation, by SVI.

    The Laplace fit gives the flow's affine layer; :func:`~pyro_unlearn.fit_svi` does the
    rest (Adam decayed 100x over ``num_steps``, vectorized particles, module-local
    parameters) and returns it frozen, with ``guide.certificate`` as :func:`fit_svi`.
    """
    _checks.model_keywords(fit_flow, model, kwargs)
    laplace = flat_gaussian(fit_laplace(model, *args, certificate_samples=0, **kwargs))
    guide_class = functools.partial(
        flow_guide,
        loc=laplace.loc,
        scale_tril=laplace.cholesky(),
        num_transforms=num_transforms,
        hidden_dims=hidden_dims,
    )
    return fit_svi(
        model,
        *args,
        num_steps=num_steps,
        lr=lr,
        num_particles=num_particles,
        guide_class=guide_class,
        seed=seed,
        certificate_samples=certificate_samples,
        **kwargs,
    )

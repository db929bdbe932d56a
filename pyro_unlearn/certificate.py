r"""The forgetting certificate: how far a posterior is from retraining, estimated without retraining.

For a posterior :math:`q` over the flat unconstrained vector :math:`z` and a target known up
to its normaliser, :math:`\pi(z) = \tilde p(z)/Z`, draws :math:`z_s \sim q` give

.. math::

    \log w_s = \log\tilde p(z_s) - \log q(z_s), \qquad
    \mathrm{KL}(q\,\|\,\pi) = \log Z - \mathbb E_q[\log w], \qquad Z = \mathbb E_q[w],

    \widehat{\mathrm{KL}} = \log\Big(\frac1S\sum_s w_s\Big) - \frac1S\sum_s \log w_s \;\ge 0.

Three targets, one estimator:

* ``"retained"`` (the certificate): :math:`\tilde p(z) = p(\theta(z))\,p(D_r\mid\theta(z))
  \,|\det\partial\theta/\partial z|`, the posterior retraining on :math:`D_r` would give,
  from one likelihood pass over the retained data per draw and no refit;
* ``"full"``: the same on all the data, :math:`\mathrm{KL}(q_D\,\|\,p(\theta\mid D))`, the
  error of the fitted full-data posterior itself (computed by the fitters and carried on the
  guide as ``guide.certificate``);
* ``"step"`` (a diagnostic, not a certificate): :math:`\tilde p = q_D / p(D_e\mid\theta)`,
  from the forget data alone. It cannot see the error of :math:`q_D` and, when the divided-out
  target is far from the retrained posterior, it ranks methods no better than chance.

The log-mean-exp errs low when the weights are heavy-tailed, so an unreliable estimate is a
*lower bound* only and is reported without a standard error. It is reliable when the Pareto
:math:`\hat k` of the weights is at most 1/2 (finite variance, so a central limit theorem
and a standard error; PSIS's own threshold, 0.7, bounds where the *value* is still usable)
and the estimate is no longer rising with :math:`S` (the estimate from the first
:math:`S/10` draws is beside it). While the fitted Pareto tail has finite variance, the
largest weights in :math:`\bar w` are replaced by that tail's expectation and its variance
enters the standard error (the delta method's, with influence
:math:`\phi_s = w_s/\bar w - \log w_s`; see ``_estimate``): a sample that missed the few
largest weights would otherwise be low in both the estimate and its error. The certificate
covers only the directions the draws of :math:`q` explore: mass of the retrained posterior
that :math:`q` never reaches shows up as a high :math:`\hat k`, never as a small KL.

The same draws and PSIS-smoothed weights :math:`\tilde w_s` (normalised) also give the
target's mean and covariance, :math:`\hat m_\pi = \sum_s \tilde w_s z_s` and
:math:`\hat C_\pi = \sum_s \tilde w_s (z_s-\hat m_\pi)(z_s-\hat m_\pi)^\top`, and so
``moment_kl`` :math:`= \mathrm{KL}(\mathcal N(\bar z, C_q)\,\|\,\mathcal N(\hat m_\pi,
\hat C_\pi))`: the distance a comparison with NUTS draws of the retrained posterior reports
(:func:`~pyro_unlearn.compare_posteriors`' moment-matched KL, here over the unconstrained
vector), without NUTS. It sees only the first two moments (equal to ``kl`` when :math:`q`
and the target are Gaussian) and is NaN where PSIS's own threshold, :math:`\hat k > 0.7`,
says the weighted moments cannot be trusted.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch
from pyro.distributions.transforms import biject_to

from . import _checks, _rng
from .arviz_compat import _tail_length
from .errors import BadRequestError, UnsupportedPosteriorError
from .gaussian import FlatGaussian
from .guides import LatentSite
from .handlers import retain
from .importance import (
    PARETO_K_THRESHOLD,
    UNIFORM_ESS,
    effective_sample_size,
    generalized_pareto_fit,
    pareto_smooth,
)
from .masks import MaskLike
from .model_eval import ModelEvaluator, forget_evaluator
from .posteriors import GaussianView, PosteriorView, posterior_view
from .tempering import tempered_log_normaliser

SMC_REPLICAS = 8  # cross_check: independent SMC runs, for a standard error of log Z
RISING = 3.0  # standard errors of the S/10 estimate by which the estimate may still grow
#: weights with a Pareto tail index above 1/2 may have infinite variance: no central limit
#: theorem, so no standard error (PSIS estimates stay usable up to 0.7, as lower bounds here)
FINITE_VARIANCE_K = 0.5


@dataclass
class Certificate:
    r"""An estimate of :math:`\mathrm{KL}(q\,\|\,\pi)`, with what makes it trustworthy or not.

    Attributes
    ----------
    kl : float
        The estimate (nats); a lower bound only when ``reliable`` is False.
    scope : {"retained", "full", "step"}
        The target: the retrained posterior, the full-data posterior, or the divided-out
        target :math:`q_D/p(D_e\mid\theta)` (a diagnostic).
    standard_error : float
        Delta-method standard error (with the fitted tail's variance) while reliable; NaN
        otherwise.
    pareto_k, ess : float
        Pareto :math:`\hat k` and Kish effective sample size of the weights.
    num_samples : int
        Draws :math:`S`.
    kl_at_tenth : float
        The estimate from the first :math:`S/10` draws (a trend: it should not be far below).
    reasons : list of str
        Why the estimate is unreliable (empty when reliable).
    posterior : str
        What was certified: ``"gaussian"``, ``"flow"``, or ``"moment-matched draws"``.
    seconds : float
        Wall time of the estimate.
    full_data : Certificate or None
        :math:`\mathrm{KL}(q_D\,\|\,p(\theta\mid D))` of the posterior unlearning started from,
        when it was computed at fit time: how much of the distance :math:`q_D` brought.
    log_z : float
        :math:`\log\hat Z`, the estimate of the target's log normaliser (with the fitted
        tail while reliable, else the plain :math:`\log\frac1S\sum_s w_s`; for
        scope ``"retained"``, the log marginal likelihood of :math:`D_r`); ``log_z - kl`` is
        :math:`\frac1S\sum_s\log w_s`, unbiased for any :math:`q`.
    kl_smc, smc_standard_error : float
        With ``cross_check=True``: the same KL with :math:`\log Z` from tempered SMC
        (:func:`~pyro_unlearn.tempering.tempered_log_normaliser`, independent replicas) and
        its standard error over the replicas; NaN when not computed.
    moment_kl : float
        KL between the Gaussians matched to :math:`q`'s draws and to the target's moments
        estimated from them by PSIS (the module docstring): what a moment-matched comparison
        with NUTS draws of the target measures; NaN when :math:`\hat k > 0.7`.
    """

    kl: float
    scope: str
    standard_error: float
    pareto_k: float
    ess: float
    num_samples: int
    kl_at_tenth: float
    reasons: list = field(default_factory=list)
    posterior: str = "gaussian"
    seconds: float = 0.0
    full_data: Certificate | None = None
    log_z: float = float("nan")
    kl_smc: float = float("nan")
    smc_standard_error: float = float("nan")
    moment_kl: float = float("nan")

    @property
    def reliable(self) -> bool:
        return not self.reasons

    @property
    def lower_bound(self) -> bool:
        """True when ``kl`` can only be trusted as a lower bound (unreliable weights)."""
        return not self.reliable

    def summary(self) -> str:
        """One line: the value with its standard error, or as a lower bound with the reason."""
        what = {"retained": "KL to retraining", "full": "KL to the full-data posterior"}
        label = what.get(self.scope, "KL to the divided-out target (a diagnostic)")
        if self.reliable:
            value = f"{self.kl:.3g} ± {self.standard_error:.2g} nats"
        else:
            value = f">= {self.kl:.3g} nats (a lower bound: {'; '.join(self.reasons)})"
        extra = f", k-hat {self.pareto_k:.2f}, ESS {self.ess:.0f} of {self.num_samples}"
        if math.isfinite(self.kl_smc):
            extra += f"; SMC {self.kl_smc:.3g} ± {self.smc_standard_error:.2g}"
        if math.isfinite(self.moment_kl):
            extra += f"; moment-matched {self.moment_kl:.3g}"
        if self.full_data is not None:
            extra += f"; q(theta|D) itself {self.full_data.kl:.3g} nats from p(theta|D)"
        return f"{label}: {value}{extra}"

    def __repr__(self) -> str:
        return f"Certificate({self.summary()})"


def certify(
    posterior,
    model,
    *args,
    forget_mask: MaskLike | None = None,
    plate: str | int = "data",
    full=None,
    model_kwargs: dict | None = None,
    num_samples: int = 10000,
    seed: int = 0,
    scope: str | None = None,
    cross_check: bool = False,
) -> Certificate:
    r"""Estimate how far ``posterior`` is from the posterior retraining would give.

    Parameters
    ----------
    posterior
        The posterior to certify: an ``UnlearnResult``, a Gaussian or flow guide, a
        :class:`~pyro_unlearn.PosteriorView`, or weighted draws (certified through their
        moment-matched Gaussian in the unconstrained space, and labelled so).
    model, *args
        The model and its data. With ``forget_mask`` the data are all the data and the
        target is the retrained posterior (scope ``"retained"``); without it and without
        ``full``, the target is the posterior on ``args`` as given (scope ``"full"`` when
        they are all the data, or ``"retained"`` when they are the retained data: the maths
        is the same). With ``full`` (:math:`q_D`), ``args`` are the forget data and the
        target is :math:`q_D/p(D_e\mid\theta)` (scope ``"step"``, a diagnostic).
    forget_mask, plate
        The forget elements of plate ``plate`` (as for :func:`~pyro_unlearn.retrain`).
    num_samples : int
        Draws :math:`S` from ``posterior`` (one model evaluation each).
    seed : int
        Seed of the draws (the caller's RNG state is untouched).
    scope : {"retained", "full"}, optional
        The label when ``args`` are the data as given (no ``forget_mask``, no ``full``):
        ``"full"`` (the default) or ``"retained"`` when ``args`` are the retained data.
    cross_check : bool
        Also estimate :math:`\log Z` by tempered SMC from :math:`q` (:data:`SMC_REPLICAS`
        independent runs of :math:`S/`:data:`SMC_REPLICAS` particles, 5 Metropolis moves per
        temperature: about 5 model evaluations per draw per temperature; measured at 1 to 35
        times the cost of the certificate) and flag the certificate unreliable when the two
        disagree beyond their standard errors, or when SMC's estimate is negative.

    Returns
    -------
    Certificate
        Printed as one line; ``result.certificate`` is set too when ``posterior`` is an
        ``UnlearnResult``.

    Examples
    --------
    >>> import torch, pyro_unlearn as pu
    >>> blr = pu.BayesianLinearRegression()
    >>> X = torch.randn(50, 2, generator=torch.Generator().manual_seed(0))
    >>> y = X @ torch.tensor([1.0, -1.0])
    >>> exact = blr.posterior(X[5:], y[5:])  # retraining without the first five rows
    >>> guide = pu.LaplaceGuide.from_precision(blr.model, exact.loc, exact.precision,
    ...                                        model_args=(X, y))
    >>> cert = pu.certify(guide, blr.model, X, y, forget_mask=torch.arange(50) < 5)
    >>> cert.reliable, abs(round(cert.kl, 4))  # the exact retrained posterior: KL 0
    (True, 0.0)
    """
    start = time.perf_counter()
    _checks.count("num_samples", num_samples, minimum=20)
    _checks.seed(seed)
    _checks.finite_data(args, model_kwargs)
    if scope not in (None, "retained", "full"):
        raise BadRequestError(f"scope must be 'retained' or 'full', got {scope!r}")
    model_kwargs = dict(model_kwargs or {})
    result = posterior if _is_result(posterior) else None
    view, what = _density(posterior, model, args, model_kwargs, seed)
    generator = _rng.generator(seed)
    if full is not None:
        scope = "step"
        anchor = posterior_view(full)
        _same_layout(view, anchor)
        evaluator = forget_evaluator(
            model,
            args,
            model_kwargs,
            mask=forget_mask,
            plate=plate if forget_mask is not None else None,
        )

        def log_target_of(z):
            values = {site.name: site.constrain(z[:, site.slice]) for site in view.layout}
            return anchor.log_prob(z) - evaluator.log_likelihood(values)

    else:
        scope = "retained" if forget_mask is not None else (scope or "full")
        target = model if forget_mask is None else retain(model, mask=forget_mask, plate=plate)
        joint = ModelEvaluator(target, args, model_kwargs)

        def log_target_of(z):
            return joint.log_joint(view.layout, z)

    with torch.no_grad():
        z = view.sample(num_samples, generator)
        log_q = view.log_prob(z)
        log_target = log_target_of(z)
    log_w = (log_target - log_q).double()
    if torch.isnan(log_w).any():
        raise BadRequestError(
            "the log weights have NaNs: the model's log density is undefined at draws of the "
            "posterior (check that the data and the posterior belong to this model)"
        )
    kl, se, log_z = _estimate(log_w)
    tenth = max(num_samples // 10, 2)
    kl_tenth, se_tenth, _ = _estimate(log_w[:tenth])
    smoothed, pareto_k = pareto_smooth(log_w)
    reasons = []
    ess = effective_sample_size(log_w)
    uniform = ess >= UNIFORM_ESS * num_samples  # k-hat of a tail fitted to rounding noise
    moment_kl = float("nan")
    if uniform:  # nothing to smooth (ArviZ 1.x's k-hat of rounding noise can be anything)
        moment_kl = _moment_kl(z, log_w - log_w.logsumexp(0))
    elif pareto_k <= PARETO_K_THRESHOLD:
        moment_kl = _moment_kl(z, smoothed)
    if not uniform and not (math.isfinite(pareto_k) and pareto_k <= FINITE_VARIANCE_K):
        tail = "heavy" if pareto_k > PARETO_K_THRESHOLD else "possibly of infinite variance"
        reasons.append(f"Pareto k = {pareto_k:.2f} > {FINITE_VARIANCE_K}: the weights are {tail}")
    if math.isfinite(se_tenth) and kl - kl_tenth > RISING * max(se_tenth, 1e-12):
        reasons.append(
            f"still rising with S ({kl_tenth:.3g} at S/10, {kl:.3g} at S = {num_samples})"
        )
    if not math.isfinite(kl):
        reasons.append("the estimate is not finite (draws outside the target's support)")
    kl_smc = smc_se = float("nan")
    if cross_check and math.isfinite(kl):
        kl_smc, smc_se, disagreement = _smc_cross_check(
            view, log_target_of, log_w, log_z, generator
        )
        reasons.extend(disagreement)
    if reasons:  # a lower bound: the plain log-mean-exp, low in expectation (Jensen), not the
        # fitted tail's mean, which can overshoot a tail it does not model
        kl, _, log_z = _estimate(log_w, fitted_tail=False)
        kl_tenth, _, _ = _estimate(log_w[:tenth], fitted_tail=False)
    certificate = Certificate(
        kl=kl,
        scope=scope,
        standard_error=se if not reasons else float("nan"),
        pareto_k=pareto_k,
        ess=ess,
        num_samples=num_samples,
        kl_at_tenth=kl_tenth,
        reasons=reasons,
        posterior=what,
        seconds=time.perf_counter() - start,
        full_data=_full_data_certificate(posterior) if scope != "full" else None,
        log_z=log_z,
        kl_smc=kl_smc,
        smc_standard_error=smc_se,
        moment_kl=moment_kl,
    )
    if result is not None:
        result.certificate = certificate
    return certificate


def _estimate(log_w: torch.Tensor, fitted_tail: bool = True) -> tuple[float, float, float]:
    r"""``(KL-hat, delta-method se, log Z-hat)`` from log weights.

    With ``fitted_tail`` (else the plain mean), :math:`\hat Z` is the mean of the weights with
    the :math:`M` largest (PSIS's tail) replaced by their expectation under the generalized
    Pareto tail fitted to them, and the variance of :math:`w` in the standard error is the
    fitted tail's too, while its shape is below 1/2 (finite variance):

    .. math::

        \hat Z = \tfrac1S\Big(\sum_{\text{bulk}} w_s + M\big(u + \tfrac{\sigma}{1-\xi}\big)\Big),
        \qquad
        \widehat{\mathbb E w^2} = \tfrac1S\Big(\sum_{\text{bulk}} w_s^2 + M\big(u^2
        + \tfrac{2u\sigma}{1-\xi} + \tfrac{2\sigma^2}{(1-\xi)(1-2\xi)}\big)\Big),

    with :math:`u` the largest bulk weight. The sample mean of a skewed tail is low exactly
    when its few large weights were missed, and so is the sample variance: the plain
    estimate then errs low by several of its own standard errors (on conjugate models, 22 of
    1815 reliable runs beyond 3 se, mean z down to -1.9; with the fitted tail 6 of 1831;
    ``docs/certificate.md``).
    """
    num = len(log_w)
    if not bool(torch.isfinite(log_w).all()):  # a draw outside the target's support: KL = inf
        return float("inf"), float("nan"), float(log_w.logsumexp(0)) - math.log(num)
    shift = float(log_w.max())
    weights = (log_w - shift).exp()
    first, sample_second = float(weights.mean()), float(weights.pow(2).mean())
    second = sample_second
    tail = _tail_length(num, 1.0)  # the tail PSIS smooths for its k-hat
    if fitted_tail and tail >= 5:
        ordered = weights.sort().values
        bulk, cutoff = ordered[: num - tail], float(ordered[num - tail - 1])
        excess = (ordered[num - tail :] - cutoff).numpy()
        xi, sigma = (
            generalized_pareto_fit(excess)
            if excess[int(tail / 4 + 0.5) - 1] > 1e-12  # a tail, not rounding noise
            else (math.inf, math.nan)
        )
        if xi < 0.5:
            mean_tail = cutoff + sigma / (1 - xi)
            square_tail = cutoff**2 + 2 * cutoff * sigma / (1 - xi)
            square_tail += 2 * sigma**2 / ((1 - xi) * (1 - 2 * xi))
            first = (float(bulk.sum()) + tail * mean_tail) / num
            second = (float(bulk.pow(2).sum()) + tail * square_tail) / num
    log_mean = math.log(first) + shift
    kl = log_mean - float(log_w.mean())
    # influence of (log Z-hat, mean log w): phi = w / Z - log w, its variance with the part
    # of E[w^2] the fitted tail adds beyond the draws'
    unseen = max(second - sample_second, 0.0) / first**2
    variance = float((weights / first - log_w).var()) + unseen
    return kl, math.sqrt(variance / num), log_mean


def _moment_kl(z: torch.Tensor, log_weights: torch.Tensor) -> float:
    r""":math:`\mathrm{KL}(\mathcal N(\bar z, C_q)\,\|\,\mathcal N(\hat m_\pi, \hat C_\pi))`
    from draws ``z`` of :math:`q` and their normalised ``log_weights`` toward the target
    (PSIS-smoothed, or as drawn when nearly uniform); NaN when a covariance is singular (fewer useful draws than
    dimensions)."""
    z = z.double()
    uniform = torch.full((len(z),), 1.0 / len(z), dtype=z.dtype)
    gaussians = []
    for weights in (uniform, log_weights.double().exp()):
        mean = weights @ z
        centred = z - mean
        covariance = (centred.T * weights) @ centred
        try:
            precision = torch.linalg.inv((covariance + covariance.T) / 2)
            gaussians.append(FlatGaussian(mean, precision=(precision + precision.T) / 2))
        except RuntimeError:  # torch.linalg.LinAlgError: singular
            return float("nan")
    value = float(gaussians[0].kl(gaussians[1]))
    return value if math.isfinite(value) else float("nan")


def _smc_cross_check(view, log_target_of, log_w, log_z_is, generator):
    r"""``(KL by SMC, its se, reasons)``: :math:`\log Z` by :data:`SMC_REPLICAS` tempered SMC
    runs from fresh draws of :math:`q`, the mean of :math:`\log w` from the certificate's
    weights ``log_w``, whose :math:`\log\hat Z` is ``log_z_is``.

    The replicas' :math:`\hat Z_r` are averaged (:math:`\hat Z` is unbiased, its log is not);
    the se of :math:`\log\bar Z` is the sd of :math:`\log\hat Z_r` over :math:`\sqrt R`. The
    two estimates of :math:`\log Z` disagree when they differ by more than the Student-t
    (R - 1 df) 99.73% quantile times the se of the difference (IS's :math:`\log\bar w` by the
    delta method).
    """
    from scipy.stats import t as student_t

    particles = max(len(log_w) // SMC_REPLICAS, 50)
    log_z = []
    with torch.no_grad():
        for _ in range(SMC_REPLICAS):
            out = tempered_log_normaliser(
                view.log_prob, log_target_of, view.sample(particles, generator), generator
            )
            log_z.append(out["log_z"])
    log_z = torch.tensor(log_z, dtype=torch.float64)
    if not bool(torch.isfinite(log_z).all()):
        return float("nan"), float("nan"), ["SMC's particles collapsed: no cross-check"]
    mean_log_w = float(log_w.mean())
    log_z_smc = float(log_z.logsumexp(0)) - math.log(SMC_REPLICAS)
    smc_se = float(log_z.std() / math.sqrt(SMC_REPLICAS))
    is_se = float((log_w - log_z_is).exp().std() / math.sqrt(len(log_w)))
    kl_smc = log_z_smc - mean_log_w
    quantile = float(student_t.isf(0.00135, SMC_REPLICAS - 1))
    allowed = quantile * math.hypot(is_se, smc_se) + 1e-9 * (1 + abs(kl_smc))
    reasons = []
    if abs(log_z_is - log_z_smc) > allowed:
        reasons.append(
            f"importance sampling and SMC disagree ({log_z_is - mean_log_w:.3g} vs "
            f"{kl_smc:.3g} ± {smc_se:.2g})"
        )
    if kl_smc < -quantile * smc_se - 1e-9:
        reasons.append(f"SMC's estimate is negative ({kl_smc:.3g}): its log Z erred low")
    return kl_smc, smc_se, reasons


def _is_result(posterior) -> bool:
    return hasattr(posterior, "guide") and hasattr(posterior, "method")


def _full_data_certificate(posterior):
    """The full-data certificate of the posterior unlearning started from, if it was made:
    a result's (passed on by ``unlearn``), or a fitted guide's own (``guide.certificate``,
    so that certifying "do nothing" says how much of its distance is :math:`q_D`'s error)."""
    if _is_result(posterior):
        return posterior.diagnostics.get("full_data_certificate")
    own = getattr(posterior, "certificate", None)
    return own if isinstance(own, Certificate) and own.scope == "full" else None


def _density(posterior, model, args, model_kwargs, seed) -> tuple[PosteriorView, str]:
    """The posterior as a view with a density: weighted draws through their moment-matched
    Gaussian over the unconstrained sites (labelled as such)."""
    if _is_result(posterior):
        posterior = posterior.guide if posterior.network is None else posterior.network
    if isinstance(posterior, torch.nn.Module) and not hasattr(posterior, "prototype_trace"):
        raise UnsupportedPosteriorError(
            "a trained network is a point estimate: the certificate needs a posterior with "
            "spread (a guide or weighted draws)"
        )
    view = posterior_view(posterior)
    if view.has_density:
        return view, view.kind
    draws = view.samples  # with their weights: the weighted moments, no resampling noise
    evaluator = ModelEvaluator(model, args, model_kwargs)
    evaluator.structure(dict(draws))
    layout, columns, offset = [], [], 0
    for name in evaluator.latent_sites():
        value = draws[name]
        support = evaluator.structure_of(name).support
        unconstrained = biject_to(support).inv(value)
        size = unconstrained[0].numel()
        layout.append(
            LatentSite(
                name=name,
                support=support,
                shape=value.shape[1:],
                unconstrained_shape=unconstrained.shape[1:],
                event_dim=unconstrained.dim() - 1,
                offset=offset,
                size=size,
                plates=(),
            )
        )
        columns.append(unconstrained.reshape(len(unconstrained), -1))
        offset += size
    flat = torch.cat(columns, dim=-1)
    weights = (view.log_weights - view.log_weights.logsumexp(0)).exp().to(flat.dtype)
    # torch.cov with aweights divides by 1 - sum(w^2) (normalised w): the unbiased weighted cov
    cov = torch.cov(flat.T, aweights=weights).reshape(flat.shape[1], flat.shape[1])
    precision = torch.linalg.inv((cov + cov.T) / 2)
    gaussian = FlatGaussian(weights @ flat, precision=(precision + precision.T) / 2)
    return GaussianView(gaussian, layout, posterior), "moment-matched draws"


def _same_layout(view: PosteriorView, other: PosteriorView) -> None:
    ours = [(s.name, s.size) for s in view.layout]
    theirs = [(s.name, s.size) for s in other.layout]
    if ours != theirs:
        raise BadRequestError(
            f"full= has latent sites {theirs} but the posterior has {ours}: pass the "
            "full-data posterior this one was unlearned from"
        )

r"""Laplace unlearning: a precision downdate and a Newton step, from the forget data only.

With the full-data Gaussian :math:`q(z\mid D) = \mathcal N(z_D, H_D^{-1})` over the
unconstrained latent vector and :math:`\ell_e(z) = -\log p(D_e \mid \theta(z))`,

.. math::

    H_r = H_D - \nabla^2 \ell_e(z_D), \qquad z_r = z_D + H_r^{-1} \nabla \ell_e(z_D),

one Newton step on :math:`J(z) = -\log q(z\mid D) + \log p(D_e\mid\theta(z))`, whose
minimiser is the mode of :math:`q(z\mid D)/p(D_e\mid\theta)`. On linear-Gaussian models
this is the exact retrained posterior.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable

import pyro.distributions as dist
import torch
from pyro.distributions.torch_distribution import ExpandedDistribution
from pyro.infer.autoguide import AutoDelta, AutoLaplaceApproximation

from ..errors import UnlearningError, UnsupportedPosteriorError
from ..guides import LaplaceGuide, check_fitted, latent_layout
from ..masks import MaskLike
from ..model_eval import ModelEvaluator, as_values, forget_evaluator
from ..options import Hessian, PSDRepair, choose
from ..posteriors import posterior_view
from ..targets import flat_function, forget_nll_function

CLIP_FLOOR = 1e-6  # clipped eigenvalues are set to CLIP_FLOOR * largest eigenvalue


class NotPositiveDefiniteError(UnlearningError, ValueError):
    """The downdated precision :math:`H_r` is not positive definite."""


def _full_data_mode_and_precision(model, guide, layout, full_args, full_kwargs):
    """:math:`(z_D, H_D)` from a point-estimate guide, recomputing H_D on the full data."""
    if full_args is None:
        raise ValueError(
            f"{type(guide).__name__} is a point estimate, so H_D must be computed on the full "
            "data: pass full_args=(...) (the data it was fitted on), or pass "
            "guide.laplace_approximation(*data) instead"
        )
    with torch.no_grad():
        if isinstance(guide, AutoLaplaceApproximation):
            z_full = guide.loc.detach().clone()
        else:
            median = guide.median(*full_args, **full_kwargs)
            z_full = torch.cat([s.unconstrain(median[s.name]).reshape(-1) for s in layout])
    log_joint = flat_function(ModelEvaluator(model, full_args, full_kwargs), layout, "log_joint")
    return z_full, torch.autograd.functional.hessian(lambda z: -log_joint(z), z_full)


def _unwrap(fn):
    while isinstance(fn, dist.Independent | ExpandedDistribution):
        fn = fn.base_dist
    return fn


def _fisher_outputs(site) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Likelihood outputs of one observed site and their weighted Fisher blocks.

    Returns pairs ``(outputs of shape (M, K), fisher of shape (M, K, K))`` such that the
    generalised Gauss-Newton matrix is :math:`\\sum_m J_m^\\top F_m J_m`.
    """
    fn = site["fn"]
    shape = fn.batch_shape + fn.event_shape
    weight = torch.as_tensor(site["scale"], dtype=torch.get_default_dtype())  # of -log p
    if site["mask"] is not None:
        weight = weight * site["mask"]
    weight = weight.expand(fn.batch_shape).reshape(fn.batch_shape + (1,) * len(fn.event_shape))
    weight = weight.expand(shape).reshape(-1, 1, 1)
    base = _unwrap(fn)
    if isinstance(base, dist.Normal):
        loc, scale = base.loc.expand(shape), base.scale.expand(shape)
        fisher = scale.detach().pow(-2).reshape(-1, 1, 1)
        return [(loc.reshape(-1, 1), weight * fisher), (scale.reshape(-1, 1), 2 * weight * fisher)]
    if isinstance(base, dist.Bernoulli):
        logits = base.logits.expand(shape)
        p = torch.sigmoid(logits.detach()).reshape(-1, 1, 1)
        return [(logits.reshape(-1, 1), weight * p * (1 - p))]
    if isinstance(base, dist.Poisson):
        rate = base.rate.expand(shape)
        return [(rate.reshape(-1, 1), weight / rate.detach().reshape(-1, 1, 1))]
    if isinstance(base, dist.Categorical):
        logits = base.logits.expand(shape + base.logits.shape[-1:])
        p = logits.detach().softmax(-1).reshape(-1, logits.shape[-1])
        fisher = torch.diag_embed(p) - p.unsqueeze(-1) * p.unsqueeze(-2)
        return [(logits.reshape(-1, logits.shape[-1]), weight * fisher)]
    raise NotImplementedError(
        f"hessian='ggn' supports Normal, Bernoulli, Categorical and Poisson likelihoods; site "
        f"{site['name']!r} has {type(base).__name__}: use hessian='full' (with psd='clip')"
    )


def _ggn(evaluator: ModelEvaluator, layout, z: torch.Tensor) -> torch.Tensor:
    r"""Generalised Gauss-Newton :math:`\sum_i J_i^\top F_i J_i` of :math:`\ell_e` at ``z``.

    :math:`F_i` is the Fisher information of observation :math:`i` with respect to the
    distribution's own parameters (logits, loc/scale, rate): positive semi-definite, so
    the GGN never makes :math:`H_r` less definite than :math:`H_D` allows.
    """
    if evaluator.enumerated_sites:
        raise NotImplementedError(
            f"hessian='ggn' needs the likelihood's own parameters, which enumerated sites "
            f"{evaluator.enumerated_sites} mix: use hessian='full' (with psd='clip')"
        )

    def observed(z_):
        values = {k: v[0] for k, v in as_values(layout, z_.unsqueeze(0)).items()}
        names = evaluator.forget_sites
        return [
            site
            for trace in evaluator.traces(values)
            for site in trace.nodes.values()
            if site["type"] == "sample"
            and site["is_observed"]
            and (names is None or site["name"] in names)
        ]

    blocks = [fisher for site in observed(z) for _, fisher in _fisher_outputs(site)]

    def outputs(z_):
        return torch.cat([out.reshape(-1) for s in observed(z_) for out, _ in _fisher_outputs(s)])

    jac = torch.autograd.functional.jacobian(outputs, z)
    ggn, row = torch.zeros(len(z), len(z), dtype=z.dtype), 0
    for fisher in blocks:
        m, k, _ = fisher.shape
        j = jac[row : row + m * k].reshape(m, k, -1)
        ggn = ggn + torch.einsum("mkd,mkl,mle->de", j, fisher, j)
        row += m * k
    return ggn


def _repair(precision: torch.Tensor, psd: str) -> tuple[torch.Tensor, dict]:
    """Check positive definiteness; raise or clip eigenvalues as ``psd`` says."""
    precision = (precision + precision.T) / 2
    eigenvalues, vectors = torch.linalg.eigh(precision)
    smallest = float(eigenvalues[0])
    info = {"min_eigenvalue": smallest, "num_clipped": 0}
    largest = float(eigenvalues[-1].abs())
    # positive definite to rounding: eigh's absolute error is about eps * |H| (a condition
    # number is not a definiteness test: eigenvalues 1e4 ... 5e10 are a valid precision)
    rounding = 10 * len(eigenvalues) * torch.finfo(precision.dtype).eps * largest
    if smallest > rounding:
        return precision, info
    floor = CLIP_FLOOR * largest
    if psd == "raise":
        raise NotPositiveDefiniteError(
            f"the downdated precision H_r is not positive definite: smallest eigenvalue "
            f"{smallest:.4g} (largest {float(eigenvalues[-1]):.4g}); the forget set removes "
            "more curvature than q(theta|D) holds. Use psd='clip' to repair by eigenvalue "
            "clipping, hessian='ggn' for a Gauss-Newton downdate, or retrain"
        )
    clipped = eigenvalues < floor
    info["num_clipped"] = int(clipped.sum())
    warnings.warn(
        f"laplace_unlearn: H_r had {info['num_clipped']} eigenvalue(s) below {floor:.3g} "
        f"(smallest {smallest:.4g}); clipped to {floor:.3g}",
        stacklevel=3,
    )
    repaired = vectors @ torch.diag(eigenvalues.clamp(min=floor)) @ vectors.T
    return (repaired + repaired.T) / 2, info


def laplace_unlearn(
    model,
    guide,
    *forget_args,
    hessian: str = "full",
    newton_steps: int = 1,
    psd: str = "raise",
    mask: MaskLike | None = None,
    plate: str | None = None,
    sites: Iterable[str] | None = None,
    model_kwargs: dict | None = None,
    full_args: tuple | None = None,
    full_kwargs: dict | None = None,
) -> LaplaceGuide:
    r"""Forget data from a Gaussian (Laplace) posterior; return a **new** guide.

    .. math::

        H_r = H_D - \nabla^2\ell_e(z_D), \qquad z_r = z_D + H_r^{-1}\nabla\ell_e(z_D),

    with :math:`\ell_e(z) = -\log p(D_e\mid\theta(z))` computed by running ``model`` on the
    forget data under :func:`~pyro_unlearn.forget`. The caller's guide and the param
    store are not modified.

    Parameters
    ----------
    model : callable
        The Pyro model the guide was fitted to.
    guide : fitted guide
        ``guide.laplace_approximation(*data)``, an ``AutoMultivariateNormal``,
        ``AutoDiagonalNormal``, ``AutoNormal``, ``AutoLowRankMultivariateNormal``, a
        :class:`~pyro_unlearn.LaplaceGuide` (sequential requests), or a point estimate
        (``AutoLaplaceApproximation``, ``AutoDelta``) together with ``full_args``.
    *forget_args
        Model arguments holding the forget data :math:`D_e` (or all data, with ``mask``).
    hessian : {"full", "diag", "ggn"}
        Curvature of the forget term: the exact Hessian; its diagonal (and the diagonal
        of :math:`H_D`: a mean-field result); or the generalised Gauss-Newton matrix,
        which is positive semi-definite, so the downdate stays above any part of
        :math:`H_D` that is itself a GGN (the prior precision, at least).
    newton_steps : int
        Number of Newton steps on :math:`J`. With one step, :math:`H_r` is taken at
        :math:`z_D` as above; with more, at the final iterate (a Laplace approximation at
        the new mode). ``0`` downdates the precision and keeps the mean.
    psd : {"raise", "clip"}
        What to do when :math:`H_r` is not positive definite: raise
        :class:`NotPositiveDefiniteError` naming the smallest eigenvalue, or clip the
        eigenvalues to ``1e-6`` times the largest, with a warning.
    mask, plate, sites
        Passed to :func:`~pyro_unlearn.forget`: with ``mask`` the model runs on all data
        and only the masked elements of plate ``plate`` are forgotten.
    model_kwargs : dict, optional
        Keyword arguments of the model for the forget data.
    full_args, full_kwargs
        The full data, needed only when ``guide`` is a point estimate.

    Returns
    -------
    LaplaceGuide
        :math:`\mathcal N(z_r, H_r^{-1})` in the unconstrained space; its
        ``diagnostics`` attribute holds the smallest eigenvalue of :math:`H_r`, the
        number of clipped eigenvalues and the forget-set negative log-likelihood.
    """
    hessian = choose(Hessian, hessian, "hessian")
    psd = choose(PSDRepair, psd, "psd")
    if not (isinstance(newton_steps, int) and newton_steps >= 0):
        raise ValueError(f"newton_steps must be a non-negative int, got {newton_steps!r}")
    check_fitted(guide)
    model_kwargs = model_kwargs or {}
    if isinstance(guide, AutoLaplaceApproximation | AutoDelta):  # a point: no posterior yet
        layout = latent_layout(guide)
        z_full, precision_full = _full_data_mode_and_precision(
            model, guide, layout, full_args, full_kwargs or {}
        )
    else:
        posterior = posterior_view(guide)
        if posterior.kind != "gaussian":
            raise UnsupportedPosteriorError(
                f"laplace takes a Gaussian guide or a point estimate; got a {posterior.kind} "
                "posterior: use method='eubo', 'rkl' or 'smc' for flows, 'psis' for draws"
            )
        guide, layout = posterior.source, posterior.layout
        z_full, precision_full = posterior.mean, posterior.gaussian.precision
    if hessian == "diag":
        precision_full = torch.diag(precision_full.diagonal())
    evaluator = forget_evaluator(
        model, forget_args, model_kwargs, mask=mask, plate=plate, sites=sites
    )
    forget_nll = forget_nll_function(evaluator, layout)

    def curvature(z):
        if hessian == "ggn":
            return _ggn(evaluator, layout, z)
        full = torch.autograd.functional.hessian(forget_nll, z)
        return torch.diag(full.diagonal()) if hessian == "diag" else full

    def gradient(z):
        z = z.detach().requires_grad_()
        (grad,) = torch.autograd.grad(forget_nll(z), z)
        return grad.detach()

    z = z_full.detach().clone()
    precision, info = _repair(precision_full - curvature(z), psd)
    nll_start = float(forget_nll(z))
    for step in range(newton_steps):
        if step > 0:
            precision, info = _repair(precision_full - curvature(z), psd)
        grad_j = precision_full @ (z - z_full) - gradient(z)
        z = z - torch.linalg.solve(precision, grad_j)
    if newton_steps > 1:
        precision, info = _repair(precision_full - curvature(z), psd)
    result = LaplaceGuide.from_precision(model, z, precision, like=guide)
    result.diagnostics = {
        "hessian": hessian,
        "newton_steps": newton_steps,
        "forget_nll_before": nll_start,
        "forget_nll_after": float(forget_nll(z)),
        "evaluator": evaluator.describe(),
        **info,
    }
    return result


def laplace_method(model, guide, *forget_args, **options):
    result = laplace_unlearn(model, guide, *forget_args, **options)
    return result, dict(result.diagnostics)


laplace_method.__wrapped__ = laplace_unlearn  # its options, for inspect.signature

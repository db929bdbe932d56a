"""``unlearn()``: one entry point, an explicit table of methods, results as data.

The table is built here from the method modules below (no registration on import): following
``unlearn(..., method=name)`` leads to ``METHODS[name]``, a function
``(model, posterior, *forget_args, **options) -> (unlearned, diagnostics)``.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Iterable

import torch
from pyro.infer.autoguide import AutoDelta, AutoGuide, AutoLaplaceApproximation, AutoNormalizingFlow

from . import _checks
from .certificate import certify
from .classifiers.methods import UNLEARN_METHODS as CLASSIFIER_METHODS
from .errors import (
    BadRequestError,
    UnknownOptionError,
    UnreliableResultError,
    UnsupportedPosteriorError,
    unreliable,
)
from .guides import GAUSSIAN_AUTOGUIDES
from .ledger import ForgetLedger
from .masks import MaskLike
from .methods.eubo import eubo_unlearn
from .methods.laplace import laplace_method
from .methods.psis import psis_method
from .methods.rkl import rkl_unlearn
from .methods.smc import smc_unlearn
from .options import Method, OnUnreliable, choose
from .posteriors import WeightedSamples, posterior_view
from .results import UnlearnResult

#: ``unlearn(..., method=name)`` calls ``METHODS[name](model, posterior, *forget_args,
#: **options)``, which returns ``(unlearned posterior, diagnostics)``
METHODS: dict[str, Callable] = {
    "laplace": laplace_method,
    "eubo": eubo_unlearn,
    "rkl": rkl_unlearn,
    "smc": smc_unlearn,
    "psis": psis_method,
    **CLASSIFIER_METHODS,
}


def available_methods() -> list[str]:
    """Names accepted by ``unlearn(..., method=...)``."""
    return sorted(METHODS)


#: what each method takes: "gaussian" (the Gaussian autoguides, LaplaceGuide,
#: ``laplace_approximation()``), "point" (AutoDelta, AutoLaplaceApproximation, with
#: ``full_args``), "flow" (AutoNormalizingFlow and its subclasses), "draws" (MCMC, a dict of
#: draws, a Reference), "network" (a torch classifier)
ACCEPTS: dict[str, tuple[str, ...]] = {
    "laplace": ("gaussian", "point"),
    "eubo": ("gaussian", "flow"),
    "rkl": ("gaussian", "flow"),
    "smc": ("gaussian", "flow"),
    "psis": ("draws",),
    **{name: ("network",) for name in CLASSIFIER_METHODS},
}

_KIND_NAMES = {
    "gaussian": "a Gaussian guide (AutoNormal, AutoDiagonalNormal, AutoMultivariateNormal, "
    "AutoLowRankMultivariateNormal, laplace_approximation(), LaplaceGuide)",
    "point": "a point estimate (AutoDelta, AutoLaplaceApproximation) with full_args",
    "flow": "a normalizing-flow guide (AutoNormalizingFlow, AutoIAFNormal, AutoBNAFNormal)",
    "draws": "posterior draws (pyro.infer.MCMC, a dict of draws, a Reference)",
    "network": "a trained torch classifier (nn.Module)",
    "weighted draws": "weighted draws (WeightedSamples)",
    "guide function": "a guide function",
    "other guide": "an autoguide that is not Gaussian",
}


def posterior_kind(posterior) -> str:
    """What kind of fitted posterior ``posterior`` is, for :data:`ACCEPTS`."""
    if isinstance(posterior, UnlearnResult):
        posterior = posterior.unlearned
    if isinstance(posterior, WeightedSamples):
        return "weighted draws"
    is_reference = hasattr(posterior, "flat") and hasattr(posterior, "samples")
    if isinstance(posterior, dict) or is_reference or hasattr(posterior, "get_samples"):
        return "draws"
    if isinstance(posterior, AutoLaplaceApproximation | AutoDelta):
        return "point"
    if isinstance(posterior, AutoNormalizingFlow):
        return "flow"
    if isinstance(posterior, GAUSSIAN_AUTOGUIDES):
        return "gaussian"
    if isinstance(posterior, AutoGuide):
        return "other guide"
    if isinstance(posterior, torch.nn.Module):
        return "network"
    return "guide function"


def check_posterior(method: str, posterior) -> None:
    """Refuse, before any work, a posterior the method cannot use; name those that can."""
    accepted = ACCEPTS.get(method)
    if accepted is None:
        return
    kind = posterior_kind(posterior)
    if kind in accepted:
        return
    takers = sorted(m for m, kinds in ACCEPTS.items() if kind in kinds and m in METHODS)
    hint = (
        (f"use method={takers[0]!r}" if len(takers) == 1 else f"methods {takers} take it")
        if takers
        else "no method takes it: fit a Gaussian guide (pyro_unlearn.fit_svi or fit_laplace)"
    )
    if kind == "weighted draws":
        hint = "unlearn again from the original draws (or resample them: posterior.resample())"
    raise UnsupportedPosteriorError(
        f"method={method!r} takes {' or '.join(_KIND_NAMES[k] for k in accepted)}; got "
        f"{_KIND_NAMES[kind]} ({type(posterior).__name__}): {hint}"
    )


def unlearn(
    model: Callable,
    guide,
    *forget_args,
    method: str | Method = "laplace",
    mask: MaskLike | None = None,
    plate: str | None = None,
    sites: Iterable[str] | None = None,
    model_kwargs: dict | None = None,
    ids: MaskLike | None = None,
    ledger: ForgetLedger | None = None,
    **options,
) -> UnlearnResult:
    """Remove the forget data's influence from a fitted posterior.

    Parameters
    ----------
    model : callable
        The Pyro model the posterior was fitted to.
    guide
        The fitted posterior: a guide, the ``guide`` of an earlier :class:`UnlearnResult`,
        posterior draws (``"psis"``) or a trained network (classifier methods).
    *forget_args
        Model arguments holding the forget data (or all data, with ``mask``/``plate``).
    method : str or Method
        One of :func:`available_methods` (:class:`~pyro_unlearn.Method`): ``"laplace"`` (:func:`~pyro_unlearn.laplace_unlearn`),
        ``"eubo"`` and ``"rkl"`` (:func:`~pyro_unlearn.eubo_unlearn`,
        :func:`~pyro_unlearn.rkl_unlearn`) for Gaussian and flow guides; ``"smc"``
        (:func:`~pyro_unlearn.smc_unlearn`) for Gaussian and flow guides, in adaptive steps;
        ``"psis"`` (:func:`~pyro_unlearn.psis_unlearn`) for posterior draws; ``"pbu"``, ``"jit"``,
        ``"neggrad"``, ``"ssd"``, ``"instance"``, ``"salun"``, ``"class_distillation"``,
        ``"scrub"``, ``"l1_sparse"`` (:mod:`pyro_unlearn.classifiers`) for a trained torch
        classifier passed as ``guide`` (the last four take the retained data as
        ``x_retain=``, ``y_retain=``).
    mask, plate, sites
        Select the forget elements, as in :func:`~pyro_unlearn.forget`.
    model_kwargs : dict, optional
        Keyword arguments of the model.
    ids : bool tensor or indices, optional
        Ids of the forgotten data in the original data set, checked against ``ledger``
        (default: the ledger of ``guide`` if it has one). With ``mask`` and no ``ids``,
        the mask is the request.
    ledger : ForgetLedger, optional
        What the posterior ``guide`` has already forgotten. Repeated deletions raise
        :class:`~pyro_unlearn.RepeatedDeletionError` before any work is done.
    **options
        Passed to the method (e.g. ``hessian="ggn"``, ``psd="clip"`` for Laplace); one it
        does not have is refused before any work, naming the closest it has.
        ``on_unreliable`` (the policy of :mod:`pyro_unlearn.errors`) and ``progress_bar``
        are accepted by every method; those that never flag a result or show no bar have
        nothing to apply them to.
        ``lam="certified"`` (eubo, rkl, smc) runs the method at every lambda of
        :data:`CERTIFIED_LAMS` and keeps the result the certificate
        (:func:`~pyro_unlearn.certify`) puts closest to retraining; it needs the retained
        data, from ``mask``/``plate`` (masked mode) or ``retained=(retained data args,)``, and
        sets ``result.certificate`` and ``diagnostics["lam_search"]``.
    """
    if method not in METHODS:
        raise BadRequestError(
            f"unknown unlearning method {method!r}; available: {available_methods()}"
        )
    check_posterior(method, guide)
    method = Method(method)
    options = _method_options(method, options)
    _checks.finite_data(forget_args, model_kwargs)
    own = getattr(guide.unlearned if isinstance(guide, UnlearnResult) else guide, "ledger", None)
    if isinstance(guide, UnlearnResult):  # an earlier result: continue from its posterior
        own = guide.ledger if guide.ledger is not None else own
        guide = guide.unlearned
    if ledger is not None and own is not None and ledger != own:
        raise BadRequestError(
            f"the posterior carries its own ledger ({len(own.forgotten)} of {own.num_data} "
            f"ids forgotten) and a different one was passed ({len(ledger.forgotten)} of "
            f"{ledger.num_data}): the posterior's ledger is the record of what it forgot; pass "
            "it (or no ledger)"
        )
    ledger = ledger if ledger is not None else own
    if ids is None and mask is not None and ledger is not None:
        ids = mask
    new_ledger = None
    if ids is not None:
        if ledger is None:
            raise BadRequestError(
                "ids were given without a ledger: pass ledger=ForgetLedger(num_data)"
            )
        mask_tensor = torch.as_tensor(list(ids) if isinstance(ids, set | frozenset) else ids)
        if mask_tensor.dtype == torch.bool and mask_tensor.numel() != ledger.num_data:
            raise BadRequestError(
                f"the ledger covers {ledger.num_data} data ids but the boolean mask/ids have "
                f"length {mask_tensor.numel()}: ForgetLedger(num_data) takes the data plate's size"
            )
        new_ledger = ledger.after(ids)  # refuses repeated deletions before any work
    full_data_certificate = getattr(guide, "certificate", None)  # set by the fitters
    if posterior_kind(guide) in ("gaussian", "flow"):
        guide = posterior_view(guide)  # read once; the method, its anchor and guards share it
    start = time.perf_counter()
    certificate = None
    if isinstance(options.get("lam"), str) and options["lam"] == "certified":
        new_guide, diagnostics, certificate = _certified_lam(
            model, guide, forget_args, method, mask, plate, sites, model_kwargs, options
        )
    else:
        new_guide, diagnostics = METHODS[method](
            model,
            guide,
            *forget_args,
            mask=mask,
            plate=plate,
            sites=sites,
            model_kwargs=model_kwargs,
            **options,
        )
    seconds = time.perf_counter() - start
    size = (
        diagnostics.get("evaluator", {}).get("plate_size")
        if isinstance(diagnostics, dict)
        else None
    )
    if new_ledger is not None and size is not None:
        expected = new_ledger.num_data if mask is not None else len(ledger.check(ids))
        if size != expected:
            raise BadRequestError(
                f"the ledger does not describe these data: the data plate has {size} elements "
                + (
                    f"but the ledger covers {new_ledger.num_data} ids"
                    if mask is not None
                    else f"in the forget data but the request names {expected} ids"
                )
                + "; ForgetLedger(num_data) takes the full data plate's size"
            )
    if new_ledger is not None:
        new_guide.ledger = new_ledger
    if full_data_certificate is not None:
        diagnostics["full_data_certificate"] = full_data_certificate
    if "network" in ACCEPTS[method]:
        return UnlearnResult(None, method.value, seconds, diagnostics, new_ledger, new_guide)
    result = UnlearnResult(new_guide, method.value, seconds, diagnostics, new_ledger)
    if certificate is not None:
        certificate.full_data = full_data_certificate
        result.certificate = certificate
    return result


#: the arguments ``unlearn`` fills itself: not options a caller passes through it
_FILLED = {"model", "guide", "posterior", "net", "x_forget", "y_forget"}
#: options every method accepts, whether or not it has anything to apply them to
FOR_EVERY_METHOD = ("on_unreliable", "progress_bar")
#: the methods ``lam="certified"`` chooses the adjusted likelihood of, and its own options
CERTIFIED_METHODS = ("eubo", "rkl", "smc")
_CERTIFIED_OPTIONS = {"retained", "certificate_samples"}


def _method_options(method: Method, options: dict) -> dict:
    """``options`` as ``METHODS[method]`` takes them, checked before any work.

    An option the method does not have is refused, naming the closest one it has. The
    options of :data:`FOR_EVERY_METHOD` are accepted by all: a method that never flags its
    result (Laplace, the zero-shot classifier baselines) or shows no progress bar has
    nothing to apply them to.
    """
    if "on_unreliable" in options:
        choose(OnUnreliable, options["on_unreliable"], "on_unreliable")
    parameters = inspect.signature(METHODS[method]).parameters.values()
    known = {
        p.name
        for p in parameters
        if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name not in _FILLED
    }
    if isinstance(options.get("lam"), str) and options["lam"] == "certified":
        if method not in CERTIFIED_METHODS:
            raise BadRequestError(
                f"lam='certified' is for {', '.join(CERTIFIED_METHODS)}, not {method.value!r}"
            )
        known |= _CERTIFIED_OPTIONS
    options = {k: v for k, v in options.items() if k in known or k not in FOR_EVERY_METHOD}
    unknown = sorted(set(options) - known)
    if unknown:
        hint = _checks.did_you_mean(unknown[0], known)
        if unknown[0] in _CERTIFIED_OPTIONS:
            hint = "it goes with lam='certified'. "
        raise UnknownOptionError(
            f"method={method.value!r} has no option {unknown[0]!r}: {hint}Its options: "
            f"{', '.join(sorted(known - {'mask', 'plate', 'sites', 'model_kwargs'}))}"
        )
    return options


#: ``lam="certified"``: the adjusted-likelihood thresholds tried, from the plain objective
#: (0) to switching the forget term off (1, "do nothing"), a decade apart as in VBU's sweeps
CERTIFIED_LAMS = (0.0, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)


def _certified_lam(model, posterior, forget_args, method, mask, plate, sites, kwargs, options):
    r"""Run ``method`` at every :data:`CERTIFIED_LAMS` and keep the :math:`\lambda` whose
    result the certificate puts closest to retraining (among reliable certificates).

    The retained data are the forget arguments with ``mask`` (masked mode), or
    ``options["retained"]``: a tuple of model arguments holding the retained data only.
    """
    options = dict(options)
    options.pop("lam")
    retained = options.pop("retained", None)
    if mask is None and retained is None:
        raise BadRequestError(
            "lam='certified' needs the retained data to certify against: pass all the data "
            "with mask= and plate= (masked mode), or retained=(retained data arguments,)"
        )
    if retained is not None and not isinstance(retained, tuple):
        raise BadRequestError("retained must be a tuple of the model's arguments on D_r")
    policy = choose(OnUnreliable, options.pop("on_unreliable", "raise"), "on_unreliable")
    samples = options.pop("certificate_samples", 10000)
    search, best = [], None
    for lam in CERTIFIED_LAMS:
        start = time.perf_counter()
        try:
            unlearned, diagnostics = METHODS[method](
                model,
                posterior,
                *forget_args,
                mask=mask,
                plate=plate,
                sites=sites,
                model_kwargs=kwargs,
                lam=lam,
                on_unreliable="raise",
                **options,
            )
        except UnreliableResultError as error:  # this lambda is refused: try the next
            search.append({"lam": lam, "error": f"{type(error).__name__}: {str(error)[:80]}"})
            continue
        if retained is None:
            cert = certify(
                unlearned,
                model,
                *forget_args,
                forget_mask=mask,
                plate=plate,
                model_kwargs=kwargs,
                num_samples=samples,
            )
        else:
            cert = certify(
                unlearned,
                model,
                *retained,
                model_kwargs=kwargs,
                num_samples=samples,
                scope="retained",
            )
        search.append(
            {
                "lam": lam,
                "cert_kl": cert.kl,
                "reliable": cert.reliable,
                "seconds": time.perf_counter() - start,
            }
        )
        candidate = (not cert.reliable, cert.kl)  # reliable first, then the smallest KL
        if best is None or candidate < best[0]:
            best = (candidate, lam, unlearned, diagnostics, cert)
    if best is None:
        raise UnreliableResultError(
            f"lam='certified': every lambda in {CERTIFIED_LAMS} was refused by {method.value}"
        )
    _, lam, unlearned, diagnostics, cert = best
    diagnostics = dict(diagnostics, lam=lam, lam_search=search)
    if not cert.reliable:
        message = (
            "lam='certified': no lambda gave a reliable certificate "
            f"({'; '.join(cert.reasons)}); kept lam={lam} by the smallest lower bound"
        )
        unreliable(UnreliableResultError(message), policy, diagnostics)
    return unlearned, diagnostics, cert

"""Posterior draws from any representation, and their conversion to ArviZ's container.

ArviZ's ``from_pyro`` accepts only MCMC, ignores our handlers' weights and is gone from
ArviZ 1.x, so draws are collected here as a dict of arrays, their log-likelihood computed by
the model evaluator, and converted at the edge by :mod:`.arviz_compat` (``InferenceData`` on
ArviZ 0.2x, ``xarray.DataTree`` on 1.x).
"""

from __future__ import annotations

import torch

from .. import _checks
from ..masks import as_index_tensor
from ..model_eval import ModelEvaluator
from ..posteriors import posterior_draws
from ..results import UnlearnResult


def aligned_draws(
    draws: dict[str, torch.Tensor], latent_sites: list[str], name: str
) -> dict[str, torch.Tensor]:
    """The draws of the model's latent sites, in the model's order; a missing site is an error.

    Sites the model does not sample (``pyro.deterministic`` values, enumerated assignments
    drawn by a sampler) are left out.
    """
    missing = [site for site in latent_sites if site not in draws]
    if missing:
        raise KeyError(
            f"posterior {name!r} has no draws of latent site(s) {missing} of the model "
            f"(it holds {sorted(draws)}): every posterior must describe the same sites"
        )
    return {site: draws[site] for site in latent_sites}


def pointwise_log_likelihood(
    model, draws: dict[str, torch.Tensor], args: tuple, kwargs: dict | None = None
) -> dict[str, torch.Tensor]:
    """Per-observation log-likelihood ``{site: (S, *batch)}`` for flat draws ``(S, *shape)``."""
    return ModelEvaluator(model, args, kwargs).pointwise_log_likelihood(draws)


def forget_split(
    evaluator: ModelEvaluator, site: str, values: torch.Tensor, forget_mask, plate: str | int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Split a ``(S, *batch)`` tensor of site ``site`` into its (forget, retained) elements."""
    dim = plate_dim(evaluator, site, plate)
    size = values.shape[dim]
    index = as_index_tensor(forget_mask, size)
    keep = torch.ones(size, dtype=torch.bool)
    keep[index] = False
    return (
        values.index_select(dim, index.to(values.device)),
        values.index_select(dim, keep.nonzero().flatten().to(values.device)),
    )


def plate_dim(evaluator: ModelEvaluator, site: str, plate: str | int) -> int:
    """The dim (negative, of the site's batch shape) that plate ``plate`` indexes."""
    if isinstance(plate, int):
        return plate
    info = evaluator.structure_of(site)
    if plate not in info.plates:
        raise ValueError(
            f"observed site {site!r} is not inside plate {plate!r} (its plates: "
            f"{list(info.plates) or 'none'}); name the data plate, or pass the batch dim "
            "(plate=-1) for an observed vector outside any plate"
        )
    return info.plate_dims[info.plates.index(plate)]


def to_inference_data(
    posterior,
    model,
    *args,
    forget_mask=None,
    plate: str | int = "data",
    num_samples: int = 1000,
    predictive_args: tuple | None = None,
    model_kwargs: dict | None = None,
    seed: int = 0,
):
    """ArviZ's container for any posterior: ``posterior``, ``log_likelihood`` and, when
    ``predictive_args`` (the model arguments with observations left out) are given,
    ``posterior_predictive``; an ``UnlearnResult`` adds an ``unlearning`` group's attributes
    (method, seconds, diagnostics that are numbers).

    The native container of the installed ArviZ: ``InferenceData`` on 0.2x, ``xarray.DataTree``
    on 1.x. With ``forget_mask`` over plate ``plate``, each observed site ``y`` gets two
    log-likelihood variables, ``y_forget`` and ``y_retained``. Enumerated discrete sites are
    summed out of the log-likelihood and left out of the posterior group (the posterior
    group's attribute ``marginalised`` names them).
    """
    from .. import arviz_compat

    _checks.count("num_samples", num_samples)
    _checks.seed(seed)
    evaluator = ModelEvaluator(model, args, model_kwargs)
    draws = posterior_draws(posterior, model, args, model_kwargs, num_samples, seed)
    chains, per_chain = next(iter(draws.values())).shape[:2]
    flat = {k: v.reshape((chains * per_chain,) + v.shape[2:]) for k, v in draws.items()}
    evaluator.structure(flat)
    flat = aligned_draws(flat, evaluator.latent_sites(), "posterior")
    draws = {k: draws[k] for k in flat}
    with torch.no_grad():
        log_lik = evaluator.pointwise_log_likelihood(flat)
    groups = {"posterior": {k: v.detach().cpu().numpy() for k, v in draws.items()}}
    log_likelihood = {}
    for name, values in log_lik.items():
        if forget_mask is None:
            log_likelihood[name] = values
            continue
        forget_part, retained_part = forget_split(evaluator, name, values, forget_mask, plate)
        log_likelihood[f"{name}_forget"] = forget_part
        log_likelihood[f"{name}_retained"] = retained_part
    groups["log_likelihood"] = {
        k: v.reshape((chains, per_chain) + v.shape[1:]).cpu().numpy()
        for k, v in log_likelihood.items()
    }
    if predictive_args is not None:
        groups["posterior_predictive"] = _predictive(
            model, flat, predictive_args, model_kwargs, list(log_lik), chains, per_chain, seed
        )
    attrs = {"posterior": {"marginalised": ", ".join(evaluator.enumerated_sites) or "none"}}
    unlearning = _unlearning_attrs(posterior)
    if unlearning:
        attrs["posterior"].update(unlearning)
    return arviz_compat.from_dict(groups, attrs)


def _predictive(model, flat, predictive_args, kwargs, sites, chains, per_chain, seed):
    from pyro.infer import Predictive

    from .._user_model import user_call

    with torch.random.fork_rng(), torch.no_grad():
        torch.manual_seed(seed)
        predictive = Predictive(user_call(model), posterior_samples=flat, return_sites=sites)(
            *predictive_args, **(kwargs or {})
        )
    return {
        k: v.reshape((chains, per_chain) + v.shape[1:]).detach().cpu().numpy()
        for k, v in predictive.items()
    }


def _unlearning_attrs(posterior) -> dict:
    if not isinstance(posterior, UnlearnResult):
        return {}
    attrs = {"unlearning_method": posterior.method, "unlearning_seconds": posterior.seconds}
    for key, value in posterior.diagnostics.items():
        if isinstance(value, bool):
            attrs[f"unlearning_{key}"] = int(value)
        elif isinstance(value, int | float | str):
            attrs[f"unlearning_{key}"] = value
    evaluator = posterior.diagnostics.get("evaluator")
    if isinstance(evaluator, dict):
        attrs["unlearning_evaluator_path"] = str(evaluator.get("path"))
        attrs["unlearning_forget_set"] = str(evaluator.get("forget_set"))
    return attrs

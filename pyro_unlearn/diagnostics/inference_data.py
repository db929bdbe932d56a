"""Posterior draws from any representation, and their conversion to ArviZ InferenceData.

ArviZ's ``from_pyro`` accepts only MCMC and ignores our handlers' weights, so draws are
collected here as a dict of arrays and converted with ``az.from_dict`` at the edge.
"""

from __future__ import annotations

import pyro
import torch
from pyro.infer import Predictive

from ..handlers.plate_mask import as_index_tensor
from ..vectorized import PARTICLE_PLATE, model_structure, vectorized_trace


def posterior_draws(
    posterior,
    model,
    args: tuple = (),
    kwargs: dict | None = None,
    num_samples: int = 1000,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """Draws ``{site: (chains, draws, *shape)}`` of the latent sites.

    ``posterior`` may be a Pyro guide (any callable guide, autoguides included), an
    ``UnlearnResult``, ``WeightedSamples`` (resampled to equal weights), a
    ``pyro.infer.MCMC``, a retraining ``Reference``, or a dict of ``(S, *shape)`` tensors.
    """
    from ..api import UnlearnResult
    from ..samples import WeightedSamples

    kwargs = kwargs or {}
    if isinstance(posterior, UnlearnResult):
        posterior = posterior.guide
    if isinstance(posterior, WeightedSamples):
        return {k: v.unsqueeze(0) for k, v in posterior.resample(num_samples, seed).items()}
    if isinstance(posterior, dict):
        return {k: torch.as_tensor(v).unsqueeze(0) for k, v in posterior.items()}
    if hasattr(posterior, "get_samples"):  # MCMC
        return posterior.get_samples(group_by_chain=True)
    if hasattr(posterior, "flat") and hasattr(posterior, "samples"):  # Reference
        return dict(posterior.samples)
    if callable(posterior):
        nesting, plates = model_structure(model, args, kwargs)
        pyro.set_rng_seed(seed)
        with torch.no_grad(), pyro.plate(PARTICLE_PLATE, num_samples, dim=-(nesting + 1)):
            trace = pyro.poutine.trace(posterior).get_trace(*args, **kwargs)
        draws = {}
        for name, count in plates.items():
            value = trace.nodes[name]["value"]
            pad = nesting - count
            draws[name] = value.reshape((num_samples,) + value.shape[1 + pad :]).unsqueeze(0)
        return draws
    raise TypeError(f"cannot draw from a posterior of type {type(posterior).__name__}")


def pointwise_log_likelihood(
    model, draws: dict[str, torch.Tensor], args: tuple, kwargs: dict | None = None
) -> dict[str, torch.Tensor]:
    """Per-observation log-likelihood ``{site: (S, *batch)}`` for flat draws ``(S, *shape)``."""
    trace, particle_dim = vectorized_trace(model, draws, args, kwargs)
    num = len(next(iter(draws.values())))
    out = {}
    for name, site in trace.nodes.items():
        if site["type"] == "sample" and site["is_observed"]:
            lp = site["fn"].log_prob(site["value"])
            out[name] = lp.expand((num,) + lp.shape[1:]) if lp.dim() else lp.expand(num)
    return out


def split_by_mask(values: torch.Tensor, mask, plate_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Split a ``(S, ...)`` tensor along the plate dim into (forget, retained) parts."""
    size = values.shape[plate_dim]
    index = as_index_tensor(mask, size)
    keep = torch.ones(size, dtype=torch.bool)
    keep[index] = False
    return values.index_select(plate_dim, index), values.index_select(
        plate_dim, keep.nonzero().flatten()
    )


def _plate_dim(model, args, kwargs, site: str, plate: str) -> int:
    trace = pyro.poutine.trace(model).get_trace(*args, **(kwargs or {}))
    frame = next((f for f in trace.nodes[site]["cond_indep_stack"] if f.name == plate), None)
    if frame is None:
        raise ValueError(f"observed site {site!r} is not inside plate {plate!r}")
    return frame.dim


def to_inference_data(
    posterior,
    model,
    *args,
    forget_mask=None,
    plate: str = "data",
    num_samples: int = 1000,
    predictive_args: tuple | None = None,
    model_kwargs: dict | None = None,
    seed: int = 0,
):
    """An ArviZ ``InferenceData`` for any posterior: ``posterior``, ``log_likelihood`` and,
    when ``predictive_args`` (the model arguments with observations left out) are given,
    ``posterior_predictive``.

    With ``forget_mask`` over plate ``plate``, each observed site ``y`` gets two
    log-likelihood variables, ``y_forget`` and ``y_retained``.
    """
    import arviz as az

    draws = posterior_draws(posterior, model, args, model_kwargs, num_samples, seed)
    chains, per_chain = next(iter(draws.values())).shape[:2]
    flat = {k: v.reshape((chains * per_chain,) + v.shape[2:]) for k, v in draws.items()}
    log_lik = pointwise_log_likelihood(model, flat, args, model_kwargs)
    groups = {"posterior": {k: v.detach().cpu().numpy() for k, v in draws.items()}}
    log_likelihood = {}
    for name, values in log_lik.items():
        values = values.detach()
        if forget_mask is None:
            log_likelihood[name] = values
            continue
        dim = _plate_dim(model, args, model_kwargs, name, plate)
        forget_part, retained_part = split_by_mask(values, forget_mask, values.dim() + dim)
        log_likelihood[f"{name}_forget"] = forget_part
        log_likelihood[f"{name}_retained"] = retained_part
    groups["log_likelihood"] = {
        k: v.reshape((chains, per_chain) + v.shape[1:]).cpu().numpy()
        for k, v in log_likelihood.items()
    }
    if predictive_args is not None:
        predictive = Predictive(model, posterior_samples=flat, return_sites=list(log_lik))(
            *predictive_args, **(model_kwargs or {})
        )
        groups["posterior_predictive"] = {
            k: v.reshape((chains, per_chain) + v.shape[1:]).detach().cpu().numpy()
            for k, v in predictive.items()
        }
    return az.from_dict(**groups)

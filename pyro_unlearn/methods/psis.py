r"""Unlearning a posterior given as draws (MCMC): Pareto-smoothed importance reweighting.

Draws :math:`\theta_s \sim p(\theta\mid D)` weighted by
:math:`w_s \propto 1/p(D_e\mid\theta_s)` are draws of
:math:`p(\theta\mid D_r) \propto p(\theta\mid D)/p(D_e\mid\theta)`: exactly what PSIS-LOO does
for one point, here for a whole forget set. The Pareto :math:`\hat k` of the weights
says whether to trust it: :math:`\hat k > 0.7` means the forget set moved the posterior
further than the draws reach.
"""

from __future__ import annotations

import torch

from ..errors import BadRequestError, DegenerateWeightsError, unreliable
from ..importance import (
    effective_sample_size,
    pareto_smooth,
    psis_reliability,
    relative_efficiency,
)
from ..model_eval import forget_evaluator
from ..options import OnUnreliable, choose
from ..posteriors import WeightedSamples


def as_samples(posterior) -> dict[str, torch.Tensor]:
    """Draws ``{site: (S, *shape)}`` from an MCMC object, a dict of tensors, or a Reference."""
    return _draws_and_chains(posterior)[0]


def _draws_and_chains(posterior) -> tuple[dict[str, torch.Tensor], int]:
    """The draws, chains merged, and the number of chains (1 when unknown: a dict)."""
    if isinstance(posterior, dict):
        return posterior, 1
    if hasattr(posterior, "get_samples"):  # pyro.infer.MCMC
        grouped = posterior.get_samples(group_by_chain=True)
        chains = len(next(iter(grouped.values())))
        return {k: v.reshape((-1,) + v.shape[2:]) for k, v in grouped.items()}, chains
    if hasattr(posterior, "flat") and hasattr(posterior, "samples"):  # Reference
        chains = len(next(iter(posterior.samples.values())))
        return {k: posterior.flat(k) for k in posterior.samples}, chains
    raise TypeError(
        f"expected posterior draws (pyro.infer.MCMC, dict of tensors or Reference), got {type(posterior).__name__}"
    )


def psis_unlearn(
    model,
    posterior,
    *forget_args,
    mask=None,
    plate=None,
    sites=None,
    model_kwargs: dict | None = None,
    on_unreliable: str = "raise",
) -> WeightedSamples:
    r"""Reweight full-data posterior draws towards the retained-data posterior.

    .. math:: \log w_s = -\log p(D_e\mid\theta_s), \quad \text{Pareto-smoothed (PSIS)}.

    Parameters
    ----------
    posterior : pyro.infer.MCMC, dict of tensors, or Reference
        Draws of :math:`p(\theta\mid D)`; a dict holds ``(S, *site_shape)`` tensors.
    *forget_args, mask, plate, sites, model_kwargs
        The forget data, as for :func:`~pyro_unlearn.forget`.
    on_unreliable : {"raise", "warn", "ignore"}
        The library's one policy for unreliable results: when :math:`\hat k > 0.7`, raise
        :class:`~pyro_unlearn.errors.DegenerateWeightsError` (default), or return the draws
        flagged (``reliable`` False) with a warning naming the number, or without.
    """
    on_unreliable = choose(OnUnreliable, on_unreliable, "on_unreliable")
    samples, chains = _draws_and_chains(posterior)
    num = len(next(iter(samples.values())))
    if num < 25:
        raise BadRequestError(
            f"psis needs at least 25 posterior draws to fit the Pareto tail, got {num}"
        )
    evaluator = forget_evaluator(
        model, forget_args, model_kwargs, mask=mask, plate=plate, sites=sites
    )
    with torch.no_grad():
        log_lik = evaluator.log_likelihood(samples)
    raw = -log_lik.detach()
    reff = relative_efficiency(raw, chains)
    log_weights, pareto_k = pareto_smooth(raw, reff)
    ess = effective_sample_size(log_weights)
    reliable, reason = psis_reliability(raw, pareto_k, ess)
    flags: dict = {}
    if not reliable:
        message = (
            f"PSIS unlearning is unreliable: {reason}; the forget set moves the posterior "
            "beyond the draws: retrain, unlearn in smaller requests with MCMC moves in "
            "between, or use method='smc'"
        )
        unreliable(DegenerateWeightsError(message), on_unreliable, flags)
    return WeightedSamples(
        {k_: v.detach() for k_, v in samples.items()},
        log_weights,
        pareto_k,
        ess,
        unreliable=flags.get("unreliable", []),
        reff=reff,
    )


def psis_method(model, posterior, *forget_args, **options):
    result = psis_unlearn(model, posterior, *forget_args, **options)
    diagnostics = {
        "pareto_k": result.pareto_k,
        "ess": result.ess,
        "reff": result.reff,
        "num_samples": result.num_samples,
    }
    if not result.reliable:
        diagnostics.update(reliable=False, unreliable=list(result.unreliable))
    return result, diagnostics


psis_method.__wrapped__ = psis_unlearn  # its options, for inspect.signature

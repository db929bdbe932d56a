r"""Unlearning a posterior given as draws (MCMC): Pareto-smoothed importance reweighting.

Draws :math:`\theta_s \sim p(\theta\mid D)` weighted by
:math:`w_s \propto 1/p(D_e\mid\theta_s)` are draws of
:math:`p(\theta\mid D_r) \propto p(\theta\mid D)/p(D_e\mid\theta)`: exactly what PSIS-LOO does
for one point, here for a whole forget set. The Pareto :math:`\hat k` of the weights
says whether to trust it: :math:`\hat k > 0.7` means the forget set moved the posterior
further than the draws reach.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch

from . import _rng, arviz_compat
from .api import register_method
from .infer.rkl import PARETO_K_THRESHOLD
from .model_eval import forget_evaluator


@dataclass
class WeightedSamples:
    """Posterior draws with normalised log weights (``logsumexp == 0``).

    Attributes
    ----------
    samples : dict of str to tensor
        Draws of each latent site, shape ``(S, *site_shape)``.
    log_weights : tensor
        Shape ``(S,)``.
    pareto_k : float
        Pareto :math:`\\hat k` of the raw weights (PSIS diagnostic).
    ess : float
        Effective sample size :math:`1/\\sum_s \\bar w_s^2` of the smoothed weights.
    """

    samples: dict[str, torch.Tensor]
    log_weights: torch.Tensor
    pareto_k: float = 0.0
    ess: float = float("nan")

    @property
    def num_samples(self) -> int:
        return len(self.log_weights)

    def mean(self, name: str) -> torch.Tensor:
        """Weighted posterior mean of site ``name``."""
        w = self.log_weights.exp().reshape((-1,) + (1,) * (self.samples[name].dim() - 1))
        return (w * self.samples[name]).sum(0)

    def resample(self, num_samples: int | None = None, seed: int = 0) -> dict[str, torch.Tensor]:
        """Equally weighted draws (multinomial resampling), e.g. for ``Predictive``."""
        index = _rng.multinomial(
            self.log_weights.exp(), num_samples or self.num_samples, _rng.generator(seed)
        )
        return {k: v[index] for k, v in self.samples.items()}


def as_samples(posterior) -> dict[str, torch.Tensor]:
    """Draws ``{site: (S, *shape)}`` from an MCMC object, a dict of tensors, or a Reference."""
    if isinstance(posterior, dict):
        return posterior
    if hasattr(posterior, "get_samples"):  # pyro.infer.MCMC
        return posterior.get_samples()
    if hasattr(posterior, "flat") and hasattr(posterior, "samples"):  # Reference
        return {k: posterior.flat(k) for k in posterior.samples}
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
    on_high_k: str = "warn",
) -> WeightedSamples:
    r"""Reweight full-data posterior draws towards the retained-data posterior.

    .. math:: \log w_s = -\log p(D_e\mid\theta_s), \quad \text{Pareto-smoothed (PSIS)}.

    Parameters
    ----------
    posterior : pyro.infer.MCMC, dict of tensors, or Reference
        Draws of :math:`p(\theta\mid D)`; a dict holds ``(S, *site_shape)`` tensors.
    *forget_args, mask, plate, sites, model_kwargs
        The forget data, as for :func:`~pyro_unlearn.forget`.
    on_high_k : {"warn", "raise", "ignore"}
        When :math:`\hat k > 0.7`: warn naming the number (default), raise a
        ``ValueError``, or stay silent (the value is in the result either way).
    """
    if on_high_k not in ("warn", "raise", "ignore"):
        raise ValueError(f"on_high_k must be 'warn', 'raise' or 'ignore', got {on_high_k!r}")
    samples = as_samples(posterior)
    evaluator = forget_evaluator(
        model, forget_args, model_kwargs, mask=mask, plate=plate, sites=sites
    )
    with torch.no_grad():
        log_lik = evaluator.log_likelihood(samples)
    raw = -log_lik.detach()
    smoothed, k = arviz_compat.psislw(raw.cpu().numpy().astype(np.float64), reff=1.0)
    log_weights = torch.as_tensor(np.asarray(smoothed), dtype=raw.dtype, device=raw.device)
    log_weights = log_weights - log_weights.logsumexp(0)
    pareto_k = float(k)
    ess = float(1.0 / log_weights.exp().pow(2).sum())
    if pareto_k > PARETO_K_THRESHOLD and on_high_k != "ignore":
        message = (
            f"PSIS unlearning is unreliable: Pareto k = {pareto_k:.2f} > {PARETO_K_THRESHOLD} "
            f"(effective sample size {ess:.0f} of {len(raw)}); the forget set moves the posterior "
            "beyond the draws: retrain, or unlearn in smaller requests with MCMC moves in between"
        )
        if on_high_k == "raise":
            raise ValueError(message)
        warnings.warn(message, stacklevel=2)
    return WeightedSamples(
        {k_: v.detach() for k_, v in samples.items()}, log_weights, pareto_k, ess
    )


@register_method("psis")
def _psis_method(model, posterior, *forget_args, **options):
    result = psis_unlearn(model, posterior, *forget_args, **options)
    return result, {
        "pareto_k": result.pareto_k,
        "ess": result.ess,
        "num_samples": result.num_samples,
    }

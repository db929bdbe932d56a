"""Importance weights: when to trust them (a base module: PSIS itself is in :mod:`.arviz_compat`).

Shared by rKL, PSIS and SMC unlearning, so that one rule decides what "degenerate" means.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from . import arviz_compat

PARETO_K_THRESHOLD = 0.7
UNIFORM_ESS = 0.99  # raw weights this even (ESS / S) are reliable whatever k-hat says


def effective_sample_size(log_weights: torch.Tensor) -> float:
    r"""Kish's effective sample size :math:`1/\sum_s \bar w_s^2` of (unnormalised) log weights."""
    normalised = log_weights - log_weights.logsumexp(0)
    return float(1.0 / normalised.exp().pow(2).sum())


def pareto_smooth(log_ratios: torch.Tensor, reff: float = 1.0) -> tuple[torch.Tensor, float]:
    """PSIS of log importance ratios: the smoothed log weights (normalised) and Pareto k-hat,
    through the installed ArviZ."""
    smoothed, k = arviz_compat.psislw(
        log_ratios.detach().cpu().numpy().astype(np.float64), reff=reff
    )
    smoothed = torch.as_tensor(np.asarray(smoothed), dtype=log_ratios.dtype)
    smoothed = smoothed.to(log_ratios.device)
    return smoothed - smoothed.logsumexp(0), float(k)


def generalized_pareto_fit(excesses: np.ndarray) -> tuple[float, float]:
    r"""Shape :math:`\xi` and scale :math:`\sigma` of a generalized Pareto distribution fitted to
    positive excesses, as PSIS fits the tail of importance ratios.

    Zhang and Stephens (2009): the profile log likelihood in :math:`\theta = -\xi/\sigma`,

    .. math::

        \ell(\theta) = n\big(\log(-\theta/\xi(\theta)) - \xi(\theta) - 1\big), \qquad
        \xi(\theta) = \tfrac1n\textstyle\sum_i \log(1 - \theta x_i),

    averaged over a grid of :math:`\theta` with weights :math:`\propto e^{\ell}`; then
    :math:`\sigma = -\xi(\hat\theta)/\hat\theta` and the shape shrunk towards 1/2 by PSIS's
    weakly informative prior, :math:`(n\xi + 5)/(n + 10)`. Hand-written rather than
    ``scipy.stats.genpareto.fit``: the maximum-likelihood fit takes 25 ms (a tenth of a
    certificate) and its shape is not the :math:`\hat k` that PSIS reports beside it.

    >>> from scipy.stats import genpareto
    >>> x = genpareto.rvs(0.3, scale=2.0, size=4000, random_state=0)
    >>> shape, scale = generalized_pareto_fit(x)
    >>> round(shape, 1), round(scale, 1)
    (0.3, 2.0)
    """
    x = np.sort(np.asarray(excesses, dtype=np.float64))
    n = len(x)
    grid = 30 + int(math.sqrt(n))
    quartile = x[int(n / 4 + 0.5) - 1]
    theta = 1 / x[-1] + (1 - np.sqrt(grid / (np.arange(1, grid + 1) - 0.5))) / (3 * quartile)
    shape = np.log1p(-theta[:, None] * x).mean(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        profile = n * (np.log(-theta / shape) - shape - 1)
    keep = np.isfinite(profile)
    weights = np.exp(profile[keep] - profile[keep].max())
    theta_hat = float((weights * theta[keep]).sum() / weights.sum())
    xi = float(np.log1p(-theta_hat * x).mean())
    sigma = -xi / theta_hat
    return (n * xi + 10 * 0.5) / (n + 10), sigma


def relative_efficiency(log_ratios: torch.Tensor, chains: int) -> float:
    """``reff`` of PSIS as ArviZ's ``loo`` computes it: the ESS of the mean of the ratios
    (arranged by chain) over the number of draws; 1 for independent draws (one chain)."""
    if chains < 2:
        return 1.0
    ratios = (log_ratios - log_ratios.max()).exp().double().cpu().numpy()
    per_chain = ratios.reshape(chains, -1)
    return float(min(arviz_compat.ess(per_chain, method="mean") / ratios.size, 1.0))


def psis_reliability(log_ratios: torch.Tensor, pareto_k: float, ess: float) -> tuple[bool, str]:
    """Whether PSIS weights are unreliable, and what happened: k-hat > 0.7 means the Pareto
    fit says the right tail is too heavy, unless the raw weights are nearly uniform (a model
    that fits every forgotten point almost perfectly gives weights 1 +- 1e-9, where the fit
    of a tail to rounding noise returns k-hat 3 or inf)."""
    num = len(log_ratios)
    raw_ess = effective_sample_size(log_ratios)
    if raw_ess >= UNIFORM_ESS * num:
        return True, f"raw weights nearly uniform (ESS {raw_ess:.0f} of {num}): reliable"
    if math.isfinite(pareto_k) and pareto_k <= PARETO_K_THRESHOLD:
        return True, f"Pareto k = {pareto_k:.2f}"
    return False, (
        f"Pareto k = {pareto_k:.2f} > {PARETO_K_THRESHOLD}: the right tail of the weights "
        f"is too heavy for a finite-variance estimate (effective sample size {ess:.0f} of "
        f"{num}, {raw_ess:.0f} before smoothing)"
    )

"""PSIS, ESS and r-hat with the same numbers on both ArviZ lines (see the package docs)."""

from __future__ import annotations

import inspect
import math
from typing import Any

import numpy as np
import xarray as xr

from .containers import ARVIZ_1, _as_array

TAIL_PROB = (0.05, 0.95)  # quantiles of the tail ESS (ArviZ 0.2x's default)


def _tail_length(num_draws: int, reff: float) -> int:
    """PSIS tail length as ArviZ 1.x computes it (0.2x takes the ceiling instead of the floor)."""
    if num_draws * reff > 225:
        return int(math.floor(3 * math.sqrt(num_draws / reff)))
    return int(math.floor(num_draws / 5))


def _logsumexp(values: np.ndarray) -> float:
    top = np.max(values)
    return float(top + np.log(np.sum(np.exp(values - top))))


def psislw(log_weights: np.ndarray, reff: float = 1.0) -> tuple[np.ndarray, float]:
    """Pareto-smoothed importance log weights and the Pareto k-hat.

    Smooths the right tail of ``S`` log weights with a generalized Pareto fit, truncates
    smoothed weights at the largest raw weight and normalises, with the same tail length on
    both lines: ``floor(3 * sqrt(S / reff))`` when ``S * reff > 225``, else ``floor(S / 5)``.

    Parameters
    ----------
    log_weights
        1-D array of ``S`` log importance ratios (``-inf`` allowed, NaN not).
    reff
        Relative efficiency ``ESS / S`` of the draws the weights belong to.

    Returns
    -------
    tuple of (np.ndarray, float)
        Smoothed log weights (``logsumexp == 0``) and k-hat; with fewer than 5 tail draws
        (``S < 25``) the weights are only normalised and k-hat is ``inf``.

    Notes
    -----
    The lines then agree to rounding but for one case: 0.2x never puts weights more than
    ``-log(tiny) ~ 708`` below the largest into the tail (1.x does), which only degenerate
    weights reach.
    """
    values = np.array(log_weights, dtype=np.float64)
    if values.ndim != 1:
        raise ValueError(f"psislw takes a 1-D array of log weights, got shape {values.shape}")
    if np.isnan(values).any() or np.isposinf(values).any():
        raise ValueError("log weights must not be NaN or +inf")
    if not reff > 0:
        raise ValueError(f"reff must be positive, got {reff}")
    tail = _tail_length(len(values), reff)
    if tail < 5:
        return values - _logsumexp(values), math.inf
    if ARVIZ_1:
        from arviz_stats.base import array_stats

        # 1.x's PSIS smooths -ary: it takes log-likelihoods, i.e. minus the log ratios
        smoothed, khat = array_stats.psislw(-values, r_eff=reff)
    else:
        smoothed, khat = _psislw_02x(values, tail, reff)
    smoothed = np.asarray(smoothed, dtype=np.float64)
    return smoothed - _logsumexp(smoothed), float(khat)


def _psislw_02x(values: np.ndarray, tail: int, reff: float) -> tuple[np.ndarray, float]:
    """0.2x's PSIS core with 1.x's tail length; its public ``psislw`` has no tail argument."""
    try:
        from arviz.stats.stats import _psislw
    except ImportError:  # not expected on 0.2x; the public one differs by one tail draw at most
        import arviz as az

        return az.psislw(values, reff)
    kwargs = {"normalize": True} if "normalize" in inspect.signature(_psislw).parameters else {}
    return _psislw(values.copy(), -tail - 1, np.log(np.finfo(float).tiny), **kwargs)


def _check_draws(draws: Any) -> np.ndarray:
    draws = _as_array(draws).astype(np.float64, copy=False)
    if draws.ndim < 2:
        raise ValueError(f"draws must have shape (chains, draws, *shape), got {draws.shape}")
    return draws


def _per_element_02x(function, draws: np.ndarray, **kwargs) -> np.ndarray:
    dims = ("chain", "draw", *(f"x_dim_{i}" for i in range(draws.ndim - 2)))
    dataset = xr.Dataset({"x": (dims, draws)})
    return np.asarray(function(dataset, **kwargs)["x"].values, dtype=float)


def ess(draws: np.ndarray, method: str = "bulk") -> np.ndarray:
    """Effective sample size of each element of ``draws`` (rank-normalised, as ArviZ's).

    Parameters
    ----------
    draws
        Array of shape ``(chains, draws, *shape)``.
    method
        ``"bulk"``, ``"tail"`` (the smaller ESS of the 5% and 95% quantiles), or ``"mean"``
        (of the mean, not rank-normalised: what PSIS-LOO's relative efficiency uses).

    Returns
    -------
    np.ndarray
        Shape ``shape`` (a 0-d array for scalar draws).
    """
    if method not in ("bulk", "tail", "mean"):
        raise ValueError(f"method must be 'bulk', 'tail' or 'mean', got {method!r}")
    draws = _check_draws(draws)
    prob = TAIL_PROB if method == "tail" else None
    if ARVIZ_1:
        import arviz_stats

        out = arviz_stats.ess(draws, method=method, prob=prob, chain_axis=0, draw_axis=1)
        return np.asarray(out, dtype=float)
    import arviz as az

    return _per_element_02x(az.ess, draws, method=method, prob=prob)


def rhat(draws: np.ndarray) -> np.ndarray:
    """Rank-normalised split r-hat (ArviZ's default) of each element of ``draws``.

    Parameters
    ----------
    draws
        Array of shape ``(chains, draws, *shape)``.

    Returns
    -------
    np.ndarray
        Shape ``shape`` (a 0-d array for scalar draws).
    """
    draws = _check_draws(draws)
    if ARVIZ_1:
        import arviz_stats

        out = arviz_stats.rhat(draws, method="rank", chain_axis=0, draw_axis=1)
        return np.asarray(out, dtype=float)
    import arviz as az

    return _per_element_02x(az.rhat, draws, method="rank")

r"""Particle moves and adaptive tempering, shared by SMC unlearning and the certificate.

:func:`random_walk_factor` scales random-walk Metropolis proposals by the particles'
covariance, :math:`\mathcal N(z, (2.38^2/d)\,\hat\Sigma)` (the optimal scaling of Roberts,
Gelman and Gilks for a Gaussian target). :func:`tempered_log_normaliser` estimates the
normaliser of :math:`\pi(z) = \tilde p(z)/Z` from draws of a density :math:`q` by tempered
SMC along

.. math:: \gamma_\beta(z) = q(z)^{1-\beta}\,\tilde p(z)^{\beta}, \qquad 0 = \beta_0 < \dots < \beta_T = 1,

with :math:`\log\hat Z = \sum_t \log\frac1M\sum_i w_i^{(\beta_{t+1}-\beta_t)}`,
:math:`w_i = \tilde p(z_i)/q(z_i)`, each :math:`\beta_{t+1}` the largest keeping the effective
sample size of the increment at ``ess_fraction`` of the particles. After each step the
particles are resampled (multinomially) and moved by Metropolis-Hastings steps leaving
:math:`\gamma_{\beta_{t+1}}` invariant, alternating an independent proposal from the Gaussian
of the reweighted particles' moments with a random walk.
:math:`\hat Z` is unbiased; :math:`\log\hat Z` errs low by about half its variance, and by
more when the moves mix too slowly to follow the path: measured on Gaussian targets in 30
dimensions from 1250 particles, 0.1 to 0.5 nats low with 4 to 10 moves per temperature.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from . import _rng
from .gaussian import FlatGaussian
from .importance import effective_sample_size


def _cholesky(cov: torch.Tensor) -> torch.Tensor | None:
    """Lower Cholesky factor of ``cov`` with a relative jitter of 1e-10; None when it fails."""
    d = cov.shape[-1]
    jitter = 1e-10 * cov.diagonal().mean() * torch.eye(d, dtype=cov.dtype, device=cov.device)
    chol, info = torch.linalg.cholesky_ex(cov + jitter)
    if info or not bool(torch.isfinite(chol).all()):
        return None
    return chol


def random_walk_factor(z: torch.Tensor) -> torch.Tensor | None:
    r"""Cholesky factor :math:`L` of :math:`(2.38^2/d)\hat\Sigma` for proposals
    :math:`z + L\varepsilon`; None when the particles have collapsed (no covariance).

    >>> z = torch.randn(1000, 2, generator=torch.Generator().manual_seed(0)) * 3.0
    >>> factor = random_walk_factor(z)
    >>> bool(torch.allclose(factor @ factor.T, 2.38**2 / 2 * torch.cov(z.T), rtol=1e-6))
    True
    """
    d = z.shape[-1]
    chol = _cholesky(torch.cov(z.T).reshape(d, d))
    return None if chol is None else chol * 2.38 / d**0.5


def _failed(steps: int, acceptance: float) -> dict:
    return {"log_z": float("nan"), "num_steps": steps, "acceptance": acceptance, "collapsed": True}


def furthest_keeping_ess(
    ess_at: Callable[[float], float], lo: float, hi: float, ess_min: float, tolerance: float = 0.0
) -> float:
    r"""Bisection for the furthest :math:`x \in [lo, hi]` with ``ess_at(x) >= ess_min``, the
    ESS falling as :math:`x` grows (50 halvings, or until the bracket is under
    ``tolerance``); returns the bracket's low end.

    >>> round(furthest_keeping_ess(lambda x: 100 * (1 - x), 0.0, 1.0, 25.0), 6)
    0.75
    """
    for _ in range(50):
        mid = (lo + hi) / 2
        if ess_at(mid) >= ess_min:
            lo = mid
        else:
            hi = mid
        if hi - lo < tolerance:
            break
    return lo


def _next_temperature(log_w: torch.Tensor, beta: float, ess_min: float) -> float:
    r"""The largest :math:`\beta' \le 1` whose increment keeps the ESS at ``ess_min``."""

    def ess_at(b: float) -> float:
        return effective_sample_size((b - beta) * log_w)

    if ess_at(1.0) >= ess_min:
        return 1.0
    return max(furthest_keeping_ess(ess_at, beta, 1.0, ess_min), beta + 1e-12)


def tempered_log_normaliser(
    log_q: Callable[[torch.Tensor], torch.Tensor],
    log_target: Callable[[torch.Tensor], torch.Tensor],
    z: torch.Tensor,
    generator: torch.Generator,
    *,
    ess_fraction: float = 0.5,
    num_moves: int = 5,
    max_steps: int = 500,
) -> dict:
    r""":math:`\log\hat Z` of :math:`\tilde p` by tempered SMC from the draws ``z`` of :math:`q`.

    Parameters
    ----------
    log_q, log_target
        Batched log densities, rows of ``z`` in, one value per row out; ``log_target`` is
        :math:`\log\tilde p`, unnormalised.
    z : tensor (M, d)
        Independent draws of :math:`q`: the particles.
    generator
        Seeds the resampling and the moves.

    Returns
    -------
    dict
        ``log_z``, ``num_steps`` (temperatures), ``acceptance`` (mean Metropolis rate), and
        ``collapsed`` (True when the particles fell onto too few points to move, or
        ``max_steps`` temperatures did not reach :math:`\beta = 1`; ``log_z`` is then NaN).

    Examples
    --------
    A Gaussian target :math:`\tilde p = 3\,\mathcal N(2, 0.5^2)` from draws of
    :math:`\mathcal N(0, 1)`, so :math:`\log Z = \log 3` (plain importance sampling from
    these draws would have an ESS of about 2% of them):

    >>> q = torch.distributions.Normal(0.0, 1.0)
    >>> p = torch.distributions.Normal(2.0, 0.5)
    >>> g = torch.Generator().manual_seed(0)
    >>> z = torch.randn(4000, 1, generator=g)
    >>> out = tempered_log_normaliser(lambda x: q.log_prob(x).sum(-1),
    ...                               lambda x: p.log_prob(x).sum(-1) + math.log(3.0), z, g)
    >>> abs(out["log_z"] - math.log(3.0)) < 0.05, out["num_steps"] > 1
    (True, True)
    """
    num = len(z)
    lq, lt = log_q(z), log_target(z)
    beta, log_z, steps, accepted = 0.0, 0.0, 0, 0.0
    while beta < 1.0 and steps < max_steps:
        log_w = lt - lq
        new_beta = _next_temperature(log_w, beta, ess_fraction * num)
        increment = (new_beta - beta) * log_w
        log_z += float(increment.logsumexp(0)) - math.log(num)
        beta, steps = new_beta, steps + 1
        if beta >= 1.0:
            break
        weights = (increment - increment.logsumexp(0)).exp()
        # the next target's moments from the reweighted particles, before resampling
        # duplicates them: the independent proposal of the moves
        cov = torch.cov(z.T, aweights=weights).reshape(z.shape[1], z.shape[1])
        chol = _cholesky((cov + cov.T) / 2)
        fitted = None if chol is None else FlatGaussian(weights @ z, scale_tril=chol)
        index = _rng.multinomial(weights, num, generator)
        z, lq, lt = z[index], lq[index], lt[index]
        for move in range(num_moves):
            if move % 2 == 0 and fitted is not None:
                proposal = fitted.sample(num, generator)
                correction = fitted.log_prob(z) - fitted.log_prob(proposal)
            else:
                factor = random_walk_factor(z)
                if factor is None:
                    return _failed(steps, 0.0)
                proposal = z + _rng.normal(z.shape, generator, like=z) @ factor.T
                correction = 0.0
            lq_new, lt_new = log_q(proposal), log_target(proposal)
            log_ratio = (1 - beta) * (lq_new - lq) + beta * (lt_new - lt) + correction
            uniform = _rng.uniform((num,), generator, like=z)
            accept = uniform.log() < log_ratio  # NaN (outside a support) is rejected
            z = torch.where(accept[:, None], proposal, z)
            lq, lt = torch.where(accept, lq_new, lq), torch.where(accept, lt_new, lt)
            accepted += float(accept.double().mean())
    moves = max((steps - 1) * num_moves, 1)
    if beta < 1.0:  # max_steps temperatures did not reach the target
        return _failed(steps, accepted / moves)
    return {"log_z": log_z, "num_steps": steps, "acceptance": accepted / moves, "collapsed": False}

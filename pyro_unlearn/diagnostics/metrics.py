r"""Distances between posteriors, each with its direction and reference stated.

* :func:`moment_matched`: the Gaussian with the sample mean and covariance, so that
  :meth:`FlatGaussian.kl` compares sample-based posteriors in closed form.
* :func:`energy_distance`: :math:`2E\|X-Y\| - E\|X-X'\| - E\|Y-Y'\|`, zero iff the
  distributions agree; it sees skew that moment matching cannot.
* :func:`gap_closed`: :math:`1 - d(\text{unlearned}, \text{ref}) / d(\text{original}, \text{ref})`:
  1 is retraining quality, 0 is doing nothing, negative is worse than doing nothing.
"""

from __future__ import annotations

import torch

from ..gaussian import FlatGaussian


def moment_matched(samples: torch.Tensor) -> FlatGaussian:
    """Gaussian with the mean and covariance of ``samples`` (shape ``(S, d)``).

    >>> g = moment_matched(torch.tensor([[0.0, 1.0], [2.0, 1.0], [1.0, 4.0]]))
    >>> g.mean
    tensor([1., 2.])
    """
    samples = samples.reshape(len(samples), -1)
    cov = torch.cov(samples.T).reshape(samples.shape[1], samples.shape[1])
    return FlatGaussian(samples.mean(0), precision=torch.linalg.inv(cov))


def energy_distance(x: torch.Tensor, y: torch.Tensor, max_points: int = 2000) -> float:
    r"""Energy distance :math:`2E\|X-Y\| - E\|X-X'\| - E\|Y-Y'\|` between two samples.

    V-statistic on at most ``max_points`` evenly spaced draws of each sample.

    >>> x = torch.zeros(5, 1)
    >>> energy_distance(x, x), round(energy_distance(x, x + 1.0), 6)
    (0.0, 2.0)
    """
    x = x.reshape(len(x), -1)[:: max(1, len(x) // max_points)]
    y = y.reshape(len(y), -1)[:: max(1, len(y) // max_points)]
    xy = torch.cdist(x, y).mean()
    return float(2 * xy - torch.cdist(x, x).mean() - torch.cdist(y, y).mean())


def gap_closed(unlearned: float, original: float) -> float:
    """:math:`1 - d_u / d_0` for distances to the same reference (``nan`` if ``d_0 = 0``).

    >>> gap_closed(0.5, 2.0)
    0.75
    """
    return float("nan") if original == 0 else 1.0 - unlearned / original

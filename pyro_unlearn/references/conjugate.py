r"""Closed-form posteriors: the exact answers unlearning is tested against.

* :class:`BayesianLinearRegression`: :math:`w \sim \mathcal N(0, s_0^2 I)`,
  :math:`y_i \mid w \sim \mathcal N(x_i^\top w, \sigma^2)` with known :math:`\sigma`. The
  posterior on any subset is :math:`\mathcal N(m, \Lambda^{-1})` with
  :math:`\Lambda = I/s_0^2 + X^\top X/\sigma^2` and :math:`m = \Lambda^{-1}X^\top y/\sigma^2`.
* :class:`BetaBernoulli`: :math:`p \sim \mathrm{Beta}(a, b)`, :math:`y_i \sim \mathrm{Bernoulli}(p)`;
  the posterior is :math:`\mathrm{Beta}(a + \sum y_i,\; b + n - \sum y_i)`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pyro
import pyro.distributions as dist
import torch

from ..gaussian import FlatGaussian


@dataclass(frozen=True)
class BayesianLinearRegression:
    """Bayesian linear regression with known noise: model and exact posteriors.

    >>> blr = BayesianLinearRegression(noise_scale=1.0, prior_scale=1.0)
    >>> X, y = torch.eye(2), torch.tensor([1.0, -1.0])
    >>> blr.posterior(X, y).mean  # (I + I)^{-1} y
    tensor([ 0.5000, -0.5000])
    """

    noise_scale: float = 1.0
    prior_scale: float = 1.0

    def model(self, X: torch.Tensor, y: torch.Tensor | None = None, subsample_size=None):
        """Pyro model: latent ``w`` (shape ``(D,)``), observed ``y`` in plate ``data``."""
        n, d = X.shape
        w = pyro.sample(
            "w", dist.Normal(X.new_zeros(d), X.new_tensor(self.prior_scale)).to_event(1)
        )
        with pyro.plate("data", n, subsample_size=subsample_size) as idx:
            obs = None if y is None else y[idx]
            mean = (X[idx] * w).sum(-1)  # broadcasts over vectorized particles
            return pyro.sample("y", dist.Normal(mean, self.noise_scale), obs=obs)

    def prior(self, num_features: int, dtype=None) -> FlatGaussian:
        eye = torch.eye(num_features, dtype=dtype or torch.get_default_dtype())
        return FlatGaussian(eye.new_zeros(num_features), precision=eye / self.prior_scale**2)

    def posterior(self, X: torch.Tensor, y: torch.Tensor) -> FlatGaussian:
        """Exact posterior given data ``(X, y)`` (any subset, including the empty one)."""
        prior = self.prior(X.shape[1], X.dtype)
        precision = prior.precision + X.T @ X / self.noise_scale**2
        mean = torch.linalg.solve(precision, X.T @ y / self.noise_scale**2)
        return FlatGaussian(mean, precision=precision)

    def log_predictive(self, X: torch.Tensor, y: torch.Tensor, given: FlatGaussian) -> torch.Tensor:
        r""":math:`\log p(y \mid X, \text{given}) = \log\mathcal N(y;\, Xm,\; \sigma^2 I + X\Sigma X^\top)`."""
        cov = self.noise_scale**2 * torch.eye(len(y), dtype=X.dtype) + X @ given.covariance @ X.T
        return dist.MultivariateNormal(X @ given.mean, covariance_matrix=cov).log_prob(y)


@dataclass(frozen=True)
class BetaBernoulli:
    """Beta-Bernoulli model and its exact posterior.

    >>> BetaBernoulli(1.0, 1.0).posterior(torch.tensor([1.0, 0.0, 1.0]))
    (3.0, 2.0)
    """

    alpha: float = 1.0
    beta: float = 1.0

    def model(self, y: torch.Tensor):
        """Pyro model: latent ``p`` in (0, 1), observed ``y`` in plate ``data``."""
        p = pyro.sample("p", dist.Beta(y.new_tensor(self.alpha), y.new_tensor(self.beta)))
        with pyro.plate("data", len(y)):
            pyro.sample("y", dist.Bernoulli(p), obs=y)

    def posterior(self, y: torch.Tensor) -> tuple[float, float]:
        """Parameters of the Beta posterior given observations ``y``."""
        heads = float(y.sum())
        return self.alpha + heads, self.beta + len(y) - heads

    def log_evidence(self, y: torch.Tensor) -> float:
        """:math:`\\log p(y) = \\log B(a + h, b + t) - \\log B(a, b)`."""
        a, b = self.posterior(y)
        return _log_beta(a, b) - _log_beta(self.alpha, self.beta)


def _log_beta(a: float, b: float) -> float:
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)

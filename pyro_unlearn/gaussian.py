r"""The one Gaussian type: :math:`\mathcal N(\mu, \Sigma)` over a flat vector.

It is what a Gaussian guide is read as (over the flat unconstrained latent vector), what
Laplace unlearning computes, and what the closed-form references return; its KL is the
yardstick of the tests.
"""

from __future__ import annotations

import torch
from pyro.distributions import MultivariateNormal

from . import _rng


class FlatGaussian:
    r"""A Gaussian :math:`\mathcal N(\text{loc}, \Sigma)` over a flat vector.

    Built from exactly one of ``scale`` (diagonal :math:`\Sigma = \mathrm{diag}(\text{scale}^2)`),
    ``scale_tril`` (:math:`\Sigma = LL^\top`) or ``precision`` (:math:`\Sigma^{-1}`), which
    stays the source of truth; the other forms are derived once, on demand.

    >>> a = FlatGaussian(torch.zeros(2), precision=torch.eye(2))
    >>> b = FlatGaussian(torch.ones(2), scale=torch.full((2,), 0.5))
    >>> round(float(a.kl(b)), 6)  # (8 + 8 - 2 - log 16) / 2
    5.613706
    """

    def __init__(
        self,
        loc: torch.Tensor,
        *,
        scale: torch.Tensor | None = None,
        scale_tril: torch.Tensor | None = None,
        precision: torch.Tensor | None = None,
    ) -> None:
        if sum(x is not None for x in (scale, scale_tril, precision)) != 1:
            raise ValueError("give exactly one of scale, scale_tril or precision")
        self.loc = loc
        self.scale = scale  # None unless diagonal
        self._scale_tril = scale_tril
        self._precision = precision

    @property
    def mean(self) -> torch.Tensor:
        return self.loc

    @property
    def dim(self) -> int:
        return self.loc.shape[-1]

    @property
    def is_diagonal(self) -> bool:
        return self.scale is not None

    @property
    def precision(self) -> torch.Tensor:
        r""":math:`\Lambda = \Sigma^{-1}`."""
        if self._precision is None:
            if self.scale is not None:
                self._precision = torch.diag(self.scale.pow(-2))
            else:
                self._precision = torch.cholesky_inverse(self._scale_tril)
        return self._precision

    def cholesky(self) -> torch.Tensor:
        """Lower Cholesky factor :math:`L` of the covariance, :math:`\\Sigma = LL^\\top`."""
        if self._scale_tril is None:
            if self.scale is not None:
                self._scale_tril = torch.diag(self.scale)
            else:
                self._scale_tril = MultivariateNormal(
                    self.loc, precision_matrix=self._precision
                ).scale_tril
        return self._scale_tril

    @property
    def covariance(self) -> torch.Tensor:
        chol = self.cholesky()
        return chol @ chol.T

    def distribution(self) -> MultivariateNormal:
        return MultivariateNormal(self.loc, scale_tril=self.cholesky())

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        return self.distribution().log_prob(z)

    def sample(self, num_samples: int, generator: torch.Generator) -> torch.Tensor:
        """``(num_samples, d)`` draws :math:`\\mu + L\\varepsilon`, from ``generator`` only."""
        eps = _rng.normal((num_samples, self.dim), generator, like=self.loc)
        return self.loc + eps @ self.cholesky().T

    def log_max(self) -> float:
        r""":math:`\max_z \log q(z) = \log q(\mu)`."""
        return float(self.log_prob(self.loc))

    def kl(self, other: FlatGaussian) -> torch.Tensor:
        r""":math:`\mathrm{KL}(\text{self} \,\|\, \text{other})` in closed form.

        .. math:: \tfrac12\big[\mathrm{tr}(\Lambda_o\Sigma_s) + (m_o - m_s)^\top\Lambda_o(m_o - m_s)
                  - d + \log|\Lambda_s| - \log|\Lambda_o|\big]
        """
        diff = other.loc - self.loc
        trace = torch.trace(other.precision @ self.covariance)
        maha = diff @ other.precision @ diff
        logdet_self = torch.linalg.slogdet(self.precision).logabsdet
        logdet_other = torch.linalg.slogdet(other.precision).logabsdet
        return 0.5 * (trace + maha - self.dim + logdet_self - logdet_other)

    def __repr__(self) -> str:
        form = "diagonal" if self.is_diagonal else "full"
        return f"FlatGaussian(dim={self.dim}, {form})"

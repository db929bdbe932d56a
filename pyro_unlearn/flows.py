r"""Normalizing-flow posteriors: snapshot one, fit one, and continue one for unlearning.

A flow guide (``AutoIAFNormal``, ``AutoBNAFNormal``, ``AutoNormalizingFlow``) describes
:math:`q(z) = \mathcal N(T^{-1}(z); 0, I)\,|\det \partial T^{-1}/\partial z|` over the flat
unconstrained latent vector, as the Gaussian autoguides do, but with a learned bijection
:math:`T`. Unlearning from it needs three things:

* a frozen, detached copy of :math:`q(z\mid D)` (:func:`flow_posterior`) for the anchor;
* :math:`\max_z \log q(z\mid D)` for the adjusted likelihood, found numerically
  (:func:`log_density_max`);
* a trainable :math:`q_u` that starts exactly at :math:`q(z\mid D)` (:func:`residual_flow`):
  :math:`q_u = (T_D \circ R)_\# \mathcal N(0, I)` with :math:`R` a new, identity-initialised
  flow (a Cholesky-affine layer, then autoregressive layers) and :math:`T_D` frozen. Since
  :math:`T_D` already maps the standard normal to the old posterior, :math:`R` only has to
  learn the (small) change that the forget set makes, in well-scaled coordinates.
"""

from __future__ import annotations

import itertools

import pyro
import torch
from pyro.distributions import constraints
from pyro.distributions.torch_transform import ComposeTransformModule, TransformModule
from pyro.distributions.transforms import AffineAutoregressive
from pyro.infer.autoguide import AutoNormalizingFlow
from pyro.nn import AutoRegressiveNN

from ._user_model import user_call
from .guides import flat_gaussian
from .posteriors import as_buffers, flow_posterior, is_flow

__all__ = [
    "CholeskyAffine",
    "flow_guide",
    "flow_posterior",
    "identity_autoregressive",
    "residual_flow",
]


class CholeskyAffine(TransformModule):
    r"""A learnable affine bijection :math:`x = b + Lz`, :math:`L` lower triangular, positive diagonal.

    :math:`\log|\det \partial x/\partial z| = \sum_i \log L_{ii}`. Initialised at the
    identity unless ``loc`` and ``scale_tril`` are given.
    """

    domain = constraints.real_vector
    codomain = constraints.real_vector
    bijective = True

    def __init__(
        self, dim: int, loc: torch.Tensor | None = None, scale_tril: torch.Tensor | None = None
    ) -> None:
        super().__init__(cache_size=1)
        scale_tril = torch.eye(dim) if scale_tril is None else scale_tril.detach()
        self.loc = torch.nn.Parameter(
            torch.zeros(dim) if loc is None else loc.detach().clone().reshape(dim)
        )
        self.log_diag = torch.nn.Parameter(scale_tril.diagonal().log().clone())
        self.off_diag = torch.nn.Parameter(scale_tril.tril(-1).clone())

    def scale_tril(self) -> torch.Tensor:
        return self.off_diag.tril(-1) + torch.diag(self.log_diag.exp())

    def _call(self, z):
        return self.loc + z @ self.scale_tril().T

    def _inverse(self, x):
        solved = torch.linalg.solve_triangular(
            self.scale_tril(), (x - self.loc).unsqueeze(-1), upper=False
        )
        return solved.squeeze(-1)

    def log_abs_det_jacobian(self, z, x):
        return self.log_diag.sum().expand(x.shape[:-1])


def identity_autoregressive(dim: int, hidden_dims: list[int] | None = None) -> AffineAutoregressive:
    r"""An affine autoregressive layer (IAF) :math:`x_i = \mu_i(z_{<i}) + \sigma_i(z_{<i}) z_i`, at the identity.

    The network's output layer starts at zero, so :math:`\mu = 0`, :math:`\log\sigma = 0`.
    Its hidden units are ``tanh`` and it has no linear skip path, so :math:`\mu` and
    :math:`\log\sigma` stay bounded far from the data: the flow's tails stay Gaussian.
    That matters for unlearning, whose target :math:`q(\theta\mid D)/p(D_e\mid\theta)`
    is proper only if :math:`q` decays faster than the forget likelihood (ReLU units or a
    skip path let :math:`\log\sigma` grow linearly far from the data: heavier tails).
    """
    hidden_dims = hidden_dims or [max(8, 2 * dim)]
    network = AutoRegressiveNN(dim, hidden_dims, nonlinearity=torch.nn.Tanh())
    with torch.no_grad():
        network.layers[-1].weight.zero_()
        network.layers[-1].bias.zero_()
    return AffineAutoregressive(network)


def _flow_layers(dim: int, num_transforms: int, hidden_dims) -> list:
    return [identity_autoregressive(dim, hidden_dims) for _ in range(num_transforms)]


def flow_guide(
    model,
    *,
    loc: torch.Tensor,
    scale_tril: torch.Tensor,
    num_transforms: int = 2,
    hidden_dims: list[int] | None = None,
) -> AutoNormalizingFlow:
    r"""A flow guide :math:`z = b + L\,(F_K\circ\dots\circ F_1)(\varepsilon)` started at :math:`\mathcal N(b, LL^\top)`.

    :math:`F_k` are identity-initialised autoregressive layers and :math:`(b, L)` a
    learnable affine layer, typically started at a Laplace approximation
    (:func:`~pyro_unlearn.fit_flow` does this), so that the flow only learns the
    departure from Gaussianity: skew and curvature.
    """
    dim = len(loc)

    def init_transform(latent_dim: int):
        if latent_dim != dim:
            raise ValueError(f"loc has {dim} entries but the model has {latent_dim} latent dims")
        layers = _flow_layers(dim, num_transforms, hidden_dims)
        return ComposeTransformModule(layers + [CholeskyAffine(dim, loc, scale_tril)])

    return AutoNormalizingFlow(model, init_transform)


_COPY_IDS = itertools.count()


def residual_flow(
    full_guide,
    model,
    *args,
    num_transforms: int = 1,
    hidden_dims: list[int] | None = None,
    seed: int = 0,
    **kwargs,
) -> AutoNormalizingFlow:
    r"""A trainable :math:`q_u = (T_D\circ R)_\#\mathcal N(0, I)` that starts at :math:`q(z\mid D)`.

    ``full_guide`` is a flow guide (base :math:`\mathcal N(0, I)`, bijection :math:`T_D`,
    frozen here) or a Gaussian guide (:math:`T_D(\varepsilon) = \mu + L\varepsilon`).
    :math:`R` = Cholesky-affine layer then ``num_transforms`` autoregressive layers, all
    at the identity. Parameters are module-local, under a fresh name: training
    :math:`q_u` never touches ``full_guide`` or the global param store. ``args`` run the
    model once for the layout. ``seed`` sets the autoregressive layers' initial weights
    (the flow starts at the identity whatever they are, but training follows them), so the
    result never depends on the caller's global RNG state.
    """
    frozen = _frozen_map(full_guide)

    def init_transform(latent_dim: int):
        layers = [CholeskyAffine(latent_dim)] + _flow_layers(
            latent_dim, num_transforms, hidden_dims
        )
        return ComposeTransformModule(layers + frozen)

    with pyro.settings.context(module_local_params=True), torch.random.fork_rng():
        torch.manual_seed(seed)
        guide = AutoNormalizingFlow(user_call(model), init_transform)
        guide._pyro_name = f"unlearn_{next(_COPY_IDS)}_flow"
        guide._setup_prototype(*args, **kwargs)  # one model run (prior draws): RNG forked
        guide.get_posterior()  # builds the transform
    return guide


def _frozen_map(full_guide) -> list:
    r""":math:`T_D` as a list of frozen transforms from the standard normal to :math:`q(z\mid D)`."""
    if is_flow(full_guide):
        posterior = flow_posterior(full_guide)
        base = posterior.base_dist.base_dist
        if not (torch.all(base.loc == 0) and torch.all(base.scale == 1)):
            raise ValueError("residual_flow needs a flow whose base distribution is N(0, I)")
        return list(posterior.transforms)
    gaussian = flat_gaussian(full_guide)
    affine = CholeskyAffine(len(gaussian.loc), gaussian.loc, gaussian.cholesky())
    as_buffers(affine)
    return [affine]

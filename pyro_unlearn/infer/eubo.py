r"""The EUBO of Variational Bayesian Unlearning, with the adjusted likelihood.

.. math::

    U(q_u) = \mathbb E_{q_u}[\log p_{\mathrm{adj}}(D_e\mid\theta;\lambda)]
             + \mathrm{KL}(q_u \,\|\, q(\theta\mid D)),

    p_{\mathrm{adj}}(D_e\mid\theta;\lambda) = \begin{cases} p(D_e\mid\theta) &
        q(\theta\mid D) > \lambda \max_{\theta'} q(\theta'\mid D) \\ 1 & \text{otherwise.}\end{cases}

Minimising :math:`U` minimises :math:`\mathrm{KL}(q_u \,\|\, q(\theta\mid D)/p_{\mathrm{adj}})`.
It is the negative ELBO of ``anchor(forget(model))`` on :math:`D_e`, so Pyro's SVI does the
work. For a Gaussian :math:`q(\theta\mid D) = \mathcal N(\mu, LL^\top)` (in the unconstrained
space) the maximum is at :math:`\mu` and the condition reads
:math:`\|L^{-1}(z - \mu)\|^2 < -2\log\lambda`: an ellipsoid, no optimisation needed.
For a flow :math:`q(\theta\mid D)` the maximum is found numerically, with restarts, as
VBU did.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from pyro.infer import Trace_ELBO
from pyro.poutine.messenger import Messenger

from ..handlers import AnchorMessenger, forget
from ..masks import MaskLike


def inside_adjusted(log_ratio: torch.Tensor | float, lam: float) -> torch.Tensor:
    r"""Where the adjusted likelihood keeps :math:`p(D_e\mid\theta)`: :math:`q(\theta\mid D) > \lambda\max q`.

    ``log_ratio`` is :math:`\log q(z\mid D) - \max\log q`. Everywhere for
    :math:`\lambda \le 0` (the plain likelihood), nowhere for :math:`\lambda \ge 1`
    (nothing is unlearned).
    """
    log_ratio = torch.as_tensor(log_ratio)
    if lam <= 0:
        return torch.ones_like(log_ratio, dtype=torch.bool)
    return log_ratio > math.log(lam)


class _AdjustedLikelihood(Messenger):
    """Zero the observed sites' scale where the anchor density is below ``lam * max``.

    The indicator is computed from detached values: it is not differentiated.
    """

    def __init__(self, anchor: AnchorMessenger, lam: float) -> None:
        super().__init__()
        self.anchor = anchor
        self.lam = lam

    def _pyro_sample(self, msg) -> None:
        if not msg["is_observed"] or self.lam <= 0:
            return
        inside = inside_adjusted(self.anchor.log_ratio, self.lam)
        msg["scale"] = inside.to(torch.get_default_dtype()) * msg["scale"]


def check_lam(lam: float) -> float:
    """``lam`` as a float, or a ``ValueError`` unless it is a finite number >= 0."""
    lam = float(lam)
    if not 0.0 <= lam < math.inf:
        raise ValueError(
            f"lam (the adjusted-likelihood threshold) must be a finite number >= 0, got {lam}"
        )
    return lam


def unlearning_model(
    model: Callable,
    full_guide,
    *,
    lam: float = 0.0,
    mask: MaskLike | None = None,
    plate: str | None = None,
    sites: Iterable[str] | None = None,
) -> Callable:
    r"""``anchor(forget(model))`` with the adjusted likelihood: the model whose -ELBO is the EUBO.

    Its log joint at :math:`\theta` is :math:`\log q(\theta\mid D) - \log p_{\mathrm{adj}}(D_e\mid\theta;\lambda)`.
    """
    lam = check_lam(lam)
    anchor_msngr = AnchorMessenger(full_guide)
    if lam > 0 and not hasattr(anchor_msngr, "layout"):
        raise ValueError("lam > 0 needs an autoguide as full_guide (its density's maximum)")
    adjust = _AdjustedLikelihood(anchor_msngr, lam)
    forget_msngr = forget(mask=mask, plate=plate, sites=sites)

    def model_u(*args, **kwargs):
        with anchor_msngr, adjust, forget_msngr:
            return model(*args, **kwargs)

    return model_u


class EUBO(Trace_ELBO):
    r"""The evidence upper bound of Variational Bayesian Unlearning as a Pyro loss.

    Use it as the loss of :class:`pyro.infer.SVI` for ``(model, guide_u)`` on the forget
    data :math:`D_e`: the loss is
    :math:`U(q_u) = \mathbb E_{q_u}[\log p_{\mathrm{adj}}(D_e\mid\theta;\lambda)] + \mathrm{KL}(q_u\|q(\theta\mid D))`,
    estimated with reparameterised samples of ``guide_u``. ``lam=0`` is the plain
    objective; ``lam >= 1`` switches the forget term off (nothing is unlearned).

    Parameters
    ----------
    full_guide
        The fitted full-data posterior :math:`q(\theta\mid D)` (any guide :func:`anchor`
        accepts). It is snapshotted, never trained.
    lam : float
        :math:`\lambda` of the adjusted likelihood.
    mask, plate, sites
        As in :func:`~pyro_unlearn.forget`.
    num_particles, vectorize_particles, max_plate_nesting, ...
        As in :class:`pyro.infer.Trace_ELBO`.

    Notes
    -----
    On a linear-Gaussian model with exact :math:`q(\theta\mid D)`, the EUBO at the exact
    retrained posterior equals :math:`\log p(D_e \mid D_r)` (tested).
    """

    def __init__(
        self,
        full_guide,
        *,
        lam: float = 0.0,
        mask: MaskLike | None = None,
        plate: str | None = None,
        sites: Iterable[str] | None = None,
        **elbo_kwargs,
    ) -> None:
        super().__init__(**elbo_kwargs)
        self.lam = check_lam(lam)
        self._options = dict(lam=lam, mask=mask, plate=plate, sites=sites)
        self.full_guide = full_guide
        self._cache: tuple[Callable, Callable] | None = None

    def _unlearning(self, model: Callable) -> Callable:
        if self._cache is None or self._cache[0] is not model:
            self._cache = (model, unlearning_model(model, self.full_guide, **self._options))
        return self._cache[1]

    def loss(self, model, guide, *args, **kwargs):
        return super().loss(self._unlearning(model), guide, *args, **kwargs)

    def loss_and_grads(self, model, guide, *args, **kwargs):
        return super().loss_and_grads(self._unlearning(model), guide, *args, **kwargs)

    def differentiable_loss(self, model, guide, *args, **kwargs):
        return super().differentiable_loss(self._unlearning(model), guide, *args, **kwargs)

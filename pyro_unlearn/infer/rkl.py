r"""Reverse-KL unlearning by self-normalised importance sampling.

Minimise :math:`\mathrm{KL}(\tilde p \,\|\, q_u)` with
:math:`\tilde p(\theta) \propto q(\theta\mid D) / p_{\mathrm{adj}}(D_e\mid\theta;\lambda)`.
With draws :math:`z_s` from a proposal :math:`r` (by default :math:`q(\theta\mid D)` itself),

.. math::

    \log w_s = \log q(z_s\mid D) - \log r(z_s) - \mathbb 1[z_s \in A_\lambda]\,\log p(D_e\mid\theta(z_s)),
    \qquad \bar w = \mathrm{softmax}(\log w),

and the objective is :math:`-\sum_s \bar w_s \log q_u(z_s)`: for a Gaussian :math:`q_u` the
optimum is the weighted mean and covariance. With :math:`r = q(\theta\mid D)` Gaussian and a
linear-Gaussian likelihood the weights have finite variance only when
:math:`\Lambda_D - 2\Lambda_e \succ 0`; the effective sample size and the Pareto
:math:`\hat k` of the weights tell when they do not.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.infer import ELBO
from pyro.infer.autoguide import AutoContinuous, AutoGuide, AutoNormal

from .. import _rng
from ..errors import DegenerateWeightsError, unreliable
from ..guides import FlatGaussian, LatentSite, unpack
from ..importance import effective_sample_size, pareto_smooth, psis_reliability
from ..model_eval import ModelEvaluator, as_values, forget_evaluator
from ..options import OnUnreliable, choose
from ..posteriors import log_density_max, posterior_view
from .eubo import inside_adjusted


@dataclass
class ImportanceSamples:
    """Draws ``z`` (unconstrained, ``(S, d)``) with self-normalised log weights."""

    z: torch.Tensor
    log_weights: torch.Tensor  # normalised: logsumexp = 0
    pareto_k: float
    ess: float
    ess_raw: float
    unreliable: list = field(default_factory=list)  # why the weights cannot be trusted

    @property
    def reliable(self) -> bool:
        return not self.unreliable

    def weighted_gaussian(self, diagonal: bool = False) -> FlatGaussian:
        """Closed-form rKL optimum over Gaussians: the weighted mean and covariance."""
        w = self.log_weights.exp()
        mean = w @ self.z
        centred = self.z - mean
        if diagonal:
            return FlatGaussian(mean, scale=(w @ centred.pow(2)).sqrt())
        cov = (centred * w[:, None]).T @ centred
        return FlatGaussian(mean, precision=torch.linalg.inv((cov + cov.T) / 2))


def importance_samples(
    model,
    full: FlatGaussian | dist.Distribution,
    layout: list[LatentSite],
    forget_args: tuple = (),
    model_kwargs: dict | None = None,
    *,
    lam: float = 0.0,
    num_samples: int = 20000,
    proposal: FlatGaussian | dist.Distribution | None = None,
    on_unreliable: str = "raise",
    seed: int = 0,
    smooth: bool = True,
    evaluator: ModelEvaluator | None = None,
    **forget_options,
) -> ImportanceSamples:
    r"""Draw from ``proposal`` (default ``full``) and weight towards :math:`q(\theta\mid D)/p_{\mathrm{adj}}`.

    :math:`\log p(D_e\mid\theta)` comes from ``evaluator``, by default
    ``forget_evaluator(model, forget_args, model_kwargs, **forget_options)`` (``mask``,
    ``plate``, ``sites`` as for :func:`~pyro_unlearn.forget`). ``full`` (and ``proposal``) are
    Gaussians over the flat unconstrained vector or any distribution over it, e.g. a flow's
    :func:`~pyro_unlearn.flows.flow_posterior`.
    ``on_unreliable`` is the library's policy for unreliable results: ``"raise"``
    (:class:`~pyro_unlearn.errors.DegenerateWeightsError`), ``"warn"`` or ``"ignore"`` (the
    samples are returned with ``reliable=False``) when the Pareto :math:`\hat k` exceeds
    0.7. With ``smooth`` the weights are Pareto-smoothed (PSIS) before use.
    """
    on_unreliable = choose(OnUnreliable, on_unreliable, "on_unreliable")
    evaluator = evaluator or forget_evaluator(model, forget_args, model_kwargs, **forget_options)
    proposal = proposal or full
    z = _draw(proposal, num_samples, seed)
    with torch.no_grad():
        log_lik = evaluator.log_likelihood(as_values(layout, z))
    inside = inside_adjusted(log_ratio(full, z) if lam > 0 else 0.0, lam)
    log_w = -torch.where(inside, log_lik, torch.zeros_like(log_lik))
    if proposal is not full:
        log_w = log_w + _as_distribution(full).log_prob(z) - _as_distribution(proposal).log_prob(z)
    raw = log_w - log_w.logsumexp(0)
    ess_raw = effective_sample_size(log_w)
    if float(log_w.max() - log_w.min()) < 1e-8:  # proposal = target: nothing to smooth
        pareto_k, log_weights = 0.0, raw
    else:
        smoothed, pareto_k = pareto_smooth(log_w)
        log_weights = smoothed if smooth else raw
    ess = effective_sample_size(log_weights)
    flags: dict = {}
    reliable, reason = psis_reliability(log_w, pareto_k, ess)
    if not reliable:
        message = (
            f"importance weights are degenerate: {reason}; the forget set removes more than "
            "the proposal covers. Try proposal='laplace', a larger lam, or method='eubo'"
        )
        unreliable(DegenerateWeightsError(message), on_unreliable, flags)
    return ImportanceSamples(z, log_weights, pareto_k, ess, ess_raw, flags.get("unreliable", []))


def _draw(proposal, num_samples: int, seed: int) -> torch.Tensor:
    if isinstance(proposal, FlatGaussian):  # a seeded generator: no global RNG state touched
        eps = _rng.normal((num_samples, len(proposal.loc)), _rng.generator(seed), proposal.loc)
        return proposal.loc + eps @ proposal.cholesky().T
    with torch.random.fork_rng(), torch.no_grad():
        torch.manual_seed(seed)
        return proposal.sample((num_samples,))


def _as_distribution(g) -> dist.Distribution:
    if isinstance(g, FlatGaussian):
        return dist.MultivariateNormal(g.loc, scale_tril=g.cholesky())
    return g


def log_ratio(full, z: torch.Tensor) -> torch.Tensor:
    r""":math:`\log q(z\mid D) - \max \log q` for rows of ``z``: exact for a Gaussian, numerical max for a flow."""
    if isinstance(full, FlatGaussian):
        eps = torch.linalg.solve_triangular(full.cholesky(), (z - full.loc).T, upper=False)
        return -0.5 * eps.pow(2).sum(0)
    return full.log_prob(z) - log_density_max(full)


def guide_log_density(guide, layout: list[LatentSite], z: torch.Tensor, args=(), kwargs=None):
    r""":math:`\log q_u(z_s)` for rows of ``z``, up to a term that does not depend on ``guide``."""
    kwargs = kwargs or {}
    if isinstance(guide, AutoContinuous):
        return guide.get_posterior(*args, **kwargs).log_prob(z)
    if isinstance(guide, AutoNormal):
        total = 0.0
        for site in layout:
            loc, scale = guide._get_loc_and_scale(site.name)
            z_site = z[:, site.slice].reshape((len(z),) + site.unconstrained_shape)
            lp = pyro.distributions.Normal(loc, scale).log_prob(z_site)
            total = total + lp.reshape(len(z), -1).sum(-1)
        return total
    # any other guide: its density at the constrained values (the Jacobian is constant in q_u)
    values = unpack(layout, z)
    return torch.stack(
        [
            poutine.trace(poutine.condition(guide, {k: v[s] for k, v in values.items()}))
            .get_trace(*args, **kwargs)
            .log_prob_sum()
            for s in range(len(z))
        ]
    )


class RKL(ELBO):
    r"""Reverse-KL unlearning loss :math:`-\sum_s \bar w_s \log q_u(z_s)` for :class:`pyro.infer.SVI`.

    The weighted draws are made once, at the first call, from ``full_guide`` (or
    ``proposal``) on the forget data; see :func:`importance_samples` for the options.
    Their diagnostics are in :attr:`samples` (``ess``, ``pareto_k``). For Gaussian
    :math:`q_u`, ``unlearn(..., method="rkl")`` uses the closed form instead.
    """

    def __init__(
        self,
        full_guide,
        *,
        proposal: FlatGaussian | None = None,
        mask=None,
        plate: str | int | None = None,
        sites=None,
        **options,
    ) -> None:
        super().__init__()
        self.posterior = posterior_view(full_guide)  # read once, detached
        self.proposal = proposal
        self.forget_options = {"mask": mask, "plate": plate, "sites": sites}
        self.options = options
        self.samples: ImportanceSamples | None = None

    def _draw(self, model, args, kwargs) -> ImportanceSamples:
        if self.samples is None:
            view = self.posterior
            full = view.distribution if view.kind == "flow" else view.gaussian
            self.samples = importance_samples(
                model,
                full,
                view.layout,
                args,
                kwargs,
                proposal=self.proposal,
                **self.forget_options,
                **self.options,
            )
        return self.samples

    def _get_trace(self, model, guide, args, kwargs):
        raise NotImplementedError("RKL weighs fixed draws; it builds no model/guide trace pair")

    def differentiable_loss(self, model, guide, *args, **kwargs):
        samples = self._draw(model, args, kwargs)
        if isinstance(guide, AutoGuide):
            # one run of the guide per step, as under Trace_ELBO: a fresh autoguide creates its
            # parameters, and SVI records them (outside a run a PyroModule's attributes issue
            # no pyro.param statement, so SVI would see, and step, none of them)
            with torch.random.fork_rng(), torch.no_grad():
                torch.manual_seed(0)
                guide(*args, **kwargs)
        log_q = guide_log_density(guide, self.posterior.layout, samples.z, args, kwargs)
        return -(samples.log_weights.exp() * log_q).sum()

    def loss(self, model, guide, *args, **kwargs):
        with torch.no_grad():
            return float(self.differentiable_loss(model, guide, *args, **kwargs))

    def loss_and_grads(self, model, guide, *args, **kwargs):
        loss = self.differentiable_loss(model, guide, *args, **kwargs)
        loss.backward()
        return loss.item()

r"""``unlearn(..., method="eubo")``: EUBO unlearning from the forget data only.

Starts from :math:`q(\theta\mid D)` and targets :math:`q(\theta\mid D)/p_{\mathrm{adj}}(D_e\mid\theta;\lambda)`;
see :class:`~pyro_unlearn.EUBO` for the objective.
"""

from __future__ import annotations

import math

import pyro
import torch
from pyro.infer.autoguide import AutoDelta, AutoMultivariateNormal
from tqdm.auto import trange

from .. import _checks
from ..errors import (
    BadRequestError,
    UnlearningDivergedError,
    unreliable,
)
from ..guides import (
    FlatGaussian,
    LaplaceGuide,
    flat_gaussian,
    freeze,
    latent_layout,
    trainable_view,
)
from ..infer.eubo import check_lam, inside_adjusted
from ..infer.rkl import log_ratio
from ..model_eval import as_values, forget_evaluator
from ..natural import antithetic_normals, expected_derivatives, natural_gradient_steps
from ..options import Family, OnUnreliable, Optimizer, Start, choose
from ..posteriors import posterior_view
from ..targets import check_proper, divided_target_check, gaussian_view
from ._common import continued_family, copy_of_family, forget_options, one_step_laplace


def eubo_unlearn(
    model,
    guide,
    *forget_args,
    mask=None,
    plate=None,
    sites=None,
    model_kwargs=None,
    lam: float = 0.0,
    family: str | None = None,
    optimizer: str | None = None,
    init: str = "full",
    num_steps: int | None = None,
    lr: float = 0.01,
    num_particles: int = 16,
    num_samples: int = 1000,
    curvature: str | None = None,
    patience: int = 200,
    tol: float = 1e-3,
    on_unreliable: str = "raise",
    progress_bar: bool = True,
    seed: int = 0,
):
    r"""Minimise the EUBO over a copy of ``guide`` (or of its ``family``).

    Two optimisers:

    * ``"natural"`` (default for Gaussian families): natural-gradient (variational online
      Newton) steps on the EUBO. From :math:`q_u = \mathcal N(m, P^{-1})`,

      .. math::

          P \leftarrow (1-\rho)P + \rho\,(\Lambda_D - \mathbb E_{q_u}[\nabla^2\ell_e]),\qquad
          m \leftarrow m - \rho P^{-1}(\Lambda_D(m - \mu_D) - \mathbb E_{q_u}[\nabla\ell_e]),

      expectations by ``num_samples`` antithetic draws, :math:`\rho = 1` halved until
      :math:`P \succ 0`. One step from :math:`q(\theta\mid D)` removes the forget set's
      "sites" from a variational posterior (exact on linear-Gaussian models), exactly as
      far as :math:`q(\theta\mid D)` sits at its ELBO's fixed point
      (:func:`~pyro_unlearn.fit_svi` finishes there). Further steps
      head for the EUBO optimum, which for an approximate :math:`q(\theta\mid D)` can lie
      far away (catastrophic unlearning), so ``num_steps`` defaults to 1.
    * ``"adam"`` (any family): SVI with Adam on reparameterised EUBO estimates, learning
      rate ``lr`` decayed 100x over ``num_steps`` (default 2000), ``num_particles``
      vectorized particles, Polyak averaging over the last ``patience`` steps, early
      stopping when the windowed mean loss improves by less than ``tol`` nats.

    Parameters
    ----------
    lam : float
        :math:`\lambda` of the adjusted likelihood; ``lam >= 1`` returns :math:`q(\theta\mid D)`.
    family : {"multivariate", "diagonal", "lowrank", "delta", "flow"}, optional
        Family of :math:`q_u`; default: that of ``guide`` (``"flow"`` for a flow guide; a
        low-rank Gaussian is continued as a full-covariance one by the natural step, and as
        a low-rank one with ``optimizer="adam"``). ``"delta"`` is a MAP point method. ``"flow"`` is :func:`~pyro_unlearn.flows.residual_flow`:
        the old posterior's map (flow or Gaussian) composed with a new identity-initialised
        flow, trained with Adam.
    init : {"full", "laplace"}
        Start at :math:`q(\theta\mid D)` or at the one-step Laplace solution (GGN downdate).
    on_unreliable : {"raise", "warn", "ignore"}
        The library's one policy for unreliable results (:mod:`pyro_unlearn.errors`). Two
        checks: the divided-out target is improper at the mode (:class:`ImproperTargetError`:
        :math:`\Lambda_D - \Lambda_e` not positive definite, e.g. the same data forgotten
        twice); catastrophic unlearning (:class:`UnlearningDivergedError`:
        :math:`\mathrm{KL}(q_u\|q(\theta\mid D))` exceeds ``DRIFT_FACTOR`` (3) times that of
        the one-step Laplace solution plus 1 nat). ``"raise"`` (default), or return the result
        flagged (``result.reliable`` False) with a warning (``"warn"``) or without.
    """
    posterior = posterior_view(guide)  # read once: the anchor, the guard and the steps use it
    guide = posterior.source
    for name, value in (("num_particles", num_particles), ("patience", patience)):
        _checks.count(name, value)
    _checks.count("num_samples", num_samples, minimum=0)
    if num_steps is not None:
        _checks.count("num_steps", num_steps)
    _checks.positive("lr", lr)
    _checks.seed(seed)
    lam = check_lam(lam)
    model_kwargs = model_kwargs or {}
    options = forget_options(mask, plate, sites)
    family = choose(Family, family or continued_family(guide, optimizer), "family")
    natural = family in ("multivariate", "diagonal")
    optimizer = choose(Optimizer, optimizer or ("natural" if natural else "adam"), "optimizer")
    on_unreliable = choose(OnUnreliable, on_unreliable, "on_unreliable")
    init = choose(Start, init, "init")
    view = gaussian_view(model, posterior)  # for a flow: its Gaussian yardstick, drawn once
    evaluator = forget_evaluator(model, forget_args, model_kwargs, **options)
    diagnostics = {
        "lam": lam,
        "init": init,
        "optimizer": optimizer,
        **divided_target_check(model, view, forget_args, model_kwargs, evaluator=evaluator),
    }
    check_proper(diagnostics, on_unreliable, lam)
    if lam >= 1:  # the forget term is off everywhere: q(theta|D) itself is the optimum
        copy = copy_of_family(guide, model, forget_args, model_kwargs, family)
        diagnostics.update(losses=[], num_steps=0, stopped_early=False)
        return freeze(copy), diagnostics
    needs_laplace = init == "laplace" or optimizer == "adam"  # a start, or the guard's yardstick
    laplace_step = (
        one_step_laplace(model, view, forget_args, model_kwargs, options) if needs_laplace else None
    )
    start = laplace_step if init == "laplace" else guide
    if optimizer == "natural":
        if family not in ("multivariate", "diagonal"):
            raise ValueError(f"optimizer='natural' needs a Gaussian family, got {family!r}")
        curvature = curvature or ("mode" if _is_laplace(guide) else "expected")
        if curvature not in ("expected", "mode"):
            raise BadRequestError(f"curvature must be 'expected' or 'mode', got {curvature!r}")
        diagnostics["curvature"] = curvature
        result = _natural_eubo(
            model,
            posterior,
            start,
            evaluator,
            lam,
            family,
            num_steps or 1,
            num_samples if curvature == "expected" else 0,
            seed,
            diagnostics,
        )
        diagnostics["evaluator"] = evaluator.describe()
        return result, diagnostics
    guide_u = copy_of_family(start, model, forget_args, model_kwargs, family, seed)
    _adam_eubo(
        posterior,
        guide_u,
        evaluator,
        lam,
        num_steps or 2000,
        lr,
        num_particles,
        patience,
        tol,
        progress_bar,
        seed,
        diagnostics,
    )
    guide_u = freeze(guide_u)
    diagnostics["evaluator"] = evaluator.describe()
    _check_divergence(posterior, view, guide_u, laplace_step, on_unreliable, diagnostics)
    return guide_u, diagnostics


DRIFT_FACTOR = 3.0  # on linear-Gaussian models the EUBO optimum drifts exactly as far as Laplace


def _is_laplace(guide) -> bool:
    """A Laplace approximation: a LaplaceGuide, or ``laplace_approximation()``'s buffers."""
    if getattr(guide, "fitted_by", None) == "variational":
        return False
    return isinstance(guide, LaplaceGuide) or (
        isinstance(guide, AutoMultivariateNormal) and "loc" in guide._buffers
    )


def _drift(guide_u, full, num_samples: int = 4000) -> float:
    r""":math:`\mathrm{KL}(q_u \| q(\theta\mid D))`: closed form for Gaussians, Monte Carlo for flows.

    For a point estimate (AutoDelta) it is half the squared Mahalanobis distance.
    """
    full = posterior_view(full)
    if isinstance(guide_u, AutoDelta):
        layout = latent_layout(guide_u)
        median = guide_u.median()
        z = torch.cat([s.unconstrain(median[s.name]).reshape(-1) for s in layout])
        diff = z - full.mean
        return float(0.5 * diff @ full.gaussian.precision @ diff)
    q_u = posterior_view(guide_u)
    if q_u.kind == "flow" or full.kind == "flow":
        with torch.random.fork_rng(), torch.no_grad():
            torch.manual_seed(0)
            z = q_u.distribution.sample((num_samples,))
            return float((q_u.log_prob(z) - full.log_prob(z)).mean())
    return float(
        torch.distributions.kl_divergence(_as_normal(q_u.gaussian), _as_normal(full.gaussian))
    )


def _as_normal(g: FlatGaussian) -> torch.distributions.MultivariateNormal:
    return torch.distributions.MultivariateNormal(
        g.loc.detach(), precision_matrix=g.precision.detach()
    )


def _check_divergence(posterior, view, guide_u, laplace_step, on_unreliable, diagnostics) -> None:
    drift = _drift(guide_u, posterior)
    expected = _drift(laplace_step, view)  # a flow is compared through its Gaussian view
    diagnostics.update(drift=drift, laplace_drift=expected)
    if drift <= DRIFT_FACTOR * expected + 1.0:
        return
    message = (
        f"catastrophic unlearning suspected: KL(q_u || q(theta|D)) = {drift:.3g} nats, "
        f"{drift / max(expected, 1e-12):.3g}x that of a one-step Laplace unlearning ({expected:.3g}); "
        "the divided-out target q(theta|D)/p(D_e|theta) has mass where q(theta|D) is not "
        "accurate. Use optimizer='natural' (one step), method='laplace', or a larger lam; "
        "on_unreliable='warn' returns this result flagged"
    )
    unreliable(UnlearningDivergedError(message), on_unreliable, diagnostics, stacklevel=4)


def _natural_eubo(
    model,
    posterior,
    start,
    evaluator,
    lam,
    family,
    num_steps,
    num_samples,
    seed,
    diagnostics,
):
    """Natural-gradient steps on the EUBO: the target is q(theta|D) / p_adj(D_e|theta)."""
    full = posterior.gaussian
    precision_full = full.precision
    if family == "diagonal":
        precision_full = torch.diag(precision_full.diagonal())
    first = flat_gaussian(start)
    loc, precision = first.loc.clone(), first.precision.clone()
    if family == "diagonal":
        precision = torch.diag(precision.diagonal())
    layout = posterior.layout
    eps = antithetic_normals(num_samples, len(loc), seed, like=loc)

    def forget_term(z):  # log p_adj(D_e | z): the indicator is not differentiated
        log_lik = evaluator.log_likelihood(as_values(layout, z))
        ratio = log_ratio(full, z.detach()) if lam > 0 else 0.0
        return inside_adjusted(ratio, lam).to(log_lik.dtype) * log_lik

    def derivatives(m, chol):
        grad, hess = expected_derivatives(forget_term, m, chol, eps)
        return precision_full @ (m - full.loc) + grad, precision_full + hess

    loc, precision, steps = natural_gradient_steps(
        derivatives, loc, precision, num_steps, diagonal=family == "diagonal"
    )
    if steps and steps[-1] == 0.0:
        diagnostics["stopped"] = "the natural-gradient precision stayed indefinite"
        steps = steps[:-1]
    diagnostics.update(num_steps=len(steps), step_sizes=steps, num_samples=num_samples)
    return LaplaceGuide.from_precision(model, loc, precision, like=posterior.source)


def _adam_eubo(
    posterior,
    guide_u,
    evaluator,
    lam,
    num_steps,
    lr,
    num_particles,
    patience,
    tol,
    progress_bar,
    seed,
    diagnostics,
):
    r"""Adam on reparameterised estimates of :math:`U(q_u)`, the model run by the evaluator.

    .. math:: \hat U = \frac1P\sum_p \mathbb 1[z_p \in A_\lambda]\log p(D_e\mid\theta(z_p))
              + \log q_u(z_p) - \log q(z_p\mid D), \qquad z_p \sim q_u,

    in the unconstrained space, where the Jacobians of :math:`q_u` and :math:`q(z\mid D)`
    cancel (a point estimate has no entropy term). This is the negative ELBO of
    ``anchor(forget(model))`` that :class:`~pyro_unlearn.EUBO` hands to Pyro's SVI, evaluated
    here through the model evaluator, so models that do not broadcast over particles and
    subsampled plates are run faithfully.
    """
    layout = posterior.layout
    full = posterior.distribution
    log_max = posterior.log_max if lam > 0 else 0.0
    losses, stopped = [], False
    with pyro.settings.context(module_local_params=True), torch.random.fork_rng():
        torch.manual_seed(seed)  # the draws of q_u: seeded, the caller's RNG state untouched
        view = trainable_view(guide_u, layout)
        params = [p for p in guide_u.parameters() if p.requires_grad]
        optim = torch.optim.Adam(params, lr=lr)
        decay = torch.optim.lr_scheduler.ExponentialLR(optim, gamma=0.01 ** (1 / max(num_steps, 1)))
        averaged = [p.detach().clone() for p in params]
        for step in trange(num_steps, desc="EUBO unlearning", disable=not progress_bar):
            optim.zero_grad()
            z, log_q = view(num_particles)
            log_lik = evaluator.log_likelihood(as_values(layout, z))
            log_full = full.log_prob(z)
            inside = inside_adjusted(log_full.detach() - log_max if lam > 0 else 0.0, lam)
            value = (inside.to(log_lik.dtype) * log_lik + log_q - log_full).mean()
            value.backward()
            optim.step()
            decay.step()
            losses.append(value.item())
            # Polyak averaging over the recent window: the MC gradient noise averages out
            n_avg = min(len(losses), patience)
            with torch.no_grad():
                for avg, p in zip(averaged, params, strict=True):
                    avg.mul_(1 - 1 / n_avg).add_(p.detach(), alpha=1 / n_avg)
            if not math.isfinite(losses[-1]):
                raise FloatingPointError(
                    f"EUBO became {losses[-1]} at step {step}; lower lr or raise lam"
                )
            if len(losses) >= 2 * patience and step % patience == 0:
                recent = sum(losses[-patience:]) / patience
                before = sum(losses[-2 * patience : -patience]) / patience
                if before - recent < tol:
                    stopped = True
                    break
        with torch.no_grad():
            for avg, p in zip(averaged, params, strict=True):
                p.copy_(avg)
    diagnostics.update(
        losses=losses,
        num_steps=len(losses),
        stopped_early=stopped,
        final_loss=sum(losses[-patience:]) / len(losses[-patience:]),
    )

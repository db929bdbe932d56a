r"""``unlearn(..., method="rkl")``: reverse-KL unlearning by importance reweighting.

Reweights draws of :math:`q(\theta\mid D)` to :math:`q(\theta\mid D)/p_{\mathrm{adj}}(D_e\mid\theta;\lambda)`
and fits the unlearned family to them; see :class:`~pyro_unlearn.RKL` for the objective.
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch

from .. import _checks, _rng
from ..errors import BadRequestError
from ..flows import residual_flow
from ..guides import (
    LaplaceGuide,
    flat_gaussian,
    freeze,
)
from ..infer.eubo import check_lam
from ..infer.rkl import importance_samples
from ..model_eval import forget_evaluator
from ..options import Family, OnUnreliable, Start, choose
from ..posteriors import posterior_view
from ..targets import check_proper, divided_target_check, gaussian_view
from ._common import continued_family, forget_options, one_step_laplace


def rkl_unlearn(
    model,
    guide,
    *forget_args,
    mask=None,
    plate=None,
    sites=None,
    model_kwargs=None,
    lam: float = 0.0,
    family: str | None = None,
    num_samples: int = 20000,
    proposal: str = "full",
    on_unreliable: str = "raise",
    num_steps: int = 1000,
    lr: float = 0.01,
    seed: int = 0,
):
    r"""Reverse-KL unlearning: the importance-weighted Gaussian, or a weighted flow fit.

    Parameters
    ----------
    lam : float
        :math:`\lambda` of the adjusted likelihood.
    family : {"multivariate", "diagonal", "flow"}, optional
        Family of :math:`q_u`: the weighted mean and covariance (or its diagonal), closed
        form (the default for every Gaussian guide, a low-rank one included); or ``"flow"`` (default for a flow guide), a
        :func:`~pyro_unlearn.flows.residual_flow` started at :math:`q(\theta\mid D)` that
        maximises :math:`\sum_s \bar w_s \log q_u(z_s)` by Adam (``num_steps``, ``lr``).
    num_samples : int
        Importance draws.
    proposal : {"full", "laplace"}
        Draw from :math:`q(\theta\mid D)` (the published method) or from the one-step
        Laplace unlearning solution (GGN downdate), reweighted to the same target.
    on_unreliable : {"raise", "warn", "ignore"}
        The one policy for unreliable results: an improper divided-out target
        (:class:`ImproperTargetError`) or degenerate weights (:class:`DegenerateWeightsError`:
        Pareto k-hat > 0.7). ``"raise"`` (default), or return the result flagged, with a
        warning (``"warn"``) or without.
    """
    posterior = posterior_view(guide)  # read once: the target, the proposal and the fit use it
    guide = posterior.source
    _checks.count("num_samples", num_samples, minimum=25)  # a Pareto tail needs draws
    _checks.count("num_steps", num_steps)
    _checks.positive("lr", lr)
    _checks.seed(seed)
    on_unreliable = choose(OnUnreliable, on_unreliable, "on_unreliable")
    lam = check_lam(lam)
    model_kwargs = model_kwargs or {}
    options = forget_options(mask, plate, sites)
    family = choose(Family, family or continued_family(guide, "closed form"), "family")
    if family not in ("multivariate", "diagonal", "flow"):
        raise BadRequestError(
            f"rkl needs family 'multivariate', 'diagonal' (closed form) or 'flow', got {family!r}"
        )
    proposal = choose(Start, proposal, "proposal")
    view = gaussian_view(model, posterior)  # for a flow: its Gaussian yardstick, drawn once
    evaluator = forget_evaluator(model, forget_args, model_kwargs, **options)
    diagnostics = {
        "lam": lam,
        "proposal": proposal,
        **divided_target_check(model, view, forget_args, model_kwargs, evaluator=evaluator),
    }
    check_proper(diagnostics, on_unreliable, lam)
    full = posterior.distribution if posterior.kind == "flow" else posterior.gaussian
    proposal_gaussian = None
    if proposal == "laplace":
        proposal_gaussian = flat_gaussian(
            one_step_laplace(model, view, forget_args, model_kwargs, options)
        )
    samples = importance_samples(
        model,
        full,
        posterior.layout,
        evaluator=evaluator,
        lam=lam,
        num_samples=num_samples,
        proposal=proposal_gaussian,
        on_unreliable=on_unreliable,
        seed=seed,
    )
    diagnostics.update(
        ess=samples.ess,
        ess_raw=samples.ess_raw,
        pareto_k=samples.pareto_k,
        num_samples=num_samples,
        evaluator=evaluator.describe(),
    )
    if not samples.reliable:
        diagnostics["reliable"] = False
        diagnostics.setdefault("unreliable", []).extend(samples.unreliable)
    if family == "flow":
        guide_u = residual_flow(guide, model, *forget_args, seed=seed, **model_kwargs)
        diagnostics["losses"] = _weighted_flow_fit(guide_u, samples, num_steps, lr, seed)
        return freeze(guide_u), diagnostics
    fitted = samples.weighted_gaussian(diagonal=family == "diagonal")
    result = LaplaceGuide.from_precision(model, fitted.loc, fitted.precision, like=guide)
    return result, diagnostics


def _weighted_flow_fit(
    guide_u, samples, num_steps: int, lr: float, seed: int, batch_size: int = 2048
) -> list[float]:
    r"""Maximise :math:`\sum_s \bar w_s \log q_u(z_s)` over the flow's parameters by Adam.

    Each step uses ``batch_size`` draws resampled with probabilities :math:`\bar w`: an
    unbiased estimate of the weighted objective that stays cheap for 20000 draws.

    :math:`q_u = (T_D\circ R)_\#\mathcal N(0,I)` with :math:`T_D` frozen, so
    :math:`\log q_u(z) = \log r(T_D^{-1}z) + \text{const}` with :math:`r = R_\#\mathcal N(0, I)`:
    the draws are pulled back through :math:`T_D` once, not at every step.
    """
    generator = _rng.generator(seed)
    weights = samples.log_weights.exp()
    parts = list(guide_u.get_posterior().transforms[0])
    trainable = [t for t in parts if any(p.requires_grad for p in t.parameters())]
    u = samples.z
    with torch.no_grad():
        for transform in reversed(parts[len(trainable) :]):
            u = transform.inv(u)
    losses = []
    with pyro.settings.context(module_local_params=True):
        params = [p for t in trainable for p in t.parameters()]
        optim = torch.optim.Adam(params, lr=lr)
        decay = torch.optim.lr_scheduler.ExponentialLR(optim, gamma=0.01 ** (1 / max(num_steps, 1)))
        base = guide_u.get_base_dist()
        for _ in range(num_steps):
            optim.zero_grad()
            # u[index] is a fresh tensor each step: no transform returns a stale cached inverse
            index = _rng.multinomial(weights, batch_size, generator)
            r = dist.TransformedDistribution(base, trainable)
            loss = -r.log_prob(u[index]).mean()
            loss.backward()
            optim.step()
            decay.step()
            losses.append(loss.item())
    return losses

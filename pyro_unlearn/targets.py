r"""The divided-out target :math:`q(\theta\mid D)/p(D_e\mid\theta)` that eubo, rkl and smc aim at.

Shared by those methods (and by Laplace for the forget term): the forget term as a function
of the flat unconstrained vector, the Gaussian yardstick of a flow, and the check that the
target is proper near the mode, with the one policy's verdict when it is not.
"""

from __future__ import annotations

import torch

from .errors import ImproperTargetError, unreliable
from .guides import LaplaceGuide, LatentSite
from .model_eval import ModelEvaluator, as_values, forget_evaluator
from .posteriors import posterior_view


def flat_function(evaluator: ModelEvaluator, layout: list[LatentSite], fn: str):
    """``z -> evaluator.<fn>`` at one flat unconstrained vector ``z`` (shape ``(d,)``):
    ``fn`` is ``"log_joint"`` (with Jacobians) or ``"log_likelihood"``."""

    def at(z: torch.Tensor) -> torch.Tensor:
        if fn == "log_joint":
            return evaluator.log_joint(layout, z.unsqueeze(0))[0]
        return evaluator.log_likelihood(as_values(layout, z.unsqueeze(0)))[0]

    return at


def forget_nll_function(evaluator: ModelEvaluator, layout: list[LatentSite]):
    r"""``z -> \ell_e(z) = -\log p(D_e \mid \theta(z))`` for a forget-set evaluator."""
    log_lik = flat_function(evaluator, layout, "log_likelihood")
    return lambda z: -log_lik(z)


def gaussian_view(model, posterior, num_samples: int = 4000, seed: int = 0):
    """The guide itself if Gaussian; for a flow, its moment-matched Gaussian (a LaplaceGuide).

    Used where a Gaussian yardstick is enough: the divided-out-target check and the
    one-step Laplace solution that the divergence guard compares with. ``posterior`` is a
    guide or its :class:`~pyro_unlearn.PosteriorView` (whose moments are drawn once).
    """
    view = posterior_view(posterior)
    if view.kind != "flow":
        return view.source
    matched = view.moment_matched(num_samples, seed)
    return LaplaceGuide.from_precision(model, matched.loc, matched.precision, like=view.source)


def divided_target_check(model, full_guide, forget_args, model_kwargs, **forget_options) -> dict:
    r"""Is :math:`q(\theta\mid D)/p(D_e\mid\theta)` proper near the mode? (Gaussian :math:`q`.)

    Compares :math:`\Lambda_D` with :math:`\Lambda_e = \nabla^2[-\log p(D_e\mid\theta)]` at the
    mean of :math:`q(\theta\mid D)`: the divided-out target is proper (locally) when
    :math:`\Lambda_D - \Lambda_e \succ 0`, and plain importance weights from
    :math:`q(\theta\mid D)` have finite variance when :math:`\Lambda_D - 2\Lambda_e \succ 0`.
    A mean-field :math:`q(\theta\mid D)` enters with its diagonal :math:`\Lambda_D`, which is
    how the mean-field pitfall shows up.
    """
    view = posterior_view(full_guide)
    layout = view.layout
    full = view.gaussian if view.kind == "gaussian" else view.moment_matched()
    evaluator = forget_options.pop("evaluator", None) or forget_evaluator(
        model, forget_args, model_kwargs, **forget_options
    )
    forget_nll = forget_nll_function(evaluator, layout)
    curvature = torch.autograd.functional.hessian(forget_nll, full.loc)
    precision = full.precision
    once = float(torch.linalg.eigvalsh(precision - curvature)[0])
    twice = float(torch.linalg.eigvalsh(precision - 2 * curvature)[0])
    return {
        "target_proper": once > 0,
        "target_min_eigenvalue": once,
        "weights_finite_variance": twice > 0,
    }


def check_proper(diagnostics: dict, on_unreliable: str, lam: float = 0.0) -> None:
    """An improper divided-out target (at the mode) is an impossible request, not a result:
    apply the one policy to ``diagnostics`` (from :func:`divided_target_check`)."""
    if diagnostics["target_proper"] or lam >= 1:  # lam >= 1: the forget term is off
        return
    message = (
        "the divided-out target q(theta|D)/p(D_e|theta) is improper: Lambda_D - Lambda_e has "
        f"smallest eigenvalue {diagnostics['target_min_eigenvalue']:.4g} at the mode, so the "
        "forget set removes more than q(theta|D) holds (the same data forgotten twice, or a "
        "mean-field q(theta|D) whose diagonal precision understates a correlated forget "
        "term). Check the request (a ForgetLedger refuses repeats), use a full-covariance "
        "q(theta|D), or retrain; on_unreliable='warn' returns the result flagged"
    )
    unreliable(ImproperTargetError(message), on_unreliable, diagnostics, stacklevel=4)

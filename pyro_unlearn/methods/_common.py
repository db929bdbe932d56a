"""What eubo and rkl share: the forget options, the family of the unlearned guide, and the
one-step Laplace solution that starts EUBO and is the yardstick of its divergence guard."""

from __future__ import annotations

from ..flows import residual_flow
from ..guides import (
    LaplaceGuide,
    family_of,
    trainable_copy,
)
from ..posteriors import is_flow
from .laplace import laplace_unlearn


def copy_of_family(start, model, forget_args, model_kwargs, family: str, seed: int = 0):
    if family == "flow":
        return residual_flow(start, model, *forget_args, seed=seed, **model_kwargs)
    return trainable_copy(start, model, *forget_args, family=family, **model_kwargs)


def forget_options(mask, plate, sites) -> dict:
    return {"mask": mask, "plate": plate, "sites": sites}


def one_step_laplace(model, guide, forget_args, model_kwargs, options) -> LaplaceGuide:
    """One-step Laplace unlearning with a GGN downdate (PD-repaired): a start and a yardstick."""
    return laplace_unlearn(
        model, guide, *forget_args, hessian="ggn", psd="clip", model_kwargs=model_kwargs, **options
    )


def continued_family(guide, optimizer: str | None) -> str:
    """The family of q_u that continues ``guide``: its own, except that a low-rank Gaussian is
    continued as a full-covariance one where the update is in closed form (the natural step,
    rKL's weighted moments), which a low-rank family cannot hold."""
    if is_flow(guide):
        return "flow"
    family = family_of(guide)
    return "multivariate" if family == "lowrank" and optimizer != "adam" else family

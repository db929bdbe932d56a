r"""``unlearn(..., method="eubo" | "rkl")``: variational unlearning from the forget data only.

Both start from :math:`q(\theta\mid D)` and target :math:`q(\theta\mid D)/p_{\mathrm{adj}}(D_e\mid\theta;\lambda)`;
see :class:`~pyro_unlearn.EUBO` and :class:`~pyro_unlearn.RKL` for the objectives.
"""

from __future__ import annotations

import math

import pyro
import torch
from tqdm.auto import trange

from .api import register_method
from .guides import LaplaceGuide, family_of, flat_gaussian, freeze, latent_layout, trainable_copy
from .handlers import forget
from .infer.eubo import EUBO, check_lam
from .infer.rkl import _max_plate_nesting, importance_samples
from .laplace import laplace_unlearn, trace_at


def divided_target_check(model, full_guide, forget_args, model_kwargs, **forget_options) -> dict:
    r"""Is :math:`q(\theta\mid D)/p(D_e\mid\theta)` proper near the mode? (Gaussian :math:`q`.)

    Compares :math:`\Lambda_D` with :math:`\Lambda_e = \nabla^2[-\log p(D_e\mid\theta)]` at the
    mean of :math:`q(\theta\mid D)`: the divided-out target is proper (locally) when
    :math:`\Lambda_D - \Lambda_e \succ 0`, and plain importance weights from
    :math:`q(\theta\mid D)` have finite variance when :math:`\Lambda_D - 2\Lambda_e \succ 0`.
    A mean-field :math:`q(\theta\mid D)` enters with its diagonal :math:`\Lambda_D`, which is
    how the mean-field pitfall shows up.
    """
    layout = latent_layout(full_guide)
    full = flat_gaussian(full_guide)
    forget_model = forget(model, weight=-1.0, **forget_options)

    def forget_nll(z):
        trace = trace_at(forget_model, layout, z, forget_args, model_kwargs)
        return sum(
            s["log_prob_sum"]
            for s in trace.nodes.values()
            if s["type"] == "sample" and s["is_observed"]
        )

    curvature = torch.autograd.functional.hessian(forget_nll, full.loc)
    precision = full.precision_matrix()
    once = float(torch.linalg.eigvalsh(precision - curvature)[0])
    twice = float(torch.linalg.eigvalsh(precision - 2 * curvature)[0])
    return {
        "target_proper": once > 0,
        "target_min_eigenvalue": once,
        "weights_finite_variance": twice > 0,
    }


def _forget_options(mask, plate, sites) -> dict:
    return {"mask": mask, "plate": plate, "sites": sites}


@register_method("eubo")
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
    init: str = "full",
    num_steps: int = 2000,
    lr: float = 0.01,
    num_particles: int = 16,
    patience: int = 200,
    tol: float = 1e-3,
    progress_bar: bool = True,
    seed: int = 0,
):
    r"""Minimise the EUBO over a copy of ``guide`` (or of its ``family``) with SVI.

    Parameters
    ----------
    lam : float
        :math:`\lambda` of the adjusted likelihood; ``lam >= 1`` returns :math:`q(\theta\mid D)`.
    family : {"multivariate", "diagonal", "lowrank", "delta"}, optional
        Family of :math:`q_u`; default: that of ``guide``. ``"delta"`` is a MAP point method.
    init : {"full", "laplace"}
        Start :math:`q_u` at :math:`q(\theta\mid D)` or at the one-step Laplace unlearning
        solution (``hessian="ggn"``, clipped if needed).
    num_steps, lr, num_particles
        SVI with Adam (learning rate ``lr``, decayed 10x over ``num_steps``), vectorized particles.
    patience, tol
        Early stopping: stop when the mean loss over the last ``patience`` steps has not
        improved on the previous window's by more than ``tol`` (absolute, in nats).
    """
    lam = check_lam(lam)
    model_kwargs = model_kwargs or {}
    options = _forget_options(mask, plate, sites)
    diagnostics = {
        "lam": lam,
        "init": init,
        **divided_target_check(model, guide, forget_args, model_kwargs, **options),
    }
    pyro.set_rng_seed(seed)
    if init == "laplace":
        start = laplace_unlearn(
            model,
            guide,
            *forget_args,
            hessian="ggn",
            psd="clip",
            model_kwargs=model_kwargs,
            **options,
        )
    elif init == "full":
        start = guide
    else:
        raise ValueError(f"init must be 'full' or 'laplace', got {init!r}")
    guide_u = trainable_copy(
        start, model, *forget_args, family=family or family_of(guide), **model_kwargs
    )
    if lam >= 1:  # the forget term is off everywhere: q(theta|D) is the optimum
        diagnostics.update(losses=[], num_steps=0, stopped_early=False)
        return freeze(guide_u), diagnostics
    nesting = _max_plate_nesting(model, forget_args, model_kwargs)
    loss = EUBO(
        guide,
        lam=lam,
        num_particles=num_particles,
        vectorize_particles=True,
        max_plate_nesting=nesting,
        **options,
    )
    losses, stopped = [], False
    with pyro.settings.context(module_local_params=True):
        objective = loss(model, guide_u)  # an ELBOModule over q_u's local parameters
        optim = torch.optim.Adam(objective.parameters(), lr=lr)
        decay = torch.optim.lr_scheduler.ExponentialLR(optim, gamma=0.01 ** (1 / max(num_steps, 1)))
        params = list(objective.parameters())
        averaged = [p.detach().clone() for p in params]
        for step in trange(num_steps, desc="EUBO unlearning", disable=not progress_bar):
            optim.zero_grad()
            value = objective(*forget_args, **model_kwargs)
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
    return freeze(guide_u), diagnostics


@register_method("rkl")
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
    on_degenerate: str = "raise",
    seed: int = 0,
):
    r"""Closed-form reverse-KL unlearning: the importance-weighted Gaussian.

    Parameters
    ----------
    lam : float
        :math:`\lambda` of the adjusted likelihood.
    family : {"multivariate", "diagonal"}, optional
        Gaussian family of :math:`q_u` (weighted covariance, or its diagonal).
    num_samples : int
        Importance draws.
    proposal : {"full", "laplace"}
        Draw from :math:`q(\theta\mid D)` (the published method) or from the one-step
        Laplace unlearning solution (GGN downdate), reweighted to the same target.
    on_degenerate : {"raise", "warn", "ignore"}
        What to do when the Pareto :math:`\hat k` of the weights exceeds 0.7.
    """
    lam = check_lam(lam)
    model_kwargs = model_kwargs or {}
    options = _forget_options(mask, plate, sites)
    family = family or family_of(guide)
    if family not in ("multivariate", "diagonal"):
        raise ValueError(
            f"rkl's closed form needs a Gaussian family ('multivariate' or 'diagonal'), got {family!r}"
        )
    diagnostics = {
        "lam": lam,
        "proposal": proposal,
        **divided_target_check(model, guide, forget_args, model_kwargs, **options),
    }
    full = flat_gaussian(guide)
    if proposal == "laplace":
        start = laplace_unlearn(
            model,
            guide,
            *forget_args,
            hessian="ggn",
            psd="clip",
            model_kwargs=model_kwargs,
            **options,
        )
        proposal_gaussian = flat_gaussian(start)
    elif proposal == "full":
        proposal_gaussian = None
    else:
        raise ValueError(f"proposal must be 'full' or 'laplace', got {proposal!r}")
    samples = importance_samples(
        model,
        full,
        latent_layout(guide),
        forget_args,
        model_kwargs,
        lam=lam,
        num_samples=num_samples,
        proposal=proposal_gaussian,
        on_degenerate=on_degenerate,
        seed=seed,
        **options,
    )
    fitted = samples.weighted_gaussian(diagonal=family == "diagonal")
    diagnostics.update(
        ess=samples.ess, ess_raw=samples.ess_raw, pareto_k=samples.pareto_k, num_samples=num_samples
    )
    result = LaplaceGuide.from_precision(model, fitted.loc, fitted.precision_matrix(), like=guide)
    return result, diagnostics

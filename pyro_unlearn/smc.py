r"""Sequential (SMC) unlearning: forget in chunks, resample, move.

Plain importance reweighting of :math:`q(\theta\mid D)` draws by :math:`1/p(D_e\mid\theta)`
fails once the forget set moves the posterior further than the draws reach
(Pareto :math:`\hat k > 0.7`). Here the forget set's likelihood factors
:math:`\ell_j(\theta) = \log p(y_j\mid\theta)` leave one chunk at a time, through the targets

.. math:: \pi_k(z) \propto q(z\mid D)\, \Big/ \prod_{j \in C_1\cup\dots\cup C_k} p(y_j\mid\theta(z)),

and after each chunk the particles are resampled and moved by random-walk Metropolis
steps that leave :math:`\pi_k` invariant. Only the forget data and the anchor density
:math:`q(z\mid D)` (Gaussian or flow) are used; :math:`\pi_K` is the target of EUBO/rKL,
the old posterior divided by the forget likelihood. Chunks are chosen adaptively: the
largest next chunk whose incremental weights keep the effective sample size above
``ess_threshold`` of the particles (as adaptive tempering picks its temperatures).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .api import register_method
from .flows import flat_posterior
from .guides import latent_layout, unpack
from .handlers import forget
from .samples import WeightedSamples
from .vectorized import model_structure, observed_log_prob, vectorized_trace


def pointwise_forget_log_likelihood(
    model, layout, z: torch.Tensor, args: tuple, kwargs: dict | None = None, **forget_options
) -> torch.Tensor:
    r"""Matrix :math:`\ell_{sj} = \log p(y_j\mid\theta(z_s))` over the forget set's factors, ``(S, M)``.

    Factors are the elements of every observed site (scaled and masked by
    :func:`~pyro_unlearn.forget`), flattened and concatenated.
    """
    forget_model = forget(model, weight=1.0, **forget_options)
    structure = model_structure(forget_model, args, kwargs)
    trace, _ = vectorized_trace(forget_model, unpack(layout, z), args, kwargs, structure)
    parts = observed_log_prob(trace, len(z)).values()
    return torch.cat([lp.reshape(len(z), -1) for lp in parts], dim=-1)


def _ess(log_weights: torch.Tensor) -> float:
    w = (log_weights - log_weights.logsumexp(0)).exp()
    return float(1.0 / w.pow(2).sum())


def _pareto_k(log_weights: torch.Tensor) -> float:
    if float(log_weights.max() - log_weights.min()) < 1e-8:
        return 0.0
    import arviz as az

    _, k = az.psislw(log_weights.detach().cpu().numpy().astype(np.float64), reff=1.0)
    return float(k)


def _next_chunk(log_lik: torch.Tensor, start: int, ess_min: float, chunk_size: int | None) -> int:
    """End of the next chunk: fixed size, or the largest keeping ESS >= ``ess_min``."""
    total = log_lik.shape[-1]
    if chunk_size is not None:
        return min(start + chunk_size, total)
    cumulative = -log_lik[:, start:].cumsum(-1)  # incremental log weights for each chunk end
    lo, hi = 1, total - start  # the ESS only falls as the chunk grows: bisect
    if _ess(cumulative[:, hi - 1]) >= ess_min:
        return total
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if _ess(cumulative[:, mid - 1]) >= ess_min:
            lo = mid
        else:
            hi = mid - 1
    return start + lo


@register_method("smc")
def smc_unlearn(
    model,
    guide,
    *forget_args,
    mask=None,
    plate=None,
    sites=None,
    model_kwargs: dict | None = None,
    num_particles: int = 4000,
    ess_threshold: float = 0.5,
    chunk_size: int | None = None,
    num_moves: int = 10,
    seed: int = 0,
):
    r"""Sequential Monte Carlo unlearning from a fitted guide, using only the forget data.

    Parameters
    ----------
    guide
        The fitted :math:`q(\theta\mid D)`: a Gaussian or flow autoguide. Particles start
        as its draws and its density is the anchor of every target :math:`\pi_k`.
    num_particles : int
        Particles :math:`S`.
    ess_threshold : float
        Adaptive chunks keep the incremental weights' ESS above ``ess_threshold * S``.
    chunk_size : int, optional
        Forget this many likelihood factors per step instead (fixed chunks).
    num_moves : int
        Random-walk Metropolis steps per chunk, proposal
        :math:`\mathcal N(z, (2.38^2/d)\hat\Sigma)` with :math:`\hat\Sigma` the particle
        covariance.

    Returns
    -------
    (WeightedSamples, dict)
        Equally weighted particles (as site draws) and diagnostics: per step the chunk,
        the ESS and Pareto :math:`\hat k` of its incremental weights, the acceptance rate.
    """
    if not 0 < ess_threshold < 1:
        raise ValueError(f"ess_threshold must lie in (0, 1), got {ess_threshold}")
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size}")
    model_kwargs = model_kwargs or {}
    options = {"mask": mask, "plate": plate, "sites": sites}
    layout = latent_layout(guide)
    anchor = flat_posterior(guide)
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(), torch.no_grad():
        torch.manual_seed(seed)
        z = anchor.sample((num_particles,))

    def evaluate(points):
        with torch.no_grad():
            log_lik = pointwise_forget_log_likelihood(
                model, layout, points, forget_args, model_kwargs, **options
            )
            return anchor.log_prob(points.clone()), log_lik

    log_q, log_lik = evaluate(z)
    total = log_lik.shape[-1]
    if total == 0:
        raise ValueError("the forget set is empty: nothing to unlearn")
    d = z.shape[-1]
    steps, start = [], 0
    while start < total:
        end = _next_chunk(log_lik, start, ess_threshold * num_particles, chunk_size)
        increment = -log_lik[:, start:end].sum(-1)
        step = {
            "chunk": (start, end),
            "ess": _ess(increment),
            "pareto_k": _pareto_k(increment),
        }
        probabilities = (increment - increment.logsumexp(0)).exp()
        index = torch.multinomial(
            probabilities, num_particles, replacement=True, generator=generator
        )
        z, log_q, log_lik = z[index], log_q[index], log_lik[index]
        start = end
        accepted = 0.0
        for _ in range(num_moves):
            chol = torch.linalg.cholesky(torch.cov(z.T).reshape(d, d) * 2.38**2 / d)
            noise = torch.randn(num_particles, d, generator=generator, dtype=z.dtype)
            proposal = z + noise @ chol.T
            log_q_new, log_lik_new = evaluate(proposal)
            log_target = log_q - log_lik[:, :start].sum(-1)
            log_target_new = log_q_new - log_lik_new[:, :start].sum(-1)
            uniform = torch.rand(num_particles, generator=generator, dtype=z.dtype)
            accept = uniform.log() < log_target_new - log_target
            z = torch.where(accept[:, None], proposal, z)
            log_q = torch.where(accept, log_q_new, log_q)
            log_lik = torch.where(accept[:, None], log_lik_new, log_lik)
            accepted += float(accept.double().mean()) / num_moves
        step["acceptance"] = accepted
        steps.append(step)
    samples = {name: value.detach() for name, value in unpack(layout, z).items()}
    worst_k = max(s["pareto_k"] for s in steps)
    result = WeightedSamples(
        samples, torch.full((num_particles,), -math.log(num_particles)), worst_k, num_particles
    )
    diagnostics = {
        "num_steps": len(steps),
        "steps": steps,
        "pareto_k": worst_k,
        "min_ess": min(s["ess"] for s in steps),
        "acceptance": sum(s["acceptance"] for s in steps) / len(steps),
        "num_particles": num_particles,
    }
    return result, diagnostics

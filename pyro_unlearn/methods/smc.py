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

import torch

from .. import _checks, _rng
from ..errors import (
    DegenerateWeightsError,
    SMCStalledError,
    unreliable,
)
from ..guides import unpack
from ..importance import PARETO_K_THRESHOLD, effective_sample_size, pareto_smooth
from ..infer.eubo import check_lam, inside_adjusted
from ..model_eval import as_values, forget_evaluator
from ..options import OnUnreliable, choose
from ..posteriors import WeightedSamples, posterior_view
from ..targets import check_proper, divided_target_check, gaussian_view
from ..tempering import furthest_keeping_ess, random_walk_factor

AUTO_TAIL = 0.01  # lam="auto": the adjusted likelihood's ball holds 99% of a Gaussian q


def _pareto_k(log_weights: torch.Tensor) -> float:
    if float(log_weights.max() - log_weights.min()) < 1e-8:  # even weights: nothing to fit
        return 0.0
    return pareto_smooth(log_weights)[1]


def _removed(cumulative: torch.Tensor, log_lik: torch.Tensor, progress: float) -> torch.Tensor:
    r"""Log-likelihood removed at ``progress`` :math:`p`: factors :math:`j < \lfloor p\rfloor` whole, the next one tempered."""
    whole = min(int(progress), log_lik.shape[-1])
    removed = cumulative[:, whole]
    if whole < log_lik.shape[-1] and progress > whole:
        removed = removed + (progress - whole) * log_lik[:, whole]
    return removed


def _next_progress(
    cumulative, log_lik, progress: float, ess_min: float, chunk_size: int | None
) -> float:
    """Next :math:`p`: fixed chunks, or the furthest keeping the ESS of the increment >= ``ess_min``.

    Whole factors are taken while the ESS allows; a single factor that alone would drop
    the ESS below ``ess_min`` is split by tempering (a fractional exponent).
    """
    total = log_lik.shape[-1]
    if chunk_size is not None:
        return float(min(int(progress) + chunk_size, total))
    before = _removed(cumulative, log_lik, progress)

    def ess_at(p: float) -> float:
        return effective_sample_size(before - _removed(cumulative, log_lik, p))

    if ess_at(total) >= ess_min:
        return float(total)
    # the ESS falls as more is removed: bisect
    lo = furthest_keeping_ess(ess_at, progress, float(total), ess_min, tolerance=1e-3)
    # snap to a whole factor when one lies in the bracket: fewer, cleaner steps
    whole = float(int(lo))
    return whole if whole > progress else max(lo, progress + 1e-3)


def smc_unlearn(
    model,
    guide,
    *forget_args,
    mask=None,
    plate=None,
    sites=None,
    model_kwargs: dict | None = None,
    lam: float | str = "auto",
    num_particles: int = 4000,
    ess_threshold: float = 0.5,
    chunk_size: int | None = None,
    num_moves: int = 10,
    max_steps: int = 200,
    seed: int = 0,
    on_unreliable: str = "raise",
):
    r"""Sequential Monte Carlo unlearning from a fitted guide, using only the forget data.

    Parameters
    ----------
    guide
        The fitted :math:`q(\theta\mid D)`: a Gaussian or flow autoguide. Particles start
        as its draws and its density is the anchor of every target :math:`\pi_k`.
    lam : float or "auto"
        :math:`\lambda` of the adjusted likelihood: factors count only where
        :math:`q(z\mid D) > \lambda\max q`. An approximate :math:`q(\theta\mid D)` has
        tails far lighter than the forget likelihood's decay in regions the data rule out
        (on banknote: the sign-flipped weights), so without it the divided target puts its
        mass there. ``"auto"``: the ball that holds 99% of a Gaussian :math:`q`'s mass,
        :math:`\lambda = \exp(-\chi^2_{d,0.99}/2)` (it truncates the target where the retrained
        posterior reaches beyond that ball); 0 is the plain target.
    num_particles : int
        Particles :math:`S`.
    ess_threshold : float
        Adaptive steps keep the incremental weights' ESS above ``ess_threshold * S``:
        as many whole likelihood factors as that allows, and a factor too influential to
        remove at once is removed in tempered parts (exponents between 0 and 1).
    chunk_size : int, optional
        Forget this many likelihood factors per step instead (fixed chunks, no tempering).
    num_moves : int
        Random-walk Metropolis steps per chunk, proposal
        :math:`\mathcal N(z, (2.38^2/d)\hat\Sigma)` with :math:`\hat\Sigma` the particle
        covariance.
    on_unreliable : {"raise", "warn", "ignore"}
        The one policy for unreliable results (:mod:`pyro_unlearn.errors`): an improper
        divided-out target (:class:`ImproperTargetError`), or a step whose incremental weights
        had Pareto k-hat > 0.7 (:class:`DegenerateWeightsError`). ``"raise"`` (default), or
        return the result flagged, with a warning or without. A stalled or collapsed run
        leaves no result and always raises :class:`SMCStalledError`.
    max_steps : int
        Give up (:class:`SMCStalledError`) after this many steps: adaptive steps that keep
        shrinking mean the particles found a region where the forget likelihood varies
        wildly, i.e. the divided-out target :math:`q(\theta\mid D)/p(D_e\mid\theta)` puts
        mass where :math:`q(\theta\mid D)` is not accurate (catastrophic unlearning).

    Returns
    -------
    (WeightedSamples, dict)
        Equally weighted particles (as site draws) and diagnostics: per step the chunk,
        the ESS and Pareto :math:`\hat k` of its incremental weights, the acceptance rate.
    """
    _checks.count("num_particles", num_particles, minimum=2)
    _checks.count("num_moves", num_moves, minimum=0)
    _checks.count("max_steps", max_steps)
    _checks.seed(seed)
    on_unreliable = choose(OnUnreliable, on_unreliable, "on_unreliable")
    if not 0 < ess_threshold < 1:
        raise ValueError(f"ess_threshold must lie in (0, 1), got {ess_threshold}")
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size}")
    model_kwargs = model_kwargs or {}
    options = {"mask": mask, "plate": plate, "sites": sites}
    posterior = posterior_view(guide)  # read once: the particles, the target and the check use it
    layout = posterior.layout
    anchor = posterior.distribution
    d = posterior.dim
    if lam == "auto":
        from scipy.stats import chi2

        lam = math.exp(-0.5 * chi2.isf(AUTO_TAIL, d))
    lam = check_lam(lam)
    log_max = posterior.log_max if lam > 0 else 0.0
    generator = _rng.generator(seed)
    with torch.random.fork_rng(), torch.no_grad():
        torch.manual_seed(seed)
        z = anchor.sample((num_particles,))

    evaluator = forget_evaluator(model, forget_args, model_kwargs, **options)
    proper = divided_target_check(
        model, gaussian_view(model, posterior), forget_args, model_kwargs, evaluator=evaluator
    )
    check_proper(proper, on_unreliable)

    def evaluate(points):
        with torch.no_grad():
            log_lik = evaluator.factors(as_values(layout, points))
            log_q = anchor.log_prob(points.clone())
            inside = inside_adjusted(log_q - log_max if lam > 0 else 0.0, lam)
            return log_q, log_lik * inside.to(log_lik.dtype).reshape(-1, 1)

    log_q, log_lik = evaluate(z)
    total = log_lik.shape[-1]
    if total == 0:
        raise ValueError("the forget set is empty: nothing to unlearn")
    steps, progress = [], 0.0

    def cumsum(values):
        return torch.cat([values.new_zeros(len(values), 1), values.cumsum(-1)], -1)

    while progress < total:
        if len(steps) == max_steps:
            raise SMCStalledError(
                f"SMC unlearning stalled: {len(steps)} steps removed {progress:.2f} of {total} "
                "likelihood factors (the last step's ESS was "
                f"{steps[-1]['ess']:.0f}); the target q(theta|D)/p(D_e|theta) has mass where "
                "q(theta|D) is not accurate. Use a more accurate q(theta|D) (a flow), fixed "
                "chunk_size, or retrain"
            )
        cumulative = cumsum(log_lik)
        end = _next_progress(
            cumulative, log_lik, progress, ess_threshold * num_particles, chunk_size
        )
        increment = _removed(cumulative, log_lik, progress) - _removed(cumulative, log_lik, end)
        step = {
            "chunk": (progress, end),
            "ess": effective_sample_size(increment),
            "pareto_k": _pareto_k(increment),
        }
        probabilities = (increment - increment.logsumexp(0)).exp()
        index = _rng.multinomial(probabilities, num_particles, generator)
        z, log_q, log_lik = z[index], log_q[index], log_lik[index]
        progress = end
        accepted = 0.0
        for _ in range(num_moves):
            chol = random_walk_factor(z)
            if chol is None:
                distinct = len(torch.unique(z, dim=0))
                raise SMCStalledError(
                    f"SMC unlearning collapsed: after removing {progress:.3g} of {total} "
                    f"likelihood factors the {num_particles} particles sit on {distinct} "
                    f"distinct point(s) (the step's ESS was {step['ess']:.1f}); the forget "
                    "likelihood varies by many nats across q(theta|D)'s draws (its log-"
                    f"likelihood ranged over {float(log_lik.min()):.3g} .. "
                    f"{float(log_lik.max()):.3g}), so q(theta|D) reaches where the data rule "
                    "out. Use a more accurate q(theta|D), method='laplace' or 'eubo', or retrain"
                )
            noise = _rng.normal((num_particles, d), generator, like=z)
            proposal = z + noise @ chol.T
            log_q_new, log_lik_new = evaluate(proposal)
            log_target = log_q - _removed(cumsum(log_lik), log_lik, progress)
            log_target_new = log_q_new - _removed(cumsum(log_lik_new), log_lik_new, progress)
            uniform = _rng.uniform((num_particles,), generator, like=z)
            accept = uniform.log() < log_target_new - log_target
            z = torch.where(accept[:, None], proposal, z)
            log_q = torch.where(accept, log_q_new, log_q)
            log_lik = torch.where(accept[:, None], log_lik_new, log_lik)
            accepted += float(accept.double().mean()) / num_moves
        step["acceptance"] = accepted
        steps.append(step)
    samples = {name: value.detach() for name, value in unpack(layout, z).items()}
    worst_k = max(s["pareto_k"] for s in steps)
    diagnostics = {"lam": lam, **proper}
    if not worst_k <= PARETO_K_THRESHOLD:
        worst = max(steps, key=lambda s: s["pareto_k"])
        message = (
            f"SMC unlearning is unreliable: the incremental weights of the step removing "
            f"factors {worst['chunk'][0]:.3g}..{worst['chunk'][1]:.3g} had Pareto k = "
            f"{worst_k:.2f} > {PARETO_K_THRESHOLD} (ESS {worst['ess']:.0f} of {num_particles}), "
            "so resampling there kept too few distinct particles for the Metropolis moves to "
            "recover; the result can be further from retraining than q(theta|D) itself. Use "
            "a more accurate q(theta|D), fixed chunk_size=1, more num_moves, or retrain"
        )
        unreliable(DegenerateWeightsError(message), on_unreliable, diagnostics)
    result = WeightedSamples(
        samples, torch.full((num_particles,), -math.log(num_particles)), worst_k, num_particles
    )
    diagnostics.update(
        {
            "num_steps": len(steps),
            "steps": steps,
            "pareto_k": worst_k,
            "min_ess": min(s["ess"] for s in steps),
            "acceptance": sum(s["acceptance"] for s in steps) / len(steps),
            "num_particles": num_particles,
            "evaluator": evaluator.describe(),
        }
    )
    return result, diagnostics

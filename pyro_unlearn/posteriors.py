r"""Views of a fitted posterior: over the flat unconstrained latent vector, and as draws by name.

:func:`flat_posterior` turns any fitted Gaussian or flow autoguide into one detached
distribution over :math:`z` (with ``log_prob`` and ``sample``); :func:`log_density_max` finds
its maximum, which the adjusted likelihood of VBU needs. These views are what the anchor
handler, the methods and the guards read; training anything built from them never moves
the caller's guide.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.infer.autoguide import AutoContinuous, AutoDelta, AutoNormal, AutoNormalizingFlow

from . import _rng
from .guides import check_fitted, flat_gaussian, latent_layout, unpack
from .results import UnlearnResult


def is_flow(guide) -> bool:
    """Is ``guide`` an autoguide whose posterior is a transformed (non-Gaussian) distribution?"""
    return isinstance(guide, AutoNormalizingFlow)


def _detached_copy(obj):
    """Deep copy of a transform, dropping cached intermediate tensors (not deep-copyable)."""
    memo: dict[int, object] = {}
    modules = obj.modules() if isinstance(obj, torch.nn.Module) else [obj]
    for module in modules:
        for value in vars(module).values():
            for item in value if isinstance(value, tuple) else (value,):
                if isinstance(item, torch.Tensor) and not item.is_leaf:
                    memo[id(item)] = None
    return copy.deepcopy(obj, memo)


def as_buffers(module: torch.nn.Module) -> None:
    for sub in module.modules():
        for name, value in list(sub._parameters.items()):
            if value is None:
                continue
            delattr(sub, name)
            sub.register_buffer(name, value.detach().clone())


def flow_posterior(guide) -> dist.TransformedDistribution:
    r"""A frozen, detached copy of a flow guide's :math:`q(z\mid D)` over the flat latent vector.

    Training the guide afterwards, or training anything built from this copy, leaves both
    untouched (tested).
    """
    check_fitted(guide)
    if not is_flow(guide):
        raise TypeError(f"{type(guide).__name__} is not a normalizing-flow guide")
    with torch.no_grad():
        posterior = guide.get_posterior()
        transforms = []
        for transform in posterior.transforms:
            frozen = _detached_copy(transform)
            if isinstance(frozen, torch.nn.Module):
                as_buffers(frozen)
            transforms.append(frozen)
        base = posterior.base_dist
        base = dist.Normal(base.mean.detach().clone(), base.stddev.detach().clone()).to_event(1)
    return dist.TransformedDistribution(base, transforms)


def log_density_max(
    posterior: dist.Distribution, *, num_restarts: int = 8, num_steps: int = 200, seed: int = 0
) -> float:
    r""":math:`\max_z \log q(z)`, by L-BFGS from the ``num_restarts`` densest of 1000 draws.

    As in VBU, the maximum of a flow density is found numerically; the best local optimum
    over the restarts is returned (a lower bound on the true maximum).
    """
    if isinstance(posterior, dist.MultivariateNormal):
        return float(posterior.log_prob(posterior.loc))
    with torch.random.fork_rng(), torch.no_grad():
        torch.manual_seed(seed)
        draws = posterior.sample((1000,))
        starts = draws[posterior.log_prob(draws).topk(num_restarts).indices]
    best = -float("inf")
    for start in starts:
        z = start.clone().requires_grad_()
        optim = torch.optim.LBFGS([z], max_iter=num_steps, line_search_fn="strong_wolfe")

        def closure(z=z, optim=optim):
            optim.zero_grad()
            loss = -posterior.log_prob(z.clone())  # a new tensor: no stale transform cache
            loss.backward()
            return loss

        optim.step(closure)
        with torch.no_grad():
            value = float(posterior.log_prob(z.clone()))
        if value == value:  # not NaN
            best = max(best, value)
    return best


def flat_posterior(guide) -> dist.Distribution:
    r""":math:`q(z\mid D)` over the flat unconstrained vector, frozen: a flow or a Gaussian."""
    if is_flow(guide):
        return flow_posterior(guide)
    g = flat_gaussian(guide)
    return dist.MultivariateNormal(g.loc, scale_tril=g.cholesky())


@dataclass
class WeightedSamples:
    """Posterior draws with normalised log weights (``logsumexp == 0``).

    Attributes
    ----------
    samples : dict of str to tensor
        Draws of each latent site, shape ``(S, *site_shape)``.
    log_weights : tensor
        Shape ``(S,)``.
    pareto_k : float
        Pareto :math:`\\hat k` of the raw weights (PSIS diagnostic).
    unreliable : list of str
        Why the weights cannot be trusted (empty when they can; see ``reliable``).
    reff : float
        The relative efficiency PSIS used (from the chains, as ArviZ's ``loo``).
    ess : float
        Effective sample size :math:`1/\\sum_s \\bar w_s^2` of the smoothed weights.
    """

    samples: dict[str, torch.Tensor]
    log_weights: torch.Tensor
    pareto_k: float = 0.0
    ess: float = float("nan")
    unreliable: list = field(default_factory=list)  # why the weights cannot be trusted
    reff: float = 1.0

    @property
    def reliable(self) -> bool:
        return not self.unreliable

    @property
    def num_samples(self) -> int:
        return len(self.log_weights)

    def mean(self, name: str) -> torch.Tensor:
        """Weighted posterior mean of site ``name``."""
        w = self.log_weights.exp().reshape((-1,) + (1,) * (self.samples[name].dim() - 1))
        return (w * self.samples[name]).sum(0)

    def resample(self, num_samples: int | None = None, seed: int = 0) -> dict[str, torch.Tensor]:
        """Equally weighted draws (multinomial resampling), e.g. for ``Predictive``."""
        index = _rng.multinomial(
            self.log_weights.exp(), num_samples or self.num_samples, _rng.generator(seed)
        )
        return {k: v[index] for k, v in self.samples.items()}


def posterior_draws(
    posterior,
    model,
    args: tuple = (),
    kwargs: dict | None = None,
    num_samples: int = 1000,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """Draws ``{site: (chains, draws, *shape)}`` of the latent sites, by name.

    ``posterior`` may be a Pyro guide (autoguides are drawn from their posterior over the
    flat latent vector, with a seeded generator; any other callable guide is run
    ``num_samples`` times), an ``UnlearnResult``, ``WeightedSamples`` (resampled to equal
    weights), a ``pyro.infer.MCMC``, a retraining ``Reference``, or a dict of
    ``(S, *shape)`` tensors. The caller's RNG state is not touched.
    """
    kwargs = kwargs or {}
    if isinstance(posterior, UnlearnResult):
        posterior = posterior.guide
    if isinstance(posterior, WeightedSamples):
        return {k: v.unsqueeze(0) for k, v in posterior.resample(num_samples, seed).items()}
    if isinstance(posterior, dict):
        return {k: torch.as_tensor(v).unsqueeze(0) for k, v in posterior.items()}
    if hasattr(posterior, "get_samples"):  # MCMC
        return posterior.get_samples(group_by_chain=True)
    if hasattr(posterior, "flat") and hasattr(posterior, "samples"):  # Reference
        return dict(posterior.samples)
    if isinstance(posterior, AutoDelta):
        with torch.no_grad():
            point = posterior.median(*args, **kwargs)
        return {k: v.detach().expand((1, num_samples) + v.shape) for k, v in point.items()}
    if isinstance(posterior, AutoContinuous | AutoNormal) and posterior.prototype_trace is not None:
        layout = latent_layout(posterior)
        with torch.no_grad():
            z = _flat_draws(posterior, num_samples, seed)
        return {k: v.unsqueeze(0) for k, v in unpack(layout, z).items()}
    if callable(posterior):
        return _guide_runs(posterior, args, kwargs, num_samples, seed)
    raise TypeError(f"cannot draw from a posterior of type {type(posterior).__name__}")


def _flat_draws(guide, num_samples: int, seed: int) -> torch.Tensor:
    if is_flow(guide):
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            return flat_posterior(guide).sample((num_samples,))
    g = flat_gaussian(guide)
    eps = _rng.normal((num_samples, len(g.loc)), _rng.generator(seed), like=g.loc)
    return g.loc + eps @ g.cholesky().T


def _guide_runs(guide, args, kwargs, num_samples: int, seed: int) -> dict[str, torch.Tensor]:
    """A hand-written guide, run once per draw (it need not broadcast)."""
    runs = []
    with torch.random.fork_rng(), torch.no_grad():
        torch.manual_seed(seed)
        for _ in range(num_samples):
            trace = poutine.trace(guide).get_trace(*args, **kwargs)
            runs.append(
                {
                    name: site["value"]
                    for name, site in trace.nodes.items()
                    if site["type"] == "sample"
                    and not site["is_observed"]
                    and not site["infer"].get("is_auxiliary")
                }
            )
    return {name: torch.stack([r[name] for r in runs]).unsqueeze(0) for name in runs[0]}

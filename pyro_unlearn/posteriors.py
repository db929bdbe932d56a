r"""Views of a fitted posterior over the flat unconstrained latent vector: a frozen flow or Gaussian.

:func:`flat_posterior` turns any fitted Gaussian or flow autoguide into one detached
distribution over :math:`z` (with ``log_prob`` and ``sample``); :func:`log_density_max` finds
its maximum, which the adjusted likelihood of VBU needs. These views are what the anchor
handler, the methods and the guards read; training anything built from them never moves
the caller's guide.
"""

from __future__ import annotations

import copy

import pyro.distributions as dist
import torch
from pyro.infer.autoguide import AutoNormalizingFlow

from .guides import check_fitted, flat_gaussian


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

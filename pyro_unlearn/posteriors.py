r"""The posterior view: a fitted posterior, read once, as one object over the flat latent vector.

:func:`posterior_view` turns what a user holds (a Gaussian autoguide, a flow autoguide, a
:class:`~pyro_unlearn.LaplaceGuide`, MCMC draws, weighted draws) into a
:class:`PosteriorView` over the flat unconstrained vector :math:`z`, with ``log_prob`` and
``sample(generator)`` where the posterior has a density, its maximum ``log_max``, moments,
and the exact Gaussian (``gaussian``) with its closed-form KL where there is one. The anchor
handler, the methods, the guards and the diagnostics read this object, not the guide: what
kind of posterior it is gets asked once, here. The view is detached, so training anything
built from it never moves the caller's guide.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import ClassVar

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.infer.autoguide import AutoContinuous, AutoDelta, AutoNormal, AutoNormalizingFlow

from . import _rng
from .errors import UnsupportedPosteriorError
from .gaussian import FlatGaussian
from .guides import LatentSite, check_fitted, flat_gaussian, latent_layout, unpack


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

    def __call__(self, *args, **kwargs) -> dict[str, torch.Tensor]:
        """The draws as a Pyro guide: each run picks draw :math:`s` with probability
        :math:`\bar w_s`, so ``pyro.infer.Predictive(model, guide=samples)`` works.
        The model's arguments are accepted and ignored, as by any guide of global latents."""
        index = pyro.sample(
            "_weighted_draw",
            dist.Categorical(logits=self.log_weights),
            infer={"is_auxiliary": True},
        )
        return {
            name: pyro.sample(name, dist.Delta(value[index], event_dim=value.dim() - 1))
            for name, value in self.samples.items()
        }

    def resample(self, num_samples: int | None = None, seed: int = 0) -> dict[str, torch.Tensor]:
        """Equally weighted draws (multinomial resampling), e.g. for ``Predictive``."""
        index = _rng.multinomial(
            self.log_weights.exp(), num_samples or self.num_samples, _rng.generator(seed)
        )
        return {k: v[index] for k, v in self.samples.items()}


class PosteriorView:
    r"""A fitted posterior :math:`q(z)` over the flat unconstrained latent vector, read once.

    Build it with :func:`posterior_view`. Subclasses say what exists: a density
    (``log_prob``, ``log_max``) for Gaussians and flows, the exact Gaussian and its KL for
    Gaussians, weights for draws.

    Attributes
    ----------
    kind : {"gaussian", "flow", "draws"}
    layout : list of LatentSite
        Where each latent site lives in :math:`z` (``None`` for draws by name).
    source
        What the view was read from (a guide, MCMC, weighted draws): the structure a new
        guide of the same family is built on.
    """

    kind: ClassVar[str]
    has_density: ClassVar[bool] = True

    def __init__(self, layout: list[LatentSite] | None, source) -> None:
        self.layout = layout
        self.source = source
        self._log_max: float | None = None

    @property
    def dim(self) -> int:
        return sum(site.size for site in self.layout)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        r""":math:`\log q(z)` at flat unconstrained vectors ``z`` (shape ``(..., d)``)."""
        return self.distribution.log_prob(z)

    def sample(self, num_samples: int, generator: torch.Generator) -> torch.Tensor:
        """``(num_samples, d)`` draws of :math:`z`, from ``generator`` only."""
        raise NotImplementedError

    @property
    def log_max(self) -> float:
        r""":math:`\max_z \log q(z)`, computed once (the adjusted likelihood of VBU needs it)."""
        if self._log_max is None:
            self._log_max = self._find_log_max()
        return self._log_max

    def site_draws(self, num_samples: int, seed: int = 0) -> dict[str, torch.Tensor]:
        """``{site: (num_samples, *shape)}`` constrained draws, by name."""
        with torch.no_grad():
            return unpack(self.layout, self.sample(num_samples, _rng.generator(seed)))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(kind={self.kind!r}, dim={self.dim})"


class GaussianView(PosteriorView):
    r"""A Gaussian autoguide or Laplace approximation: :math:`\mathcal N(\mu, \Sigma)` exactly."""

    kind = "gaussian"

    def __init__(self, gaussian: FlatGaussian, layout: list[LatentSite], source) -> None:
        super().__init__(layout, source)
        self.gaussian = gaussian

    @property
    def distribution(self) -> dist.MultivariateNormal:
        return self.gaussian.distribution()

    @property
    def mean(self) -> torch.Tensor:
        return self.gaussian.loc

    @property
    def covariance(self) -> torch.Tensor:
        return self.gaussian.covariance

    def sample(self, num_samples: int, generator: torch.Generator) -> torch.Tensor:
        return self.gaussian.sample(num_samples, generator)

    def kl(self, other: PosteriorView | FlatGaussian) -> torch.Tensor:
        r""":math:`\mathrm{KL}(q \,\|\, \text{other})` in closed form (both Gaussian)."""
        other = other.gaussian if isinstance(other, GaussianView) else other
        if not isinstance(other, FlatGaussian):
            raise UnsupportedPosteriorError("a closed-form KL needs two Gaussian posteriors")
        return self.gaussian.kl(other)

    def moment_matched(self, num_samples: int = 4000, seed: int = 0) -> FlatGaussian:
        return self.gaussian

    def _find_log_max(self) -> float:
        return self.gaussian.log_max()


class FlowView(PosteriorView):
    """A normalizing-flow autoguide, frozen: a detached copy of its transforms."""

    kind = "flow"

    def __init__(self, distribution, layout: list[LatentSite], source) -> None:
        super().__init__(layout, source)
        self.distribution = distribution
        self._moments: dict[tuple[int, int], FlatGaussian] = {}

    def sample(self, num_samples: int, generator: torch.Generator) -> torch.Tensor:
        # transforms draw from the global RNG: seed it from ``generator``, inside a fork
        seed = int(torch.randint(2**62, (1,), generator=generator))
        with torch.random.fork_rng(), torch.no_grad():
            torch.manual_seed(seed)
            return self.distribution.sample((num_samples,))

    def site_draws(self, num_samples: int, seed: int = 0) -> dict[str, torch.Tensor]:
        with torch.random.fork_rng(), torch.no_grad():
            torch.manual_seed(seed)
            return unpack(self.layout, self.distribution.sample((num_samples,)))

    def moment_matched(self, num_samples: int = 4000, seed: int = 0) -> FlatGaussian:
        """The Gaussian with the flow's mean and covariance (from ``num_samples`` draws,
        made once per setting): the yardstick where a Gaussian is enough."""
        key = (num_samples, seed)
        if key not in self._moments:
            with torch.random.fork_rng(), torch.no_grad():
                torch.manual_seed(seed)
                z = self.distribution.sample((num_samples,))
            precision = torch.linalg.inv(torch.cov(z.T))
            self._moments[key] = FlatGaussian(z.mean(0), precision=(precision + precision.T) / 2)
        return self._moments[key]

    @property
    def mean(self) -> torch.Tensor:
        return self.moment_matched().loc

    @property
    def covariance(self) -> torch.Tensor:
        return self.moment_matched().covariance

    def _find_log_max(self) -> float:
        return log_density_max(self.distribution)


class DrawsView(PosteriorView):
    """Draws by site name (MCMC, a dict, or weighted draws): no density, weights where given."""

    kind = "draws"
    has_density = False

    def __init__(self, samples: dict[str, torch.Tensor], log_weights: torch.Tensor, source) -> None:
        super().__init__(None, source)
        self.samples = samples
        self.log_weights = log_weights

    @property
    def dim(self) -> int:
        return sum(v[0].numel() for v in self.samples.values())

    @property
    def num_samples(self) -> int:
        return len(self.log_weights)

    def log_prob(self, z):
        raise UnsupportedPosteriorError(
            "draws have no density: use a Gaussian or flow guide where log q(z) is needed"
        )

    def site_draws(self, num_samples: int | None = None, seed: int = 0) -> dict[str, torch.Tensor]:
        """Equally weighted draws: the draws themselves, or multinomially resampled."""
        uniform = bool((self.log_weights == self.log_weights[0]).all())
        if uniform and num_samples in (None, self.num_samples):
            return dict(self.samples)
        index = _rng.multinomial(
            self.log_weights.exp(), num_samples or self.num_samples, _rng.generator(seed)
        )
        return {k: v[index] for k, v in self.samples.items()}

    def __repr__(self) -> str:
        return (
            f"DrawsView(kind='draws', num_samples={self.num_samples}, sites={list(self.samples)})"
        )


def posterior_view(posterior) -> PosteriorView:
    """Read a fitted posterior once, as a :class:`PosteriorView`.

    ``posterior`` may be a Gaussian autoguide (AutoNormal, AutoDiagonalNormal,
    AutoMultivariateNormal, AutoLowRankMultivariateNormal), a
    :class:`~pyro_unlearn.LaplaceGuide` or ``laplace_approximation()`` result, a flow
    autoguide, :class:`WeightedSamples`, a ``pyro.infer.MCMC``, a dict of ``(S, *shape)``
    draws, an ``UnlearnResult``, or a view (returned as it is).

    >>> import torch, pyro, pyro.distributions as dist
    >>> from pyro.infer.autoguide import AutoMultivariateNormal
    >>> def model():
    ...     pyro.sample("s", dist.LogNormal(torch.zeros(2), 1.0).to_event(1))
    >>> guide = AutoMultivariateNormal(model)
    >>> _ = guide()  # a fitted guide in real use
    >>> view = posterior_view(guide)
    >>> view.kind, view.dim, [site.name for site in view.layout]
    ('gaussian', 2, ['s'])
    >>> bool(view.log_max == view.log_prob(view.mean))
    True
    """
    if isinstance(posterior, PosteriorView):
        return posterior
    if hasattr(posterior, "guide") and hasattr(posterior, "method"):  # an UnlearnResult
        return posterior_view(posterior.guide)
    if isinstance(posterior, WeightedSamples):
        return DrawsView(dict(posterior.samples), posterior.log_weights, posterior)
    if hasattr(posterior, "flat") and hasattr(posterior, "samples"):  # a retraining Reference
        posterior = {name: posterior.flat(name) for name in posterior.samples}
    if isinstance(posterior, dict) or hasattr(posterior, "get_samples"):
        samples = posterior if isinstance(posterior, dict) else posterior.get_samples()
        samples = {k: torch.as_tensor(v) for k, v in samples.items()}
        num = len(next(iter(samples.values())))
        first = next(iter(samples.values()))
        log_w = torch.full((num,), -math.log(num), dtype=first.dtype)
        return DrawsView(samples, log_w, posterior)
    check_fitted(posterior)
    if is_flow(posterior):
        return FlowView(flow_posterior(posterior), latent_layout(posterior), posterior)
    try:
        gaussian = flat_gaussian(posterior)
    except TypeError as error:
        raise UnsupportedPosteriorError(str(error)) from None
    return GaussianView(gaussian, latent_layout(posterior), posterior)


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
    if hasattr(posterior, "guide") and hasattr(posterior, "method"):  # an UnlearnResult
        posterior = posterior.guide
    if hasattr(posterior, "get_samples"):  # MCMC: keep its chains
        return posterior.get_samples(group_by_chain=True)
    if hasattr(posterior, "flat") and hasattr(posterior, "samples"):  # Reference
        return dict(posterior.samples)
    if isinstance(posterior, AutoDelta):
        with torch.no_grad():
            point = posterior.median(*args, **kwargs)
        return {k: v.detach().expand((1, num_samples) + v.shape) for k, v in point.items()}
    if isinstance(posterior, PosteriorView | WeightedSamples | dict) or (
        isinstance(posterior, AutoContinuous | AutoNormal) and posterior.prototype_trace is not None
    ):
        view = posterior_view(posterior)
        if view.kind == "draws" and isinstance(posterior, dict):
            return {k: v.unsqueeze(0) for k, v in view.samples.items()}
        return {k: v.unsqueeze(0) for k, v in view.site_draws(num_samples, seed).items()}
    if callable(posterior):
        return _guide_runs(posterior, args, kwargs, num_samples, seed)
    raise TypeError(f"cannot draw from a posterior of type {type(posterior).__name__}")


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

"""The anchor handler: the old posterior becomes the new prior."""

from __future__ import annotations

from collections.abc import Mapping

import pyro.distributions as dist
import torch
from pyro.distributions import constraints
from pyro.distributions.transforms import ComposeTransform
from pyro.poutine.messenger import Messenger
from pyro.poutine.subsample_messenger import _Subsample
from torch.distributions.transforms import ReshapeTransform

from ..errors import UnsupportedPosteriorError
from ..guides import LatentSite
from ..posteriors import posterior_view


class AnchorMessenger(Messenger):
    r"""Replace the model's latent sample sites by the fitted posterior :math:`q(\theta\mid D)`.

    Under this handler the model's log joint is
    :math:`\log q(\theta \mid D) + \log p(\text{data} \mid \theta)`: the old posterior
    stands in for the prior, so that by Bayes
    :math:`p(\theta \mid D_r) \propto q(\theta \mid D) / p(D_e \mid \theta)` only the forget
    set :math:`D_e` is needed. Composed with :func:`forget` and run on :math:`D_e`, the
    negative ELBO of a guide :math:`q_u` is the EUBO of Variational Bayesian Unlearning,

    .. math:: U(q_u) = \mathbb E_{q_u}[\log p(D_e\mid\theta)] + \mathrm{KL}(q_u \,\|\, q(\theta\mid D)).

    The anchor density lives in the unconstrained space and is pushed through the same
    bijections the autoguides use, so Jacobian terms cancel in the KL.

    * Mean-field guides (``AutoNormal``, ``AutoDiagonalNormal``): each site gets its own
      Normal, local sites in (full, non-subsampled) plates included.
    * Correlated guides (``AutoMultivariateNormal``, ``AutoLowRankMultivariateNormal``,
      ``laplace_approximation()`` results, :class:`~pyro_unlearn.LaplaceGuide`): the joint
      Gaussian is factorised by the chain rule along its Cholesky factor
      :math:`L`: with :math:`z = \mu + L\varepsilon`, site :math:`k` given the earlier sites is
      :math:`\mathcal N(\mu_k + L_{k,<k}\varepsilon_{<k},\, L_{kk}L_{kk}^\top)`, which is exact.
    * Flow guides (``AutoIAFNormal``, ``AutoBNAFNormal``, ``AutoNormalizingFlow``): the
      sites are read jointly: every latent site but the last contributes only its
      Jacobian, and the last one carries :math:`\log q(z\mid D)` of the whole flat vector.
    * A ``dict`` of site name to distribution (in the constrained space) is used as given.

    Example: the anchored model's log joint is the old posterior's log density.

        >>> import torch, pyro, pyro.distributions as dist
        >>> from pyro.infer.autoguide import AutoMultivariateNormal
        >>> from pyro_unlearn.handlers import anchor
        >>> def model():
        ...     a = pyro.sample("a", dist.Normal(0.0, 1.0))
        ...     b = pyro.sample("b", dist.LogNormal(0.0, 1.0))
        >>> guide = AutoMultivariateNormal(model)
        >>> _ = guide()  # a fitted guide in real use
        >>> tr = pyro.poutine.trace(anchor(model, guide=guide)).get_trace()
        >>> z = torch.stack([tr.nodes["a"]["value"], tr.nodes["b"]["value"].log()])
        >>> log_q = guide.get_posterior().log_prob(z) - z[1]  # Jacobian of b = exp(z_b)
        >>> bool(torch.isclose(tr.log_prob_sum(), log_q))
        True

    Parameters
    ----------
    guide : fitted Gaussian or flow autoguide, LaplaceGuide, PosteriorView, or dict of site distributions
        The old posterior :math:`q(\theta\mid D)`. It is read once, as a detached
        :class:`~pyro_unlearn.PosteriorView` (or given as one), so unlearning never moves it.

    Attributes
    ----------
    log_ratio : tensor
        :math:`\log q(z\mid D) - \max\log q` of the latent values of the current run
        (detached, with any particle dims), read by the adjusted likelihood of
        :class:`~pyro_unlearn.EUBO`. For a Gaussian it is :math:`-\tfrac12` the squared
        Mahalanobis distance; for a flow it needs :attr:`log_max`, found numerically.
    """

    def __init__(self, guide) -> None:
        super().__init__()
        self._site_dists: Mapping[str, dist.Distribution] | None = None
        if isinstance(guide, Mapping):
            self._site_dists = dict(guide)
            return
        self.view = posterior_view(guide)
        if not self.view.has_density:
            raise UnsupportedPosteriorError(
                "anchor needs the old posterior's density: pass a Gaussian or flow guide, or a "
                "dict of site distributions; posterior draws are unlearned by method='psis'"
            )
        self.layout = {site.name: site for site in self.view.layout}
        self.joint = self.view.distribution if self.view.kind == "flow" else None
        self.gaussian = None if self.joint is not None else self.view.gaussian
        if self.gaussian is not None and not self.gaussian.is_diagonal:
            self._chol = self.gaussian.cholesky()
        if self.joint is not None or not self.gaussian.is_diagonal:  # joint: global sites only
            for site in self.layout.values():
                if site.plates:
                    raise NotImplementedError(
                        f"anchor: latent site {site.name!r} sits in plates {site.plates}; a "
                        "correlated anchor handler supports global latent sites only: use "
                        "unlearn(..., method='eubo') (it evaluates the EUBO without this "
                        "handler, local latents included), or a mean-field guide (AutoNormal)"
                    )
        self._eps: list[torch.Tensor] = []
        self._pending: dict[str, torch.Tensor] = {}
        self._next_offset = 0
        self._pieces: list[torch.Tensor] = []
        self._draw: torch.Tensor | None = None
        self._log_ratio: torch.Tensor | float = 0.0

    @property
    def log_ratio(self) -> torch.Tensor | float:
        if self.joint is None:
            return self._log_ratio
        with torch.no_grad():  # computed on demand: the flow's maximum is costly
            return self.joint.log_prob(self._joint_value()) - self.log_max

    @property
    def log_max(self) -> float:
        r""":math:`\max_z \log q(z\mid D)` of a flow anchor, found numerically once (by the view)."""
        return self.view.log_max

    def __enter__(self):
        self._eps, self._pending, self._next_offset = [], {}, 0
        self._pieces, self._draw = [], None
        self._log_ratio = 0.0
        return super().__enter__()

    @staticmethod
    def _is_latent(msg) -> bool:
        return not (
            msg["is_observed"]
            or isinstance(msg["fn"], _Subsample)
            or msg["infer"].get("is_auxiliary", False)
        )

    def _pyro_sample(self, msg) -> None:
        if not self._is_latent(msg):
            return
        name = msg["name"]
        if self._site_dists is not None:
            if name not in self._site_dists:
                raise KeyError(f"anchor: no distribution given for latent site {name!r}")
            msg["fn"] = self._site_dists[name]
            return
        site = self.layout.get(name)
        if site is None:
            raise KeyError(
                f"anchor: latent site {name!r} is not in the guide's posterior "
                f"(guide sites: {list(self.layout)}); was the guide fitted to this model?"
            )
        msg["fn"] = self._site_distribution(site)

    def _site_distribution(self, site: LatentSite) -> dist.Distribution:
        g = self.gaussian
        if g is None:
            self._check_order(site)
            self._next_offset += site.size
            last = site.offset + site.size == self.joint.event_shape[0]
            reshape = ReshapeTransform((site.size,), site.unconstrained_shape)
            return dist.TransformedDistribution(
                _JointPiece(self, site, last), ComposeTransform([reshape, site.transform])
            )
        if g.is_diagonal:
            loc = g.loc[site.slice].reshape(site.unconstrained_shape)
            scale = g.scale[site.slice].reshape(site.unconstrained_shape)
            base = dist.Normal(loc, scale).to_event(site.event_dim)
            return dist.TransformedDistribution(base, site.transform)
        self._check_order(site)
        loc = g.loc[site.slice]
        if self._eps:
            batch = torch.broadcast_shapes(*(e.shape[:-1] for e in self._eps))
            eps = torch.cat([e.expand(batch + e.shape[-1:]) for e in self._eps], dim=-1)
            loc = loc + eps @ self._chol[site.slice, : site.offset].T
        self._pending[site.name] = loc
        base = dist.MultivariateNormal(loc, scale_tril=self._chol[site.slice, site.slice])
        reshape = ReshapeTransform((site.size,), site.unconstrained_shape)
        return dist.TransformedDistribution(base, ComposeTransform([reshape, site.transform]))

    def _check_order(self, site: LatentSite) -> None:
        if site.offset != self._next_offset:
            raise RuntimeError(
                f"anchor: site {site.name!r} came out of the guide's order; a correlated "
                "anchor needs the model to sample its latent sites in a fixed order"
            )

    def _pyro_post_sample(self, msg) -> None:
        if self._site_dists is not None or not self._is_latent(msg):
            return
        site = self.layout[msg["name"]]
        z = site.unconstrain(msg["value"])
        if self.gaussian is None:
            self._pieces.append(z)
            return
        if self.gaussian.is_diagonal:
            eps = (z.detach() - self.gaussian.loc[site.slice]) / self.gaussian.scale[site.slice]
            self._log_ratio = self._log_ratio - 0.5 * eps.pow(2).sum(-1)
            return
        loc = self._pending.pop(msg["name"])
        chol = self._chol[site.slice, site.slice]
        z, loc = torch.broadcast_tensors(z, loc)
        eps = torch.linalg.solve_triangular(chol, (z - loc).unsqueeze(-1), upper=False)
        self._eps.append(eps.squeeze(-1))
        self._log_ratio = self._log_ratio - 0.5 * self._eps[-1].detach().pow(2).sum(-1)
        self._next_offset += site.size

    def _joint_value(self) -> torch.Tensor:
        batch = torch.broadcast_shapes(*(p.shape[:-1] for p in self._pieces))
        return torch.cat([p.expand(batch + p.shape[-1:]) for p in self._pieces], dim=-1)


class _JointPiece(dist.TorchDistribution):
    """One site's slice of a joint flat density: 0 log density, except the last slice.

    The last slice's log density is that of the whole flat vector, assembled from the
    values the anchor recorded for the earlier sites in this run.
    """

    arg_constraints: dict = {}
    support = constraints.real_vector

    def __init__(self, anchor: AnchorMessenger, site: LatentSite, last: bool) -> None:
        self.anchor, self.site, self.last = anchor, site, last
        super().__init__(torch.Size(), torch.Size([site.size]), validate_args=False)

    def sample(self, sample_shape=()):
        if self.anchor._draw is None or self.site.offset == 0:
            with torch.no_grad():
                self.anchor._draw = self.anchor.joint.sample(torch.Size(sample_shape))
        return self.anchor._draw[..., self.site.slice]

    def log_prob(self, value):
        if not self.last:
            return value.new_zeros(value.shape[:-1])
        return self.anchor.joint.log_prob(self.anchor._joint_value())

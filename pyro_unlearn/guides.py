r"""Gaussian views of fitted Pyro guides, and the fixed Gaussian guide unlearning returns.

Every Gaussian autoguide describes a Gaussian over the *unconstrained* latent vector
:math:`z = (T_1^{-1}(\theta_1), \dots, T_K^{-1}(\theta_K))`, with :math:`T_k` the
bijection ``biject_to(site.support)`` and the sites in the order of the guide's
prototype trace. :func:`flat_gaussian` reads that Gaussian off AutoNormal,
AutoDiagonalNormal, AutoMultivariateNormal, AutoLowRankMultivariateNormal, the result of
``AutoLaplaceApproximation.laplace_approximation`` and :class:`LaplaceGuide`.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import pyro
import torch
from pyro.distributions import (
    Independent,
    LowRankMultivariateNormal,
    MultivariateNormal,
    Normal,
    constraints,
)
from pyro.distributions.transforms import biject_to
from pyro.infer.autoguide import (
    AutoContinuous,
    AutoDelta,
    AutoDiagonalNormal,
    AutoGuide,
    AutoLaplaceApproximation,
    AutoLowRankMultivariateNormal,
    AutoMultivariateNormal,
    AutoNormal,
)
from pyro.infer.autoguide.utils import deep_setattr
from pyro.nn.module import PyroParam

from ._user_model import user_call
from .errors import BadRequestError, UnlearningError
from .gaussian import FlatGaussian
from .options import Family, choose

#: the autoguides whose posterior over the unconstrained latents is a Gaussian
GAUSSIAN_AUTOGUIDES = (
    AutoNormal,
    AutoDiagonalNormal,
    AutoMultivariateNormal,
    AutoLowRankMultivariateNormal,
)


class GuideNotFittedError(UnlearningError, ValueError):
    """The guide has never been run, so it has no parameters to unlearn from."""


@dataclass(frozen=True)
class LatentSite:
    """Where one latent site lives in the flat unconstrained vector."""

    name: str
    support: object
    shape: torch.Size  # constrained value shape, as in the prototype trace
    unconstrained_shape: torch.Size
    event_dim: int  # event dim of the unconstrained value
    offset: int
    size: int
    plates: tuple[str, ...]

    @property
    def slice(self) -> slice:
        return slice(self.offset, self.offset + self.size)

    @property
    def transform(self):
        return biject_to(self.support)

    def unconstrain(self, value: torch.Tensor) -> torch.Tensor:
        """Constrained value (with any batch dims on the left) -> flat (..., size)."""
        z = self.transform.inv(value)
        batch = z.shape[: z.dim() - len(self.unconstrained_shape)]
        return z.reshape(batch + (self.size,))

    def constrain(self, z: torch.Tensor) -> torch.Tensor:
        """Flat unconstrained (..., size) -> constrained value."""
        return self.transform(z.reshape(z.shape[:-1] + self.unconstrained_shape))


def check_fitted(guide) -> None:
    """Raise :class:`GuideNotFittedError` unless ``guide`` has run at least once."""
    if isinstance(guide, AutoGuide) and guide.prototype_trace is None:
        raise GuideNotFittedError(
            f"{type(guide).__name__} was never fitted (it has no prototype trace): fit it "
            "with pyro.infer.SVI, or call guide(*data) once, before unlearning"
        )


def latent_layout(guide: AutoGuide) -> list[LatentSite]:
    """The latent sites of a fitted autoguide, in the order of its flat vector."""
    check_fitted(guide)
    layout, offset = [], 0
    for name, site in guide.prototype_trace.iter_stochastic_nodes():
        support = site["fn"].support
        value = site["value"].detach()
        unconstrained = biject_to(support).inv(value)
        event_dim = site["fn"].event_dim + unconstrained.dim() - value.dim()
        size = unconstrained.numel()
        layout.append(
            LatentSite(
                name=name,
                support=support,
                shape=value.shape,
                unconstrained_shape=unconstrained.shape,
                event_dim=event_dim,
                offset=offset,
                size=size,
                plates=tuple(f.name for f in site["cond_indep_stack"]),
            )
        )
        offset += size
    return layout


def unpack(layout: list[LatentSite], z: torch.Tensor) -> dict[str, torch.Tensor]:
    """Flat unconstrained vector(s) -> dict of constrained site values."""
    return {site.name: site.constrain(z[..., site.slice]) for site in layout}


def flat_gaussian(guide) -> FlatGaussian:
    """Read the Gaussian over the unconstrained latent vector off a fitted guide.

    The result is detached: it is a snapshot of the old posterior, and gradients never
    flow back into the caller's guide.
    """
    check_fitted(guide)
    if isinstance(guide, LaplaceGuide):
        return FlatGaussian(guide.loc.detach(), precision=guide.precision.detach())
    if isinstance(guide, AutoLaplaceApproximation):
        raise TypeError(
            "AutoLaplaceApproximation is a point (MAP) estimate: pass its Gaussian, "
            "guide.laplace_approximation(*data), or pass full_args=(...) to laplace_unlearn"
        )
    if isinstance(guide, AutoDelta):
        raise TypeError(
            "AutoDelta is a point estimate with no posterior spread to anchor to: fit "
            "AutoLaplaceApproximation / AutoNormal, or pass a dict of site distributions"
        )
    with torch.no_grad():
        if isinstance(guide, AutoNormal):
            locs, scales = [], []
            for site in latent_layout(guide):
                loc, scale = guide._get_loc_and_scale(site.name)
                locs.append(loc.detach().reshape(-1))
                scales.append(scale.detach().reshape(-1))
            return FlatGaussian(torch.cat(locs), scale=torch.cat(scales))
        if isinstance(guide, AutoContinuous):
            posterior = guide.get_posterior()
            if isinstance(posterior, Independent) and isinstance(posterior.base_dist, Normal):
                base = posterior.base_dist
                return FlatGaussian(base.loc.detach().clone(), scale=base.scale.detach().clone())
            if isinstance(posterior, MultivariateNormal):
                return FlatGaussian(
                    posterior.loc.detach().clone(), scale_tril=posterior.scale_tril.detach().clone()
                )
            if isinstance(posterior, LowRankMultivariateNormal):
                cov = posterior.covariance_matrix.detach()
                return FlatGaussian(
                    posterior.loc.detach().clone(), scale_tril=torch.linalg.cholesky(cov)
                )
    raise TypeError(
        f"{type(guide).__name__} is not a Gaussian guide; supported: AutoNormal, "
        "AutoDiagonalNormal, AutoMultivariateNormal, AutoLowRankMultivariateNormal, "
        "AutoLaplaceApproximation.laplace_approximation() and LaplaceGuide"
    )


class LaplaceGuide(AutoMultivariateNormal):
    r"""A fixed Gaussian guide :math:`\mathcal N(\mu, \Lambda^{-1})` in the unconstrained space.

    It is an :class:`~pyro.infer.autoguide.AutoMultivariateNormal` whose ``loc``, ``scale``
    and ``scale_tril`` are buffers, not parameters (as
    ``AutoLaplaceApproximation.laplace_approximation`` returns), so it never touches the
    param store and works with ``Predictive``, ``median()`` and ``quantiles()``. It also
    keeps the precision :math:`\Lambda` exactly, so sequential unlearning never inverts
    a covariance back.

    Build it with :meth:`from_precision`, or receive it from :func:`laplace_unlearn`.
    """

    @classmethod
    def from_precision(
        cls,
        model,
        loc: torch.Tensor,
        precision: torch.Tensor,
        *,
        like: AutoGuide | None = None,
        model_args: tuple = (),
        model_kwargs: dict | None = None,
    ) -> LaplaceGuide:
        """A guide for ``model`` with mean ``loc`` and precision ``precision``.

        The site layout comes from the fitted guide ``like`` or, failing that, from
        running ``model(*model_args, **model_kwargs)`` once.
        """
        guide = cls(user_call(model))
        if like is not None:
            check_fitted(like)
            guide.prototype_trace = like.prototype_trace
            guide._prototype_frames = dict(like._prototype_frames)
            layout = latent_layout(like)
            guide._unconstrained_shapes = {s.name: s.unconstrained_shape for s in layout}
            guide._cond_indep_stacks = {
                name: site["cond_indep_stack"]
                for name, site in like.prototype_trace.iter_stochastic_nodes()
            }
            guide.latent_dim = sum(s.size for s in layout)
        else:
            with torch.random.fork_rng():  # one model run, drawing from the prior
                torch.manual_seed(0)
                AutoContinuous._setup_prototype(guide, *model_args, **(model_kwargs or {}))
        loc = loc.detach().clone()
        precision = precision.detach().clone()
        precision = (precision + precision.T) / 2
        if loc.shape != (guide.latent_dim,) or precision.shape != (guide.latent_dim,) * 2:
            raise ValueError(
                f"loc {tuple(loc.shape)} / precision {tuple(precision.shape)} do not match "
                f"the model's {guide.latent_dim} unconstrained latent dimensions"
            )
        set_gaussian_buffers(guide, loc, precision)
        guide.register_buffer("precision", precision)
        return guide

    def _setup_prototype(self, *args, **kwargs):
        raise RuntimeError("LaplaceGuide is built by LaplaceGuide.from_precision")


def set_gaussian_buffers(guide: AutoMultivariateNormal, loc, precision) -> None:
    r"""Write :math:`\mathcal N(\text{loc}, \Lambda^{-1})` into an AutoMultivariateNormal's buffers.

    In its own parametrisation: ``scale[:, None] * scale_tril`` is the Cholesky factor.
    """
    scale_tril = MultivariateNormal(loc, precision_matrix=precision).scale_tril
    scale = scale_tril.pow(2).sum(-1).sqrt()
    guide.register_buffer("loc", loc.detach())
    guide.register_buffer("scale", scale.detach())
    guide.register_buffer("scale_tril", (scale_tril / scale[:, None]).detach())


def family_of(guide) -> str:
    """The guide family that continues ``guide``: mean-field stays mean-field, etc."""
    if isinstance(guide, AutoNormal | AutoDiagonalNormal):
        return "diagonal"
    if isinstance(guide, AutoLowRankMultivariateNormal):
        return "lowrank"
    return "multivariate"


def trainable_copy(guide, model, *args, family: str | None = None, **kwargs) -> AutoGuide:
    r"""A new, trainable guide of family ``family`` initialised at ``guide``'s posterior.

    Its parameters are module-local, under a fresh name, so training it never touches
    ``guide`` or the global param store. Initialisation from :math:`\mathcal N(\mu, \Sigma)`:
    ``"multivariate"`` copies it; ``"diagonal"`` (AutoNormal) takes
    :math:`\sigma_i^2 = 1/\Lambda_{ii}`, the mean-field member closest to it in
    :math:`\mathrm{KL}(q_u\|q)`; ``"lowrank"`` keeps the leading eigen-directions;
    ``"delta"`` (AutoDelta) takes :math:`\mu`. ``args`` run the model once for the layout.
    """
    family = choose(Family, family or family_of(guide), "family")
    if family == Family.FLOW:
        raise BadRequestError("trainable_copy makes Gaussian or point guides: use residual_flow")
    gaussian = flat_gaussian(guide)
    layout = latent_layout(guide)
    cls = {
        "delta": AutoDelta,
        "diagonal": AutoNormal,
        "multivariate": AutoMultivariateNormal,
        "lowrank": AutoLowRankMultivariateNormal,
    }[family]
    with pyro.settings.context(module_local_params=True), torch.random.fork_rng():
        torch.manual_seed(0)  # the prototype's prior draws: the same whatever the caller's RNG
        copy = cls(user_call(model))
        copy._pyro_name = f"unlearn_{next(_COPY_IDS)}_{cls.__name__}"
        copy._setup_prototype(*args, **kwargs)  # one model run (prior draws): RNG forked
        if [s.shape for s in latent_layout(copy)] != [s.shape for s in layout]:
            raise ValueError(
                "the model's latent shapes under the forget data differ from the guide's: "
                "EUBO/rKL need global latent variables whose shapes do not depend on the data"
            )
        loc = gaussian.loc.clone()
        if family == "delta":
            for site in layout:
                event_dim = site.event_dim - len(site.unconstrained_shape) + len(site.shape)
                value = site.constrain(loc[site.slice])
                deep_setattr(copy, site.name, PyroParam(value, site.support, event_dim))
        elif family == "diagonal":
            scale = gaussian.precision.diagonal().rsqrt()
            for site in layout:
                shape = site.unconstrained_shape
                deep_setattr(
                    copy.locs,
                    site.name,
                    PyroParam(loc[site.slice].reshape(shape), constraints.real, site.event_dim),
                )
                deep_setattr(
                    copy.scales,
                    site.name,
                    PyroParam(
                        scale[site.slice].reshape(shape), copy.scale_constraint, site.event_dim
                    ),
                )
        elif family == "multivariate":
            chol = gaussian.cholesky()
            copy.loc = torch.nn.Parameter(loc)
            copy.scale = PyroParam(chol.diagonal().clone(), copy.scale_constraint)
            copy.scale_tril = PyroParam(chol / chol.diagonal()[:, None], copy.scale_tril_constraint)
        else:
            cov = gaussian.covariance
            eigenvalues, vectors = torch.linalg.eigh(cov)
            rank = copy.rank
            diag = eigenvalues[:-rank].mean() if len(eigenvalues) > rank else eigenvalues[0] / 2
            factor = vectors[:, -rank:] * (eigenvalues[-rank:] - diag).clamp(min=0).sqrt()
            residual = (cov.diagonal() - factor.pow(2).sum(-1)).clamp(
                min=1e-12 * cov.diagonal().max()
            )
            copy.loc = torch.nn.Parameter(loc)
            copy.cov_factor = torch.nn.Parameter(factor)
            copy.scale = PyroParam(residual.sqrt(), copy.scale_constraint)
    return copy


_COPY_IDS = itertools.count()


def freeze(guide: AutoGuide) -> AutoGuide:
    """Turn a trained guide's parameters into buffers, in place: a fixed posterior.

    A frozen guide never reads or writes the global param store, so handing it to
    ``Predictive`` or to a later unlearning call cannot disturb anything else.
    """
    with pyro.settings.context(module_local_params=True), torch.no_grad():
        for module in list(guide.modules()):
            constrained = list(getattr(module, "_pyro_params", {}))
            plain = [
                n
                for n, value in module._parameters.items()
                if value is not None and n.removesuffix("_unconstrained") not in constrained
            ]
            for name in constrained + plain:
                value = getattr(module, name).detach().clone()
                delattr(module, name)
                module.register_buffer(name, value)
    guide.fitted_by = "variational"  # tells it apart from a Laplace approximation's buffers
    return guide


def trainable_view(guide: AutoGuide, layout: list[LatentSite]):
    r"""``draw(P) -> (z, log q(z))``: reparameterised draws of a trainable guide's flat posterior.

    ``z`` has shape ``(P, d)`` in the unconstrained space (the order of ``layout``), and
    gradients flow into the guide's parameters. Call it where the guide's parameters are read
    (under ``module_local_params=True`` for the library's copies). A point estimate
    (AutoDelta) returns its one point with :math:`\log q = 0` (it has no entropy term).
    """
    if isinstance(guide, AutoContinuous):

        def draw(num: int):
            posterior = guide.get_posterior()
            z = posterior.rsample((num,))
            return z, posterior.log_prob(z)

        return draw
    if isinstance(guide, AutoNormal):

        def draw(num: int):
            locs, scales = [], []
            for site in layout:
                loc, scale = guide._get_loc_and_scale(site.name)
                locs.append(loc.reshape(-1))
                scales.append(scale.reshape(-1))
            posterior = Normal(torch.cat(locs), torch.cat(scales)).to_event(1)
            z = posterior.rsample((num,))
            return z, posterior.log_prob(z)

        return draw
    if isinstance(guide, AutoDelta):

        def draw(num: int):
            z = torch.cat([s.unconstrain(_attribute(guide, s.name)).reshape(-1) for s in layout])
            return z.unsqueeze(0), z.new_zeros(1)

        return draw
    raise TypeError(f"{type(guide).__name__} is not a trainable autoguide family")


def _attribute(module, dotted: str):
    """``module.a.b`` for the name ``"a.b"`` (how autoguides nest PyroModule site names)."""
    for part in dotted.split("."):
        module = getattr(module, part)
    return module

r"""Retraining references: the posterior of the retained data, computed from scratch.

``retrain`` runs NUTS/HMC (``pyro.infer.MCMC``), SVI or a closed form on the model under
:func:`~pyro_unlearn.retain` (the forget elements masked out of the likelihood), so the
same full data arrays serve every method. MCMC references record :math:`\hat R` and
bulk/tail ESS and are *flagged* when :math:`\hat R \ge 1.01` or ESS < 400: a reference that
is itself unconverged must not be used silently as the truth.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyro
import torch
from pyro.infer import HMC, MCMC, NUTS

from .. import _rng
from ..fit import fit_svi
from ..handlers import retain
from ..handlers.plate_mask import MaskLike

RHAT_MAX = 1.01
ESS_MIN = 400
METHODS = ("nuts", "hmc", "svi", "exact")


@dataclass
class Reference:
    """Posterior draws of the retained-data posterior, with their quality checks.

    Attributes
    ----------
    samples : dict of str to tensor
        Draws with shape ``(num_chains, num_draws, *site_shape)``.
    method : str
    seconds : float
        Wall time of the retraining.
    diagnostics : dict
        ``rhat_max``, ``ess_bulk_min``, ``ess_tail_min`` (MCMC), ``trustworthy``, ``problems``.
    """

    samples: dict[str, torch.Tensor]
    method: str
    seconds: float
    diagnostics: dict = field(default_factory=dict)

    @property
    def trustworthy(self) -> bool:
        return bool(self.diagnostics.get("trustworthy", True))

    def flat(self, name: str) -> torch.Tensor:
        """Draws of site ``name`` with chains merged: ``(num_chains * num_draws, *shape)``."""
        value = self.samples[name]
        return value.reshape((-1,) + value.shape[2:])

    def to_inference_data(self):
        """An ArviZ ``InferenceData`` with a ``posterior`` group."""
        import arviz as az

        posterior = {k: v.detach().cpu().numpy() for k, v in self.samples.items()}
        idata = az.from_dict(posterior=posterior)
        attrs = {"method": self.method, "seconds": self.seconds}
        attrs.update({k: _attr(v) for k, v in self.diagnostics.items()})
        idata.posterior.attrs.update(attrs)
        return idata

    def save(self, path: str | Path) -> None:
        """Write to netCDF, so that a slow reference is computed once."""
        self.to_inference_data().to_netcdf(str(path))

    @classmethod
    def load(cls, path: str | Path) -> Reference:
        import arviz as az

        idata = az.from_netcdf(str(path))
        attrs = dict(idata.posterior.attrs)
        samples = {
            k: torch.as_tensor(np.asarray(v.values)) for k, v in idata.posterior.data_vars.items()
        }
        method, seconds = attrs.pop("method"), float(attrs.pop("seconds"))
        for k in ("created_at", "arviz_version", "inference_library", "inference_library_version"):
            attrs.pop(k, None)
        diagnostics = {k: _unattr(v) for k, v in attrs.items()}
        return cls(samples, method, seconds, diagnostics)


def _request(method: str, forget_mask, plate: str) -> str:
    """What a cached reference was computed for: the method, the plate and the forget set."""
    mask = torch.as_tensor(forget_mask).cpu()
    ids = mask.nonzero().flatten() if mask.dtype == torch.bool else mask.flatten().long()
    ids = torch.unique(ids)  # sorted: a request is a set of ids
    digest = hashlib.sha1(ids.numpy().astype("<i8").tobytes()).hexdigest()[:12]
    return f"{method} on plate {plate!r} without {len(ids)} elements (ids sha1 {digest})"


def _attr(value):
    if isinstance(value, bool | np.bool_):
        return int(value)
    if isinstance(value, list | tuple):
        return "; ".join(map(str, value))
    return value


def _unattr(value):
    if isinstance(value, np.generic):
        return value.item()
    return value


def convergence(samples: dict[str, torch.Tensor]) -> dict:
    """:math:`\\hat R` and bulk/tail ESS over all sites, and whether they pass the bars."""
    import arviz as az

    idata = az.from_dict(posterior={k: v.detach().cpu().numpy() for k, v in samples.items()})
    rhat = az.rhat(idata)
    bulk = az.ess(idata, method="bulk")
    tail = az.ess(idata, method="tail")
    rhat_max = max(float(rhat[k].max()) for k in rhat.data_vars)
    bulk_min = min(float(bulk[k].min()) for k in bulk.data_vars)
    tail_min = min(float(tail[k].min()) for k in tail.data_vars)
    problems = []
    if not rhat_max < RHAT_MAX:
        problems.append(f"rhat {rhat_max:.3f} >= {RHAT_MAX}")
    if not bulk_min >= ESS_MIN:
        problems.append(f"bulk ESS {bulk_min:.0f} < {ESS_MIN}")
    if not tail_min >= ESS_MIN:
        problems.append(f"tail ESS {tail_min:.0f} < {ESS_MIN}")
    return {
        "rhat_max": rhat_max,
        "ess_bulk_min": bulk_min,
        "ess_tail_min": tail_min,
        "trustworthy": not problems,
        "problems": problems,
    }


def retrain(
    model,
    *args,
    forget_mask: MaskLike,
    plate: str,
    method: str = "nuts",
    num_samples: int = 1000,
    warmup_steps: int = 1000,
    num_chains: int = 2,
    seed: int = 0,
    svi_steps: int = 3000,
    lr: float = 0.01,
    progress_bar: bool = True,
    cache: str | Path | None = None,
    **kwargs,
) -> Reference:
    """Posterior of the retained data, from scratch, on the full data arrays.

    Parameters
    ----------
    model : callable
        The Pyro model; with ``method="exact"`` a bound ``model`` method of a conjugate
        reference (:class:`~pyro_unlearn.BayesianLinearRegression`), whose data arguments
        are sliced along their first dimension.
    *args, **kwargs
        The full data, as the model takes them.
    forget_mask, plate
        The elements to leave out, over plate ``plate`` (as in :func:`~pyro_unlearn.retain`).
    method : {"nuts", "hmc", "svi", "exact"}
        NUTS/HMC: ``num_chains`` chains run one after another (reliable on any machine),
        ``warmup_steps`` + ``num_samples`` each, dense mass matrix (HMC: trajectory
        length 2 in the whitened space, between a quarter and a half orbit of a Gaussian,
        so successive draws are anti- rather than positively correlated; Pyro's default
        of 2 pi is a full orbit). SVI: an
        AutoMultivariateNormal fitted for ``svi_steps`` steps, ``num_samples`` draws.
    cache : path, optional
        A netCDF file: loaded if it exists, written after computing otherwise. The file
        records its request (method, plate and forget set); loading it for another request
        raises ``ValueError`` rather than returning a posterior of other data.
    """
    from ..diagnostics.inference_data import posterior_draws  # diagnostics imports this module

    if method not in METHODS:
        raise ValueError(f"retrain method must be one of {METHODS}, got {method!r}")
    request = _request(method, forget_mask, plate)
    if cache is not None and Path(cache).exists():
        reference = Reference.load(cache)
        if reference.diagnostics.get("request") != request:
            raise ValueError(
                f"cache {cache} holds a reference for another request "
                f"({reference.diagnostics.get('request', 'not recorded')}), not for this one "
                f"({request}): delete the file or pass another cache path"
            )
        return reference
    start = time.perf_counter()
    retained_model = retain(model, mask=forget_mask, plate=plate)
    if method in ("nuts", "hmc"):
        chains = []
        for chain in range(num_chains):
            pyro.set_rng_seed(seed + chain)
            if method == "nuts":
                kernel = NUTS(retained_model, full_mass=True)
            else:  # the default 2 pi is a full orbit of a whitened Gaussian: no mixing at all
                kernel = HMC(retained_model, full_mass=True, trajectory_length=2.0)
            mcmc = MCMC(
                kernel,
                num_samples=num_samples,
                warmup_steps=warmup_steps,
                disable_progbar=not progress_bar,
            )
            mcmc.run(*args, **kwargs)
            chains.append(mcmc.get_samples())
        samples = {k: torch.stack([c[k] for c in chains]) for k in chains[0]}
        diagnostics = convergence(samples)
    elif method == "svi":
        guide = fit_svi(retained_model, *args, num_steps=svi_steps, lr=lr, seed=seed, **kwargs)
        with torch.no_grad():
            draws = posterior_draws(guide, retained_model, args, kwargs, num_samples, seed)
        samples = {k: v for k, v in draws.items()}
        diagnostics = {"trustworthy": True, "svi_steps": svi_steps}
    else:
        samples, diagnostics = _exact(model, args, forget_mask, num_samples, seed)
    diagnostics["request"] = request
    reference = Reference(samples, method, time.perf_counter() - start, diagnostics)
    if cache is not None:
        Path(cache).parent.mkdir(parents=True, exist_ok=True)
        reference.save(cache)
    return reference


def _exact(model, args, forget_mask, num_samples, seed):
    owner = getattr(model, "__self__", None)
    if owner is None or not hasattr(owner, "posterior"):
        raise ValueError(
            "method='exact' needs the model method of a conjugate reference, e.g. "
            "BayesianLinearRegression(...).model"
        )
    data = [a for a in args if isinstance(a, torch.Tensor)]
    keep = torch.ones(len(data[0]), dtype=torch.bool)
    keep[torch.as_tensor(forget_mask)] = False
    posterior = owner.posterior(*[a[keep] for a in data])
    eps = _rng.normal((num_samples, len(posterior.mean)), _rng.generator(seed), posterior.mean)
    draws = posterior.mean + eps @ torch.linalg.cholesky(posterior.covariance).T
    return {"w": draws.unsqueeze(0)}, {"trustworthy": True}

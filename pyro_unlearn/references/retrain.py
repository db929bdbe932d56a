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
import torch
from pyro.infer import HMC, MCMC, NUTS

from .. import _checks, _rng
from .._user_model import user_call
from ..fit import fit_svi
from ..handlers import retain
from ..masks import MaskLike
from ..posteriors import posterior_draws

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
        """ArviZ's container (``InferenceData`` on 0.2x, ``DataTree`` on 1.x): ``posterior``."""
        from .. import arviz_compat

        posterior = {k: v.detach().cpu().numpy() for k, v in self.samples.items()}
        attrs = {"method": self.method, "seconds": self.seconds}
        attrs.update({k: _attr(v) for k, v in self.diagnostics.items()})
        return arviz_compat.from_dict({"posterior": posterior}, {"posterior": attrs})

    def save(self, path: str | Path) -> None:
        """Write to netCDF (atomically), so that a slow reference is computed once."""
        from .. import arviz_compat

        arviz_compat.to_netcdf(self.to_inference_data(), str(path))

    @classmethod
    def load(cls, path: str | Path) -> Reference:
        """Read a reference written by :meth:`save` (with either ArviZ line)."""
        from .. import arviz_compat

        posterior = arviz_compat.group(arviz_compat.from_netcdf(str(path)), "posterior")
        attrs = dict(posterior.attrs)
        if "method" not in attrs or "seconds" not in attrs:
            raise ValueError(
                f"{path} is not a retraining reference written by pyro-unlearn (its posterior "
                "group has no method/seconds attributes): delete it or pass another cache path"
            )
        samples = {k: torch.as_tensor(np.asarray(v.values)) for k, v in posterior.data_vars.items()}
        method, seconds = attrs.pop("method"), float(attrs.pop("seconds"))
        for k in list(attrs):
            if k in _ARVIZ_ATTRS or k.startswith("creation_library"):
                attrs.pop(k)
        diagnostics = {k: _unattr(v) for k, v in attrs.items()}
        return cls(samples, method, seconds, diagnostics)


_ARVIZ_ATTRS = (
    "created_at",
    "arviz_version",
    "inference_library",
    "inference_library_version",
    "sample_dims",
)


def _request(method: str, forget_mask, plate: str | int) -> str:
    """The method, the plate and the forget set of a reference."""
    mask = torch.as_tensor(forget_mask).cpu()
    ids = mask.nonzero().flatten() if mask.dtype == torch.bool else mask.flatten().long()
    ids = torch.unique(ids)  # sorted: a request is a set of ids
    digest = hashlib.sha1(ids.numpy().astype("<i8").tobytes()).hexdigest()[:12]
    return f"{method} on plate {plate!r} without {len(ids)} elements (ids sha1 {digest})"


def _fingerprint(value, digest) -> None:
    if isinstance(value, torch.Tensor):
        digest.update(repr((str(value.dtype), tuple(value.shape))).encode())
        value = value.detach().cpu()
        if value.is_floating_point():  # float32 digits: immune to last-bit BLAS differences
            value = value.to(torch.float32)
        digest.update(value.contiguous().numpy().tobytes())
    elif isinstance(value, dict):
        for key in sorted(value, key=str):
            digest.update(repr(key).encode())
            _fingerprint(value[key], digest)
    elif isinstance(value, list | tuple):
        digest.update(f"{type(value).__name__}{len(value)}".encode())
        for item in value:
            _fingerprint(item, digest)
    else:
        digest.update(repr(value).encode())


def data_fingerprint(args: tuple, kwargs: dict) -> str:
    """sha1 (12 hex digits) of the model's arguments: values, shapes and dtypes."""
    digest = hashlib.sha1()
    _fingerprint((tuple(args), dict(kwargs)), digest)
    return digest.hexdigest()[:12]


def model_identity(model) -> str:
    """The model's qualified name, with its owner's settings (a dataclass's repr) or its
    module's state (parameters and buffers), so that another model reads as another."""
    owner = model if isinstance(model, torch.nn.Module) else getattr(model, "__self__", None)
    if isinstance(owner, torch.nn.Module):
        digest = hashlib.sha1()
        _fingerprint(dict(owner.state_dict()), digest)
        return f"{type(owner).__module__}.{type(owner).__qualname__} (state sha1 {digest.hexdigest()[:12]})"
    if owner is not None:
        return f"{owner!r}.{getattr(model, '__name__', 'model')}"
    return f"{getattr(model, '__module__', '?')}.{getattr(model, '__qualname__', repr(model))}"


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
    from .. import arviz_compat

    draws = {k: v.detach().cpu().numpy() for k, v in samples.items()}
    rhat_max = max(float(arviz_compat.rhat(v).max()) for v in draws.values())
    bulk_min = min(float(arviz_compat.ess(v, method="bulk").min()) for v in draws.values())
    tail_min = min(float(arviz_compat.ess(v, method="tail").min()) for v in draws.values())
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
    plate: str | int,
    method: str = "nuts",
    num_samples: int = 1000,
    warmup_steps: int = 1000,
    num_chains: int = 2,
    seed: int = 0,
    svi_steps: int = 3000,
    lr: float = 0.01,
    progress_bar: bool = True,
    cache: str | Path | None = None,
    init_strategy=None,
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
        A netCDF file: loaded if it exists, written (atomically) after computing otherwise.
        The file records what determines the reference: the request (method, plate, forget
        set), the model (:func:`model_identity`), a fingerprint of the data
        (:func:`data_fingerprint`) and the settings (draws, warmup, chains, steps, seed);
        loading it for a call that differs in any of them raises ``ValueError`` naming what
        differs, rather than returning a posterior of other data, and a corrupt file is a
        ``ValueError`` naming the file.
    init_strategy : callable, optional
        NUTS/HMC's initialisation (``pyro.infer.autoguide.init_to_value(...)`` keeps every
        chain in one mode of a symmetric model, e.g. a mixture's label order).
    """
    if method not in METHODS:
        raise ValueError(f"retrain method must be one of {METHODS}, got {method!r}")
    _checks.count("num_samples", num_samples)
    _checks.count("warmup_steps", warmup_steps, minimum=0)
    _checks.count("num_chains", num_chains)
    _checks.count("svi_steps", svi_steps)
    _checks.positive("lr", lr)
    _checks.seed(seed)
    _checks.finite_data(args, kwargs)
    settings = ", ".join(
        f"{k}={v}"
        for k, v in {
            "num_samples": num_samples,
            "warmup_steps": warmup_steps if method in ("nuts", "hmc") else None,
            "num_chains": num_chains if method in ("nuts", "hmc") else None,
            "svi_steps": svi_steps if method == "svi" else None,
            "lr": lr if method == "svi" else None,
            "seed": seed,
        }.items()
        if v is not None
    )
    stamp = {
        "request": _request(method, forget_mask, plate),
        "model": model_identity(model),
        "data_sha1": data_fingerprint(args, kwargs),
        "settings": settings,
    }
    if cache is not None and Path(cache).exists():
        reference = Reference.load(cache)
        for key, wanted in stamp.items():
            stored = reference.diagnostics.get(key, "not recorded")
            if stored != wanted:
                raise ValueError(
                    f"cache {cache} holds a reference computed for another {key.replace('_sha1', '')} "
                    f"({stored}), not for this call ({wanted}): delete the file or pass another "
                    "cache path"
                )
        return reference
    start = time.perf_counter()
    retained_model = retain(user_call(model), mask=forget_mask, plate=plate)
    init = {} if init_strategy is None else {"init_strategy": init_strategy}
    if method in ("nuts", "hmc"):
        chains = []
        for chain in range(num_chains):
            with torch.random.fork_rng():  # seeded here; the caller's RNG state untouched
                torch.manual_seed(seed + chain)
                if method == "nuts":
                    kernel = NUTS(retained_model, full_mass=True, **init)
                else:  # the default 2 pi is a full orbit of a whitened Gaussian: no mixing
                    kernel = HMC(retained_model, full_mass=True, trajectory_length=2.0, **init)
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
    diagnostics.update(stamp)
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

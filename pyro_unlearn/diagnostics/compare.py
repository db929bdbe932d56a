r"""Original vs unlearned vs retrained, side by side, as a pandas DataFrame.

Every metric is a distance *to the reference* (the retrained posterior): lower is closer
to retraining, and the reference row itself is 0 by construction. The noise floor row
compares a second, independent reference run with the first, so "equal to retraining"
means "within the noise floor".

* ``kl_mm``: :math:`\mathrm{KL}(\mathcal N_q \,\|\, \mathcal N_{\mathrm{ref}})` between
  moment-matched Gaussians of the latent draws (all sites, flattened, in the unconstrained
  space the autoguides use: a scale by its log, a simplex without its redundant coordinate).
* ``energy``: energy distance between the draws (sees skew and multimodality).
* ``mean_err``: :math:`\max_j |\bar\theta_j - \bar\theta^{\mathrm{ref}}_j| / \mathrm{sd}^{\mathrm{ref}}_j`;
  ``sd_err``: :math:`\max_j |\mathrm{sd}_j/\mathrm{sd}^{\mathrm{ref}}_j - 1|`.
* ``pred_kl_forget`` / ``pred_kl_retained``: the VBU metric, the predictive
  :math:`\mathrm{KL}(p_{\mathrm{ref}}(y_i\mid x_i) \,\|\, p_q(y_i\mid x_i))` averaged over the forget /
  retained points (exact over the support for discrete likelihoods, Monte Carlo otherwise).
* ``elpd_forget``: :math:`\sum_{i\in D_e}\log \frac1S\sum_s p(y_i\mid\theta_s)`; compare with the
  reference's value, not with "higher is better" (a posterior that fits the forgotten
  points too well still remembers them).
* ``gap_closed``: :math:`1 - \mathrm{kl\_mm}/\mathrm{kl\_mm}(\text{original})`.
"""

from __future__ import annotations

import math

import torch

from .. import _checks, _rng
from ..certificate import certify
from ..errors import BadRequestError, UnsupportedPosteriorError
from ..gaussian import FlatGaussian
from ..model_eval import MissingLatentError, ModelEvaluator
from .inference_data import aligned_draws, forget_split, posterior_draws
from .metrics import energy_distance, gap_closed, moment_matched


def _flatten(draws: dict[str, torch.Tensor]) -> torch.Tensor:
    """Flat draws ``{site: (S, *shape)}`` -> one ``(S, D)`` matrix (in the dict's order)."""
    return torch.cat([v.reshape(len(v), -1) for v in draws.values()], -1)


def _flat_draws(draws):
    return {k: v.reshape((-1,) + v.shape[2:]) for k, v in draws.items()}


def _log_mean_exp(x: torch.Tensor) -> torch.Tensor:
    return x.logsumexp(0) - math.log(len(x))


def predictive_kl(
    model,
    ref_draws,
    draws,
    args,
    kwargs=None,
    num_y: int = 100,
    seed: int = 0,
    evaluator: ModelEvaluator | None = None,
) -> dict[str, torch.Tensor]:
    r"""Per-point :math:`\mathrm{KL}(p_{\mathrm{ref}}(y_i) \,\|\, p_q(y_i))` for each observed site.

    Discrete likelihoods (with ``enumerate_support``): exact sums over the support.
    Otherwise: :math:`\frac1K\sum_k \log p_{\mathrm{ref}}(y_k) - \log p_q(y_k)` with
    :math:`y_k` drawn from the reference predictive. ``draws`` and ``ref_draws`` are flat
    ``{site: (S, *shape)}``.
    """
    evaluator = evaluator or ModelEvaluator(model, args, kwargs)
    first = {k: v[0] for k, v in ref_draws.items()}
    evaluator.structure({k: v[:1] for k, v in ref_draws.items()})
    data = evaluator.observed_values(first)
    fns = {n: s["fn"] for n, s in evaluator.traces(first)[0].nodes.items() if n in data}

    def log_predictive(site, posterior_draws, y):
        lp = evaluator.pointwise_log_likelihood(posterior_draws, observed={site: y})[site]
        return _log_mean_exp(lp)

    out = {}
    for name, observed in data.items():
        fn = fns[name]
        discrete = (
            fn.has_enumerate_support and fn.event_shape == () and not evaluator.enumerated_sites
        )
        if discrete:
            kl = torch.zeros(observed.shape, dtype=torch.get_default_dtype())
            for value in fn.enumerate_support(expand=False).reshape(-1):
                y = torch.full_like(observed, float(value))
                lp_ref = log_predictive(name, ref_draws, y)
                kl = kl + lp_ref.exp() * (lp_ref - log_predictive(name, draws, y))
            out[name] = kl
            continue
        num = len(next(iter(ref_draws.values())))
        picks = _rng.integers(0, num, num_y, _rng.generator(seed))
        total = 0.0
        for k, pick in enumerate(picks.tolist()):
            reference_draw = {key: v[pick] for key, v in ref_draws.items()}
            y = evaluator.observed_values(reference_draw, seed=seed + k)[name]
            total = total + (log_predictive(name, ref_draws, y) - log_predictive(name, draws, y))
        out[name] = total / num_y
    return out


def compare_posteriors(
    posteriors: dict,
    model,
    *args,
    forget_mask,
    plate: str | int = "data",
    reference: str = "retrained",
    original: str | None = "original",
    noise_floor=None,
    num_samples: int = 2000,
    model_kwargs: dict | None = None,
    seed: int = 0,
    certificate_samples: int = 4000,
):
    """Compare named posteriors with the reference one; one row per posterior.

    Sites are lined up by name, whatever form and site order each posterior comes in; every
    posterior must hold draws of each latent site of the model (a missing one is a
    ``KeyError`` naming it). Enumerated discrete sites are summed out of the likelihoods and
    are not compared.

    Parameters
    ----------
    posteriors : dict
        Name to posterior (guide, UnlearnResult, WeightedSamples, MCMC, Reference, dict of draws).
    model, *args
        The model and the *full* data (forget and retained).
    forget_mask : bool tensor or indices
        The forget elements of plate ``plate``.
    plate : str or int
        The data plate, or the batch dim of an observed vector outside any plate (``-1``).
    reference, original : str
        Names of the retrained reference and of the posterior before unlearning.
    noise_floor : posterior, optional
        A second, independent retraining reference; compared with ``reference`` in its own row.
    certificate_samples : int
        Draws of :func:`~pyro_unlearn.certify` for the columns ``cert_kl`` (the certificate's
        estimate of KL to retraining, made without the reference), ``cert_se``,
        ``cert_reliable`` and ``cert_moment_kl`` (the certificate's estimate of ``kl_mm``,
        over the unconstrained vector; NaN where k-hat > 0.7); draws are certified
        through their moment-matched Gaussian, so the reference's own row is the
        certificate's floor. 0 skips them.

    Returns
    -------
    pandas.DataFrame
        One row per posterior: ``kl_mm`` (KL of the moment-matched posterior to the
        moment-matched reference), ``energy``, ``mean_err`` and ``sd_err`` (in reference sds),
        predictive KLs on the forget and retained data, ``elpd_forget``, ``gap_closed``, and
        the certificate's columns.
    """
    import pandas as pd

    _checks.count("num_samples", num_samples, minimum=2)
    _checks.seed(seed)
    if not isinstance(posteriors, dict) or not posteriors:
        raise BadRequestError("posteriors must be a non-empty dict of name -> posterior")
    if reference not in posteriors:
        raise KeyError(f"reference {reference!r} is not among the posteriors {list(posteriors)}")
    entries = dict(posteriors)
    if noise_floor is not None:
        entries["noise floor (2nd reference)"] = noise_floor
    draws = {
        name: _flat_draws(posterior_draws(p, model, args, model_kwargs, num_samples, seed))
        for name, p in entries.items()
    }
    evaluator = ModelEvaluator(model, args, model_kwargs)
    try:
        evaluator.structure(draws[reference])
    except MissingLatentError as error:
        aligned_draws(draws[reference], [error.site], reference)  # raises, naming the site
    latent_sites = evaluator.latent_sites()
    draws = {name: aligned_draws(d, latent_sites, name) for name, d in draws.items()}
    unconstrained = {name: _unconstrained(evaluator, d) for name, d in draws.items()}
    ref = draws[reference]
    ref_flat = _flatten(unconstrained[reference])
    ref_gauss = moment_matched(ref_flat)
    ref_mean, ref_sd = ref_flat.mean(0), ref_flat.std(0)
    rows = []
    for name, d in draws.items():
        flat = _flatten(unconstrained[name])
        row = {
            "posterior": name,
            "kl_mm": _moment_matched_kl(flat, ref_gauss),
            "energy": energy_distance(flat, ref_flat),
            "mean_err": float(((flat.mean(0) - ref_mean).abs() / ref_sd).max()),
            "sd_err": float((flat.std(0) / ref_sd - 1).abs().max()),
        }
        with torch.no_grad():
            kl = predictive_kl(model, ref, d, args, model_kwargs, seed=seed, evaluator=evaluator)
            log_lik = evaluator.pointwise_log_likelihood(d)
        forget_parts, retained_parts, elpd = [], [], 0.0
        for site, values in kl.items():
            forget_kl, retained_kl = forget_split(evaluator, site, values, forget_mask, plate)
            forget_parts.append(forget_kl.reshape(-1))
            retained_parts.append(retained_kl.reshape(-1))
            forget_ll, _ = forget_split(evaluator, site, log_lik[site], forget_mask, plate)
            elpd += float(_log_mean_exp(forget_ll).sum())
        row["pred_kl_forget"] = float(torch.cat(forget_parts).mean())
        retained = torch.cat(retained_parts)
        row["pred_kl_retained"] = float(retained.mean()) if retained.numel() else float("nan")
        row["elpd_forget"] = elpd
        if certificate_samples:
            row.update(
                _certificate_columns(
                    entries[name],
                    model,
                    args,
                    forget_mask,
                    plate,
                    model_kwargs,
                    certificate_samples,
                    seed,
                )
            )
        rows.append(row)
    frame = pd.DataFrame(rows).set_index("posterior")
    if original is not None and original in frame.index:
        frame["gap_closed"] = [gap_closed(v, frame.loc[original, "kl_mm"]) for v in frame["kl_mm"]]
    frame.attrs["evaluator"] = evaluator.describe()
    return frame


def _certificate_columns(posterior, model, args, forget_mask, plate, kwargs, num, seed) -> dict:
    """The certificate of one posterior; NaN for what has no spread (points, networks)."""
    try:
        cert = certify(
            posterior,
            model,
            *args,
            forget_mask=forget_mask,
            plate=plate,
            model_kwargs=kwargs,
            num_samples=num,
            seed=seed,
        )
    except UnsupportedPosteriorError:
        return {
            "cert_kl": float("nan"),
            "cert_se": float("nan"),
            "cert_reliable": False,
            "cert_moment_kl": float("nan"),
        }
    return {
        "cert_kl": cert.kl,
        "cert_se": cert.standard_error,
        "cert_reliable": cert.reliable,
        "cert_moment_kl": cert.moment_kl,
    }


def _unconstrained(evaluator: ModelEvaluator, draws: dict[str, torch.Tensor]) -> dict:
    """Draws mapped to the unconstrained space of each site (as the autoguides see them):
    a simplex loses its redundant coordinate, a scale becomes its log."""
    from pyro.distributions.transforms import biject_to

    return {
        name: biject_to(evaluator.structure_of(name).support).inv(value)
        for name, value in draws.items()
    }


def _moment_matched_kl(flat: torch.Tensor, reference: FlatGaussian) -> float:
    """KL of the draws' moment-matched Gaussian to the reference's; ``inf`` for draws whose
    covariance is singular (a point estimate has no spread to match)."""
    try:
        gauss = moment_matched(flat)
        return float(gauss.kl(reference))
    except torch.linalg.LinAlgError:
        return float("inf")

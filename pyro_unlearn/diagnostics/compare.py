r"""Original vs unlearned vs retrained, side by side, as a pandas DataFrame.

Every metric is a distance *to the reference* (the retrained posterior): lower is closer
to retraining, and the reference row itself is 0 by construction. The noise floor row
compares a second, independent reference run with the first, so "equal to retraining"
means "within the noise floor".

* ``kl_mm``: :math:`\mathrm{KL}(\mathcal N_q \,\|\, \mathcal N_{\mathrm{ref}})` between
  moment-matched Gaussians of the latent draws (all sites, flattened).
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

from .. import _rng
from ..handlers.plate_mask import as_index_tensor
from ..references.conjugate import GaussianPosterior
from ..vectorized import vectorized_trace
from .inference_data import pointwise_log_likelihood, posterior_draws
from .metrics import energy_distance, gap_closed, moment_matched


def _flatten(draws: dict[str, torch.Tensor]) -> torch.Tensor:
    """Flat draws ``{site: (S, *shape)}`` -> one ``(S, D)`` matrix."""
    return torch.cat([v.reshape(len(v), -1) for v in draws.values()], -1)


def _flat_draws(draws):
    return {k: v.reshape((-1,) + v.shape[2:]) for k, v in draws.items()}


def _predictive_log_probs(model, draws, args, kwargs, site, values):
    """log p(y = values | theta_s) per draw and point: ``(S, *batch)``."""
    from pyro import poutine

    conditioned = poutine.condition(model, {site: values})
    return pointwise_log_likelihood(conditioned, draws, args, kwargs)[site]


def _log_mean_exp(x: torch.Tensor) -> torch.Tensor:
    return x.logsumexp(0) - math.log(len(x))


def predictive_kl(
    model, ref_draws, draws, args, kwargs=None, num_y: int = 100, seed: int = 0
) -> dict[str, torch.Tensor]:
    r"""Per-point :math:`\mathrm{KL}(p_{\mathrm{ref}}(y_i) \,\|\, p_q(y_i))` for each observed site.

    Discrete likelihoods (with ``enumerate_support``): exact sums over the support.
    Otherwise: :math:`\frac1K\sum_k \log p_{\mathrm{ref}}(y_k) - \log p_q(y_k)` with
    :math:`y_k` drawn from the reference predictive.
    """
    from pyro import poutine

    trace = poutine.trace(model).get_trace(*args, **(kwargs or {}))
    out = {}
    for name, site in trace.nodes.items():
        if site["type"] != "sample" or not site["is_observed"]:
            continue
        observed = site["value"]
        if site["fn"].has_enumerate_support and site["fn"].event_shape == ():
            kl = torch.zeros_like(observed, dtype=torch.get_default_dtype())
            for value in site["fn"].enumerate_support(expand=False).reshape(-1):
                y = torch.full_like(observed, float(value))
                lp_ref = _log_mean_exp(
                    _predictive_log_probs(model, ref_draws, args, kwargs, name, y)
                )
                lp_q = _log_mean_exp(_predictive_log_probs(model, draws, args, kwargs, name, y))
                kl = kl + lp_ref.exp() * (lp_ref - lp_q)
            out[name] = kl
            continue
        num = len(next(iter(ref_draws.values())))
        picks = _rng.integers(0, num, num_y, _rng.generator(seed))
        chosen = {k: v[picks] for k, v in ref_draws.items()}
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            trace_y, _ = vectorized_trace(model, chosen, args, kwargs)
            y_samples = trace_y.nodes[name]["fn"].sample()  # one y per chosen reference draw
        total = 0.0
        for k in range(num_y):
            y = y_samples[k]
            lp_ref = _log_mean_exp(_predictive_log_probs(model, ref_draws, args, kwargs, name, y))
            lp_q = _log_mean_exp(_predictive_log_probs(model, draws, args, kwargs, name, y))
            total = total + (lp_ref - lp_q)
        out[name] = total / num_y
    return out


def compare_posteriors(
    posteriors: dict,
    model,
    *args,
    forget_mask,
    plate: str = "data",
    reference: str = "retrained",
    original: str | None = "original",
    noise_floor=None,
    num_samples: int = 2000,
    model_kwargs: dict | None = None,
    seed: int = 0,
):
    """Compare named posteriors with the reference one; one row per posterior.

    Parameters
    ----------
    posteriors : dict
        Name to posterior (guide, UnlearnResult, WeightedSamples, MCMC, Reference, dict of draws).
    model, *args
        The model and the *full* data (forget and retained).
    forget_mask : bool tensor or indices
        The forget elements of plate ``plate`` (data points along the plate's dim, -1).
    reference, original : str
        Names of the retrained reference and of the posterior before unlearning.
    noise_floor : posterior, optional
        A second, independent retraining reference; compared with ``reference`` in its own row.
    """
    import pandas as pd

    if reference not in posteriors:
        raise KeyError(f"reference {reference!r} is not among the posteriors {list(posteriors)}")
    entries = dict(posteriors)
    if noise_floor is not None:
        entries["noise floor (2nd reference)"] = noise_floor
    draws = {
        name: _flat_draws(posterior_draws(p, model, args, model_kwargs, num_samples, seed))
        for name, p in entries.items()
    }
    ref = draws[reference]
    ref_flat = _flatten(ref)
    ref_gauss = moment_matched(ref_flat)
    ref_mean, ref_sd = ref_flat.mean(0), ref_flat.std(0)
    n_total = None
    rows = []
    for name, d in draws.items():
        flat = _flatten(d)
        gauss = moment_matched(flat)
        row = {
            "posterior": name,
            "kl_mm": float(GaussianPosterior(gauss.mean, gauss.precision).kl(ref_gauss)),
            "energy": energy_distance(flat, ref_flat),
            "mean_err": float(((flat.mean(0) - ref_mean).abs() / ref_sd).max()),
            "sd_err": float((flat.std(0) / ref_sd - 1).abs().max()),
        }
        kl = predictive_kl(model, ref, d, args, model_kwargs, seed=seed)
        log_lik = pointwise_log_likelihood(model, d, args, model_kwargs)
        forget_parts, retained_parts, elpd = [], [], 0.0
        for site, values in kl.items():
            size = values.shape[-1]
            n_total = size
            index = as_index_tensor(forget_mask, size)
            keep = torch.ones(size, dtype=torch.bool)
            keep[index] = False
            forget_parts.append(values[..., index].reshape(-1))
            retained_parts.append(values[..., keep].reshape(-1))
            elpd += float(_log_mean_exp(log_lik[site])[..., index].sum())
        row["pred_kl_forget"] = float(torch.cat(forget_parts).mean())
        row["pred_kl_retained"] = (
            float(torch.cat(retained_parts).mean())
            if n_total and retained_parts[0].numel()
            else float("nan")
        )
        row["elpd_forget"] = elpd
        rows.append(row)
    frame = pd.DataFrame(rows).set_index("posterior")
    if original is not None and original in frame.index:
        frame["gap_closed"] = [gap_closed(v, frame.loc[original, "kl_mm"]) for v in frame["kl_mm"]]
    return frame

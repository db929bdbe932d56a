"""Plots of original vs unlearned vs retrained posteriors (ArviZ + matplotlib)."""

from __future__ import annotations

import torch

from ..handlers.plate_mask import as_index_tensor
from ..vectorized import vectorized_trace
from .inference_data import posterior_draws, to_inference_data


def forget_predictive_means(
    model, posterior, *args, forget_mask, num_samples: int = 1000, model_kwargs=None, seed: int = 0
) -> dict[str, torch.Tensor]:
    """Posterior-predictive mean of each observed site at the forget points: ``E_theta[E[y_i | theta]]``."""
    draws = posterior_draws(posterior, model, args, model_kwargs, num_samples, seed)
    flat = {k: v.reshape((-1,) + v.shape[2:]) for k, v in draws.items()}
    trace, _ = vectorized_trace(model, flat, args, model_kwargs)
    out = {}
    for name, site in trace.nodes.items():
        if site["type"] == "sample" and site["is_observed"]:
            mean = site["fn"].mean.mean(0)
            out[name] = mean[..., as_index_tensor(forget_mask, mean.shape[-1])]
    return out


def plot_posteriors(
    posteriors: dict,
    model,
    *args,
    forget_mask,
    plate: str = "data",
    var_names: list[str] | None = None,
    num_samples: int = 1000,
    model_kwargs: dict | None = None,
    seed: int = 0,
) -> dict:
    """Forest and density plots of the named posteriors, and their forget-set predictive.

    Returns ``{"forest": Figure, "density": Figure, "forget_predictive": Figure}``.
    """
    import arviz as az
    import matplotlib.pyplot as plt

    names = list(posteriors)
    idatas = [
        to_inference_data(
            p,
            model,
            *args,
            forget_mask=forget_mask,
            plate=plate,
            num_samples=num_samples,
            model_kwargs=model_kwargs,
            seed=seed,
        )
        for p in posteriors.values()
    ]
    axes = az.plot_forest(
        idatas, model_names=names, var_names=var_names, combined=True, figsize=(7, 5)
    )
    forest = axes.ravel()[0].figure
    axes = az.plot_density(idatas, data_labels=names, var_names=var_names, shade=0.1)
    density = axes.ravel()[0].figure

    predictive, ax = plt.subplots(figsize=(7, 4))
    for name, posterior in posteriors.items():
        means = forget_predictive_means(
            model,
            posterior,
            *args,
            forget_mask=forget_mask,
            num_samples=num_samples,
            model_kwargs=model_kwargs,
            seed=seed,
        )
        for site, values in means.items():
            values = values.reshape(-1).detach().cpu()
            ax.plot(range(len(values)), values, "o", alpha=0.7, label=f"{name} ({site})")
    ax.set_xlabel("forget-set point")
    ax.set_ylabel("posterior predictive mean")
    ax.set_title("Predictions on the forgotten data")
    ax.legend()
    return {"forest": forest, "density": density, "forget_predictive": predictive}

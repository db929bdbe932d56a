"""Plots of original vs unlearned vs retrained posteriors (ArviZ + matplotlib)."""

from __future__ import annotations

import torch

from ..masks import as_index_tensor
from ..model_eval import ModelEvaluator
from .inference_data import aligned_draws, plate_dim, posterior_draws, to_inference_data


def forget_predictive_means(
    model,
    posterior,
    *args,
    forget_mask,
    plate: str | int = "data",
    num_samples: int = 1000,
    model_kwargs=None,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """Posterior-predictive mean of each observed site at the forget points: ``E_theta[E[y_i | theta]]``."""
    evaluator = ModelEvaluator(model, args, model_kwargs)
    draws = posterior_draws(posterior, model, args, model_kwargs, num_samples, seed)
    flat = {k: v.reshape((-1,) + v.shape[2:]) for k, v in draws.items()}
    evaluator.structure(flat)
    flat = aligned_draws(flat, evaluator.latent_sites(), "posterior")
    with torch.no_grad():
        means = evaluator.observed_statistic(flat, lambda fn: fn.mean)
    out = {}
    for name, mean in means.items():
        mean = mean.mean(0)
        dim = plate_dim(evaluator, name, plate) - len(evaluator.structure_of(name).event_shape)
        index = as_index_tensor(forget_mask, mean.shape[dim])
        out[name] = mean.index_select(mean.dim() + dim, index.to(mean.device))
    return out


def plot_posteriors(
    posteriors: dict,
    model,
    *args,
    forget_mask,
    plate: str | int = "data",
    var_names: list[str] | None = None,
    num_samples: int = 1000,
    model_kwargs: dict | None = None,
    seed: int = 0,
) -> dict:
    """Forest and density plots of the named posteriors, and their forget-set predictive.

    Returns ``{"forest": Figure, "density": Figure, "forget_predictive": Figure}``.
    """
    import matplotlib.pyplot as plt

    from .. import arviz_compat

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
    forest = arviz_compat.plot_forest(idatas, model_names=names, var_names=var_names)
    density = arviz_compat.plot_density(idatas, data_labels=names, var_names=var_names)

    predictive, ax = plt.subplots(figsize=(7, 4))
    for name, posterior in posteriors.items():
        try:
            means = forget_predictive_means(
                model,
                posterior,
                *args,
                forget_mask=forget_mask,
                plate=plate,
                num_samples=num_samples,
                model_kwargs=model_kwargs,
                seed=seed,
            )
        except NotImplementedError as error:  # enumerated sites: no per-component mean
            ax.text(0.5, 0.5, str(error), ha="center", va="center", wrap=True, fontsize=8)
            break
        for site, values in means.items():
            values = values.reshape(-1).detach().cpu()
            ax.plot(range(len(values)), values, "o", alpha=0.7, label=f"{name} ({site})")
    ax.set_xlabel("forget-set point")
    ax.set_ylabel("posterior predictive mean")
    ax.set_title("Predictions on the forgotten data")
    if ax.get_legend_handles_labels()[0]:
        ax.legend()
    return {"forest": forest, "density": density, "forget_predictive": predictive}

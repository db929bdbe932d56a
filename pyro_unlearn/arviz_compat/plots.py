"""Forest and density plots of several models' posteriors, on either ArviZ line."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .containers import ARVIZ_1, from_dict, group


def _models(containers: Sequence, names: Sequence[str], what: str) -> dict[str, Any]:
    if len(containers) != len(names):
        raise ValueError(f"{len(containers)} containers but {len(names)} {what}")
    if not containers:
        raise ValueError("nothing to plot")
    return dict(zip(names, containers, strict=True))


def _common_draws(models: dict) -> dict:
    """Each model's posterior as one chain of the same number of (evenly spaced) draws.

    arviz_plots concatenates the models along a new ``model`` dimension with an outer join:
    models with other chain or draw counts (a 4-chain NUTS reference beside 1-chain guide
    draws) get NaN-padded, and their summaries vanish from the plot.
    """
    posteriors = {name: group(container, "posterior") for name, container in models.items()}
    sizes = {name: p.sizes["chain"] * p.sizes["draw"] for name, p in posteriors.items()}
    keep = min(sizes.values())
    out = {}
    for name, posterior in posteriors.items():
        stacked = posterior.stack(__sample__=("chain", "draw"))
        picks = np.linspace(0, sizes[name] - 1, keep).round().astype(int)
        stacked = stacked.isel(__sample__=picks).drop_vars(["__sample__", "chain", "draw"])
        stacked = stacked.rename({"__sample__": "draw"}).expand_dims("chain")
        stacked = stacked.assign_coords(chain=[0], draw=np.arange(keep))
        data = {k: v.transpose("chain", "draw", ...).values for k, v in stacked.data_vars.items()}
        out[name] = from_dict({"posterior": data})
    return out


def _figure_1x(plots, models: dict):
    if len(models) > 1:  # 0.2x labels the models; arviz_plots' legend is opt-in (experimental)
        try:
            plots.add_legend("model")
        except (ValueError, KeyError, TypeError):  # pragma: no cover - depends on arviz_plots
            pass
    return plots.get_viz("figure")


def _figure_02x(axes):
    return np.ravel(axes)[0].get_figure()


def plot_forest(
    containers: Sequence, model_names: Sequence[str], var_names: Sequence[str] | None = None
):
    """Forest plot of the posteriors of several models (chains combined).

    Returns
    -------
    matplotlib.figure.Figure
    """
    models = _models(containers, model_names, "model_names")
    var_names = list(var_names) if var_names is not None else None
    if ARVIZ_1:
        import arviz_plots

        plots = arviz_plots.plot_forest(
            _common_draws(models), var_names=var_names, combined=True, backend="matplotlib"
        )
        return _figure_1x(plots, models)
    import arviz as az

    axes = az.plot_forest(
        list(models.values()),
        model_names=list(models),
        var_names=var_names,
        combined=True,
        backend="matplotlib",
        show=False,
    )
    return _figure_02x(axes)


def plot_density(
    containers: Sequence, data_labels: Sequence[str], var_names: Sequence[str] | None = None
):
    """Marginal posterior densities of several models overlaid, one panel per variable.

    Returns
    -------
    matplotlib.figure.Figure
    """
    models = _models(containers, data_labels, "data_labels")
    var_names = list(var_names) if var_names is not None else None
    if ARVIZ_1:
        import arviz_plots

        plots = arviz_plots.plot_dist(
            _common_draws(models), var_names=var_names, backend="matplotlib"
        )
        return _figure_1x(plots, models)
    import arviz as az

    axes = az.plot_density(
        list(models.values()),
        data_labels=list(models),
        var_names=var_names,
        backend="matplotlib",
        show=False,
    )
    return _figure_02x(axes)

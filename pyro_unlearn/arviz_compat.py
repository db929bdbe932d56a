"""One interface over both ArviZ lines: 0.2x (``InferenceData``) and 1.x (``DataTree``).

ArviZ 1.x split ArviZ into ``arviz_base`` (containers, I/O), ``arviz_stats`` (PSIS, ESS, r-hat)
and ``arviz_plots`` (plots), and replaced ``InferenceData`` by :class:`xarray.DataTree`. This
module hides the differences, so callers get the same numbers and the same files on either line:

* PSIS: both lines smooth the same right tail, but 0.2x takes ``ceil(min(S/5, 3*sqrt(S/r_eff)))``
  tail draws where 1.x takes ``floor`` of the same, and 1.x's ``psislw`` expects *minus* the log
  ratios. :func:`psislw` uses the 1.x tail length on both lines; then they agree to rounding.
* tail ESS: 1.x's default quantiles follow ``rcParams["stats.ci_prob"]`` (0.11/0.89), 0.2x uses
  0.05/0.95; :func:`ess` passes 0.05/0.95 on both lines.
* netCDF: both lines write netCDF-4 (HDF5) files through h5netcdf (netCDF4 as a fallback), and
  each line reads the other's files. Files are read eagerly, so no file handle is left open.

This module imports nothing from ``pyro_unlearn``: it can be loaded on its own.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import inspect
import math
import os
import re
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

__all__ = [
    "ARVIZ_1",
    "arviz_version",
    "ess",
    "from_dict",
    "from_netcdf",
    "group",
    "group_names",
    "has_group",
    "plot_density",
    "plot_forest",
    "psislw",
    "rhat",
    "to_netcdf",
]

SAMPLE_DIMS = ("chain", "draw")
# ArviZ's schema order; other groups follow, sorted by name (the same on both lines)
_SCHEMA = (
    "posterior",
    "posterior_predictive",
    "predictions",
    "log_likelihood",
    "log_prior",
    "sample_stats",
    "prior",
    "prior_predictive",
    "sample_stats_prior",
    "observed_data",
    "constant_data",
    "predictions_constant_data",
    "unconstrained_posterior",
    "unconstrained_prior",
)
TAIL_PROB = (0.05, 0.95)  # quantiles of the tail ESS (ArviZ 0.2x's default)


def _detect_version() -> str:
    for dist in ("arviz", "arviz-base"):  # 1.x may be installed as its parts only
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    raise ImportError("ArviZ is not installed: pip install arviz")


_VERSION = _detect_version()
ARVIZ_1: bool = int(re.match(r"\d+", _VERSION).group()) >= 1
"""True on the ArviZ 1.x line (DataTree), False on 0.2x (InferenceData)."""


def arviz_version() -> str:
    """The installed ArviZ version (of ``arviz``, else ``arviz-base``), e.g. ``"0.23.4"``."""
    return _VERSION


# --------------------------------------------------------------------------- containers


def _as_array(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # torch tensors, without importing torch
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def _netcdf_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """Attrs netCDF can store: bools become ints (netCDF has no boolean attribute type)."""
    return {
        str(key): int(value) if isinstance(value, bool | np.bool_) else value
        for key, value in attrs.items()
    }


def _group_order(name: str) -> tuple[int, str]:
    base = name.removeprefix("warmup_")
    rank = _SCHEMA.index(base) if base in _SCHEMA else len(_SCHEMA)
    return (rank + (len(_SCHEMA) + 1) * (base != name), name)


def _native(datasets: dict[str, xr.Dataset], root_attrs: Mapping[str, Any] | None = None):
    """Wrap ``{group: Dataset}`` in the installed line's container."""
    if ARVIZ_1:
        tree = xr.DataTree.from_dict(datasets)
        if root_attrs:
            tree.attrs = dict(root_attrs)
        return tree
    import arviz as az

    with warnings.catch_warnings():  # older 0.2x warn about groups outside the schema
        warnings.filterwarnings("ignore", message=".*not defined in the InferenceData scheme")
        return az.InferenceData(
            attrs=dict(root_attrs) if root_attrs else None, save_warmup=True, **datasets
        )


def from_dict(
    groups: Mapping[str, Mapping[str, Any]], attrs: Mapping[str, Mapping[str, Any]] | None = None
):
    """Build the installed ArviZ's container from arrays.

    Parameters
    ----------
    groups
        ``{group: {variable: array}}``; every array has shape ``(chains, draws, *shape)``, in
        every group (``observed_data`` included). Arrays may be NumPy arrays or torch tensors.
        Dimensions are ``chain``, ``draw``, then ``{variable}_dim_{i}``, on both lines.
    attrs
        ``{group: {name: value}}`` attributes set on those groups (str, int, float or bool;
        bools are stored as ints). ArviZ adds its own (``created_at`` and a version).

    Returns
    -------
    arviz.InferenceData or xarray.DataTree
        ``InferenceData`` on ArviZ 0.2x, ``DataTree`` on 1.x.
    """
    attrs = dict(attrs or {})
    unknown = sorted(set(attrs) - set(groups))
    if unknown:
        raise ValueError(f"attrs given for groups that are not in groups: {unknown}")
    if not groups:
        raise ValueError("from_dict needs at least one group")
    datasets = {}
    for name, variables in groups.items():
        if not variables:
            raise ValueError(f"group {name!r} has no variables")
        arrays = {str(var): _as_array(value) for var, value in variables.items()}
        for var, value in arrays.items():
            if value.ndim < 2:
                raise ValueError(
                    f"{name}.{var} has shape {value.shape}; expected (chains, draws, *shape)"
                )
        group_attrs = _netcdf_attrs(attrs.get(name, {}))
        if ARVIZ_1:
            from arviz_base import dict_to_dataset

            datasets[name] = dict_to_dataset(arrays, attrs=group_attrs, sample_dims=SAMPLE_DIMS)
        else:
            from arviz import dict_to_dataset

            datasets[name] = dict_to_dataset(
                arrays, attrs=group_attrs, default_dims=list(SAMPLE_DIMS)
            )
    return _native(datasets)


def group_names(container) -> list[str]:
    """Names of the container's groups: ArviZ's schema order first, then the others by name."""
    names = list(container.children) if ARVIZ_1 else list(container.groups())
    return sorted(names, key=_group_order)


def has_group(container, name: str) -> bool:
    """Whether ``container`` has the group ``name``."""
    return name in group_names(container)


def group(container, name: str) -> xr.Dataset:
    """The group ``name`` of ``container`` as an :class:`xarray.Dataset` (with its attrs).

    Treat it as read-only: on 0.2x it is the container's own Dataset, on 1.x a shallow copy.

    Raises
    ------
    KeyError
        If there is no such group.
    """
    if not has_group(container, name):
        raise KeyError(f"no group {name!r}; the groups are {group_names(container)}")
    if ARVIZ_1:
        return container[name].to_dataset()
    return getattr(container, name)


# --------------------------------------------------------------------------- netCDF


def _engine() -> str:
    """h5netcdf (0.2x's default) where present, else netCDF4; both write netCDF-4/HDF5."""
    if importlib.util.find_spec("h5netcdf") and importlib.util.find_spec("h5py"):
        return "h5netcdf"
    if importlib.util.find_spec("netCDF4"):
        return "netcdf4"
    raise ImportError("writing or reading netCDF needs h5netcdf: pip install 'h5netcdf[h5py]'")


def _compression(dataset: xr.Dataset) -> dict[str, dict[str, bool]]:
    return {
        var: {"zlib": True}
        for var, values in dataset.variables.items()
        if values.dtype.kind in "biufc"
    }


def to_netcdf(container, path: str | os.PathLike) -> str:
    """Write ``container`` to the netCDF-4 file ``path`` atomically.

    The file is written to a temporary file in the same folder, then moved over ``path``, so a
    reader never sees half a file and a failed write leaves any previous file in place.

    Returns
    -------
    str
        ``path``.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    os.close(handle)
    engine = _engine()
    try:
        if ARVIZ_1:
            encoding = {
                f"/{name}": _compression(group(container, name)) for name in group_names(container)
            }
            container.to_netcdf(tmp, engine=engine, encoding=encoding)
        else:
            container.to_netcdf(tmp, engine=engine)
        with open(tmp, "rb+") as written:
            os.fsync(written.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600: give the file a plain file's mode
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def _file_groups(path: str, engine: str) -> list[str]:
    if engine == "h5netcdf":
        import h5netcdf

        with h5netcdf.File(path, mode="r") as handle:
            return list(handle.groups)
    import netCDF4

    with netCDF4.Dataset(path, mode="r") as handle:
        return list(handle.groups)


def _read(path: str, engine: str):
    if ARVIZ_1:
        with xr.open_datatree(path, engine=engine) as tree:
            tree = tree.load()
        return tree, list(tree.children)
    names = _file_groups(path, engine)
    datasets = {}
    for name in names:
        with xr.open_dataset(path, group=name, engine=engine) as dataset:
            datasets[name] = dataset.load()
    with xr.open_dataset(path, engine=engine) as root:
        root_attrs = dict(root.attrs)
    return _native(datasets, root_attrs), names


def from_netcdf(path: str | os.PathLike):
    """Read an ArviZ netCDF file written by either line, fully into memory.

    Returns
    -------
    arviz.InferenceData or xarray.DataTree
        The installed line's container.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If ``path`` is not a readable netCDF file, or has no groups (not an ArviZ file); the
        message names the file and says to delete it or recompute it.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(path)
    try:
        container, names = _read(path, _engine())
    except ImportError:
        raise
    except Exception as err:  # h5py/netCDF4/xarray raise OSError, ValueError, KeyError, ...
        raise ValueError(
            f"{path} is not a readable ArviZ netCDF file ({type(err).__name__}: {err}); "
            "delete it or recompute it"
        ) from err
    if not names:
        raise ValueError(
            f"{path} is a netCDF file without groups, not an ArviZ file; delete it or recompute it"
        )
    return container


# --------------------------------------------------------------------------- diagnostics


def _tail_length(num_draws: int, reff: float) -> int:
    """PSIS tail length as ArviZ 1.x computes it (0.2x takes the ceiling instead of the floor)."""
    if num_draws * reff > 225:
        return int(math.floor(3 * math.sqrt(num_draws / reff)))
    return int(math.floor(num_draws / 5))


def _logsumexp(values: np.ndarray) -> float:
    top = np.max(values)
    return float(top + np.log(np.sum(np.exp(values - top))))


def psislw(log_weights: np.ndarray, reff: float = 1.0) -> tuple[np.ndarray, float]:
    """Pareto-smoothed importance log weights and the Pareto k-hat.

    Smooths the right tail of ``S`` log weights with a generalized Pareto fit, truncates
    smoothed weights at the largest raw weight and normalises, with the same tail length on
    both lines: ``floor(3 * sqrt(S / reff))`` when ``S * reff > 225``, else ``floor(S / 5)``.

    Parameters
    ----------
    log_weights
        1-D array of ``S`` log importance ratios (``-inf`` allowed, NaN not).
    reff
        Relative efficiency ``ESS / S`` of the draws the weights belong to.

    Returns
    -------
    tuple of (np.ndarray, float)
        Smoothed log weights (``logsumexp == 0``) and k-hat; with fewer than 5 tail draws
        (``S < 25``) the weights are only normalised and k-hat is ``inf``.

    Notes
    -----
    The lines then agree to rounding but for one case: 0.2x never puts weights more than
    ``-log(tiny) ~ 708`` below the largest into the tail (1.x does), which only degenerate
    weights reach.
    """
    values = np.array(log_weights, dtype=np.float64)
    if values.ndim != 1:
        raise ValueError(f"psislw takes a 1-D array of log weights, got shape {values.shape}")
    if np.isnan(values).any() or np.isposinf(values).any():
        raise ValueError("log weights must not be NaN or +inf")
    if not reff > 0:
        raise ValueError(f"reff must be positive, got {reff}")
    tail = _tail_length(len(values), reff)
    if tail < 5:
        return values - _logsumexp(values), math.inf
    if ARVIZ_1:
        from arviz_stats.base import array_stats

        # 1.x's PSIS smooths -ary: it takes log-likelihoods, i.e. minus the log ratios
        smoothed, khat = array_stats.psislw(-values, r_eff=reff)
    else:
        smoothed, khat = _psislw_02x(values, tail, reff)
    smoothed = np.asarray(smoothed, dtype=np.float64)
    return smoothed - _logsumexp(smoothed), float(khat)


def _psislw_02x(values: np.ndarray, tail: int, reff: float) -> tuple[np.ndarray, float]:
    """0.2x's PSIS core with 1.x's tail length; its public ``psislw`` has no tail argument."""
    try:
        from arviz.stats.stats import _psislw
    except ImportError:  # not expected on 0.2x; the public one differs by one tail draw at most
        import arviz as az

        return az.psislw(values, reff)
    kwargs = {"normalize": True} if "normalize" in inspect.signature(_psislw).parameters else {}
    return _psislw(values.copy(), -tail - 1, np.log(np.finfo(float).tiny), **kwargs)


def _check_draws(draws: Any) -> np.ndarray:
    draws = _as_array(draws).astype(np.float64, copy=False)
    if draws.ndim < 2:
        raise ValueError(f"draws must have shape (chains, draws, *shape), got {draws.shape}")
    return draws


def _per_element_02x(function, draws: np.ndarray, **kwargs) -> np.ndarray:
    dims = ("chain", "draw", *(f"x_dim_{i}" for i in range(draws.ndim - 2)))
    dataset = xr.Dataset({"x": (dims, draws)})
    return np.asarray(function(dataset, **kwargs)["x"].values, dtype=float)


def ess(draws: np.ndarray, method: str = "bulk") -> np.ndarray:
    """Effective sample size of each element of ``draws`` (rank-normalised, as ArviZ's).

    Parameters
    ----------
    draws
        Array of shape ``(chains, draws, *shape)``.
    method
        ``"bulk"``, ``"tail"`` (the smaller ESS of the 5% and 95% quantiles), or ``"mean"``
        (of the mean, not rank-normalised: what PSIS-LOO's relative efficiency uses).

    Returns
    -------
    np.ndarray
        Shape ``shape`` (a 0-d array for scalar draws).
    """
    if method not in ("bulk", "tail", "mean"):
        raise ValueError(f"method must be 'bulk', 'tail' or 'mean', got {method!r}")
    draws = _check_draws(draws)
    prob = TAIL_PROB if method == "tail" else None
    if ARVIZ_1:
        import arviz_stats

        out = arviz_stats.ess(draws, method=method, prob=prob, chain_axis=0, draw_axis=1)
        return np.asarray(out, dtype=float)
    import arviz as az

    return _per_element_02x(az.ess, draws, method=method, prob=prob)


def rhat(draws: np.ndarray) -> np.ndarray:
    """Rank-normalised split r-hat (ArviZ's default) of each element of ``draws``.

    Parameters
    ----------
    draws
        Array of shape ``(chains, draws, *shape)``.

    Returns
    -------
    np.ndarray
        Shape ``shape`` (a 0-d array for scalar draws).
    """
    draws = _check_draws(draws)
    if ARVIZ_1:
        import arviz_stats

        out = arviz_stats.rhat(draws, method="rank", chain_axis=0, draw_axis=1)
        return np.asarray(out, dtype=float)
    import arviz as az

    return _per_element_02x(az.rhat, draws, method="rank")


# --------------------------------------------------------------------------- plots


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

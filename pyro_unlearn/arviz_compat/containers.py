"""The installed ArviZ line (detected without importing ArviZ) and its containers.

:data:`ARVIZ_1` says which line is installed; :func:`from_dict` builds its container
(``InferenceData`` or ``DataTree``), :func:`group_names`, :func:`has_group` and :func:`group`
read one on either line.
"""

from __future__ import annotations

import importlib.metadata
import re
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import xarray as xr

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

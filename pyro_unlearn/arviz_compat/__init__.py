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

The package's modules: :mod:`.containers` (the line, containers and groups), :mod:`.stats` (PSIS, ESS,
r-hat) and :mod:`.plots`; the netCDF I/O is here.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile

import xarray as xr

from . import containers
from .containers import SAMPLE_DIMS as SAMPLE_DIMS
from .containers import (
    _native,
    arviz_version,
    from_dict,
    group,
    group_names,
    has_group,
)
from .plots import _common_draws as _common_draws
from .plots import plot_density, plot_forest
from .stats import TAIL_PROB as TAIL_PROB
from .stats import _tail_length as _tail_length
from .stats import ess, psislw, rhat

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

ARVIZ_1: bool = containers.ARVIZ_1  # set in .containers; documented here, where it is exported
"""True on the ArviZ 1.x line (DataTree), False on 0.2x (InferenceData)."""


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

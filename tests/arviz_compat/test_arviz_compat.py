"""Tests of ``pyro_unlearn.arviz_compat`` on whichever ArviZ line is installed.

Run this file under both lines (ArviZ 0.2x and 1.x). The PSIS / ESS / r-hat values stored in
``tests/data/arviz_reference_values.json`` come from both lines; each run compares the installed
line's numbers with the ones stored from the other line. To (re)write the running line's entry::

    python tests/arviz_compat/test_arviz_compat.py --regenerate

``ARVIZ_COMPAT_STANDALONE=1`` loads the module from its file instead of through the package
(for when the package itself does not import); ``ARVIZ_COMPAT_OTHER_PYTHON=/path/to/python`` (an
interpreter with the other ArviZ line) enables the test that reads files written by that line.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

ROOT = Path(__file__).resolve().parents[2]
MODULE_DIR = ROOT / "pyro_unlearn" / "arviz_compat"
# the package loaded from its folder, under a name that does not start with "arviz"
LOAD_STANDALONE = f"""
import importlib.util, sys
spec = importlib.util.spec_from_file_location(
    "standalone_compat",
    {str(MODULE_DIR / "__init__.py")!r},
    submodule_search_locations=[{str(MODULE_DIR)!r}],
)
module = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = module  # its modules import each other relatively
spec.loader.exec_module(module)
"""
REFERENCE = Path(__file__).resolve().parents[1] / "data" / "arviz_reference_values.json"
CACHE_FILES = sorted((ROOT / "pyro_unlearn" / "bench" / "cache").glob("*.nc"))


def _load_standalone():
    namespace = {}
    exec(LOAD_STANDALONE, namespace)
    return namespace["module"]


if os.environ.get("ARVIZ_COMPAT_STANDALONE") or __name__ == "__main__":
    arviz_compat = _load_standalone()
else:
    from pyro_unlearn import arviz_compat

LINE = "1.x" if arviz_compat.ARVIZ_1 else "0.2x"
OTHER_LINE = "0.2x" if arviz_compat.ARVIZ_1 else "1.x"

# Measured over the stored inputs (arviz 0.23.4 / numpy 2.4.6 / scipy 1.17.1 on Python 3.11
# against arviz 1.3.0 / arviz-stats 1.3.3 / numpy 2.5.5 / scipy 1.18.1 on Python 3.12): k-hat,
# ESS and r-hat agree bit for bit, smoothed log weights to 1e-15 relative (the two lines write
# the same algorithm differently, e.g. the GPD fit's weights). 1e-12 leaves room for other
# BLAS/libm builds while still catching any change of algorithm, tail length or normalisation
# (the lines' own defaults differ by 1e-3 to 2e-2 in k-hat and by 13-39% in tail ESS here).
RTOL = 1e-12

# --------------------------------------------------------------------------- reference values

RECIPE = {
    "psis": (
        "case -> (rng seed, sample, reff): log weights = the sample; "
        "student_t3: default_rng(0).standard_t(df=3, size=4000), reff 1.0; "
        "normal_reff07: default_rng(1).standard_normal(4000), reff 0.7; "
        "student_t3_small: default_rng(2).standard_t(df=3, size=203), reff 1.0. "
        "Stored: k-hat and the smoothed log weights at `indices` = sorted union of the "
        "tail-length+10 largest raw weights and every 20th index."
    ),
    "chains": (
        "eps = default_rng(3).standard_normal((4, 1000, 3)); x[:, 0] = eps[:, 0]; "
        "x[:, t] = phi * x[:, t - 1] + eps[:, t] with phi = (0.0, 0.9, 0.99) per column; "
        "then x[c] += 0.05 * c for chain c (slightly shifted chains). "
        "Stored: ess bulk, ess tail and rhat of x (shape (3,)) and of x[..., 1] (scalar)."
    ),
}
PSIS_CASES = {
    "student_t3": (0, "t", 4000, 1.0),
    "normal_reff07": (1, "normal", 4000, 0.7),
    "student_t3_small": (2, "t", 203, 1.0),
}


def psis_input(case: str) -> tuple[np.ndarray, float]:
    seed, kind, size, reff = PSIS_CASES[case]
    rng = np.random.default_rng(seed)
    sample = rng.standard_t(df=3, size=size) if kind == "t" else rng.standard_normal(size)
    return sample, reff


def psis_indices(log_weights: np.ndarray, reff: float) -> np.ndarray:
    tail = arviz_compat._tail_length(len(log_weights), reff) + 10
    return np.union1d(np.argsort(log_weights)[-tail:], np.arange(0, len(log_weights), 20))


def chains_input() -> np.ndarray:
    eps = np.random.default_rng(3).standard_normal((4, 1000, 3))
    phi = np.array([0.0, 0.9, 0.99])
    x = np.empty_like(eps)
    x[:, 0] = eps[:, 0]
    for t in range(1, eps.shape[1]):
        x[:, t] = phi * x[:, t - 1] + eps[:, t]
    return x + 0.05 * np.arange(4)[:, None, None]


def compute_reference() -> dict:
    """The running line's values for the stored inputs."""
    psis = {}
    for case in PSIS_CASES:
        log_weights, reff = psis_input(case)
        smoothed, khat = arviz_compat.psislw(log_weights, reff)
        indices = psis_indices(log_weights, reff)
        psis[case] = {
            "reff": reff,
            "khat": khat,
            "indices": indices.tolist(),
            "log_weights": smoothed[indices].tolist(),
        }
    x = chains_input()
    stats = {}
    for key, draws in (("vector", x), ("scalar", x[..., 1])):
        stats[key] = {
            "ess_bulk": np.atleast_1d(arviz_compat.ess(draws, "bulk")).tolist(),
            "ess_tail": np.atleast_1d(arviz_compat.ess(draws, "tail")).tolist(),
            "rhat": np.atleast_1d(arviz_compat.rhat(draws)).tolist(),
        }
    import importlib.metadata as metadata

    versions = {"arviz": arviz_compat.arviz_version(), "numpy": np.__version__}
    for dist in ("arviz-base", "arviz-stats", "scipy"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return {
        "produced_by": {"python": platform.python_version(), **versions},
        "psislw": psis,
        "diagnostics": stats,
    }


def regenerate(path: Path = REFERENCE) -> None:
    """Write the running line's reference values into ``path``, keeping the other line's."""
    stored = json.loads(path.read_text()) if path.exists() else {}
    stored["recipe"] = RECIPE
    stored.setdefault("lines", {})[LINE] = compute_reference()
    stored["lines"] = dict(sorted(stored["lines"].items()))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(stored, indent=1) + "\n")
    print(f"wrote the ArviZ {arviz_compat.arviz_version()} ({LINE}) values into {path}")


@pytest.fixture(scope="module")
def reference() -> dict:
    lines = json.loads(REFERENCE.read_text())["lines"]
    assert OTHER_LINE in lines, f"{REFERENCE} lacks values from ArviZ {OTHER_LINE}"
    return lines


@pytest.fixture(scope="module")
def current() -> dict:
    return compute_reference()


# --------------------------------------------------------------------------- tests


def test_line_detection_does_not_import_arviz():
    import importlib.metadata as metadata

    assert arviz_compat.arviz_version() == metadata.version("arviz")
    assert arviz_compat.ARVIZ_1 == (int(arviz_compat.arviz_version().split(".")[0]) >= 1)
    code = LOAD_STANDALONE + textwrap.dedent(
        """
        print(module.ARVIZ_1, any(m.split(".")[0].startswith("arviz") for m in sys.modules))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == [str(arviz_compat.ARVIZ_1), "False"]


def _example_groups(rng: np.random.Generator) -> dict:
    return {
        "posterior": {"w": rng.normal(size=(2, 50, 3)), "sigma": rng.gamma(2.0, size=(2, 50))},
        "log_likelihood": {"y": rng.normal(size=(2, 50, 7))},
        "posterior_predictive": {"y": rng.normal(size=(2, 50, 7))},
        "unlearning": {
            "log_weights": rng.normal(size=(1, 50)),
            "pair": rng.normal(size=(1, 50, 2, 2)),
        },
    }


ATTRS = {
    "posterior": {"request": "nuts without 3 rows", "trustworthy": True, "seconds": 1.5, "n": 4},
    "unlearning": {"method": "psis", "khat": 0.25},
}
ORDER = ["posterior", "posterior_predictive", "log_likelihood", "unlearning"]


def _check_container(container, groups: dict) -> None:
    if arviz_compat.ARVIZ_1:
        assert isinstance(container, xr.DataTree)
    else:
        import arviz

        assert isinstance(container, arviz.InferenceData)
    assert arviz_compat.group_names(container) == ORDER
    assert arviz_compat.has_group(container, "unlearning")
    assert not arviz_compat.has_group(container, "prior")
    for name, variables in groups.items():
        dataset = arviz_compat.group(container, name)
        assert isinstance(dataset, xr.Dataset)
        assert sorted(dataset.data_vars) == sorted(variables)
        for var, values in variables.items():
            extra = tuple(f"{var}_dim_{i}" for i in range(values.ndim - 2))
            assert dataset[var].dims == ("chain", "draw", *extra)
            np.testing.assert_array_equal(dataset[var].values, values)
            np.testing.assert_array_equal(dataset["draw"].values, np.arange(values.shape[1]))
        for key, value in ATTRS.get(name, {}).items():
            stored = dataset.attrs[key]
            assert stored == (int(value) if isinstance(value, bool) else value), key
            assert not isinstance(stored, bool | np.bool_)
        assert "created_at" in dataset.attrs  # ArviZ's own metadata is kept


def test_from_dict_round_trip():
    groups = _example_groups(np.random.default_rng(0))
    container = arviz_compat.from_dict(groups, attrs=ATTRS)
    _check_container(container, groups)
    with pytest.raises(KeyError, match="prior"):
        arviz_compat.group(container, "prior")


def test_from_dict_rejects_bad_input():
    draws = {"w": np.zeros((2, 10))}
    with pytest.raises(ValueError, match="prior"):
        arviz_compat.from_dict({"posterior": draws}, attrs={"prior": {"a": 1}})
    with pytest.raises(ValueError, match="chains, draws"):
        arviz_compat.from_dict({"posterior": {"w": np.zeros(10)}})
    with pytest.raises(ValueError, match="no variables"):
        arviz_compat.from_dict({"posterior": draws, "unlearning": {}})


def test_netcdf_round_trip_is_atomic(tmp_path, monkeypatch):
    groups = _example_groups(np.random.default_rng(1))
    path = tmp_path / "run.nc"
    assert arviz_compat.to_netcdf(arviz_compat.from_dict(groups, attrs=ATTRS), path) == str(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.nc"]  # no temporary left behind
    _check_container(arviz_compat.from_netcdf(path), groups)

    # overwriting replaces the file whole
    newer = _example_groups(np.random.default_rng(2))
    arviz_compat.to_netcdf(arviz_compat.from_dict(newer, attrs=ATTRS), path)
    _check_container(arviz_compat.from_netcdf(path), newer)

    # a failed write leaves the previous file as it was, and no temporary
    before = path.read_bytes()
    monkeypatch.setattr(arviz_compat, "_engine", lambda: "no-such-engine")
    with pytest.raises(Exception):  # noqa: B017 - whatever the writer raises
        arviz_compat.to_netcdf(arviz_compat.from_dict(groups), path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.nc"]


def _truncated(path: Path) -> None:
    path.write_bytes(CACHE_FILES[0].read_bytes()[:4096])


def _plain_netcdf(path: Path) -> None:
    xr.Dataset({"a": ("x", np.arange(3.0))}).to_netcdf(path, engine=arviz_compat._engine())


@pytest.mark.parametrize(
    "make",
    [
        lambda p: p.write_bytes(b"not a netCDF file\n" * 50),
        lambda p: p.write_bytes(b""),
        _truncated,
        _plain_netcdf,
    ],
    ids=["garbage", "empty", "truncated", "no-groups"],
)
def test_unreadable_file_raises_value_error_naming_it(tmp_path, make):
    path = tmp_path / "broken.nc"
    make(path)
    with pytest.raises(ValueError, match="delete it or recompute") as info:
        arviz_compat.from_netcdf(path)
    assert str(path) in str(info.value)


def test_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        arviz_compat.from_netcdf(tmp_path / "absent.nc")


@pytest.mark.skipif(not CACHE_FILES, reason="no shipped cache files")
@pytest.mark.parametrize("path", CACHE_FILES, ids=[p.name for p in CACHE_FILES])
def test_shipped_cache_files_read(path):
    container = arviz_compat.from_netcdf(path)
    assert "posterior" in arviz_compat.group_names(container)
    posterior = arviz_compat.group(container, "posterior")
    assert isinstance(posterior.attrs["request"], str) and posterior.attrs["request"]
    assert posterior.attrs["arviz_version"].startswith("0.")  # written by the 0.2x line
    for values in posterior.data_vars.values():
        assert values.dims[:2] == ("chain", "draw")
        assert np.isfinite(values.values).all()


@pytest.mark.skipif(
    not os.environ.get("ARVIZ_COMPAT_OTHER_PYTHON"), reason="ARVIZ_COMPAT_OTHER_PYTHON not set"
)
def test_reads_files_written_by_the_other_line(tmp_path):
    other = os.environ["ARVIZ_COMPAT_OTHER_PYTHON"]
    path = tmp_path / "other.nc"
    code = LOAD_STANDALONE + textwrap.dedent(
        f"""
        import numpy as np
        ac = module
        groups = {{"posterior": {{"w": np.arange(24.0).reshape(2, 4, 3)}},
                  "unlearning": {{"lw": np.zeros((1, 4))}}}}
        attrs = {{"posterior": {{"request": "r", "ok": True}}, "unlearning": {{"k": 0.5}}}}
        ac.to_netcdf(ac.from_dict(groups, attrs), {str(path)!r})
        print(ac.ARVIZ_1)
        """
    )
    out = subprocess.run([other, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == [str(not arviz_compat.ARVIZ_1)]  # it is the other line
    container = arviz_compat.from_netcdf(path)
    assert arviz_compat.group_names(container) == ["posterior", "unlearning"]
    posterior = arviz_compat.group(container, "posterior")
    np.testing.assert_array_equal(posterior["w"].values, np.arange(24.0).reshape(2, 4, 3))
    assert posterior["w"].dims == ("chain", "draw", "w_dim_0")
    assert posterior.attrs["request"] == "r" and posterior.attrs["ok"] == 1
    assert arviz_compat.group(container, "unlearning").attrs["k"] == 0.5


@pytest.mark.parametrize("case", list(PSIS_CASES))
def test_psislw_matches_the_other_line(case, current, reference):
    mine, theirs = current["psislw"][case], reference[OTHER_LINE]["psislw"][case]
    assert mine["indices"] == theirs["indices"]
    np.testing.assert_allclose(mine["khat"], theirs["khat"], rtol=RTOL)
    np.testing.assert_allclose(mine["log_weights"], theirs["log_weights"], rtol=RTOL)


def test_psislw_properties():
    log_weights, reff = psis_input("student_t3")
    smoothed, khat = arviz_compat.psislw(log_weights, reff)
    assert smoothed.shape == log_weights.shape and isinstance(khat, float)
    assert abs(np.logaddexp.reduce(smoothed)) < 1e-12
    assert khat > 0.7  # a Student-t(3) log weight has a very heavy tail
    # the body is untouched: only the tail is smoothed
    body = np.argsort(log_weights)[: -arviz_compat._tail_length(4000, reff)]
    shift = smoothed[body] - log_weights[body]
    np.testing.assert_allclose(shift, shift[0], rtol=1e-12)

    few, khat = arviz_compat.psislw(np.log(np.arange(1.0, 21.0)))
    assert khat == np.inf and abs(np.logaddexp.reduce(few)) < 1e-12
    with pytest.raises(ValueError, match="1-D"):
        arviz_compat.psislw(np.zeros((2, 100)))
    with pytest.raises(ValueError, match="NaN"):
        arviz_compat.psislw(np.array([0.0] * 99 + [np.nan]))
    with pytest.raises(ValueError, match="reff"):
        arviz_compat.psislw(log_weights, reff=0.0)


@pytest.mark.parametrize("key", ["vector", "scalar"])
@pytest.mark.parametrize("stat", ["ess_bulk", "ess_tail", "rhat"])
def test_ess_rhat_match_the_other_line(key, stat, current, reference):
    mine = current["diagnostics"][key][stat]
    theirs = reference[OTHER_LINE]["diagnostics"][key][stat]
    np.testing.assert_allclose(mine, theirs, rtol=RTOL)


def test_ess_rhat_shapes_and_values():
    x = chains_input()
    assert arviz_compat.ess(x).shape == (3,)
    assert arviz_compat.ess(x[..., 0], "tail").shape == ()
    assert arviz_compat.rhat(x[..., :2, None]).shape == (2, 1)
    bulk = arviz_compat.ess(x)
    assert bulk[0] > 2000 > 500 > bulk[1] > bulk[2]  # less mixing, fewer effective draws
    assert abs(arviz_compat.rhat(x)[0] - 1) < 0.01 < arviz_compat.rhat(x)[2] - 1
    with pytest.raises(ValueError, match="bulk"):
        arviz_compat.ess(x, "median")
    with pytest.raises(ValueError, match="chains, draws"):
        arviz_compat.rhat(np.zeros(100))


def test_plots_return_figures_with_axes():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    rng = np.random.default_rng(4)
    containers = [
        arviz_compat.from_dict({"posterior": {"w": rng.normal(m, size=(2, 200, 2))}})
        for m in (0.0, 1.0)
    ]
    names = ["full", "retrained"]
    for plot, kwargs in ((arviz_compat.plot_forest, {}), (arviz_compat.plot_density, {})):
        figure = plot(containers, names, var_names=["w"], **kwargs)
        assert isinstance(figure, Figure)
        assert figure.axes and any(ax.has_data() for ax in figure.axes)
        plt.close(figure)
    with pytest.raises(ValueError, match="model_names"):
        arviz_compat.plot_forest(containers, ["one"])


if __name__ == "__main__":
    if "--regenerate" in sys.argv:
        regenerate()
    else:
        print(__doc__)


def test_models_of_other_chain_counts_are_plotted_on_common_draws():
    """arviz_plots concatenates models with an outer join: a 4-chain reference beside 1-chain
    draws would NaN-pad the others and wipe them off the plot; the plots resample first."""
    rng = np.random.default_rng(0)
    one = arviz_compat.from_dict({"posterior": {"w": rng.normal(0, 1, (1, 500, 3))}})
    four = arviz_compat.from_dict({"posterior": {"w": rng.normal(3, 1, (4, 300, 3))}})
    common = arviz_compat._common_draws({"one": one, "four": four})
    shapes = {k: arviz_compat.group(v, "posterior")["w"].shape for k, v in common.items()}
    assert shapes == {"one": (1, 500, 3), "four": (1, 500, 3)}
    values = arviz_compat.group(common["four"], "posterior")["w"].values
    assert np.isfinite(values).all() and abs(values.mean() - 3) < 0.2

"""The command line, end to end, as a user runs it."""

import json
import subprocess
import sys

import pytest
import torch

from pyro_unlearn import api as pu_api
from pyro_unlearn.cli import main
from pyro_unlearn.references.retrain import _request


def test_demo_quick_writes_the_report(tmp_path, capsys):
    assert main(["demo", "--quick", "--out", str(tmp_path)]) == 0
    screen = capsys.readouterr().out
    assert "Summary:" in screen and "of the gap to retraining" in screen
    assert screen.count("certificate: KL") >= 3  # each method's certificate, in the summary
    results = json.loads((tmp_path / "results.json").read_text())
    assert set(results["metrics"]) >= {
        "original",
        "laplace",
        "eubo",
        "rkl",
        "retrained",
        "noise floor (2nd reference)",
    }
    assert results["metrics"]["retrained"]["kl_mm"] == pytest.approx(0.0, abs=1e-9)
    assert all("cert_kl" in row for row in results["metrics"].values())
    assert set(results["speed"]) == {"laplace", "eubo", "rkl"}
    assert results["reference"]["method"] == "nuts"
    report = (tmp_path / "report.md").read_text()
    assert "| posterior | kl_mm |" in report and "| method | seconds |" in report
    for name in ("forest", "density", "forget_predictive"):
        assert (tmp_path / f"{name}.png").stat().st_size > 5000
    for name in ("original", "laplace", "eubo", "rkl", "retrained"):
        assert (tmp_path / f"{name}.nc").exists()


@pytest.mark.slow
def test_demo_chooses_lambda_by_the_certificate(tmp_path, capsys):
    """``--lam certified``: EUBO and rKL each run at every lambda and keep the one the
    certificate on the retained data ranks first; the summary names it."""
    assert main(["demo", "--quick", "--lam", "certified", "--out", str(tmp_path)]) == 0
    screen = capsys.readouterr().out
    assert screen.count(", certified)") == 2
    results = json.loads((tmp_path / "results.json").read_text())
    for name in ("eubo", "rkl"):
        search = results["diagnostics"][name]["lam_search"]
        assert len(search) == len(pu_api.CERTIFIED_LAMS)
        kept = [row for row in search if "cert_kl" in row]
        assert results["diagnostics"][name]["lam"] in [row["lam"] for row in kept]
    assert "lam_search" not in results["diagnostics"]["laplace"]


def test_bench_evaluator_suite_writes_its_tables(tmp_path):
    assert main(["bench", "--quick", "--suite", "evaluator", "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "bench.json").read_text())["evaluator"]
    paths = {(r["model"].split(",")[0], r["path"]) for r in results["path_rows"]}
    assert ("X @ w", "vmap") in paths and ("(X * w).sum(-1)", "vectorized") in paths
    masked = [r for r in results["scaling"] if r["mode"] == "masked"]
    assert masked and all(r["forget_set"] == "sliced data" for r in masked)
    assert "ratio (target <= 1.5)" in (tmp_path / "bench.md").read_text()


@pytest.mark.slow
def test_bench_quick_writes_tables(tmp_path, monkeypatch):
    from pyro_unlearn.bench import banknote

    # the banknote suite needs data beside the project: its absence must skip, not fail
    monkeypatch.setattr(banknote, "DATA", tmp_path / "absent.csv")
    assert main(["bench", "--quick", "--suite", "all", "--seeds", "0", "--out", str(tmp_path)]) == 0
    assert "skipped: no data" in (tmp_path / "bench.md").read_text()
    results = json.loads((tmp_path / "bench.json").read_text())
    cells = results["classifiers"]["cells"]
    assert {c["scenario"] for c in cells} == {"class", "random10", "instances", "sequence"}
    rows = cells[0]["rows"]
    assert {"retrain", "pbu", "jit", "neggrad", "ssd", "salun", "scrub", "l1_sparse"} <= set(rows)
    assert set(rows["pbu"]) >= {
        "forget_acc",
        "retain_acc",
        "test_acc",
        "mia",
        "js_to_retrain",
        "speedup",
        "retain_gap",
        "meets_targets",
    }
    blocks = results["bayes"][0]["blocks"]
    assert len(blocks) == 2
    for rows in blocks.values():
        assert {"do nothing", "eubo (default: natural, 1 step)"} <= {r["method"] for r in rows}
    report = (tmp_path / "bench.md").read_text()
    assert "| method | seconds | KL(q ‖ ref) |" in report and "| method | reads |" in report


@pytest.mark.parametrize(
    "args, message",
    [
        (["demo", "--fraction", "1.5"], "--fraction must lie in (0, 1)"),
        (["demo", "--quick", "--out", "/proc/forbidden"], "cannot create --out"),
        (["bench", "--suite", "nonsense"], "unknown suite 'nonsense'"),
        (["demo", "--seed", "-1"], "--seed must be an integer in [0, 2**63)"),
        (["demo", "--seed", str(2**66)], "--seed must be an integer in [0, 2**63)"),
        (["bench", "--seeds", "0", "-3"], "--seed must be an integer"),
        (["demo", "--fraction", "0.0001"], "forgets no patient of 569"),
        (["demo", "--device", "meta"], "choose cpu or cuda"),
        (["demo", "--device", "nonsense"], "--device nonsense"),
        (["demo", "--seed", "x"], "invalid int value"),
        (["demo", "--lam", "sometimes"], "--lam must be a number >= 0 or 'certified'"),
        (["demo", "--lam", "-0.1"], "--lam must be a number >= 0 or 'certified'"),
        (["demo", "--lam", "inf"], "--lam must be a number >= 0 or 'certified'"),
    ]
    + ([(["demo", "--device", "cuda"], "no CUDA device")] if not torch.cuda.is_available() else []),
)
def test_bad_arguments_exit_nonzero_without_traceback(args, message):
    run = subprocess.run(
        [sys.executable, "-m", "pyro_unlearn", *args], capture_output=True, text=True
    )
    assert run.returncode == 2
    assert "pyro-unlearn" in run.stderr and "error:" in run.stderr and message in run.stderr
    assert "Traceback" not in run.stderr


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_demo_on_cuda_forgets_the_same_patients(tmp_path):
    """``--device cuda`` runs the whole demo on the GPU with the CPU's forget set and reference."""
    assert main(["demo", "--quick", "--device", "cuda", "--out", str(tmp_path)]) == 0
    assert torch.get_default_device().type == "cpu"  # the device is not left behind
    results = json.loads((tmp_path / "results.json").read_text())
    # the cached NUTS reference is loaded only for the forget set it was computed for
    cpu_forget_set = torch.randperm(569, generator=torch.Generator(device="cpu").manual_seed(0))
    request = _request("nuts", cpu_forget_set[:57], "data")
    assert results["reference"]["request"] == request
    for name in ("laplace", "eubo"):
        assert results["metrics"][name]["gap_closed"] > 0

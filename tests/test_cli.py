"""The command line, end to end, as a user runs it."""

import json
import subprocess
import sys

from pyro_unlearn.cli import main


def test_demo_writes_report(tmp_path):
    assert main(["demo", "--quick", "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["num_forgotten"] == 44
    assert results["gap_closed"] > 0.99  # Laplace unlearning is exact here, up to the MAP fit
    assert "| Laplace unlearning |" in (tmp_path / "report.md").read_text()


def test_bad_arguments_exit_nonzero_without_traceback(tmp_path):
    for args in (["demo", "--fraction", "1.5"], ["demo", "--quick", "--out", "/proc/forbidden"]):
        run = subprocess.run(
            [sys.executable, "-m", "pyro_unlearn", *args], capture_output=True, text=True
        )
        assert run.returncode == 2
        assert "pyro-unlearn: error:" in run.stderr and "Traceback" not in run.stderr

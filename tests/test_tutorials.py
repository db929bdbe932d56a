"""Every tutorial notebook runs without errors in quick mode."""

import os
import sys
from pathlib import Path

import pytest

TUTORIALS = Path(__file__).parent.parent / "tutorials"
nbclient = pytest.importorskip("nbclient")


@pytest.mark.slow  # 3.5 min together; CI runs them (`python -m pytest -m slow`)
@pytest.mark.parametrize("path", sorted(TUTORIALS.glob("*.ipynb")), ids=lambda p: p.name)
def test_notebook_runs_in_quick_mode(path, monkeypatch):
    monkeypatch.setenv("PYRO_UNLEARN_QUICK", "1")
    sys.path.insert(0, str(TUTORIALS))
    try:
        from execute import execute
    finally:
        sys.path.remove(str(TUTORIALS))
    notebook = execute(path, write=False)
    errors = [
        o
        for c in notebook.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if o.output_type == "error"
    ]
    assert not errors
    assert os.environ["PYRO_UNLEARN_QUICK"] == "1"

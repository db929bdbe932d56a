"""Execute tutorial notebooks in place, keeping their outputs (``python tutorials/execute.py``).

With ``PYRO_UNLEARN_QUICK=1`` they run with fewer steps and draws (the test suite does this,
without writing the outputs back).
"""

import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient


def execute(path: Path, write: bool = True) -> nbformat.NotebookNode:
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=900,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent.parent)}},
    )
    client.execute()
    if write:
        nbformat.write(notebook, path)
    return notebook


if __name__ == "__main__":
    for name in sys.argv[1:] or sorted(str(p) for p in Path(__file__).parent.glob("*.ipynb")):
        execute(Path(name))
        print("executed", name)

"""Sphinx configuration: autodoc + napoleon (numpy style), MathJax, Markdown and notebooks via MyST-NB.

The executed tutorial notebooks live in ``tutorials/``; they are copied into
``docs/tutorials/`` at build time and rendered with their committed outputs (not re-run).
"""

import shutil
from pathlib import Path

_here = Path(__file__).parent
(_here / "tutorials").mkdir(exist_ok=True)
for _notebook in sorted((_here.parent / "tutorials").glob("*.ipynb")):
    shutil.copy(_notebook, _here / "tutorials" / _notebook.name)

project = "pyro-unlearn"
author = "pyro-unlearn developers"
extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "myst_nb",
]
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
nb_execution_mode = "off"
master_doc = "contents"
exclude_patterns = ["_build"]
autodoc_member_order = "bysource"
autodoc_typehints = "none"
napoleon_numpy_docstring = True
napoleon_google_docstring = False
html_theme = "alabaster"
suppress_warnings = ["myst.header"]

"""Sphinx configuration: autodoc + napoleon (numpy style), MathJax, Markdown pages via MyST."""

project = "pyro-unlearn"
author = "pyro-unlearn developers"
extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "myst_parser",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
master_doc = "contents"
exclude_patterns = ["_build"]
autodoc_member_order = "bysource"
autodoc_typehints = "none"
napoleon_numpy_docstring = True
napoleon_google_docstring = False
html_theme = "alabaster"
suppress_warnings = ["myst.header"]

"""The API reference names every public name; the docs pages exist."""

import re
from pathlib import Path

import pyro_unlearn

DOCS = Path(__file__).parent.parent / "docs"


def test_every_public_name_is_in_the_api_reference():
    text = (DOCS / "api.rst").read_text()
    documented = set(
        re.findall(r"^\.\. auto(?:class|function|module):: (?:pyro_unlearn\.)?(\w+)", text, re.M)
    )
    missing = set(pyro_unlearn.__all__) - documented
    assert not missing, f"add these to docs/api.rst: {sorted(missing)}"


def test_toctree_pages_exist():
    pages = re.findall(r"^   (\w+)$", (DOCS / "contents.rst").read_text(), re.M)
    assert pages and all((DOCS / f"{p}.md").exists() or (DOCS / f"{p}.rst").exists() for p in pages)

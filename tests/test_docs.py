"""The API reference names every public name; the docs pages exist."""

import re
from pathlib import Path

import pytest
import torch

import pyro_unlearn

DOCS = Path(__file__).parent.parent / "docs"


def test_every_public_name_is_in_the_api_reference():
    text = (DOCS / "api.rst").read_text()
    documented = set(
        re.findall(r"^\.\. auto(?:class|function|module):: (?:pyro_unlearn\.)?(\w+)", text, re.M)
    )
    missing = set(pyro_unlearn.__all__) - documented
    assert not missing, f"add these to docs/api.rst: {sorted(missing)}"
    # each group's names are documented in its own section, by name or as a member list
    for group in ("handlers", "infer", "methods", "references", "diagnostics"):
        module = getattr(pyro_unlearn, group)
        start = text.index(f"``pyro_unlearn.{group}``")
        body = text.index("\n", text.index("\n", start) + 1)  # below the title's underline
        section = text[body : text.find("\n---", body)]
        absent = [n for n in module.__all__ if not re.search(rf"\b{n}\b", section)]
        assert not absent, (group, absent)


def test_toctree_pages_exist():
    pages = re.findall(r"^   (\w+)$", (DOCS / "contents.rst").read_text(), re.M)
    assert pages and all((DOCS / f"{p}.md").exists() or (DOCS / f"{p}.rst").exists() for p in pages)


@pytest.mark.slow  # 90 s: its NUTS reference runs 2 x 2000 iterations
def test_the_readme_python_example_runs(tmp_path, monkeypatch, capsys):
    """The README's example, as printed there, on a PyroModule model."""
    readme = (DOCS.parent / "README.md").read_text()
    section = readme[readme.index("## In a few lines") :]
    start = section.index("```python") + len("```python")
    code = section[start : section.index("```\n", start)]
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102 - the documented example
    printed = capsys.readouterr().out
    assert "unlearned" in printed and "gap_closed" in printed
    assert (tmp_path / "ref.nc").exists()
    assert namespace["result"].diagnostics["evaluator"]["path"] == "vmap"
    assert namespace["predictions"]["obs"].shape == (1000, 5)


@pytest.mark.slow  # 40 s: an SVI fit on breast_cancer
def test_the_certificate_page_example_prints_what_it_shows(capsys):
    torch.set_default_dtype(torch.float32)  # as a user runs it (the fixture restores it)
    page = (DOCS / "certificate.md").read_text()
    start = page.index("```python") + len("```python")
    code = page[start : page.index("```\n", start)]
    exec(compile(code, "certificate.md", "exec"), {})  # noqa: S102 - the documented example
    printed = " ".join(capsys.readouterr().out.split())
    shown = page[page.index("```text") + len("```text") :]
    shown = " ".join(shown[: shown.index("```")].split())
    assert printed == shown

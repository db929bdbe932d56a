"""The package's import structure: no cycles (lazy imports included), methods below the API.

Read from the source with :mod:`ast`, so an import inside a function counts as much as one
at the top, and importing ``a.b.c`` counts as importing the package ``a.b`` too (its
``__init__`` runs first).
"""

import ast
import sys
from pathlib import Path

import pyro_unlearn as pu

ROOT = Path(pu.__file__).parent


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in ROOT.rglob("*.py")}


def imports_of(name: str) -> set[str]:
    """Every pyro_unlearn module and package that ``name`` imports, anywhere in its source."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    targets = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1]
            target = ".".join(base + [node.module]) if node.level and node.module else None
            target = target or (".".join(base) if node.level else node.module)
            for alias in node.names:
                full = f"{target}.{alias.name}"
                targets.add(full if full in MODULES else target)
        elif isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
    found = set()
    for target in targets:
        if target not in MODULES or target == name:
            continue
        parts = target.split(".")
        for i in range(2, len(parts) + 1):  # the packages on the way, then the module
            step = ".".join(parts[:i])
            if step != name and not name.startswith(step + "."):
                found.add(step)
    return found


GRAPH = {name: imports_of(name) for name in MODULES}


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm: the components with more than one module are the cycles."""
    index, low, stack, on_stack, components = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10 * len(graph)))
    try:
        for v in graph:
            if v not in index:
                visit(v)
    finally:
        sys.setrecursionlimit(limit)
    return components


def test_the_reader_sees_lazy_and_package_imports():
    # references.retrain imports the posterior views, and through them the guides
    assert "pyro_unlearn.posteriors" in GRAPH["pyro_unlearn.references.retrain"]
    assert "pyro_unlearn.handlers" in GRAPH["pyro_unlearn.references.retrain"]  # a package
    assert "pyro_unlearn.api" in GRAPH["pyro_unlearn.bench.evaluator"]  # inside a function


def test_no_import_cycles_lazy_imports_included():
    assert strongly_connected(GRAPH) == []
    # the check itself finds a cycle when there is one
    assert strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [["a", "b", "c"]]


ABOVE_THE_API = ("pyro_unlearn.cli", "pyro_unlearn.diagnostics", "pyro_unlearn.bench")


def test_methods_do_not_import_the_api_that_dispatches_to_them():
    """The method table is built in api.py from downward imports: no registration."""
    importers = sorted(
        name
        for name, deps in GRAPH.items()
        if "pyro_unlearn.api" in deps
        and name != "pyro_unlearn"  # the package's namespace re-exports it
        and not name.startswith(ABOVE_THE_API)
    )
    assert importers == []
    assert set(pu.available_methods()) == set(pu.api.METHODS) == set(pu.api.ACCEPTS)


def test_handlers_import_no_method_api_or_diagnostics():
    above = ("api", "methods", "diagnostics", "references", "fit", "flows", "infer", "classifiers")
    above += ("cli", "bench", "targets", "model_eval", "ledger", "results")
    for name, deps in GRAPH.items():
        if name.startswith("pyro_unlearn.handlers"):
            bad = [d for d in deps if d.split(".")[1] in above]
            assert bad == [], (name, bad)


#: the layers, bottom up; a module may import from its own layer and the ones below only
LAYERS = [
    # base: no pyro_unlearn imports but each other
    {"errors", "options", "_rng", "_checks", "_user_model", "masks", "gaussian", "arviz_compat"},
    {"datasets", "models", "ledger", "results", "natural", "importance", "tempering"},
    {"guides", "posteriors"},  # the posterior view: a fitted guide read once
    {"handlers"},  # forget, retain, anchor (the anchor reads the posterior view)
    {"model_eval"},  # the one model evaluator, built on the handlers
    {
        "targets",
        "certificate",
        "fit",
        "flows",
        "infer",
        "methods",
        "classifiers",
    },  # objectives, methods
    {"api"},
    {"diagnostics", "references"},
    {"cli", "bench", "__main__"},
]


def layer_of(name: str) -> int:
    top = name.split(".")[1]
    return next(i for i, layer in enumerate(LAYERS) if top in layer)


def test_every_module_has_a_layer_and_imports_only_downward():
    modules = [n for n in GRAPH if n != "pyro_unlearn"]
    assert {n.split(".")[1] for n in modules} == set().union(*LAYERS)
    upward = sorted(
        (name, dep)
        for name in modules
        for dep in GRAPH[name]
        if dep != "pyro_unlearn" and layer_of(dep) > layer_of(name)
    )
    assert upward == []

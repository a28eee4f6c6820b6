"""The layering the next engineer relies on, checked from the source with ``ast``.

* no import cycle among the modules of ``sync``, ``audit`` and ``conflictdesk``
  (imports inside functions count: a cycle hidden in a function is still a cycle);
* no module imports a private (underscore) name from another module;
* an import inside a function says why, in a comment on its line or the line above;
* ``sync.mapping`` and ``audit.chain`` stay pure: nothing from Django.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("sync", "audit", "conflictdesk")


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            name = ".".join(path.relative_to(REPO).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


MODULES = _modules()


def _target(module: str, node: ast.ImportFrom) -> str:
    """The absolute module an ``import from`` names (relative imports resolved)."""
    if not node.level:
        return node.module or ""
    parts = module.split(".")
    package = parts if MODULES[module].name == "__init__.py" else parts[:-1]
    package = package[: len(package) - (node.level - 1)]
    return ".".join(package + ([node.module] if node.module else []))


def _own(name: str) -> str | None:
    """The project module a dotted name falls in, or None for third-party names."""
    while name and name not in MODULES:
        if "." not in name:
            return None
        name = name.rsplit(".", 1)[0]
    return name or None


def _imports(module: str):
    """(node, imported module, names, inside a function) for every import of the module."""
    tree = ast.parse(MODULES[module].read_text())
    nested = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
              for n in ast.walk(f) if isinstance(n, (ast.Import, ast.ImportFrom))}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node, alias.name, [], id(node) in nested
        elif isinstance(node, ast.ImportFrom):
            base = _target(module, node)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                yield node, (sub if sub in MODULES else base), [alias.name], id(node) in nested


def _graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {m: set() for m in MODULES}
    for module in MODULES:
        for _node, target, _names, _nested in _imports(module):
            own = _own(target)
            # A package's __init__ re-exports; importing it is importing its API, not a cycle through it.
            if own and own != module and MODULES[own].name != "__init__.py":
                edges[module].add(own)
    return edges


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_checker_sees_a_cycle_when_there_is_one():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_it_finds_the_project_modules():
    assert {"sync.models", "sync.mapping.convert", "audit.chain", "conflictdesk.settings"} <= set(MODULES)


def test_no_import_cycles():
    assert _cycles(_graph()) == []


def test_no_private_name_is_imported_from_another_module():
    offences = []
    for module in MODULES:
        for node, target, names, _nested in _imports(module):
            own = _own(target)
            if own and own != module:
                private = [n for n in names if n.startswith("_") and not n.startswith("__")]
                offences += [f"{module}:{node.lineno} imports {own}.{n}" for n in private]
    assert offences == []


def test_an_import_inside_a_function_says_why():
    offences = []
    for module, path in MODULES.items():
        lines = path.read_text().splitlines()
        for node, _target_name, _names, nested in _imports(module):
            if not nested:
                continue
            here, above = lines[node.lineno - 1], lines[node.lineno - 2].strip() if node.lineno > 1 else ""
            if "#" not in here and not above.startswith("#"):
                offences.append(f"{module}:{node.lineno}")
    assert sorted(set(offences)) == []


@pytest.mark.parametrize("pure", ["sync.mapping", "audit.chain"])
def test_pure_layers_import_nothing_from_django(pure):
    offences = [f"{module}:{node.lineno}"
                for module in MODULES if module == pure or module.startswith(pure + ".")
                for node, target, _names, _nested in _imports(module)
                if target == "django" or target.startswith("django.")]
    assert offences == []

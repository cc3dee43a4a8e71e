"""The shape of the code, read from the source (no import, no lake): no import circle among
elliptio's modules, no module of elliptio or elliptiofs over 400 lines, and elliptiofs
reaching elliptio only through the names elliptio exports (its ``__all__`` and the public
modules its docstring lists)."""

from __future__ import annotations

import ast
import re
from dataclasses import fields
from pathlib import Path

import elliptio
from elliptio.config import DAEMON_KEYS

ROOT = Path(__file__).resolve().parent.parent


def modules(package: str) -> dict[str, Path]:
    """Dotted module name -> source file, for every module of *package*."""
    out = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def imports(name: str, path: Path) -> list[tuple[str, list[str]]]:
    """``(module, names)`` of every import statement of a module, wherever it stands (at
    the top, under ``if TYPE_CHECKING``, in a function): relative imports resolved;
    ``names`` empty for ``import x.y``."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    out: list[tuple[str, list[str]]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1])
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            out.append((module, [a.name for a in node.names]))
    return out


def import_graph(package: str) -> dict[str, set[str]]:
    """Module -> the modules of *package* it imports. ``from pkg import mod`` is an edge to
    ``pkg.mod``; the top package itself (whose ``__init__`` re-exports) is no target."""
    mods = modules(package)
    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        targets = set()
        for module, names in imports(name, path):
            for n in names or [""]:
                full = f"{module}.{n}"
                targets.add(full if full in mods else module)
        graph[name] = {t for t in targets if t in mods and t not in (name, package)}
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_circle_finder_finds_circles():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert circles({"a": {"b"}, "b": set()}) == []


def test_no_import_circle_among_elliptios_modules():
    graph = import_graph("elliptio")
    assert "elliptio.lake" in graph["elliptio.api"]  # the graph sees what it should
    assert circles(graph) == []


def test_no_module_over_400_lines():
    long = {name: n for package in ("elliptio", "elliptiofs")
            for name, path in modules(package).items()
            if (n := len(path.read_text().splitlines())) > 400}
    assert long == {}


def public_modules() -> set[str]:
    """The modules ``elliptio``'s docstring lists as public."""
    doc = elliptio.__doc__ or ""
    return set(re.findall(r"^ {4}(elliptio\.[a-z_.]+) ", doc, re.MULTILINE))


def defined_names(path: Path) -> set[str]:
    """A module's public names: its ``__all__`` if it has one, else what it binds at top
    level (definitions, assignments, imports)."""
    tree = ast.parse(path.read_text(), str(path))
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            return set(ast.literal_eval(node.value))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return names


def test_elliptiofs_uses_only_what_elliptio_exports():
    public = public_modules()
    assert {"elliptio.errors", "elliptio.layout", "elliptio.query"} <= public
    lib = modules("elliptio")
    assert public <= set(lib), "the docstring lists a module that does not exist"
    wrong = []
    for name, path in modules("elliptiofs").items():
        for module, names in imports(name, path):
            if module != "elliptio" and not module.startswith("elliptio."):
                continue
            where = f"{path.relative_to(ROOT)}: {module}"
            if module == "elliptio":
                allowed = set(elliptio.__all__) | {m.split(".")[1] for m in public}
            elif module in public:
                allowed = defined_names(lib[module])
            else:
                wrong.append(f"{where} is not a public module")
                continue
            wrong += [f"{where}.{n} is not exported" for n in names
                      if n.startswith("_") or n not in allowed]
    assert wrong == []


def test_the_daemons_settings_are_the_keys_the_library_leaves_it():
    from elliptiofs.settings import DaemonSettings

    assert {f.name for f in fields(DaemonSettings)} - {"source"} == set(DAEMON_KEYS)
    assert not set(DAEMON_KEYS) & {f.name for f in fields(elliptio.Settings)}

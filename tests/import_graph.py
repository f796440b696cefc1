"""The import graph of the repository's own modules, read with `ast` (no module is imported).

Every `import` statement counts, at any depth: a function-local import runs when the function
does, so it is as much a dependency as one at the top. Importing `a.b.c` also runs `a/__init__.py`
and `a/b/__init__.py`, so parents count too.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.helpers import REPO

PACKAGES = ("micn", "flows")


def module_file(name: str) -> Path | None:
    """The repository file of module `name` (a package's __init__.py), None if it is not ours."""
    if name.split(".")[0] not in PACKAGES:
        return None
    base = REPO / Path(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def module_name(path: Path) -> str:
    """`micn/data/batch.py` -> `micn.data.batch`; a package's `__init__.py` -> the package."""
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, parents: bool = True) -> set[str]:
    """Every module an import statement in `path` names, at any depth (lazy imports count too),
    with each parent package when `parents` (importing a.b.c runs a/__init__.py and a/b/__init__.py)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = ".".join(path.relative_to(REPO).with_suffix("").parts)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            names.add(base)
            names.update(f"{base}.{a.name}" for a in node.names)  # `from pkg import module`
    if not parents:
        return names
    with_parents = set(names)
    for name in names:
        parts = name.split(".")
        with_parents.update(".".join(parts[:i]) for i in range(1, len(parts)))
    return with_parents


def closure(module: str) -> set[str]:
    """Repository files (relative paths) that importing `module` runs, transitively."""
    todo, seen = [module], set()
    files: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = module_file(name)
        if path is None:
            continue
        files.add(path.relative_to(REPO).as_posix())
        todo.extend(imported_modules(path))
    return files


def graph() -> dict[str, set[str]]:
    """module -> the modules of ours it imports directly (without the implicit parent packages, whose
    `__init__` runs first but is not a dependency of the module's own code)."""
    edges = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            name = module_name(path)
            found = {n for n in imported_modules(path, parents=False) if module_file(n) is not None}
            edges[name] = {module_name(module_file(n)) for n in found} - {name}
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
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
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found

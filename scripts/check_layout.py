"""The layout rules of the package, checked (tests/test_layout.py runs this too).

    python scripts/check_layout.py        # prints every violation; exit 1 if any

1. No import cycle between rledit_ray's modules. Every import statement counts, at module
   level or inside a function (a lazy import is still a dependency), and importing
   `rledit_ray.a.b` also depends on the package `rledit_ray.a` (its `__init__` runs first).
   The top-level `rledit_ray/__init__.py` is the public door and imports lazily, so it is not
   counted as a parent.
2. No module over MAX_MODULE_LINES lines, in the package or under scripts/ (SIZED).
3. No function over MAX_FUNCTION_LINES lines, in the package or under scripts/, except the
   declarative builders in DECLARATIVE (an argparse parser, an RLlib config chain): long
   because they list options. A script's functions are named from the repository root,
   e.g. scripts.reproducing.registry._byo.
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "rledit_ray"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
DECLARATIVE = {"rledit_ray.cli._parser", "rledit_ray.agent.ppo.build_ppo_config"}
SIZED = (PACKAGE, "scripts")  # the folders whose modules and functions the size rules cover


def modules(root: Path = ROOT, folder: str = PACKAGE) -> dict[str, Path]:
    """Dotted module name -> file, for every module under `folder` (packages by __init__),
    named from the repository root."""
    out = {}
    for path in sorted((root / folder).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def sized(root: Path = ROOT) -> dict[str, Path]:
    """The modules the size rules cover: the package's and every one under scripts/."""
    return {name: path for folder in SIZED for name, path in modules(root, folder).items()}


def _imported(node: ast.AST, here: str, is_package: bool, known: set[str]) -> set[str]:
    """The package's modules an import statement in module `here` depends on."""
    if isinstance(node, ast.Import):
        targets, names_from = [alias.name for alias in node.names], []
    else:
        base = node.module or ""
        if node.level:  # relative import
            parts = here.split(".")
            anchor = parts[: len(parts) - node.level + (1 if is_package else 0)]
            base = ".".join(anchor + ([base] if base else []))
        submodules = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in known]
        # A name defined in a package's __init__ needs that __init__ to have run this far.
        names_from = [base] if len(submodules) < len(node.names) else []
        targets = submodules or [base]
    ancestors = {".".join(here.split(".")[:i]) for i in range(1, here.count(".") + 1)}
    found = {t for t in names_from if t in known}
    for target in targets:
        parts = target.split(".")
        for i in range(2, len(parts) + 1):
            candidate = ".".join(parts[:i])
            # The module's own packages are initialised before it runs: not a dependency,
            # unless it takes a name from one of them (names_from above).
            if candidate in known and (candidate == target or candidate not in ancestors):
                found.add(candidate)
    return found - {here}


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    mods = modules(root)
    known = set(mods)
    graph = {}
    for name, path in mods.items():
        tree = ast.parse(path.read_text(), str(path))
        is_package = path.name == "__init__.py"
        edges = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                edges |= _imported(node, name, is_package, known)
        graph[name] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
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
                out.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def long_modules(root: Path = ROOT) -> list[str]:
    return [f"{path.relative_to(root)}: {n} lines (max {MAX_MODULE_LINES})"
            for path in sized(root).values() if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES]


def long_functions(root: Path = ROOT) -> list[str]:
    out = []
    for name, path in sized(root).items():
        tree = ast.parse(path.read_text(), str(path))
        for scope in ast.walk(tree):
            for node in ast.iter_child_nodes(scope):
                if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    continue
                qualified = f"{name}.{node.name}" if scope is tree else f"{name}.*.{node.name}"
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES and qualified not in DECLARATIVE:
                    out.append(f"{path.relative_to(root)}:{node.lineno} {node.name}: {n} lines (max {MAX_FUNCTION_LINES})")
    return out


def violations(root: Path = ROOT) -> list[str]:
    found = [f"import cycle: {' <-> '.join(c)}" for c in cycles(import_graph(root))]
    return found + long_modules(root) + long_functions(root)


if __name__ == "__main__":
    problems = violations()
    print("\n".join(problems) if problems else "layout ok: no import cycle, no long module or function")
    sys.exit(1 if problems else 0)

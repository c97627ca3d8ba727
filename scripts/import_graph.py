"""The import graph of the ``garbseg`` package, read with ``ast`` (nothing is imported or run).

    python scripts/import_graph.py            # cycles, function-level imports inside garbseg, layers
    python scripts/import_graph.py --json     # the same as one JSON object

Every ``import``/``from ... import`` of a garbseg module is an edge, at module level or inside a
function (``TYPE_CHECKING`` blocks are left out: they never run). Cycles are the strongly connected
components with more than one module, or a module importing itself. Exit status 1 when a cycle exists.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "garbseg"


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(path: Path, root: Path, modules: set[str]) -> list[tuple[str, bool, int]]:
    """(imported garbseg module, inside a function?, line) for every import in ``path``."""
    module = module_name(path, root)
    is_package = path.name == "__init__.py"
    found: list[tuple[str, bool, int]] = []

    def target(name: str) -> str | None:
        # ``from pkg import sub`` may name a submodule; otherwise the deepest module that exists.
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for sub in child.orelse:
                    visit(sub, in_function)
                continue
            nested = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                for alias in child.names:
                    if alias.name.split(".")[0] == PACKAGE and (t := target(alias.name)):
                        found.append((t, in_function, child.lineno))
            elif isinstance(child, ast.ImportFrom):
                base = _resolve(module, is_package, child)
                if base.split(".")[0] != PACKAGE:
                    continue
                for alias in child.names:
                    t = target(f"{base}.{alias.name}") if f"{base}.{alias.name}" in modules else target(base)
                    if t:
                        found.append((t, in_function, child.lineno))
            visit(child, nested)

    visit(ast.parse(path.read_text(), str(path)), False)
    return found


def graph(root: Path = ROOT) -> tuple[dict[str, set[str]], list[dict]]:
    files = sorted((root / PACKAGE).rglob("*.py"))
    modules = {module_name(p, root) for p in files}
    edges: dict[str, set[str]] = {m: set() for m in modules}
    function_level = []
    for path in files:
        module = module_name(path, root)
        for target, in_function, line in imports_of(path, root, modules):
            if target == module:
                continue
            edges[module].add(target)
            item = {"module": module, "imports": target, "line": line}
            if in_function and item not in function_level:
                function_level.append(item)
    return edges, function_level


def strongly_connected(edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm; components with a cycle only."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def connect(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                connect(w)
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
            if len(component) > 1 or v in edges.get(v, ()):
                out.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for v in sorted(edges):
        if v not in index:
            connect(v)
    return out


def _is_reexport(importer: str, target: str) -> bool:
    # ``garbseg/x/__init__.py`` importing ``garbseg.x.y`` (its own submodule), or a submodule importing
    # its package's __init__ which re-exports siblings: both directions inside one package.
    return target.startswith(importer + ".") or importer.startswith(target + ".")


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Cycles between modules. A package's ``__init__`` re-exporting its submodules is not an edge
    back into the package: importing ``garbseg.x.y`` runs ``garbseg/x/__init__`` first anyway."""
    trimmed = {m: {t for t in ts if not _is_reexport(m, t)} for m, ts in edges.items()}
    return strongly_connected(trimmed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    edges, function_level = graph()
    found = cycles(edges)
    if args.json:
        json.dump({"modules": len(edges), "edges": sum(map(len, edges.values())), "cycles": found,
                   "function_level_imports": function_level}, sys.stdout, indent=2)
        print()
    else:
        print(f"{len(edges)} modules, {sum(map(len, edges.values()))} import edges inside {PACKAGE}")
        print(f"import cycles: {len(found)}")
        for component in found:
            print("  " + " <-> ".join(component))
        print(f"function-level imports of {PACKAGE} modules: {len(function_level)}")
        for item in function_level:
            print(f"  {item['module']}:{item['line']} imports {item['imports']}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())

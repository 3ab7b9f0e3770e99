"""Each folder is one layer and nothing imports upward (docs: DESIGN.md's layout).

The import graph is read from the source (every import, lazy ones inside functions too), so a new upward or
circular import fails here whatever order the modules happen to load in.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("omnimamba", "demo")
TOOLS = ("omnimamba.cli", "omnimamba.__main__", "omnimamba.compare", "omnimamba.bench", "omnimamba.train",
         "omnimamba.shapes")
MODEL_MAY_USE = ("omnimamba.model", "omnimamba.config", "omnimamba.checkpoint")


def _modules() -> dict[str, Path]:
    found = {"app": ROOT / "app.py"}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _resolve(module: str, path: Path, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    base = package[:len(package) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(module: str, path: Path, known: set[str]) -> set[str]:
    """The project modules `module` imports (a name imported from a package counts as its submodule)."""
    targets = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module, path, node)
            targets.update(f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names)
    return {t for t in targets if t in known and t != module}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, set(modules)) for name, path in modules.items()}


def _inside(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path of modules, or None (depth-first search, colouring the nodes)."""
    state: dict[str, int] = {}  # 1 on the current path, 2 done

    def visit(node: str, trail: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:  # back on the current path: a cycle
                path = trail + [node]
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt, trail + [node])):
                return found
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start, [])):
            return found
    return None


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    bad = []
    for module, targets in graph.items():
        for target in sorted(targets):
            if target == "app":
                bad.append(f"{module} imports app (app.py is the top: nothing imports it)")
            elif module.startswith("omnimamba") and _inside(target, ("demo",)):
                bad.append(f"{module} imports {target} (omnimamba never imports the demo)")
            elif _inside(module, ("omnimamba.model",)) and not _inside(target, MODEL_MAY_USE):
                bad.append(f"{module} imports {target} (the model knows only config and checkpoint)")
            elif (module.startswith("omnimamba") and not _inside(module, TOOLS) and _inside(target, TOOLS)
                  and module != "omnimamba"):
                bad.append(f"{module} imports {target} (the core does not import the tools built on it)")
    return bad


def test_no_module_imports_upward():
    assert upward_imports(_graph()) == []


def test_there_is_no_import_cycle():
    assert _cycle(_graph()) is None


def test_the_checks_catch_what_they_are_for():
    graph = {"omnimamba.model.x": {"omnimamba.hub"}, "omnimamba.hub": {"omnimamba.model.x"}, "demo.a": set(),
             "omnimamba.engine": {"demo.a", "omnimamba.compare"}, "omnimamba.compare": {"app"}, "app": set()}
    assert len(upward_imports(graph)) == 4
    assert _cycle(graph) == ["omnimamba.hub", "omnimamba.model.x", "omnimamba.hub"]

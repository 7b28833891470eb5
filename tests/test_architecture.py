"""The package's layers, checked from the source: no import cycle, and no layer importing
one above it (every import counts: module level, inside functions, and type-only ones).

The layers, lowest first (README, "Architecture"):

0. foundation: ``errors``, ``version``, ``config``, ``progress``
1. ``model/``: pure data
2. ``plugin/``: hook specifications, marker, manager, generated reference
3. ``local/``: the store on disk
4. ``image/``: operations on local content
5. ``remote/``: registries
6. top: the package itself, ``store``, ``cli``, ``testing``, ``__main__`` and the
   re-exporting modules kept for older plugins
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import contentstore

PACKAGE = Path(contentstore.__file__).parent
FOUNDATION = {"contentstore.errors", "contentstore.version", "contentstore.config", "contentstore.progress"}
LAYERS = {"model": 1, "plugin": 2, "local": 3, "image": 4, "remote": 5}
TOP = 6


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def rank(module: str) -> int:
    if module in FOUNDATION:
        return 0
    parts = module.split(".")
    if len(parts) >= 2 and parts[1] in LAYERS:
        return LAYERS[parts[1]]
    return TOP


def imports_of(module: str, path: Path, known: set[str]) -> set[str]:
    """Every contentstore module that ``module`` imports, anywhere in its source."""
    tree = ast.parse(path.read_text(), str(path))
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join(anchor + ([base] if base else []))
            # ``from pkg import mod`` imports the module pkg.mod where there is one.
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                     for alias in node.names]
        else:
            continue
        found.update(name for name in names if name == "contentstore" or name.startswith("contentstore."))
    found.discard(module)
    return found


def import_graph() -> dict[str, set[str]]:
    found = modules()
    return {module: imports_of(module, path, set(found)) for module, path in found.items()}


def test_every_module_is_in_a_layer():
    for module in modules():
        parts = module.split(".")
        if module in FOUNDATION or len(parts) < 2 or parts[1] in LAYERS:
            continue
        assert rank(module) == TOP, module


def test_no_layer_imports_a_layer_above_it():
    wrong = [
        f"{module} (layer {rank(module)}) imports {target} (layer {rank(target)})"
        for module, targets in import_graph().items()
        for target in sorted(targets)
        if rank(target) > rank(module)
    ]
    assert not wrong, "\n".join(wrong)


def test_no_import_cycles():
    graph = import_graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 1:
                cycles.append(path[path.index(target):] + [target] if target in path else [module, target])
            elif target not in state:
                visit(target, path + [target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, "\n".join(" -> ".join(cycle) for cycle in cycles)


@pytest.mark.parametrize("layer", sorted(LAYERS))
def test_each_layer_is_a_folder(layer):
    assert (PACKAGE / layer / "__init__.py").is_file()


def test_the_checker_sees_a_violation(tmp_path):
    """The graph is built from source: an upward import in a lower layer is found."""
    path = tmp_path / "digest.py"
    path.write_text("def f():\n    from contentstore.store import Store\n")
    found = imports_of("contentstore.model.digest", path, set(modules()))
    assert "contentstore.store" in found
    assert rank("contentstore.store") > rank("contentstore.model.digest")

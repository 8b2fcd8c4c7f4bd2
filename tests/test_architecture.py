"""The package boundaries the design promises, read from the import graph of src/ and pipelines/.

Every import counts, at module level or inside a function (a lazy import still ties two modules);
only imports under ``if TYPE_CHECKING:`` are left out, since they never run. Layers, bottom to top:
config sections < components, models, data, training, tracking, ... < tasks < experiment < inference,
serving, runs, orchestration, steps < pipelines < src.main.
"""

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"


def module_files() -> dict[str, Path]:
    """Dotted module name -> file, for every module of src/ and pipelines/ (a package is its __init__)."""
    modules = {}
    for top in ("src", "pipelines"):
        for path in (ROOT / top).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imported_names(tree: ast.AST, package: str, modules: dict[str, Path] | None = None) -> list[str]:
    """Every module an import in ``tree`` names: ``from a import b`` names ``a.b`` when that is a module
    of ``modules``, else ``a``. Imports inside functions count; those under ``if TYPE_CHECKING:`` not."""
    modules = modules or {}
    names: list[str] = []
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            names += imported_names(ast.Module(node.orelse, []), package, modules)
            continue
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, one level up per extra dot
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, *([node.module] if node.module else [])])
            names += [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        names += imported_names(node, package, modules)
    return names


def module_imports() -> dict[str, set[str]]:
    """Module -> the modules of src/ and pipelines/ it imports (the longest known prefix of each name)."""
    modules = module_files()
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        targets = set()
        for name in imported_names(ast.parse(path.read_text(encoding="utf-8")), package, modules):
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name and name != module:
                targets.add(name)
        graph[module] = targets
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan): each holds a cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for following in graph.get(node, ()):
            if following not in index:
                visit(following)
                low[node] = min(low[node], low[following])
            elif following in stack:
                low[node] = min(low[node], index[following])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def top_level(module: str) -> str:
    """The package of src (or pipelines) a module belongs to: src.tasks.translation.steps -> tasks."""
    parts = module.split(".")
    return parts[1] if parts[0] == "src" and len(parts) > 1 else parts[0]


def package_imports() -> dict[str, set[str]]:
    """Top-level package (or module) of src -> the other ones it imports, lazily or not."""
    deps: dict[str, set[str]] = defaultdict(set)
    for module, targets in module_imports().items():
        if module.startswith("src."):
            deps[top_level(module)] |= {top_level(t) for t in targets if t.startswith("src.")} - {
                top_level(module)}
    return deps


def test_no_import_cycles_between_packages():
    deps = package_imports()
    cycles_found = []
    for start in deps:
        stack = [(start, [start])]
        while stack:
            node, path = stack.pop()
            for following in deps.get(node, ()):
                if following == start:
                    cycles_found.append(" -> ".join([*path, start]))
                elif following not in path:
                    stack.append((following, [*path, following]))
    assert not cycles_found, cycles_found


def test_no_import_cycles_between_modules_inside_packages_either():
    assert cycles(module_imports()) == []


def test_the_library_imports_neither_the_command_line_nor_the_pipelines():
    """src/main.py and pipelines/ sit on top: a library module that imports them would tie it to the CLI."""
    offenders = {module: sorted(t for t in targets if t == "src.main" or t.split(".")[0] == "pipelines")
                 for module, targets in module_imports().items()
                 if module.startswith("src.") and module != "src.main"}
    assert {module: targets for module, targets in offenders.items() if targets} == {}


def test_the_cycle_check_finds_a_cycle_and_a_lazy_import():
    """The checks above can fail: a two-module loop, one side imported inside a function, is found."""
    tree = ast.parse("def f():\n    from src.b import g\n")
    assert "src.b" in imported_names(tree, "src")
    assert cycles({"src.a": {"src.b"}, "src.b": {"src.a"}, "src.c": set()}) == [["src.a", "src.b"]]
    type_only = ast.parse("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from src.b import g\n")
    assert "src.b" not in imported_names(type_only, "src")


def test_only_the_tracking_adapter_and_the_orchestration_package_import_clearml():
    importers = {top_level(module) for module, path in module_files().items()
                 if any(name.split(".")[0] == "clearml"
                        for name in imported_names(ast.parse(path.read_text(encoding="utf-8")), ""))}
    assert importers == {"tracking", "orchestration"}


def test_no_two_test_files_share_a_name():
    """tests/ has no __init__.py files: pytest imports test modules by file name, so two of one name cannot
    both run."""
    from collections import Counter

    names = Counter(path.name for path in Path(__file__).parent.rglob("test_*.py"))
    assert not [name for name, count in names.items() if count > 1]

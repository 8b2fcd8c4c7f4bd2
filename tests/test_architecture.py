"""The package boundaries the design promises: no import cycles, clearml only in src/tracking."""

import re
from collections import defaultdict
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
IMPORT = re.compile(r"^\s*(?:from|import) src\.(\w+)", re.MULTILINE)


def package_imports() -> dict[str, set[str]]:
    """Top-level package (or module) of src -> the other ones it imports, lazily or not."""
    deps: dict[str, set[str]] = defaultdict(set)
    for path in SRC.rglob("*.py"):
        package = path.relative_to(SRC).parts[0].removesuffix(".py")
        deps[package] |= {name for name in IMPORT.findall(path.read_text(encoding="utf-8")) if name != package}
    return deps


def test_no_import_cycles_between_packages():
    deps = package_imports()
    cycles = []
    for start in deps:
        stack = [(start, [start])]
        while stack:
            node, path = stack.pop()
            for following in deps.get(node, ()):
                if following == start:
                    cycles.append(" -> ".join([*path, start]))
                elif following not in path:
                    stack.append((following, [*path, following]))
    assert not cycles, cycles


def test_only_the_tracking_package_imports_clearml():
    importers = {path.relative_to(SRC).parts[0] for path in SRC.rglob("*.py")
                 if re.search(r"^\s*(?:from|import) clearml\b", path.read_text(encoding="utf-8"), re.MULTILINE)}
    assert importers == {"tracking", "orchestration"}


def test_no_two_test_files_share_a_name():
    """tests/ has no __init__.py files: pytest imports test modules by file name, so two of one name cannot both run."""
    from collections import Counter

    names = Counter(path.name for path in Path(__file__).parent.rglob("test_*.py"))
    assert not [name for name, count in names.items() if count > 1]

"""The two ClearML packages as issue 27 shapes them: one public surface each, cheap to import, and the
adapter (src/tracking) below everything that runs a step, so a task's training code may use it."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SUBMODULE = re.compile(r"^\s*(?:from|import)\s+(src\.(?:tracking|orchestration))\.\w+", re.MULTILINE)
# what src/tracking must never import, lazily or not: the layers above it (I27_LAYERS), which reach the
# task table and the step runner; config sections (src.config.tracking, .base, ...) are below it and allowed
ABOVE_TRACKING = re.compile(
    r"^\s*(?:from|import)\s+(src\.config(?=\s|$| "
    r"import)|src\.config\.experiment|src\.(?:tasks|runs|steps|tuning|"
    r"inference|serving|export|orchestration|main)\b|pipelines\b)",
    re.MULTILINE,
)


def python_files(*folders: str) -> list[Path]:
    return [path for folder in folders for path in (ROOT / folder).rglob("*.py")]


def test_outside_code_imports_tracking_and_orchestration_through_their_init_only():
    offenders = []
    for path in python_files("src", "pipelines"):
        for package in SUBMODULE.findall(path.read_text(encoding="utf-8")):
            if not path.is_relative_to(ROOT / package.replace(".", "/")):
                offenders.append(f"{path.relative_to(ROOT)} imports a submodule of {package}")
    assert offenders == []


def test_the_adapter_imports_no_layer_above_it():
    offenders = [f"{path.relative_to(ROOT)}: {name}" for path in python_files("src/tracking")
                 for name in ABOVE_TRACKING.findall(path.read_text(encoding="utf-8"))]
    assert offenders == []


def test_importing_both_surfaces_loads_neither_clearml_nor_torch():
    code = ("import sys, src.tracking, src.orchestration\n"
            "print(sorted(m for m in ('clearml', 'torch', 'matplotlib') if m in sys.modules))")
    done = subprocess.run(["timeout", "-s", "KILL", "60", sys.executable, "-c", code], cwd=ROOT,
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"

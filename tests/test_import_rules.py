"""Who may import whom (issue 11; docs/architecture.md, "The parts").

A real deployment runs the lifecycle service and the phone app without the mock CA, and the phone
app without the service's code: each part imports only itself and the shared kernel
``jpki_common``, which imports none of them. The embedded default starts the mock CA as a separate
process through its CLI, never by importing it.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PARTS = ("jpki_common", "jpki_service", "app_client", "ca_mock")
ALLOWED = {
    "jpki_common": {"jpki_common"},
    "jpki_service": {"jpki_service", "jpki_common"},
    "app_client": {"app_client", "jpki_common"},
    "ca_mock": {"ca_mock", "jpki_common"},
}


def _imported_parts(path: Path) -> list[tuple[int, str]]:
    """(line, imported module) for every import of one of our parts, at any depth of the file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [node.module]
        else:
            continue
        found += [(node.lineno, module) for module in modules if module.split(".")[0] in PARTS]
    return found


@pytest.mark.parametrize("part", PARTS)
def test_each_part_imports_only_itself_and_the_shared_kernel(part):
    forbidden = [
        f"{path.relative_to(ROOT)}:{line}: imports {module}"
        for path in sorted((ROOT / part).rglob("*.py"))
        for line, module in _imported_parts(path)
        if module.split(".")[0] not in ALLOWED[part]
    ]
    assert not forbidden, "\n".join(forbidden)


# Every module of a part, imported in a fresh interpreter in which the forbidden parts cannot be
# imported at all: proves the rule holds for what actually runs (lazy imports included), not only
# for the import statements the test above reads.
_IMPORT_ALL = """
import importlib, pkgutil, sys
for blocked in sys.argv[2:]:
    sys.modules[blocked] = None  # "import blocked" now raises ImportError
package = importlib.import_module(sys.argv[1])
failures = []
for info in pkgutil.walk_packages(package.__path__, sys.argv[1] + "."):
    if info.name.endswith("__main__") or ".migrations." in info.name:
        continue
    try:
        importlib.import_module(info.name)
    except Exception as exc:
        failures.append(f"{info.name}: {exc.__class__.__name__}: {exc}")
print("\\n".join(failures))
sys.exit(1 if failures else 0)
"""


@pytest.mark.parametrize("part", ["jpki_common", "jpki_service", "app_client"])
def test_each_part_loads_where_the_others_are_not_installed(part):
    blocked = sorted(set(PARTS) - ALLOWED[part])
    run = subprocess.run([sys.executable, "-c", _IMPORT_ALL, part, *blocked], capture_output=True, text=True,
                         cwd=ROOT, timeout=120)
    assert run.returncode == 0, f"{part} without {', '.join(blocked)}:\n{run.stdout}{run.stderr}"

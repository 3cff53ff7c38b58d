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


# -- the layers inside jpki_service (docs/architecture.md, "The lifecycle service") -------------
# Each layer may import its own and the layers below it; the rooms (one package per domain
# concept: registrations, callcentre, operators...) hold the use cases and their views.
LAYERS = ("common", "domain", "adapters", "rooms", "entrypoints")
DOMAIN = {"jpki_service.lifecycle", "jpki_service.holder_data", "jpki_service.japanese_items"}


# Entry points besides entrypoints/: each room's HTTP views and CLI, ``python -m jpki_service``, and
# Alembic's env.py (Alembic runs it; it must see every room's tables). A use case never imports one.
ROOM_ENTRY_POINTS = ("views", "cli", "client_cli", "__main__")


def _layer(module: str) -> str:
    if module in DOMAIN:
        return "domain"
    if module.rsplit(".", 1)[-1] in ROOM_ENTRY_POINTS or module.startswith("jpki_service.adapters.migrations"):
        return "entrypoints"
    for layer in ("common", "adapters", "entrypoints"):
        if module.startswith(f"jpki_service.{layer}"):
            return layer
    return "rooms"


def _service_modules() -> dict[str, Path]:
    modules = {}
    for path in sorted((ROOT / "jpki_service").rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def _module_level_imports(path: Path) -> set[str]:
    """Modules of jpki_service imported when ``path`` is loaded (not inside a function)."""
    found: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        for inner in ast.walk(node):
            if isinstance(inner, (ast.FunctionDef, ast.AsyncFunctionDef)):
                break
            if isinstance(inner, ast.ImportFrom) and inner.module and inner.module.startswith("jpki_service"):
                found |= {f"{inner.module}.{alias.name}" for alias in inner.names} | {inner.module}
            elif isinstance(inner, ast.Import):
                found |= {alias.name for alias in inner.names if alias.name.startswith("jpki_service")}
    return found


def test_service_layers_import_only_downwards():
    modules = _service_modules()
    wrong = []
    for module, path in modules.items():
        own = LAYERS.index(_layer(module))
        for line, imported in _imported_parts(path):
            if imported.startswith("jpki_service") and LAYERS.index(_layer(imported)) > own:
                wrong.append(f"{path.relative_to(ROOT)}:{line}: {_layer(module)} imports {imported} "
                             f"({_layer(imported)})")
    assert not wrong, "\n".join(wrong)


def test_no_import_circles_in_the_service():
    modules = _service_modules()
    graph = {module: {m for m in _module_level_imports(path) if m in modules and m != module}
             for module, path in modules.items()}
    # A package's __init__ is loaded with each of its modules: not an edge of its own.
    circles = []
    state: dict[str, str] = {}

    def visit(module: str, trail: list[str]) -> None:
        state[module] = "open"
        for imported in sorted(graph[module]):
            if module.startswith(imported + "."):
                continue
            if state.get(imported) == "open":
                circles.append(" -> ".join(trail[trail.index(imported):] + [imported]))
            elif imported not in state:
                visit(imported, trail + [imported])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not circles, "\n".join(circles)

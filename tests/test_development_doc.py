"""docs/development.md says what CI runs and which rules hold: keep it true."""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PAGE = (REPO / "docs" / "development.md").read_text()


def _section(title: str) -> str:
    return PAGE.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_the_linters_the_page_names_are_the_ones_ci_runs():
    style = _section("Style and types")
    documented = re.findall(r"^    (\.venv/bin/\S+ check|\.venv/bin/mypy)$", style, re.MULTILINE)
    ci = (REPO / ".ci" / "run").read_text()
    run = re.findall(r"^(\.venv/bin/(?:ruff check|mypy))$", ci, re.MULTILINE)
    assert documented == run == [".venv/bin/ruff check", ".venv/bin/mypy"]
    # ... and before the tests.
    assert ci.index(".venv/bin/mypy\n") < ci.index('bash -c "$test_command"')


def test_the_rule_families_in_the_table_are_the_configured_ones():
    lint = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["ruff"]["lint"]
    table = re.findall(r"^\| (`[A-Z0-9]+`(?:, `[A-Z0-9]+`)*) \|", _section("Style and types"), re.MULTILINE)
    documented = sorted(code for row in table for code in re.findall(r"`([A-Z0-9]+)`", row))
    assert documented == sorted(lint["select"])
    for ignored in lint["ignore"]:
        assert f"`{ignored}`" in PAGE, f"{ignored} is ignored in pyproject.toml but not explained"
    for codes in lint["per-file-ignores"].values():
        for code in codes:
            assert f"`{code}`" in PAGE, f"{code} is ignored for some files but not explained"


def test_the_strict_modules_named_are_the_configured_ones():
    overrides = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["mypy"]["overrides"]
    strict = next(o for o in overrides if o.get("disallow_untyped_defs"))
    assert strict["module"] == ["jpki_common.*", "jpki_service.lifecycle", "jpki_service.holder_data",
                                "jpki_service.japanese_items"]
    for path in ("`jpki_common`", "`jpki_service/lifecycle.py`", "`jpki_service/holder_data.py`",
                 "`jpki_service/japanese_items.py`"):
        assert path in _section("Style and types")

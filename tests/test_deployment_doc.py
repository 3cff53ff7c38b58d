"""docs/deployment.md, run as written: a separate ``jpki-ca serve`` and ``jpki-service serve`` on two
PostgreSQL databases (fresh ones, named for this run), then the owner's and the admin commands."""
from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.conftest import POSTGRES_URL, missing_on_this_machine, postgres_problem
from tests.doc_commands import Substitutions, commands
from tests.newcomer import REPO, Newcomer

pytestmark = pytest.mark.e2e

PAGE = REPO / "docs" / "deployment.md"


@pytest.fixture
def databases():
    """Two empty databases standing for the page's jpki_ca and jpki_service, dropped afterwards."""
    problem = postgres_problem()
    if problem:
        missing_on_this_machine(problem, "PostgreSQL")
    suffix = uuid.uuid4().hex[:8]
    names = {"jpki_ca": f"jpki_ca_x{suffix}", "jpki_service": f"jpki_service_x{suffix}"}
    yield names
    admin = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        for name in names.values():
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


def test_the_deployment_page_runs_as_written(tmp_path: Path, databases: dict[str, str]):
    shell = Newcomer(tmp_path, replacements=databases)
    substitutions = Substitutions()
    try:
        page = commands(PAGE)
        assert len(page) >= 15, "the page lost its commands"
        for step in page:
            result = shell.run(substitutions.apply(step.command))
            printed = result.stdout + result.stderr
            where = f"docs/deployment.md, section {step.section!r}: `{step.command}`"
            assert result.returncode == 0, f"{where} failed ({result.returncode}):\n{printed}"
            missing = substitutions.learn([shell.localise(line) for line in step.promised], printed)
            assert not missing, f"{where} did not print what the page promises:\n{missing}\nprinted:\n{printed}"
        shell.assert_healthy("the whole page")
    finally:
        shell.stop()

"""docs/walkthrough.md, run as a newcomer runs it: its own commands, in its order, against
``jpki-service serve`` (which starts the mock CA) on a fresh data folder.

Every ``$`` command of the page is run with bash; its output must show every line the page promises
(ids, serials, codes and times aside: those are learnt and used in the later commands). After every
command both servers must still call their stores healthy. After the owner's revocation (step 7) both
servers are killed with SIGKILL and started again, and ``openssl ocsp`` must still say revoked: the page's
step 1 runs ``jpki-ca card issue`` while the CA serves, which once split the CA's store in two.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.doc_commands import Substitutions, commands
from tests.newcomer import REPO, Newcomer

pytestmark = pytest.mark.e2e

PAGE = REPO / "docs" / "walkthrough.md"


@pytest.fixture
def newcomer(tmp_path: Path):
    person = Newcomer(tmp_path)
    person.serve()
    yield person
    person.stop()


def test_the_walkthrough_runs_as_written_and_a_revocation_survives_sigkill(newcomer: Newcomer):
    page = commands(PAGE)
    assert len(page) >= 20, "the walkthrough lost its commands"
    substitutions = Substitutions()
    revoked_serials: list[str] = []
    for index, step in enumerate(page):
        command = substitutions.apply(step.command)
        result = newcomer.run(command)
        printed = result.stdout + result.stderr
        where = f"docs/walkthrough.md, section {step.section!r}: `{step.command}`"
        if step.expects_failure:
            assert result.returncode != 0, f"{where} should fail as the page shows, printed:\n{printed}"
        else:
            assert result.returncode == 0, f"{where} failed ({result.returncode}):\n{printed}"
        missing = substitutions.learn([newcomer.localise(line) for line in step.promised], printed)
        assert not missing, f"{where} did not print what the page promises:\n{missing}\nprinted:\n{printed}"
        newcomer.assert_healthy(step.command)

        if step.section.startswith("7.") and "register" in step.command:
            revoked_serials = re.findall(r"serial ([0-9a-f]+)", printed)
        last_of_section = index + 1 == len(page) or page[index + 1].section != step.section
        if step.section.startswith("7.") and last_of_section:
            # The owner revoked before selling. Kill everything, start again: still revoked at the CA.
            assert len(revoked_serials) == 2, "step 7's register printed no serials"
            for serial in revoked_serials:
                assert newcomer.ocsp(serial).startswith("revoked"), serial
            newcomer.kill()
            newcomer.serve()
            for serial in revoked_serials:
                assert newcomer.ocsp(serial).startswith("revoked"), f"{serial} came back after a restart"

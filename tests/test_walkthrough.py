"""The pages a newcomer is told to run, run as a newcomer runs them: README.md's start, then
docs/walkthrough.md and docs/relying-party.md, their own commands in their order, in one shell, on a fresh
data folder, on a free port through the walkthrough's port variable (``PORT``; never 8000).

Every ``$`` command of the pages is run with bash (tests/doc_commands.py reads them); its output must show
every line the page shows (ids, serials, codes and times aside: those are learnt and used in the later
commands), and a command the page shows failing must fail. Once the service answers, both servers must
call their stores healthy after every command. After the owner's revocation (walkthrough step 7) both
servers are killed with SIGKILL and started again with the page's own commands, and ``openssl ocsp`` must
still say revoked: step 1 runs ``jpki-ca card issue`` while the CA serves, which once split the CA's store
in two. The relying party's ``openssl`` verdicts are judged here too, not only through the lines shown:
``good`` then ``revoked`` by OCSP for both certificates, ``OK`` then ``certificate revoked`` by
``openssl verify -crl_check``.

README.md cannot be run as it stands in a test (it builds the environment the tests run in, and its
second command is this suite: ``.ci/run`` runs it verbatim); what it says is held against the pages and the
programs instead: its first command is the walkthrough's install and ``serve``, its URLs are the ones
``serve`` prints, its other commands exist, and it sends the reader where docs/README.md does.
"""
from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest

from tests.doc_commands import DocCommand, Substitutions, commands
from tests.newcomer import REPO, Newcomer

DOCS = REPO / "docs"
PAGES = [DOCS / "walkthrough.md", DOCS / "relying-party.md"]  # in this order, in one shell
# Every page with `$` commands is run by a test, or says here why it is not.
RUN_ELSEWHERE = {"deployment.md": "tests/test_deployment_doc.py"}  # its own two servers on PostgreSQL
SHOWN_NOT_RUN = {
    "operator-api.md": "a session of several staff accounts, shown in parts; tests/test_operator_cli.py drives them",
    "faults-and-races.md": "`jpki-service status` while faults are injected; tests/test_faults.py makes them",
}


@pytest.fixture
def newcomer(tmp_path: Path):
    person = Newcomer(tmp_path)
    yield person
    person.stop()


class RelyingPartyVerdicts:
    """What openssl said on the relying-party page, before and after the owner's revocation."""

    def __init__(self) -> None:
        self.revoked = False
        self.ocsp: dict[tuple[bool, str], str] = {}    # (after the revocation, certificate file) -> good/revoked
        self.verify: dict[tuple[bool, str], str] = {}  # the same -> OK / certificate revoked / other
        self.wrong_issuer = ""

    def note(self, step: DocCommand, result: subprocess.CompletedProcess) -> None:
        printed = result.stdout + result.stderr
        words = shlex.split(step.command)
        while words and re.match(r"[A-Z_]+=", words[0]):  # the secrets given in the environment
            words.pop(0)
        if words[:1] == ["jpki-app"] and "revoke" in words:
            self.revoked = result.returncode == 0
        elif words[:2] == ["openssl", "ocsp"]:
            certificate, issuer = words[words.index("-cert") + 1], words[words.index("-issuer") + 1]
            if issuer != {"signature.pem": "sign.pem", "authentication.pem": "auth.pem"}[certificate]:
                self.wrong_issuer = printed
                return
            assert "Response verify OK" in printed, printed
            found = re.search(rf"^{re.escape(certificate)}: (\w+)$", printed, re.MULTILINE)
            self.ocsp[(self.revoked, certificate)] = found.group(1) if found else printed
        elif words[:2] == ["openssl", "verify"] and "-crl_check" in words:
            certificate = words[-1]
            verdict = "OK" if result.returncode == 0 and f"{certificate}: OK" in printed else printed
            if result.returncode != 0 and "error 23 at 0 depth lookup: certificate revoked" in printed:
                verdict = "certificate revoked"
            self.verify[(self.revoked, certificate)] = verdict

    def judge(self) -> None:
        assert self.revoked, "the relying-party page never revoked the phone"
        for certificate in ("signature.pem", "authentication.pem"):
            assert self.ocsp.get((False, certificate)) == "good", (certificate, self.ocsp)
            assert self.ocsp.get((True, certificate)) == "revoked", (certificate, self.ocsp)
            assert self.verify.get((False, certificate)) == "OK", (certificate, self.verify)
            assert self.verify.get((True, certificate)) == "certificate revoked", (certificate, self.verify)
        assert "Responder Error: unauthorized (6)" in self.wrong_issuer, self.wrong_issuer


def _serve_commands(page: list[DocCommand]) -> list[DocCommand]:
    """The page's own commands that start the service and wait until it answers."""
    start = next(i for i, step in enumerate(page) if step.command.startswith("jpki-service serve"))
    assert page[start].command.rstrip().endswith("&") and "/healthz" in page[start + 1].command, \
        "the walkthrough starts the service in the background, then waits for /healthz"
    return page[start:start + 2]


@pytest.mark.e2e
def test_the_walkthrough_then_the_relying_party_page_run_as_written(newcomer: Newcomer):
    walkthrough = commands(PAGES[0])
    assert len(walkthrough) >= 25, "the walkthrough lost its commands"
    substitutions = Substitutions()
    verdicts = RelyingPartyVerdicts()
    serving = False
    revoked_serials: list[str] = []
    for page in PAGES:
        steps = commands(page)
        for index, step in enumerate(steps):
            result = newcomer.run(substitutions.apply(step.command))
            printed = result.stdout + result.stderr
            where = f"docs/{page.name}, section {step.section!r}: `{step.command}`"
            if step.expects_failure:
                assert result.returncode != 0, f"{where} should fail as the page shows, printed:\n{printed}"
            else:
                assert result.returncode == 0, f"{where} failed ({result.returncode}):\n{printed}"
            missing = substitutions.learn([newcomer.localise(line) for line in step.promised], printed)
            assert not missing, f"{where} did not print what the page shows:\n{missing}\nprinted:\n{printed}"
            serving = serving or "/healthz" in step.command
            if serving:
                newcomer.assert_healthy(step.command)
            if page.name == "relying-party.md":
                verdicts.note(step, result)

            if page.name == "walkthrough.md" and step.section.startswith("7.") and "register" in step.command:
                revoked_serials = re.findall(r"serial ([0-9a-f]+)", printed)
            last_of_section = index + 1 == len(steps) or steps[index + 1].section != step.section
            if page.name == "walkthrough.md" and step.section.startswith("7.") and last_of_section:
                # The owner revoked before selling. Kill everything, start again: still revoked at the CA.
                assert len(revoked_serials) == 2, "step 7's register printed no serials"
                for serial in revoked_serials:
                    assert newcomer.ocsp(serial).startswith("revoked"), serial
                newcomer.kill_background()
                for again in _serve_commands(walkthrough):
                    assert newcomer.run(again.command).returncode == 0, again.command
                for serial in revoked_serials:
                    assert newcomer.ocsp(serial).startswith("revoked"), f"{serial} came back after a restart"
    verdicts.judge()

    # README.md's URLs are the ones `serve` printed: the service's (API docs at /docs) and the CA's at port + 100.
    banner = (newcomer.folder / "serve.log").read_text()
    readme = _readme()
    for url in sorted(set(re.findall(r"http://127\.0\.0\.1:8[01]00\b", readme))):
        assert newcomer.localise(url) in banner, f"README.md names {url}; serve printed:\n{banner}"
    assert newcomer.localise("http://127.0.0.1:8000/docs") in banner and "(API docs at `/docs`)" in readme


def _readme() -> str:
    return (REPO / "README.md").read_text(encoding="utf-8")


def _indented_lines(text: str) -> list[str]:
    return [line[4:] for line in text.splitlines() if line.startswith("    ") and line.strip()]


def test_the_readme_starts_the_way_the_walkthrough_does():
    run, test = _indented_lines(_readme())[:2]
    install, _, serve = run.rpartition(" && ")
    assert serve == ".venv/bin/jpki-service serve"
    assert test.startswith(install.replace("-e .", "-e '.[test]'") + " && ")  # one install, the tests' extra added
    walkthrough = (DOCS / "walkthrough.md").read_text(encoding="utf-8")
    section_0 = walkthrough.split("\n## 0.", 1)[1].split("\n## ", 1)[0]
    assert _indented_lines(section_0)[0] == install, "the walkthrough installs as the README does"
    started = [step.command for step in commands(DOCS / "walkthrough.md") if "jpki-service serve" in step.command]
    assert started and started[0].startswith("jpki-service serve --port $PORT"), started


def test_the_readme_and_the_docs_index_say_where_to_start():
    readme = re.search(r"Start with `docs/([\w.-]+\.md)`", _readme())
    index_text = (DOCS / "README.md").read_text(encoding="utf-8")
    index = re.search(r"Start with \[[\w.-]+\]\(([\w.-]+\.md)\)", index_text)
    assert readme and index, "README.md and docs/README.md each say where to start"
    assert readme.group(1) == index.group(1) == "walkthrough.md"
    listed = re.findall(r"^\| \[[\w.-]+\]\(([\w.-]+\.md)\) \|", index_text, re.MULTILINE)
    assert sorted(listed) == sorted(p.name for p in DOCS.glob("*.md") if p.name != "README.md"), \
        "docs/README.md lists every page once"
    assert listed[0] == "walkthrough.md", "the walkthrough comes first"


def test_the_readmes_other_commands_exist():
    """`.venv/bin/PROGRAM SUBCOMMAND ...` named in README.md's text: each one's --help answers."""
    named = re.findall(r"`\.venv/bin/([\w-]+(?: [a-z][\w-]*)*)", _readme())
    assert "jpki-service operator add" in named and "jpki-operator login" in named, named
    for command in sorted(set(named)):
        program, *words = command.split()
        result = subprocess.run([REPO / ".venv" / "bin" / program, *words, "--help"], capture_output=True, text=True,
                                env={"PATH": "/usr/bin:/bin", "JPKI_LANG": "en"}, timeout=60)
        assert result.returncode == 0, f"README.md names `{command}`: {result.stderr}"


def test_every_page_with_commands_is_run():
    with_commands = {page.name for page in DOCS.glob("*.md") if commands(page)}
    run_here = {page.name for page in PAGES}
    assert with_commands == run_here | set(RUN_ELSEWHERE) | set(SHOWN_NOT_RUN), with_commands
    for page, test in RUN_ELSEWHERE.items():
        assert f'"{page}"' in (REPO / test).read_text(), f"{test} runs docs/{page}"

"""One convention for the four command lines (issue 14, item 8), each run as a user runs it.

- ``--help`` loads none of the heavy libraries (it answers at once: no timing is asserted here, the
  imports are what made it slow);
- ``jpki-app --timeout``: a service that accepts the connection and never answers ends the command
  with a clear line, after saying that it waits;
- with no terminal and no secret in the environment, one line names the variable to set (no
  ``GetPassWarning``, no bare "Aborted.");
- the rule of a secret is in its prompt, and the confirmation is compared as the card compares it
  (lower case folded); a secret that breaks its rule is refused by its name;
- the service's admin commands refuse a ``--data`` folder (or database) that holds no store instead of
  making an empty one; only ``migrate`` and ``serve`` make one.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from app_client.cli import app as phone_app
from tests.app_client.conftest import CARD_PASSWORD, PHONE_PIN, card_file, card_template  # noqa: F401 - fixtures
from tests.conftest import _empty_database

HEAVY = ("cryptography.hazmat.backends", "cryptography.x509", "pyhanko", "sqlalchemy", "alembic", "httpx", "fastapi",
         "uvicorn", "starlette", "pydantic", "asn1crypto", "argon2")
ENTRY_POINTS = {"jpki-ca": "ca_mock.cli", "jpki-service": "jpki_service.entrypoints.cli", "jpki-app": "app_client.cli",
                "jpki-operator": "jpki_service.operators.client_cli"}
SECRETS = ("JPKI_CARD_PASSWORD", "JPKI_SIGN_PASSWORD", "JPKI_NEW_SIGN_PASSWORD", "JPKI_AUTH_PIN", "JPKI_OPERATOR_USER",
           "JPKI_OPERATOR_PASSWORD", "JPKI_OPERATOR_NEW_PASSWORD")


def _env(**extra: str) -> dict[str, str]:
    """No JPKI setting of the caller's but English; no colours."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JPKI_")}
    return {**env, "JPKI_LANG": "en", "NO_COLOR": "1", "COLUMNS": "200", **extra}


def _run(*command: str, cwd: Path, input: str = "", **env: str) -> subprocess.CompletedProcess:
    """A command in a new session (no controlling terminal), standard input ``input``."""
    result = subprocess.run([str(Path(sys.executable).parent / command[0]), *command[1:]], cwd=cwd, env=_env(**env),
                            input=input, capture_output=True, text=True, timeout=120, start_new_session=True)
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    return result


@pytest.mark.parametrize("program", ENTRY_POINTS)
def test_help_loads_no_heavy_library(program):
    probe = (f"import sys, json\nsys.argv = [{program!r}, '--help']\nfrom {ENTRY_POINTS[program]} import main\n"
             "try:\n    main()\nexcept SystemExit as exit:\n    code = exit.code\n"
             f"print(json.dumps({{'code': code, 'loaded': [m for m in {HEAVY!r} if m in sys.modules]}}))")
    result = subprocess.run([sys.executable, "-c", probe], env=_env(), capture_output=True, text=True, timeout=120)
    report = json.loads(result.stdout.splitlines()[-1])
    assert "Usage" in result.stdout and report["code"] in (0, None), result.stdout + result.stderr
    assert report["loaded"] == [], f"{program} --help imports {report['loaded']}"


def test_a_hung_service_ends_at_the_timeout_with_a_clear_line(tmp_path, card_file):  # noqa: F811
    # The kernel accepts the connection (the listening backlog); nobody ever reads or answers.
    with socket.socket() as hung:
        hung.bind(("127.0.0.1", 0))
        hung.listen(16)
        url = f"http://127.0.0.1:{hung.getsockname()[1]}"
        result = _run("jpki-app", "--home", str(tmp_path / "phone"), "--timeout", "3", "register", "--card",
                      str(card_file), cwd=tmp_path, JPKI_SERVICE_URL=url, JPKI_CARD_PASSWORD=CARD_PASSWORD,
                      JPKI_SIGN_PASSWORD="HANA2025", JPKI_AUTH_PIN=PHONE_PIN)
    assert result.returncode == 1 and result.stdout == ""
    lines = result.stderr.splitlines()
    assert f"waiting for the service at {url}…" in lines
    assert lines[-1] == (f"error: the lifecycle service at {url} did not answer within 3 s: check that it is running, "
                         "or allow longer with --timeout")


def test_no_terminal_names_the_variable_to_set(tmp_path, card_file):  # noqa: F811
    phone = _run("jpki-app", "--home", str(tmp_path / "phone"), "register", "--card", str(card_file), cwd=tmp_path)
    operator = _run("jpki-operator", "login", cwd=tmp_path, JPKI_OPERATOR_USER="op.sato",
                    JPKI_OPERATOR_SESSION=str(tmp_path / "session.json"))
    assert _run("jpki-service", "migrate", "--data", "svc", cwd=tmp_path).returncode == 0
    admin = _run("jpki-service", "operator", "add", "--data", "svc", "--username", "sato", "--role", "operator",
                 cwd=tmp_path)
    for result, code, line in (
            (phone, 1, "error: no terminal: set JPKI_CARD_PASSWORD to give the card signature password"),
            (operator, 2, "error: no terminal: set JPKI_OPERATOR_PASSWORD"),
            (admin, 1, "error: no terminal: set JPKI_OPERATOR_PASSWORD to give the password")):
        assert result.returncode == code, result.stderr
        assert result.stderr.splitlines()[-1] == line
        assert "Warning" not in result.stderr and "Aborted" not in result.stderr


@pytest.fixture
def phone(tmp_path):
    """``jpki-app`` in this process, secrets typed on standard input, the service nowhere."""
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None, **env: str):
        environment = {**dict.fromkeys((*SECRETS, "JPKI_APP_HOME", "JPKI_SERVICE_URL")), **env}
        return runner.invoke(phone_app, ["--home", str(tmp_path / "phone"), "--service", "http://127.0.0.1:9", *args],
                             input=input, env=environment)
    return invoke


def test_the_rule_is_in_the_prompt_and_the_confirmation_is_folded_as_the_card_folds(phone, card_file):  # noqa: F811
    # hanaph01 and HANAPH01 are the same password for the card rule (lower case counts as upper case).
    typed = [CARD_PASSWORD, "hanaph01", "HANAPH01", PHONE_PIN, PHONE_PIN]
    result = phone("register", "--card", str(card_file), input="\n".join(typed) + "\n")
    assert ("Phone signature password (6-16 characters, letters A-Z and digits 0-9, at least one of each; lower "
            "case counts as upper case):") in result.stdout
    assert "do not match" not in result.stderr
    assert result.stderr.startswith("error: cannot reach the lifecycle service at http://127.0.0.1:9"), result.stderr


def test_a_secret_that_breaks_its_rule_is_refused_by_its_name(phone, card_file):  # noqa: F811
    result = phone("register", "--card", str(card_file), JPKI_CARD_PASSWORD="abc", JPKI_SIGN_PASSWORD="HANA2025",
                   JPKI_AUTH_PIN=PHONE_PIN)
    assert result.exit_code == 1
    assert result.stderr == ("error: the card signature password must be 6-16 characters, letters A-Z and digits "
                             "0-9, at least one of each; lower case counts as upper case\n")


ADMIN_COMMANDS = (("status",), ("operator", "list"), ("operator", "add", "--username", "sato", "--role", "operator"),
                  ("operator", "disable", "--username", "sato"), ("ca-commands", "list"), ("audit", "verify"))


def test_admin_commands_refuse_a_folder_without_a_store(tmp_path):
    for command in ADMIN_COMMANDS:
        result = _run("jpki-service", *command, "--data", "typo", cwd=tmp_path, JPKI_OPERATOR_PASSWORD="x" * 12)
        assert result.returncode == (2 if command[0] == "audit" else 1), (command, result.stderr)
        assert result.stderr == ("error: no service store in typo: run `jpki-service migrate` (or `serve`) there "
                                 "first, or check --data (and JPKI_DATA_DIR)\n"), command
    assert not (tmp_path / "typo").exists()


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_an_empty_database_is_no_store_until_migrated(tmp_path, kind):
    with _empty_database(kind, tmp_path, "svc") as url:
        refused = _run("jpki-service", "operator", "list", "--data", "svc", cwd=tmp_path, JPKI_DATABASE_URL=url)
        assert refused.returncode == 1 and "error: no service store in " in refused.stderr, refused.stderr
        assert _run("jpki-service", "migrate", "--data", "svc", cwd=tmp_path, JPKI_DATABASE_URL=url).returncode == 0
        listed = _run("jpki-service", "operator", "list", "--data", "svc", cwd=tmp_path, JPKI_DATABASE_URL=url)
        assert listed.returncode == 0 and "no accounts" in listed.stdout, listed.stderr

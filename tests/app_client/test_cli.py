"""``jpki-app`` as its owner meets it: one clear line on stderr for every refusal, never a
traceback, and secrets never echoed, whether prompted or taken from the environment."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from app_client.app_data import AppData, AppState, EndedRegistration
from app_client.cli import app
from app_client.secure_element import SecureElement
from tests.app_client.conftest import CARD_PASSWORD, PHONE_PASSWORD, PHONE_PIN
from tests.conftest import free_port

REGISTRATION = "0123456789abcdef0123456789abcdef"
OWNER_TOKEN = "Zm9yLXRoZS1zZXJ2aWNlLW9ubHktbmV2ZXItc2hvd24tMDE"
SECRET_VARIABLES = ("JPKI_CARD_PASSWORD", "JPKI_SIGN_PASSWORD", "JPKI_NEW_SIGN_PASSWORD", "JPKI_AUTH_PIN")


@pytest.fixture
def run(tmp_path: Path):
    """Run ``jpki-app --home <tmp>/phone`` against a service URL where nothing listens."""
    runner = CliRunner()
    service = f"http://127.0.0.1:{free_port()}"

    def invoke(*args: str, input: str | None = None, **env: str):
        environment = dict.fromkeys((*SECRET_VARIABLES, "JPKI_APP_HOME", "JPKI_SERVICE_URL"))
        environment.update(env)
        return runner.invoke(app, ["--home", str(tmp_path / "phone"), "--service", service, *args],
                             input=input, env=environment)

    return invoke


def assert_one_line_error(result, *fragments: str) -> None:
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


def test_status_of_an_empty_phone(run):
    result = run("status")
    assert result.exit_code == 0 and result.stdout == "this phone holds no JPKI certificates\n"
    assert run("status", "--json").stdout.startswith('{\n  "registration": null')


def test_a_missing_card_file_is_one_line(run, tmp_path):
    assert_one_line_error(run("register", "--card", str(tmp_path / "missing.json")), "no card file at")
    assert_one_line_error(run("register", "--card", str(tmp_path / "x"), "--key-algorithm", "dsa"), "rsa2048 or p256")


def test_secrets_from_the_environment_are_checked_and_never_echoed(run, card_file):
    result = run("register", "--card", str(card_file), JPKI_CARD_PASSWORD=CARD_PASSWORD,
                 JPKI_SIGN_PASSWORD="weakpw", JPKI_AUTH_PIN=PHONE_PIN)
    # The refusal names the secret that breaks its rule, and states the rule.
    assert_one_line_error(result, "the phone signature password must be 6-16 characters", "at least one of each")
    assert "weakpw" not in result.output and "WEAKPW" not in result.output and CARD_PASSWORD not in result.output

    # Good secrets: the service is the next step, and it is not there.
    result = run("register", "--card", str(card_file), JPKI_CARD_PASSWORD=CARD_PASSWORD,
                 JPKI_SIGN_PASSWORD=PHONE_PASSWORD, JPKI_AUTH_PIN=PHONE_PIN)
    assert_one_line_error(result, "cannot reach the lifecycle service at http://127.0.0.1:")


def test_prompted_secrets_are_hidden_confirmed_and_asked_again_when_wrong(run, card_file):
    typed = [CARD_PASSWORD, "QWERTYUI", PHONE_PASSWORD, "OTHER1234", PHONE_PASSWORD, PHONE_PASSWORD,
             "123", PHONE_PIN, PHONE_PIN]
    result = run("register", "--card", str(card_file), input="\n".join(typed) + "\n")

    # Each prompt states the secret's rule (jpki_common/card_rules.py).
    assert "Card signature password (6-16 characters, letters A-Z and digits 0-9, at least one of each" in result.stdout
    assert "Phone user-authentication PIN (exactly 4 digits):" in result.stdout
    assert "Repeat for confirmation:" in result.stdout
    hints, final = result.stderr.splitlines()[:-1], result.stderr.splitlines()[-1]
    assert hints == ["the phone signature password must be 6-16 characters, letters A-Z and digits 0-9, at least one "
                     "of each; lower case counts as upper case; try again",
                     "the two entries do not match; try again",
                     "the phone user-authentication PIN must be exactly 4 digits; try again"]
    assert result.exit_code == 1 and final.startswith("error: cannot reach the lifecycle service")
    # The service URL's random port may contain any digits (a PIN too): mask it before looking.
    output = re.sub(r"http://127\.0\.0\.1:\d+", "<service>", result.output)
    for secret in set(typed):
        assert secret not in output, secret


def test_left_certificates_after_a_factory_reset(run, se, tmp_path):
    # The fixture's SE lives at <tmp>/phone/se: make it a registered phone.
    se.bind(REGISTRATION)
    AppData(tmp_path / "phone" / "app").save(AppState(registration_id=REGISTRATION))

    result = run("factory-reset")
    assert result.exit_code == 0
    assert f"it still holds the certificates of registration {REGISTRATION}" in result.stdout

    assert_one_line_error(run("status"), "from an earlier installation of the app", "(jpki-app install)")
    assert_one_line_error(run("revoke", JPKI_SIGN_PASSWORD=PHONE_PASSWORD), "from an earlier installation")
    assert_one_line_error(run("install"), "cannot reach the lifecycle service")
    assert SecureElement(se.folder).registration_id == REGISTRATION


def test_offline_uninstall_leaves_live_certificates(run, se, tmp_path):
    se.bind(REGISTRATION)
    AppData(tmp_path / "phone" / "app").save(AppState(registration_id=REGISTRATION))

    result = run("uninstall", "--offline")

    assert result.exit_code == 0
    assert "the service was not told" in result.stdout and REGISTRATION in result.stdout
    assert not (tmp_path / "phone" / "app").exists() and SecureElement(se.folder).registration_id == REGISTRATION


def test_verify_refuses_what_is_not_a_pdf(run, tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    assert_one_line_error(run("verify", str(tmp_path / "notes.txt")), "is not a readable PDF")
    assert_one_line_error(run("verify", str(tmp_path / "notes.txt"), "--root", str(tmp_path / "nope.pem")),
                          "cannot read")
    assert_one_line_error(run("sign", str(tmp_path / "notes.txt"), str(tmp_path / "out.pdf")),
                          "register it first")


def test_status_of_an_ended_registration_when_the_service_cannot_be_asked(run, tmp_path):
    """What the phone last knew, and that it could not check; ``forget`` then removes the record (offline)."""
    ended = EndedRegistration(REGISTRATION, "revoked", "owner-revoked", "owner-revoke", "2026-12-01T10:00:00+00:00",
                              "2026-12-01T10:00:05+00:00", ca_sync="pending", pending_ca_operations=2,
                              serials={"signature": "5fcc", "authentication": "6feb"},
                              case_reference="ABCD-EFGH-JKMN", owner_token=OWNER_TOKEN)
    AppData(tmp_path / "phone" / "app").save(AppState(ended=ended))

    text = run("status")
    assert text.exit_code == 0, text.output
    assert text.stdout.splitlines() == [
        f"registration    {REGISTRATION}",
        "state           revoked (ended on this phone: revoked by you, 2026-12-01 19:00 JST)",
        "reason          owner-revoked",
        "ca sync         pending, 2 changes waiting",
        "  signature       serial 5fcc",
        "  authentication  serial 6feb",
        text.stdout.splitlines()[6],
        "this registration has ended: its keys and certificates are deleted from this phone's secure element; "
        "`jpki-app status` shows it until you remove this record with `jpki-app forget`",
    ]
    assert re.fullmatch(r"could not check with the service now \(cannot reach the lifecycle service at "
                        r"http://127\.0\.0\.1:\d+: .*\): this is what the phone last knew, as the service said on "
                        r"2026-12-01 19:00 JST", text.stdout.splitlines()[6])
    document = run("status", "--json")
    assert document.stdout.startswith('{\n  "registration": null')
    shown = json.loads(document.stdout)
    assert (shown["registration_id"], shown["checked"], shown["ended"]["pending_ca_operations"]) == (
        REGISTRATION, False, 2)
    assert "cannot reach the lifecycle service" in shown["check_error"]
    assert shown["ended"]["case_reference"] == "ABCD-EFGH-JKMN" and "owner_token" not in shown["ended"]
    assert OWNER_TOKEN not in text.output and OWNER_TOKEN not in document.output

    forgotten = run("forget")
    assert forgotten.exit_code == 0
    assert f"forgot registration {REGISTRATION} (revoked, owner-revoked)" in forgotten.stdout
    assert "the CA did not have all of it yet (ca_sync pending)" in forgotten.stdout
    assert run("status").stdout == "this phone holds no JPKI certificates\n"
    assert AppData(tmp_path / "phone" / "app").load().ended is None


def test_status_of_an_ended_registration_kept_without_an_owner_token(run, tmp_path):
    """Ended before owner tokens existed: the service cannot be asked, and the phone says why (no request)."""
    ended = EndedRegistration(REGISTRATION, "revoked", "owner-revoked", "owner-revoke", "2026-12-01T10:00:00+00:00",
                              "2026-12-01T10:00:05+00:00", ca_sync="done", pending_ca_operations=0)
    AppData(tmp_path / "phone" / "app").save(AppState(ended=ended))

    text = run("status")
    assert text.exit_code == 0, text.output
    assert f"registration    {REGISTRATION}\n" in text.stdout
    assert ("could not check with the service now (this phone kept no owner token for it (ended before tokens "
            "existed), so the service cannot be asked)") in text.stdout
    shown = json.loads(run("status", "--json").stdout)
    assert (shown["registration"], shown["checked"], shown["registration_id"]) == (None, False, REGISTRATION)
    assert "kept no owner token" in shown["check_error"]

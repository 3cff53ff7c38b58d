"""The CA's store shared by ``jpki-ca serve`` and the ``jpki-ca`` / ``jpki-service`` commands run while it
serves, in the walkthrough's order: every change either side makes is seen by the other at once, and
survives SIGKILL and a restart of both servers, judged by ``openssl ocsp``. On SQLite (where a descriptor
of the database file closed outside SQLite once made a later CLI run delete the server's WAL) and with
both stores on PostgreSQL.
"""
from __future__ import annotations

import re
import sqlite3
import subprocess
from pathlib import Path

import pytest

from jpki_common.store import Store
from tests.newcomer import Newcomer

pytestmark = pytest.mark.e2e

CARD = ("JPKI_CARD_PASSWORD=CARD1234 JPKI_CARD_PIN=1234 jpki-ca --data var/ca card issue --out {out} "
        "--name '{name}' --birth 1990-01-02 --gender 1 --address '東京都千代田区千代田1-1'")
REGISTER = ("JPKI_CARD_PASSWORD=CARD1234 JPKI_SIGN_PASSWORD=PHONE1234 JPKI_AUTH_PIN=5678 "
            "jpki-app --home {home} register --card {card}")


@pytest.fixture
def newcomer(tmp_path: Path, database_url: str, service_database_url: str):
    environment = {"JPKI_CASCADE_INTERVAL_SECONDS": "1"}
    if database_url.startswith("postgresql"):
        environment.update(JPKI_CA_DATABASE_URL=database_url, JPKI_DATABASE_URL=service_database_url)
    (tmp_path / "walk").mkdir()
    person = Newcomer(tmp_path / "walk", **environment)
    person.serve()
    yield person
    person.stop()


def _ok(newcomer: Newcomer, command: str) -> str:
    result = newcomer.run(command)
    assert result.returncode == 0, f"`{command}` failed:\n{result.stdout}{result.stderr}"
    newcomer.assert_healthy(command)
    return result.stdout + result.stderr


def _serials(printed: str) -> list[str]:
    return re.findall(r"\b[0-9a-f]{30,40}\b", printed)


def _ca_status(newcomer: Newcomer, serial: str) -> str:
    return re.search(r"status\s+(\w+)", _ok(newcomer, f"jpki-ca --data var/ca status {serial}")).group(1)


def test_cli_and_server_share_the_store_and_it_survives_sigkill(newcomer: Newcomer):
    # Card 1 is made while the CA serves; its certificates are known to the running CA at once.
    card1_sign, card1_auth = _serials(_ok(newcomer, CARD.format(out="card1.json", name="山田 太郎")))[:2]
    assert newcomer.ocsp(card1_sign) == "good"
    phone1_sign, phone1_auth = _serials(_ok(newcomer, REGISTER.format(home="phone1", card="card1.json")))[1:3]
    assert _ca_status(newcomer, phone1_sign) == "good"  # the CLI sees what the server issued

    card2_sign, _ = _serials(_ok(newcomer, CARD.format(out="card2.json", name="鈴木 花子")))[:2]
    phone2_sign, phone2_auth = _serials(_ok(newcomer, REGISTER.format(home="phone2", card="card2.json")))[1:3]

    # Each jpki-ca command against the live store, seen by the running CA's OCSP at once.
    _ok(newcomer, f"jpki-ca --data var/ca hold {card2_sign}")
    assert newcomer.ocsp(card2_sign) == "revoked:certificateHold"
    _ok(newcomer, f"jpki-ca --data var/ca release {card2_sign}")
    assert newcomer.ocsp(card2_sign) == "good"
    _ok(newcomer, "jpki-ca --data var/ca crl --issuer sign --out sign.crl")
    assert subprocess.run(["openssl", "crl", "-in", "sign.crl", "-inform", "DER", "-noout"],
                          cwd=newcomer.folder).returncode == 0
    _ok(newcomer, f"jpki-ca --data var/ca revoke {card1_sign} --reason affiliationChanged")
    assert newcomer.ocsp(card1_sign) == "revoked:affiliationChanged"

    # The service's admin commands against its live store; the owner of phone 2 revokes it.
    _ok(newcomer, "JPKI_OPERATOR_PASSWORD='operator pass 2026' jpki-service operator add --username sato "
                  "--role operator")
    _ok(newcomer, "JPKI_SIGN_PASSWORD=PHONE1234 jpki-app --home phone2 revoke")
    assert newcomer.ocsp(phone2_sign).startswith("revoked")
    assert newcomer.ocsp(phone2_auth).startswith("revoked")

    # The card cascade: card 1 revoked at the CA by the CLI, the phone signature certificate follows.
    for _ in range(120):
        if newcomer.ocsp(phone1_sign).startswith("revoked"):
            break
        subprocess.run(["sleep", "0.5"])
    assert newcomer.ocsp(phone1_sign).startswith("revoked"), "the card cascade never reached the CA"
    assert "audit trail intact" in _ok(newcomer, "jpki-service audit verify")
    assert re.search(r"pending 0, failed 0", _ok(newcomer, "jpki-service status --data var"))

    expected = {card1_sign: "revoked:affiliationChanged", card1_auth: "good", card2_sign: "good",
                phone1_sign: "revoked", phone1_auth: "good", phone2_sign: "revoked", phone2_auth: "revoked"}
    newcomer.kill()
    newcomer.serve()
    newcomer.assert_healthy("a restart after SIGKILL")
    for serial, status in expected.items():
        assert newcomer.ocsp(serial).startswith(status), f"{serial} is no longer {status} after a restart"
        assert _ca_status(newcomer, serial) == status.split(":")[0]


def test_a_store_file_deleted_under_the_process_is_reported(tmp_path: Path):
    """What the old bug looked like from inside: the WAL deleted while this process writes into it."""
    store = Store(f"sqlite:///{tmp_path / 'x.sqlite3'}")
    with store.transaction() as session:
        session.connection().exec_driver_sql("CREATE TABLE t (x INTEGER)")
    assert store.problem() is None
    with store.engine.connect() as held:  # this process keeps the database (and its WAL) open
        held.exec_driver_sql("SELECT * FROM t").all()
        (tmp_path / "x.sqlite3-wal").unlink()
        assert "x.sqlite3-wal deleted while this process holds it open" in (store.problem() or "")
    store.dispose()


def test_a_replaced_store_file_is_reported(tmp_path: Path):
    store = Store(f"sqlite:///{tmp_path / 'y.sqlite3'}")
    assert store.problem() is None
    store.dispose()
    (tmp_path / "y.sqlite3").rename(tmp_path / "old.sqlite3")
    sqlite3.connect(tmp_path / "y.sqlite3").close()  # another file now answers to the name
    assert "was replaced" in (store.problem() or "")

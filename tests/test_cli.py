"""The ``jpki-ca`` command line, run as a real subprocess (``python -m ca_mock``).

Every command answers ``--help``; every refusal is a one-line message on stderr with exit 1 and
never a traceback; nothing refused changes the store. The store is a SQLite file under
``JPKI_CA_DATA_DIR`` or, for the PostgreSQL run, ``JPKI_CA_DATABASE_URL``.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from asn1crypto import core
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from ca_mock.authorities.service import initialise
from ca_mock.db import migrate
from ca_mock.settings import CASettings
from jpki_common.store import Store
from tests.conftest import free_port
from tests.helpers import PERSON, csr_pem, reused_ca_keys, rsa_key

CARD_PASSWORD = "QW7ER9TY"
CARD_PIN = "4719"
OID_NAME, OID_GENDER, OID_BIRTH, OID_ADDRESS = (f"1.2.392.200149.8.5.5.{n}" for n in (1, 3, 4, 5))
TWELVE_DIGITS = re.compile(r"(?<![0-9A-Za-z])[0-9]{12}(?![0-9A-Za-z])")


def _clean_env() -> dict[str, str]:
    """The caller's environment without any JPKI setting that could point at another store."""
    return {k: v for k, v in os.environ.items() if not k.startswith("JPKI_")}


@dataclass
class CLI:
    data_dir: Path
    database_url: str | None  # None: the default SQLite file under data_dir

    @property
    def store_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'ca.sqlite3'}"

    def env(self, **extra: str) -> dict[str, str]:
        env = {**_clean_env(), "JPKI_CA_DATA_DIR": str(self.data_dir), "NO_COLOR": "1", "COLUMNS": "200"}
        if self.database_url:
            env["JPKI_CA_DATABASE_URL"] = self.database_url
        env.update(extra)
        return env

    def run(self, *args: str | Path, input: str | None = None, timeout: float = 120,
            **extra_env: str) -> subprocess.CompletedProcess:
        # A new session: no controlling terminal, so a hidden prompt reads stdin, never /dev/tty.
        result = subprocess.run([sys.executable, "-m", "ca_mock", *map(str, args)], env=self.env(**extra_env),
                                capture_output=True, text=True, input=input, timeout=timeout,
                                start_new_session=True)
        assert "Traceback" not in result.stderr + result.stdout, result.stderr
        return result

    def ok(self, *args: str | Path, **kw) -> subprocess.CompletedProcess:
        result = self.run(*args, **kw)
        assert result.returncode == 0, f"{args}: {result.stdout}\n{result.stderr}"
        return result

    def refused(self, *args: str | Path, message: str, code: int = 1, **kw) -> str:
        """Exit ``code``, nothing on stdout, a one-line error on stderr containing ``message``."""
        result = self.run(*args, **kw)
        assert result.returncode == code, f"{args}: {result.returncode}\n{result.stdout}\n{result.stderr}"
        assert message.lower() in result.stderr.lower(), result.stderr
        if code == 1:
            assert result.stdout == "", result.stdout
            assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
        return result.stderr

    def json(self, *args: str | Path) -> dict:
        return json.loads(self.ok(*args, "--json").stdout)

    # -- the store, read directly -------------------------------------------------------------
    def query(self, sql: str) -> list[tuple]:
        engine = sa.create_engine(self.store_url)
        try:
            with engine.connect() as connection:
                return [tuple(row) for row in connection.execute(sa.text(sql))]
        finally:
            engine.dispose()

    def ca_keys(self) -> dict[str, tuple[bytes, bytes]]:
        return {name: (bytes(cert), bytes(key)) for name, cert, key in
                self.query("select name, certificate_der, private_key_pem from authorities")}

    def fingerprint(self) -> dict[str, tuple[int, str]]:
        """Row count and hash of every table: the whole store."""
        engine = sa.create_engine(self.store_url)
        try:
            metadata = sa.MetaData()
            metadata.reflect(bind=engine)
            out = {}
            with engine.connect() as connection:
                for name, table in sorted(metadata.tables.items()):
                    rows = connection.execute(sa.select(table).order_by(*table.primary_key.columns)).all()
                    digest = hashlib.sha256(repr([tuple(r) for r in rows]).encode()).hexdigest()
                    out[name] = (len(rows), digest)
            return out
        finally:
            engine.dispose()


@pytest.fixture
def cli(database_url: str, tmp_path: Path) -> CLI:
    """A CLI on an empty store: SQLite under the data folder, or this test's PostgreSQL schema."""
    return CLI(tmp_path / "ca-data", None if database_url.startswith("sqlite") else database_url)


@pytest.fixture
def ready(cli: CLI) -> CLI:
    """The CLI on a store holding a CA as ``jpki-ca init`` with its defaults leaves it, made in-process on CA
    keys made earlier in this test process (as conftest's ``hierarchy``): ``init`` itself has the tests
    above, and its six new RSA keys would cost a second of CPU at each of the ~100 tests on this fixture."""
    settings = CASettings(data_dir=cli.data_dir, database_url=cli.database_url)
    store = Store(settings.resolved_database_url())
    try:
        migrate(store.url)
        with reused_ca_keys(sys.modules[initialise.__module__].keys):
            initialise(store, settings)
    finally:
        store.dispose()
    return cli


def _csr_file(tmp_path: Path, name: str = "req.pem", key=None) -> Path:
    path = tmp_path / name
    path.write_text(csr_pem(key))
    return path


PERSON_ARGS = ["--name", PERSON["name"], "--birth", PERSON["date_of_birth"], "--gender", PERSON["gender"],
               "--address", PERSON["address"]]


def _issue(cli: CLI, tmp_path: Path, profile: str = "card-authentication", *extra: str) -> dict:
    csr = _csr_file(tmp_path, f"{profile}-{len(list(tmp_path.iterdir()))}.pem")
    args = ["issue", "--profile", profile, "--csr", csr]
    if profile.endswith("signature"):
        args += PERSON_ARGS
    return cli.json(*args, *extra)


# -- help -------------------------------------------------------------------------------------
COMMANDS = [[], ["init"], ["serve"], ["issue"], ["revoke"], ["hold"], ["release"], ["status"], ["crl"],
            ["card"], ["card", "issue"]]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "top")
def test_every_command_has_help(command, tmp_path):
    env = {**_clean_env(), "JPKI_CA_DATA_DIR": str(tmp_path / "nowhere"), "COLUMNS": "200"}
    result = subprocess.run([sys.executable, "-m", "ca_mock", *command, "--help"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "Usage:" in result.stdout and "--help" in result.stdout
    assert result.stderr == ""
    # --help touches no store.
    assert not (tmp_path / "nowhere").exists()


def test_help_lists_every_command_and_the_reasons(tmp_path):
    env = {**_clean_env(), "COLUMNS": "200"}
    top = subprocess.run([sys.executable, "-m", "ca_mock", "--help"], env=env,
                         capture_output=True, text=True, timeout=60).stdout
    for command in ("init", "serve", "issue", "revoke", "hold", "release", "status", "crl", "card"):
        assert re.search(rf"\b{command}\b", top), command
    revoke = subprocess.run([sys.executable, "-m", "ca_mock", "revoke", "--help"], env=env,
                            capture_output=True, text=True, timeout=60).stdout
    assert "keyCompromise" in revoke and "superseded" in revoke


# -- init -------------------------------------------------------------------------------------
def test_init_creates_refuses_a_second_time_and_keeps_with_exist_ok(cli):
    first = cli.ok("init", "--public-url", "http://127.0.0.1:8765")
    assert "created a new CA" in first.stdout and "http://127.0.0.1:8765" in first.stdout
    token_file = cli.data_dir / "api-token"
    token = token_file.read_text().strip()
    assert len(token) >= 32 and stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert token not in first.stdout + first.stderr
    keys = cli.ca_keys()
    assert set(keys) >= {"root", "sign", "auth", "sign-ocsp", "auth-ocsp"}
    root = x509.load_der_x509_certificate(keys["root"][0])
    assert root.subject == root.issuer

    message = cli.refused("init", message="already holds a CA")
    assert "--exist-ok" in message and "kept" in message
    assert cli.ca_keys() == keys, "a refused init must not touch the CA keys"
    assert token_file.read_text().strip() == token

    kept = cli.ok("init", "--exist-ok", "--public-url", "http://other.invalid:1")
    assert "kept the existing CA" in kept.stdout
    assert "http://127.0.0.1:8765" in kept.stdout and "other.invalid" not in kept.stdout
    assert cli.ca_keys() == keys and token_file.read_text().strip() == token


def test_init_refuses_bad_options_without_creating_anything(cli):
    cli.refused("init", "--key-algorithm", "rsa1024", message="use rsa2048 or p256")
    cli.refused("init", "--public-url", "ftp://ca.invalid", message="must start with http:// or https://")
    engine = sa.create_engine(cli.store_url)
    try:
        if cli.database_url is None:
            assert not (cli.data_dir / "ca.sqlite3").exists()
        elif sa.inspect(engine).has_table("authorities"):  # the schema may exist, a CA must not
            assert not cli.query("select name from authorities")
    finally:
        engine.dispose()
    assert not (cli.data_dir / "api-token").exists()


def test_init_with_p256(cli, tmp_path):
    cli.ok("init", "--key-algorithm", "p256")
    root = x509.load_der_x509_certificate(cli.ca_keys()["root"][0])
    assert root.public_key().curve.name == "secp256r1"
    issued = _issue(cli, tmp_path)
    cert = x509.load_pem_x509_certificate(issued["certificate_pem"].encode())
    assert cert.signature_hash_algorithm.name == "sha256"
    cert.verify_directly_issued_by(x509.load_der_x509_certificate(cli.ca_keys()["auth"][0]))


def test_a_command_leaves_the_store_whole(tmp_path):
    """A command closes its store's connections as it exits, before it skips the interpreter's last garbage
    collections (jpki_common/process.py): SQLite then folds the WAL into ca.sqlite3, which alone holds the
    CA, so a copy of that one file is a whole copy. SQLite only: PostgreSQL keeps no file of ours."""
    cli = CLI(tmp_path / "ca-data", None)
    cli.ok("init")
    cli.ok("crl", "--issuer", "sign", "--force")  # a command that writes
    assert sorted(p.name for p in cli.data_dir.iterdir() if p.name.startswith("ca.sqlite3")) == ["ca.sqlite3"]
    copy = tmp_path / "copy.sqlite3"
    copy.write_bytes((cli.data_dir / "ca.sqlite3").read_bytes())
    engine = sa.create_engine(f"sqlite:///{copy}")
    try:
        with engine.connect() as connection:
            authorities = connection.exec_driver_sql("SELECT name FROM authorities ORDER BY name").scalars().all()
            crls = connection.exec_driver_sql("SELECT count(*) FROM published_crls").scalar_one()
    finally:
        engine.dispose()
    assert authorities == ["auth", "auth-ocsp", "root", "sign", "sign-ocsp", "tsa"]
    assert crls >= 2  # the full and delta CRL the command published


def test_secrets_on_disk_are_owner_only(cli):
    cli.ok("init")
    assert stat.S_IMODE((cli.data_dir / "api-token").stat().st_mode) == 0o600
    if cli.database_url is None:  # the SQLite file holds the CA keys
        assert stat.S_IMODE((cli.data_dir / "ca.sqlite3").stat().st_mode) == 0o600
        assert stat.S_IMODE(cli.data_dir.stat().st_mode) & 0o077 == 0


# -- serve ------------------------------------------------------------------------------------
def test_serve_without_init_fails_clearly(cli):
    cli.refused("serve", "--port", str(free_port()), message="run `jpki-ca init` first", timeout=60)


def test_serve_without_a_token_fails_clearly(cli):
    cli.ok("init")
    (cli.data_dir / "api-token").unlink()
    cli.refused("serve", "--port", str(free_port()), message="no API token", timeout=60)


# -- issue ------------------------------------------------------------------------------------
def test_issue_from_a_csr_file(ready, tmp_path):
    key = rsa_key()
    out = tmp_path / "issued.pem"
    result = ready.ok("issue", "--profile", "card-signature", "--csr", _csr_file(tmp_path, key=key),
                      *PERSON_ARGS, "--out", out)
    assert re.search(r"^status\s+good$", result.stdout, re.M) and "card-signature" in result.stdout
    cert = x509.load_pem_x509_certificate(out.read_bytes())
    assert cert.public_key().public_numbers() == key.public_key().public_numbers()
    serial = format(cert.serial_number, "x")
    assert re.search(rf"^serial\s+{serial}$", result.stdout, re.M)
    assert ready.query(f"select status from certificates where serial = '{serial}'") == [("good",)]

    phone = _issue(ready, tmp_path, "phone-authentication", "--card-serial", serial)
    assert phone["card_serial"] == serial and phone["status"] == "good"
    assert dt.datetime.fromisoformat(phone["not_after"]) <= cert.not_valid_after_utc


def test_issue_with_operation_id_replays(ready, tmp_path):
    csr = _csr_file(tmp_path)
    first = ready.json("issue", "--profile", "card-authentication", "--csr", csr, "--operation-id", "op-1")
    again = ready.json("issue", "--profile", "card-authentication", "--csr", csr, "--operation-id", "op-1")
    assert again == first
    assert ready.query("select count(*) from certificates") == [(1,)]
    other = _csr_file(tmp_path, "other.pem", key=rsa.generate_private_key(65537, 2048))
    ready.refused("issue", "--profile", "card-authentication", "--csr", other, "--operation-id", "op-1",
                  message="already used")


@pytest.mark.parametrize("content,message", [
    ("not a csr at all", "csr_pem is not a PEM PKCS#10 request"),
    ("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n", "csr_pem"),
    ("", "csr_pem"),
], ids=["text", "pem-garbage", "empty"])
def test_issue_with_a_bad_csr_fails_with_a_message(ready, tmp_path, content, message):
    bad = tmp_path / "bad.pem"
    bad.write_text(content)
    before = ready.fingerprint()
    ready.refused("issue", "--profile", "card-authentication", "--csr", bad, message=message)
    assert ready.fingerprint() == before


def test_issue_refusals(ready, tmp_path):
    csr = _csr_file(tmp_path)
    before = ready.fingerprint()
    weak = tmp_path / "weak.pem"
    weak.write_text(csr_pem(rsa.generate_private_key(65537, 1024)))
    ready.refused("issue", "--profile", "card-authentication", "--csr", weak, message="1024 bits")
    ready.refused("issue", "--profile", "card-signature", "--csr", csr, message="person is required")
    person = ["--name", "x", "--birth", "2000-01-01", "--gender", "1", "--address", "y"]
    ready.refused("issue", "--profile", "card-authentication", "--csr", csr, *person, message="omit person")
    bad_birth = [*person[:3], "2000-13-01", *person[4:]]
    ready.refused("issue", "--profile", "card-signature", "--csr", csr, *bad_birth,
                  message="person.date_of_birth")
    bad_gender = [*person[:5], "9", *person[6:]]
    ready.refused("issue", "--profile", "card-signature", "--csr", csr, *bad_gender, message="person.gender")
    ready.refused("issue", "--profile", "phone-authentication", "--csr", csr, message="needs card_serial")
    ready.refused("issue", "--profile", "phone-authentication", "--csr", csr, "--card-serial", "abc123",
                  message="not a card signature certificate")
    ready.refused("issue", "--profile", "bank-card", "--csr", csr, message="profile")
    ready.refused("issue", "--profile", "card-authentication", "--csr", csr, "--not-after", "2001-01-01",
                  message="not in the future")
    ready.refused("issue", "--profile", "card-authentication", "--csr", csr, "--not-after", "2099-01-01",
                  message="beyond the issuing policy")
    assert ready.fingerprint() == before
    # A CSR file that does not exist is a usage error (exit 2), not a crash.
    ready.refused("issue", "--profile", "card-authentication", "--csr", tmp_path / "missing.pem",
                  message="does not exist", code=2)


def test_issue_before_init_fails_clearly(cli, tmp_path):
    cli.refused("issue", "--profile", "card-authentication", "--csr", _csr_file(tmp_path),
                message="run `jpki-ca init` first")


# -- revoke / hold / release / status ----------------------------------------------------------
def test_status_changes_and_history(ready, tmp_path):
    serial = _issue(ready, tmp_path)["serial"]

    held = ready.json("hold", serial)
    assert held["status"] == "held" and held["reason"] == "certificateHold"
    released = ready.json("release", serial.upper())
    assert released["status"] == "good" and released["reason"] is None and released["revoked_at"] is None
    revoked = ready.json("revoke", serial, "--reason", "superseded", "--operation-id", "rev-1")
    assert revoked["status"] == "revoked" and revoked["reason"] == "superseded"
    assert ready.json("revoke", serial, "--reason", "superseded", "--operation-id", "rev-1") == revoked
    upgraded = ready.json("revoke", serial, "--reason", "keyCompromise")
    assert upgraded["reason"] == "keyCompromise" and upgraded["revoked_at"] == revoked["revoked_at"]

    status = ready.json("status", serial)
    assert status["status"] == "revoked" and status["reason"] == "keyCompromise"
    assert [(e["status"], e["reason"]) for e in status["history"]] == [
        ("good", None), ("held", "certificateHold"), ("good", None), ("revoked", "superseded"),
        ("revoked", "keyCompromise")]
    assert status["history"][3]["operation_id"] == "rev-1"

    text = ready.ok("status", serial).stdout
    assert re.search(r"^status\s+revoked$", text, re.M) and re.search(r"^reason\s+keyCompromise$", text, re.M)
    assert len(re.findall(r"^  \S+\s+(good|held|revoked)", text, re.M)) == 5
    assert "BEGIN CERTIFICATE" not in text


def test_status_change_refusals(ready, tmp_path):
    serial = _issue(ready, tmp_path)["serial"]
    unknown = "1" + serial[1:] if serial[0] != "1" else "2" + serial[1:]
    before = ready.fingerprint()
    for command in (["hold", unknown], ["release", unknown], ["status", unknown],
                    ["revoke", unknown, "--reason", "superseded"]):
        ready.refused(*command, message=f"no certificate with serial {unknown}")
    for command in (["hold", "xyz"], ["release", "0xZZ"], ["status", "not-hex"],
                    ["revoke", "g123", "--reason", "superseded"]):
        ready.refused(*command, message="is not a hexadecimal number")
    ready.refused("release", serial, message="only a held certificate can be released")
    for reason in ("certificateHold", "removeFromCRL"):
        ready.refused("revoke", serial, "--reason", reason, message="use hold / release")
    ready.refused("revoke", serial, "--reason", "lost", message="is not one of")
    assert ready.fingerprint() == before
    ready.refused("revoke", serial, message="--reason", code=2)  # a usage error, exit 2

    ready.json("revoke", serial, "--reason", "cessationOfOperation")
    before = ready.fingerprint()
    ready.refused("revoke", serial, "--reason", "unspecified", message="already revoked")
    ready.refused("revoke", serial, "--reason", "cessationOfOperation", message="already revoked")
    ready.refused("hold", serial, message="only a good certificate can be put on hold")
    ready.refused("release", serial, message="only a held certificate can be released")
    assert ready.fingerprint() == before


def test_operation_id_reused_for_another_change_is_refused(ready, tmp_path):
    serial = _issue(ready, tmp_path)["serial"]
    ready.json("hold", serial, "--operation-id", "op-x")
    ready.refused("release", serial, "--operation-id", "op-x", message="already used")
    assert ready.json("status", serial)["status"] == "held"


# -- crl --------------------------------------------------------------------------------------
def _openssl(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run(["openssl", *map(str, args)], capture_output=True, text=True, timeout=60)


def test_crl_summary_and_der_file(ready, tmp_path):
    summary = ready.ok("crl").stdout
    assert re.match(r"sign full CRL #\d+: 0 entries, \d+ bytes, thisUpdate \S+, nextUpdate \S+$",
                    summary.strip()), summary

    card = _issue(ready, tmp_path, "card-signature")
    held = _issue(ready, tmp_path, "card-signature")
    ready.json("revoke", card["serial"], "--reason", "affiliationChanged")
    ready.json("hold", held["serial"])
    out = tmp_path / "sign.crl"
    summary = ready.ok("crl", "--issuer", "sign", "--out", out).stdout
    number = int(re.search(r"CRL #(\d+): 2 entries", summary).group(1))

    assert _openssl("crl", "-inform", "DER", "-in", out, "-noout").returncode == 0
    chain = tmp_path / "sign-ca.pem"
    sign_ca = x509.load_der_x509_certificate(ready.ca_keys()["sign"][0])
    chain.write_bytes(sign_ca.public_bytes(serialization.Encoding.PEM))
    text = _openssl("crl", "-inform", "DER", "-in", out, "-noout", "-text", "-CAfile", chain)
    assert text.returncode == 0 and "verify OK" in text.stdout + text.stderr, text.stderr
    listed = text.stdout.replace(":", "").upper()
    assert card["serial"].upper() in listed and held["serial"].upper() in listed
    assert "Affiliation Changed" in text.stdout and "Certificate Hold" in text.stdout

    crl = x509.load_der_x509_crl(out.read_bytes())
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == number
    assert {format(r.serial_number, "x") for r in crl} == {card["serial"], held["serial"]}

    # Nothing changed: the same CRL again, not a new number. --force makes a new one.
    assert f"#{number}:" in ready.ok("crl", "--issuer", "sign").stdout
    assert f"#{number + 1}:" in ready.ok("crl", "--issuer", "sign", "--force").stdout

    delta_out = tmp_path / "sign-delta.crl"
    delta = ready.ok("crl", "--issuer", "sign", "--delta", "--out", delta_out).stdout
    assert re.search(r"sign delta CRL #\d+ \(base #\d+\)", delta)
    assert _openssl("crl", "-inform", "DER", "-in", delta_out, "-noout").returncode == 0
    delta_crl = x509.load_der_x509_crl(delta_out.read_bytes())
    assert delta_crl.extensions.get_extension_for_class(x509.DeltaCRLIndicator).value.crl_number <= number + 1

    root_out = tmp_path / "root.crl"
    ready.ok("crl", "--issuer", "root", "--out", root_out)
    assert _openssl("crl", "-inform", "DER", "-in", root_out, "-noout").returncode == 0


def test_crl_refusals(ready, tmp_path):
    ready.refused("crl", "--issuer", "nope", message="no CRL issuer named 'nope'")
    ready.refused("crl", "--issuer", "sign-ocsp", message="no CRL issuer named")
    ready.refused("crl", "--issuer", "root", "--delta", message="root publishes no delta CRL")
    assert not (tmp_path / "x.crl").exists()


def test_crl_before_init_fails_clearly(cli):
    cli.refused("crl", message="run `jpki-ca init` first")


# -- card issue -------------------------------------------------------------------------------
def _card_args(out: Path) -> list:
    return ["card", "issue", "--out", out, *PERSON_ARGS]


def _decode_other_name(value: bytes) -> str:
    return core.load(value).native


def test_card_issue_writes_a_valid_card(ready, tmp_path):
    out = tmp_path / "cards" / "taro.card.json"
    result = ready.ok(*_card_args(out), JPKI_CARD_PASSWORD=CARD_PASSWORD, JPKI_CARD_PIN=CARD_PIN)
    raw = out.read_text()
    card = json.loads(raw)

    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert card["format"] == "jpki-mock-card/1"
    assert set(card) >= {"format", "card_id", "signature", "authentication", "chain"}
    assert card["signature"]["tries_left"] == 5 and card["authentication"]["tries_left"] == 3
    assert card["signature"]["max_tries"] == 5 and card["authentication"]["max_tries"] == 3

    # Each key decrypts with its own secret only.
    sig_pem = card["signature"]["private_key_pem"].encode()
    auth_pem = card["authentication"]["private_key_pem"].encode()
    sig_key = serialization.load_pem_private_key(sig_pem, CARD_PASSWORD.encode())
    auth_key = serialization.load_pem_private_key(auth_pem, CARD_PIN.encode())
    for pem, wrong in ((sig_pem, CARD_PIN), (sig_pem, None), (sig_pem, "QW7ER9TX"),
                       (auth_pem, CARD_PASSWORD), (auth_pem, "4718"), (auth_pem, None)):
        with pytest.raises((ValueError, TypeError)):
            serialization.load_pem_private_key(pem, wrong.encode() if wrong else None)
    assert "ENCRYPTED PRIVATE KEY" in card["signature"]["private_key_pem"]

    # The certificates hold the keys, chain to the CA, and are known to it as good.
    chain = {name: x509.load_pem_x509_certificate(pem.encode()) for name, pem in card["chain"].items()}
    assert set(chain) == {"root", "sign", "auth"}
    assert chain["root"].public_bytes(serialization.Encoding.DER) == ready.ca_keys()["root"][0]
    sig_cert = x509.load_pem_x509_certificate(card["signature"]["certificate_pem"].encode())
    auth_cert = x509.load_pem_x509_certificate(card["authentication"]["certificate_pem"].encode())
    assert sig_cert.public_key().public_numbers() == sig_key.public_key().public_numbers()
    assert auth_cert.public_key().public_numbers() == auth_key.public_key().public_numbers()
    sig_cert.verify_directly_issued_by(chain["sign"])
    auth_cert.verify_directly_issued_by(chain["auth"])
    chain["sign"].verify_directly_issued_by(chain["root"])
    for slot, profile in (("signature", "card-signature"), ("authentication", "card-authentication")):
        serial = card[slot]["serial"]
        cert = x509.load_pem_x509_certificate(card[slot]["certificate_pem"].encode())
        assert serial == format(cert.serial_number, "x")
        row = ready.query(f"select profile, status from certificates where serial = '{serial}'")
        assert row == [(profile, "good")]
        assert serial in result.stdout

    # The signature certificate carries the four items in otherName; the authentication one none.
    san = sig_cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    other = {o.type_id.dotted_string: _decode_other_name(o.value)
             for o in san.get_values_for_type(x509.OtherName)}
    assert other == {OID_NAME: PERSON["name"], OID_GENDER: PERSON["gender"],
                     OID_BIRTH: PERSON["date_of_birth"].replace("-", ""), OID_ADDRESS: PERSON["address"]}
    assert sig_cert.extensions.get_extension_for_class(x509.KeyUsage).value.content_commitment
    with pytest.raises(x509.ExtensionNotFound):
        auth_cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)

    # No secret anywhere it can be read, and no Individual Number (12 digits) anywhere.
    assert CARD_PASSWORD not in raw and CARD_PASSWORD.lower() not in raw
    strings = list(_strings(card))
    assert CARD_PIN not in strings
    assert not any(CARD_PIN in s for s in strings if "-----BEGIN" not in s and s not in _hex_ids(card))
    for secret in (CARD_PASSWORD, CARD_PIN):
        output = result.stdout + result.stderr
        for harmless in (*_hex_ids(card), str(out)):
            output = output.replace(harmless, "")
        assert secret not in output
    assert not TWELVE_DIGITS.search(raw)
    for cert in (sig_cert, auth_cert):
        readable = cert.subject.rfc4514_string() + " ".join(map(str, other.values()))
        assert not TWELVE_DIGITS.search(readable)


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _hex_ids(card: dict) -> set[str]:
    return {card["card_id"], card["signature"]["serial"], card["authentication"]["serial"]}


def test_card_password_is_folded_to_upper_case(ready, tmp_path):
    out = tmp_path / "card.json"
    ready.ok(*_card_args(out), JPKI_CARD_PASSWORD=CARD_PASSWORD.lower(), JPKI_CARD_PIN=CARD_PIN)
    card = json.loads(out.read_text())
    serialization.load_pem_private_key(card["signature"]["private_key_pem"].encode(), CARD_PASSWORD.encode())


def test_card_secrets_can_be_typed_at_the_prompt(ready, tmp_path):
    out = tmp_path / "card.json"
    typed = f"{CARD_PASSWORD}\n{CARD_PASSWORD}\n{CARD_PIN}\n{CARD_PIN}\n"
    result = ready.ok(*_card_args(out), input=typed)
    assert CARD_PASSWORD not in result.stdout + result.stderr
    card = json.loads(out.read_text())
    serialization.load_pem_private_key(card["authentication"]["private_key_pem"].encode(), CARD_PIN.encode())


@pytest.mark.parametrize("password,message", [
    ("AB12", "6-16 characters"),
    ("123456", "both letters and digits"),
    ("ABCDEF", "both letters and digits"),
    ("ABCDEFGH123456789", "6-16 characters"),
    ("ABC12!", "A-Z and 0-9"),
    ("ABC 123", "A-Z and 0-9"),
    ("ÄBC123", "A-Z and 0-9"),
], ids=["short", "digits-only", "letters-only", "17-chars", "symbol", "space", "non-ascii"])
def test_card_issue_refuses_bad_passwords(ready, tmp_path, password, message):
    out = tmp_path / "card.json"
    before = ready.fingerprint()
    stderr = ready.refused(*_card_args(out), message=message, JPKI_CARD_PASSWORD=password,
                           JPKI_CARD_PIN=CARD_PIN)
    assert password not in stderr and CARD_PIN not in stderr
    assert not out.exists()
    assert ready.fingerprint() == before


@pytest.mark.parametrize("pin", ["123", "12a4", "12345", "", "１２３４"], ids=["3-digits", "letter", "5-digits",
                                                                          "empty", "fullwidth"])
def test_card_issue_refuses_bad_pins(ready, tmp_path, pin):
    out = tmp_path / "card.json"
    before = ready.fingerprint()
    stderr = ready.refused(*_card_args(out), message="PIN must be exactly 4 digits",
                           JPKI_CARD_PASSWORD=CARD_PASSWORD, JPKI_CARD_PIN=pin)
    assert CARD_PASSWORD not in stderr and (not pin or pin not in stderr)
    assert not out.exists()
    assert ready.fingerprint() == before


def test_card_issue_never_overwrites_a_card_file(ready, tmp_path):
    out = tmp_path / "card.json"
    out.write_text("an earlier card")
    before = ready.fingerprint()
    ready.refused(*_card_args(out), message="never overwritten", JPKI_CARD_PASSWORD=CARD_PASSWORD,
                  JPKI_CARD_PIN=CARD_PIN)
    assert out.read_text() == "an earlier card"
    assert ready.fingerprint() == before


def test_card_issue_refuses_bad_personal_data(ready, tmp_path):
    out = tmp_path / "card.json"
    args = _card_args(out)
    args[args.index("--birth") + 1] = "02/01/1990"
    ready.refused(*args, message="date_of_birth", JPKI_CARD_PASSWORD=CARD_PASSWORD, JPKI_CARD_PIN=CARD_PIN)
    assert not out.exists()


def test_card_issue_before_init_fails_clearly(cli, tmp_path):
    out = tmp_path / "card.json"
    cli.refused(*_card_args(out), message="run `jpki-ca init` first", JPKI_CARD_PASSWORD=CARD_PASSWORD,
                JPKI_CARD_PIN=CARD_PIN)
    assert not out.exists()

"""The audit trail's RFC 3161 anchors, against the real CA's time-stamping authority over HTTP.

An attacker with write access to the database deletes the newest entries and rewinds the head to
match: the chain alone is consistent again, but `jpki-service audit verify` (the real CLI, in a
subprocess) names the missing tail and the rewound head once an anchor exists, and an anchor
deleted from the table too is named from the anchor folder. `audit export` writes anchors that
`openssl ts -verify` (the real openssl) accepts. The running service anchors on schedule; with
the CA's TSA down it says so in its log, keeps answering, and anchors once the TSA is back.

One CA per backend for the module (tests/shared_ca.py): its TSA only stamps what it is given. Each test has a
service (and a database) of its own beside it: the tests cut, rewind and count the whole audit chain and its
anchors from entry 1, which no other test may write to. The test that stops the CA has a CA of its own.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from jpki_service.adapters.db import Store
from jpki_service.adapters.service_keys import load_service_keys
from jpki_service.audit.service import record
from jpki_service.common.settings import ServiceSettings
from tests.conftest import start_service, stop_process
from tests.shared_ca import _fresh_keys_per_test, module_ca_server, module_service_server, own_ca_server  # noqa: F401 (fixtures)

pytestmark = pytest.mark.e2e

ACTIONS = ["operator-login", "search", "suspend", "note", "lift a suspension", "revoke"]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def ca_server(request, tmp_path_factory):
    """The module's CA, on each backend (as shared_servers's: the module has no service to share)."""
    with module_ca_server(request.param, tmp_path_factory.mktemp(f"audit-anchors-{request.param}")) as running:
        yield running


@pytest.fixture
def service_server(ca_server, tmp_path: Path):
    """A service of the test's own beside the module's CA: its audit chain is the test's alone."""
    with module_service_server(ca_server, tmp_path) as running:
        yield running


def _env(service, **extra: str) -> dict[str, str]:
    return {**os.environ, "JPKI_DATA_DIR": str(service.data_dir), "JPKI_DATABASE_URL": service.database_url, **extra}


def _cli(service, *args: str, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "jpki_service", "audit", *args], env=_env(service, **extra),
                          capture_output=True, text=True, timeout=120)


def _append(service, count: int, action: str | None = None) -> None:
    """Audited acts written as the service writes them (its own key, from its data folder)."""
    settings = ServiceSettings(data_dir=service.data_dir, database_url=service.database_url)
    key = load_service_keys(settings, create=False).audit_chain
    store = Store(service.database_url)
    try:
        for n in range(count):
            with store.transaction() as session:
                record(session, key, f"operator:op{n % 3}", action or ACTIONS[n % len(ACTIONS)], f"C{n:04d}",
                       {"ticket": f"T-{n}"})
    finally:
        store.dispose()


def _sql(service, statement: str) -> None:
    engine = sa.create_engine(service.database_url)
    try:
        with engine.begin() as connection:
            connection.execute(sa.text(statement))
    finally:
        engine.dispose()


def _rewind(service, to_seq: int, delete_entries: bool) -> None:
    """What an attacker with write access to the tables does: cut the tail, rewind the head to match."""
    if delete_entries:
        _sql(service, f"DELETE FROM audit_log WHERE seq > {to_seq}")
    _sql(service, f"UPDATE audit_head SET seq = {to_seq}, entry_hash = "
                  f"(SELECT entry_hash FROM audit_log WHERE seq = {to_seq})")


def _anchors(service) -> list[tuple[int, str]]:
    engine = sa.create_engine(service.database_url)
    try:
        with engine.connect() as connection:
            return [tuple(r) for r in connection.execute(sa.text("SELECT seq, entry_hash FROM audit_anchors "
                                                                 "ORDER BY id"))]
    finally:
        engine.dispose()


def _self_signed_pem() -> bytes:
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Another root")])
    now = dt.datetime.now(dt.UTC)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
                   .not_valid_after(now + dt.timedelta(days=365))
                   .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                   .sign(key, hashes.SHA256()))
    return certificate.public_bytes(serialization.Encoding.PEM)


def _wait_for(condition, what: str, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.2)


def test_truncation_and_a_rewound_head_are_named_once_anchored(ca_server, service_server, tmp_path: Path):
    _append(service_server, 26)  # among them suspensions, as in the finding
    unanchored = _cli(service_server, "verify")
    assert unanchored.returncode == 0 and "not anchored" in unanchored.stdout, unanchored.stdout + unanchored.stderr

    # On demand: the CLI has the head timestamped by the CA's TSA; a second call finds it anchored already.
    taken = _cli(service_server, "anchor", JPKI_CA_URL=ca_server.url)
    assert taken.returncode == 0, taken.stdout + taken.stderr
    assert "anchored entry 26" in taken.stdout
    assert _cli(service_server, "anchor", JPKI_CA_URL=ca_server.url).stdout.startswith("nothing to anchor")
    [(seq, _hash)] = _anchors(service_server)
    assert seq == 26
    folder = service_server.data_dir / "audit-anchors"
    assert len(list(folder.glob("seq-0000000026-*.tst"))) == 1 and (folder / "tsa-root.pem").exists()
    intact = _cli(service_server, "verify")
    assert intact.returncode == 0, intact.stdout + intact.stderr
    assert intact.stdout.startswith("audit trail intact: 26 entries\nanchored up to entry 26 by the TSA at ")

    # The head alone rewound (entries kept): the chain sees a head behind its trail, the anchor a rewound head.
    _rewind(service_server, 20, delete_entries=False)
    rewound = _cli(service_server, "verify")
    assert rewound.returncode == 1, rewound.stdout
    assert "head-rewound" in rewound.stdout and "names entry 20" in rewound.stdout
    _sql(service_server, "UPDATE audit_head SET seq = 26, entry_hash = (SELECT entry_hash FROM audit_log "
                         "WHERE seq = 26)")
    assert _cli(service_server, "verify").returncode == 0

    # The finding: the newest 13 of 26 deleted (suspensions among them) and the head rewound to match.
    _rewind(service_server, 13, delete_entries=True)
    cut = _cli(service_server, "verify")
    assert cut.returncode == 1, cut.stdout
    assert "entry 14: tail-missing — entries 14-26 gone: the trail ends at entry 13" in cut.stdout
    assert "entry 26: head-rewound — the head names entry 13" in cut.stdout
    as_json = json.loads(_cli(service_server, "verify", "--json").stdout)
    assert {p["kind"] for p in as_json["problems"]} == {"tail-missing", "head-rewound"}
    assert as_json["latest_anchor"]["seq"] == 26

    # The service writes on after the cut: once the trail is longer again, entry 26 is not the one anchored.
    _append(service_server, 15)
    written_on = _cli(service_server, "verify")
    assert written_on.returncode == 1, written_on.stdout
    assert "entry 26: anchor-mismatch — entry 26 is not the entry anchored at" in written_on.stdout

    # The anchor deleted from the table as well: its copy in the anchor folder names that.
    _sql(service_server, "DELETE FROM audit_anchors")
    deleted = _cli(service_server, "verify")
    assert deleted.returncode == 1, deleted.stdout
    assert "anchor-missing" in deleted.stdout and "anchor-mismatch" in deleted.stdout


def test_exported_anchors_verify_with_openssl(ca_server, service_server, tmp_path: Path):
    _append(service_server, 5)
    assert _cli(service_server, "anchor", JPKI_CA_URL=ca_server.url).returncode == 0
    _append(service_server, 3, action="suspend")
    assert _cli(service_server, "anchor", JPKI_CA_URL=ca_server.url).returncode == 0
    out = tmp_path / "export"
    exported = _cli(service_server, "export", "--out", str(out))
    assert exported.returncode == 0, exported.stdout + exported.stderr
    assert "exported 8 entries and 2 anchors" in exported.stdout
    trail = [json.loads(line) for line in (out / "audit-trail.jsonl").read_text().splitlines()]
    assert [e["seq"] for e in trail] == list(range(1, 9))
    assert all(trail[i]["prev_hash"] == trail[i - 1]["entry_hash"] for i in range(1, 8))
    index = [json.loads(line) for line in (out / "anchors.jsonl").read_text().splitlines()]
    assert [a["seq"] for a in index] == [5, 8]
    for anchor in index:
        assert anchor["entry_hash"] == trail[anchor["seq"] - 1]["entry_hash"]
        # The command the docs give (docs/security.md), as written in anchors.jsonl.
        assert anchor["verify"] == (f"openssl ts -verify -data {anchor['data']} -in {anchor['token']} -token_in "
                                    f"-CAfile tsa-root.pem -untrusted {anchor['tsa_certificate']}")
        judged = subprocess.run(anchor["verify"].split(), cwd=out, capture_output=True, text=True, timeout=60)
        assert judged.returncode == 0 and "Verification: OK" in judged.stdout, judged.stdout + judged.stderr
        stamped = json.loads((out / anchor["data"]).read_text())
        assert stamped == {"entry_hash": anchor["entry_hash"], "format": "jpki-audit-anchor/1", "seq": anchor["seq"]}
    # Checked against another root (JPKI_AUDIT_TSA_ROOT), the CA's TSA is not trusted: every anchor is invalid.
    other_root = tmp_path / "other-root.pem"
    other_root.write_bytes(_self_signed_pem())
    untrusted = _cli(service_server, "verify", JPKI_AUDIT_TSA_ROOT=str(other_root))
    assert untrusted.returncode == 1, untrusted.stdout + untrusted.stderr
    assert untrusted.stdout.count("anchor-invalid") == 2 and "does not chain to the trusted root" in untrusted.stdout
    # The same change in the anchor folder: audit verify names the anchor as invalid.
    [first] = (service_server.data_dir / "audit-anchors").glob("seq-0000000005-*.data")
    first.chmod(0o600)
    first.write_text(first.read_text().replace('"seq":5', '"seq":6'))
    invalid = _cli(service_server, "verify")
    assert invalid.returncode == 1 and "anchor-invalid" in invalid.stdout, invalid.stdout + invalid.stderr
    # A stamped document changed by one entry: openssl refuses it.
    forged = out / "forged.data"
    forged.write_text((out / index[0]["data"]).read_text().replace('"seq":5', '"seq":6'))
    refused = subprocess.run(["openssl", "ts", "-verify", "-data", str(forged), "-in", index[0]["token"], "-token_in",
                              "-CAfile", "tsa-root.pem", "-untrusted", index[0]["tsa_certificate"]],
                             cwd=out, capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_service_anchors_on_schedule_and_waits_out_a_tsa_that_is_down(own_ca_server, service_database_url,
                                                                          tmp_path: Path):
    """It stops the CA: a CA of its own."""
    ca_server = own_ca_server
    service = start_service(ca_server, service_database_url, tmp_path,
                            settings={"JPKI_AUDIT_ANCHOR_INTERVAL_SECONDS": "1"})
    try:
        _append(service, 4)
        _wait_for(lambda: (4, ) in [a[:1] for a in _anchors(service)], "the scheduled anchor of entry 4")

        ca_server.stop()
        _append(service, 2)
        log = tmp_path / "service.log"
        _wait_for(lambda: "audit anchor not taken" in log.read_text(), "the TSA's absence in the log")
        assert "time-stamping authority" in log.read_text() and "unreachable" in log.read_text()
        with httpx.Client(base_url=service.url, timeout=30) as client:
            assert client.get("/healthz").status_code == 200  # the service goes on
        _append(service, 1)  # and audited acts are still written
        assert [a[0] for a in _anchors(service)] == [4]

        ca_server.start()
        _wait_for(lambda: 7 in [a[0] for a in _anchors(service)], "the anchor of entry 7 once the TSA is back")
        verified = _cli(service, "verify")
        assert verified.returncode == 0, verified.stdout + verified.stderr
        assert "anchored up to entry 7" in verified.stdout
        # Many rounds ran meanwhile (one a second), and anchored only a head that had moved.
        assert [a[0] for a in _anchors(service)] == [4, 7]
    finally:
        stop_process(service.process)


def test_the_chain_key_can_come_from_a_file_outside_the_data_folder(tmp_path: Path, service_database_url: str):
    from jpki_service.adapters.db import migrate
    from jpki_service.audit.service import verify

    migrate(service_database_url)
    key_file = tmp_path / "elsewhere" / "audit-key"
    plain = ServiceSettings(data_dir=tmp_path / "data", database_url=service_database_url)
    apart = ServiceSettings(data_dir=tmp_path / "data", database_url=service_database_url, audit_key_file=key_file)
    keys = load_service_keys(apart)
    assert key_file.stat().st_mode & 0o777 == 0o600  # made at the first start, owner-only
    assert keys.audit_chain != load_service_keys(plain).audit_chain  # not derivable from the data folder
    assert keys.holder_seal == load_service_keys(plain).holder_seal  # the data key still seals
    store = Store(service_database_url)
    try:
        with store.transaction() as session:
            record(session, keys.audit_chain, "operator:op1", "suspend", "C0001", {})
        assert verify(store, keys.audit_chain).ok
        assert [p.kind for p in verify(store, load_service_keys(plain).audit_chain).problems] == ["key-mismatch"]
    finally:
        store.dispose()

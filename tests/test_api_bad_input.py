"""Bad input through the real HTTP server: a clear 4xx problem document, and nothing changed.

Every case runs against a real ``jpki-ca serve`` process (SQLite and PostgreSQL), one per backend for
the module (each test issues what it needs, under operation ids and keys of its own). "Nothing
changed" is checked on the store itself: every table, its row count and a hash of all its rows,
before and after the request. OCSP answers its own way (HTTP 200 with an OCSP error status),
never with a 500 page.
"""
from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import os
import time
import weakref

import httpx
import pytest
import sqlalchemy as sa
from asn1crypto import csr as asn1_csr
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import NameOID

from tests.helpers import PERSON, csr_pem, issue_body
from tests.shared_ca import _fresh_keys_per_test, module_ca_server, unique  # noqa: F401 (a fixture)

pytestmark = pytest.mark.e2e

PROBLEM = "application/problem+json"
STORE_TABLES = {"authorities", "ca_meta", "certificates", "certificate_status_events", "ocsp_responses",
                "operations", "published_crls"}
CRL_ISSUERS = ("root", "sign", "auth")


# -- the store, before and after --------------------------------------------------------------
_REFLECTED: weakref.WeakKeyDictionary[sa.Engine, sa.MetaData] = weakref.WeakKeyDictionary()


def snapshot(engine: sa.Engine) -> dict[str, tuple[int, str]]:
    """Every table of the store: (row count, SHA-256 over all rows in primary-key order). The tables are
    listed again each time, but reflected once per store (reflecting them all took a third of this module's
    CPU in the test process)."""
    metadata = _REFLECTED.setdefault(engine, sa.MetaData())
    metadata.reflect(bind=engine)  # adds the tables it has not reflected yet
    tables: dict[str, tuple[int, str]] = {}
    with engine.connect() as connection:
        for name, table in sorted(metadata.tables.items()):
            order = list(table.primary_key.columns) or list(table.columns)
            digest = hashlib.sha256()
            count = 0
            for row in connection.execute(sa.select(table).order_by(*order)):
                digest.update(repr(tuple(row)).encode())
                digest.update(b"\x00")
                count += 1
            tables[name] = (count, digest.hexdigest())
    assert STORE_TABLES <= set(tables), f"store tables missing: {STORE_TABLES - set(tables)}"
    return tables


def _crl_state(engine: sa.Engine) -> tuple[dict, dict]:
    with engine.connect() as connection:
        authorities = {
            name: (number, dirty)
            for name, number, dirty in connection.execute(sa.text(
                "select name, crl_number, crl_dirty from authorities where role in ('root', 'issuing')"))
        }
        published = {
            (authority, kind): number
            for authority, kind, number in connection.execute(sa.text(
                "select authority, kind, number from published_crls where partition is null"))
        }
    return authorities, published


def _partitions_settled(ca_server) -> bool:
    """Publish every CRL partition (ca_mock/crl/partitions.py) by fetching it; True when none is
    dirty and each one's full and delta CRL carry its current number."""
    with ca_server.store.engine.connect() as connection:
        rows = connection.execute(sa.text("select authority, partition from crl_partitions")).all()
    for authority, partition in rows:
        response = httpx.get(f"{ca_server.url}/crl/{authority}-p{partition}.crl", timeout=30)
        assert response.status_code == 200, response.text
    with ca_server.store.engine.connect() as connection:
        unsettled = connection.execute(sa.text(
            "select count(*) from crl_partitions p where p.dirty or (select count(*) from published_crls c"
            " where c.authority = p.authority and c.partition = p.partition and c.number = p.crl_number) != 2"
        )).scalar_one()
    return unsettled == 0


def _kinds(name: str) -> tuple[str, ...]:
    return ("full",) if name == "root" else ("full", "delta")  # the root publishes no delta CRL


def settle(ca_server) -> None:
    """Publish what earlier status changes made due, and wait until no publishing is in flight,
    so that nothing the background publisher does can be mistaken for a change by the request."""
    deadline = time.monotonic() + 30
    while True:
        authorities, published = _crl_state(ca_server.store.engine)
        first_round_done = all((name, kind) in published for name in authorities for kind in _kinds(name))
        if first_round_done:
            # Only once the server's own first publication is in: fetching a CRL publishes what is
            # due, and that must not race the very first publication (see test_concurrency).
            for name in CRL_ISSUERS:
                response = httpx.get(f"{ca_server.url}/crl/{name}.crl", timeout=30)
                assert response.status_code == 200, response.text
            authorities, published = _crl_state(ca_server.store.engine)
            if all(not dirty and all(published.get((name, kind)) == number for kind in _kinds(name))
                   for name, (number, dirty) in authorities.items()) and _partitions_settled(ca_server):
                return
        assert time.monotonic() < deadline, f"the CA kept publishing CRLs: {authorities} {published}"
        time.sleep(0.05)


@contextlib.contextmanager
def store_unchanged(ca_server):
    settle(ca_server)
    before = snapshot(ca_server.store.engine)
    yield before
    after = snapshot(ca_server.store.engine)
    changed = {name for name in before if before[name] != after.get(name)} | (set(after) - set(before))
    assert not changed, f"the request changed the store: tables {sorted(changed)}"


def assert_problem(response: httpx.Response, status: int, *in_detail: str) -> dict:
    """An RFC 9457 problem document with ``status`` whose detail names each of ``in_detail``."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].split(";")[0].strip() == PROBLEM, response.headers
    body = response.json()
    assert {"type", "title", "status", "detail"} <= set(body), body
    assert body["status"] == status
    assert body["type"].startswith("https://") and body["title"].strip() and body["detail"].strip()
    for text in in_detail:
        assert text.lower() in body["detail"].lower(), (text, body["detail"])
    return body


def assert_refused(ca_server, method: str, path: str, status: int, *in_detail: str, **request) -> dict:
    """Send one request and check it was refused with a problem and left the store alone. With the
    administrator credential, which may do everything: what each credential may do is
    tests/test_ca_credentials.py's."""
    with store_unchanged(ca_server), ca_server.client(admin=True) as client:
        response = client.request(method, path, **request)
    return assert_problem(response, status, *in_detail)


# -- fixtures ---------------------------------------------------------------------------------
@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def ca_server(request, tmp_path_factory):
    """``jpki-ca serve`` on a store of its own, once per backend for the whole module (conftest's is
    once per test): every test here reads, or writes under operation ids and keys no other test uses."""
    with module_ca_server(request.param, tmp_path_factory.mktemp(f"bad-input-{request.param}")) as running:
        yield running


def _issue(ca_server, body: dict) -> dict:
    with ca_server.client(admin=True) as client:
        response = client.post("/api/v1/certificates", json=body)
    assert response.status_code == 201, response.text
    return response.json()


@pytest.fixture
def card(ca_server) -> dict:
    return _issue(ca_server, issue_body("card-signature", unique("card-1")))


@pytest.fixture
def phone(ca_server, card) -> dict:
    """A phone certificate of ``card``; with the operation id it was issued under (``operation_id``)."""
    operation_id = unique("phone-1")
    issued = _issue(ca_server, issue_body("phone-authentication", operation_id, card_serial=card["serial"]))
    return {**issued, "operation_id": operation_id}


def _change(ca_server, serial: str, action: str, operation_id: str, **extra) -> dict:
    with ca_server.client(admin=True) as client:
        response = client.post(f"/api/v1/certificates/{serial}/{action}",
                               json={"operation_id": operation_id, **extra})
    assert response.status_code == 200, response.text
    return response.json()


def _unknown_serial(*known: str) -> str:
    while True:
        serial = format(x509.random_serial_number(), "x")
        if serial not in known:
            return serial


# -- the checker itself ------------------------------------------------------------------------
def test_the_store_snapshot_sees_an_accepted_change(ca_server, phone):
    """Without this, "store unchanged" could pass for a snapshot that sees nothing."""
    settle(ca_server)
    before = snapshot(ca_server.store.engine)
    _change(ca_server, phone["serial"], "hold", unique("hold-seen"))
    after = snapshot(ca_server.store.engine)
    changed = {name for name in before if before[name] != after[name]}
    assert {"certificates", "certificate_status_events", "ocsp_responses", "operations"} <= changed
    assert after["certificate_status_events"][0] == before["certificate_status_events"][0] + 1
    assert after["operations"][0] == before["operations"][0] + 1


# -- CSRs -------------------------------------------------------------------------------------
@pytest.mark.parametrize("garbage", [
    "not a certificate signing request",
    "-----BEGIN CERTIFICATE REQUEST-----\nbm90IGEgQ1NS\n-----END CERTIFICATE REQUEST-----\n",
    "-----BEGIN CERTIFICATE REQUEST-----\n%%%%\n-----END CERTIFICATE REQUEST-----\n",
], ids=["text", "pem-framed-garbage", "pem-framed-non-base64"])
def test_garbage_csr_is_422(ca_server, garbage):
    body = assert_refused(ca_server, "POST", "/api/v1/certificates", 422, "csr_pem", "PKCS#10",
                          json=issue_body("card-authentication", "op-garbage", csr_pem=garbage))
    assert body["type"].endswith("/invalid-csr") and body.get("field") == "csr_pem"


def _tampered_csr() -> str:
    der = x509.load_pem_x509_csr(csr_pem().encode()).public_bytes(serialization.Encoding.DER)
    request = asn1_csr.CertificationRequest.load(der)
    signature = bytearray(request["signature"].native)
    signature[len(signature) // 2] ^= 0x01
    request["signature"] = bytes(signature)
    tampered = request.dump(force=True)
    assert tampered != der
    parsed = x509.load_der_x509_csr(tampered)
    assert not parsed.is_signature_valid  # the precondition of this test
    return parsed.public_bytes(serialization.Encoding.PEM).decode()


def test_csr_whose_signature_does_not_verify_is_422(ca_server):
    body = assert_refused(ca_server, "POST", "/api/v1/certificates", 422, "csr_pem", "does not verify",
                          json=issue_body("card-authentication", "op-tampered", csr_pem=_tampered_csr()))
    assert body["type"].endswith("/invalid-csr")


@pytest.mark.parametrize("make_key,words", [
    (lambda: rsa.generate_private_key(65537, 1024), ("1024 bits", "2048")),
    (lambda: ec.generate_private_key(ec.SECP384R1()), ("secp384r1", "P-256")),
    (lambda: ed25519.Ed25519PrivateKey.generate(), ("Ed25519", "not allowed")),
], ids=["rsa1024", "p384", "ed25519"])
def test_csr_with_a_key_the_policy_refuses_is_422(ca_server, make_key, words):
    key = make_key()
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "weak")]))
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    pem = builder.sign(key, algorithm).public_bytes(serialization.Encoding.PEM).decode()
    body = assert_refused(ca_server, "POST", "/api/v1/certificates", 422, *words,
                          json=issue_body("card-authentication", "op-weak", csr_pem=pem))
    # The field named is the request's own: csr_pem.
    assert body["type"].endswith("/policy-violation") and body.get("field") == "csr_pem"


# -- profile inputs ---------------------------------------------------------------------------
def test_card_signature_profile_without_person_is_422(ca_server):
    # A phone-signature certificate needs no person: it takes the card's (tests/test_ca_credentials.py).
    body = issue_body("card-signature", "op-no-person")
    del body["person"]
    problem = assert_refused(ca_server, "POST", "/api/v1/certificates", 422, "person is required",
                             "card-signature", json=body)
    assert problem.get("field") == "person"


@pytest.mark.parametrize("profile", ["card-authentication", "phone-authentication"])
def test_authentication_profile_with_person_is_422(ca_server, card, profile):
    card_serial = card["serial"] if profile.startswith("phone") else None
    body = issue_body(profile, "op-person", card_serial=card_serial, person=PERSON)
    problem = assert_refused(ca_server, "POST", "/api/v1/certificates", 422, "no personal data",
                             "omit person", json=body)
    assert problem.get("field") == "person"


def test_person_with_bad_fields_is_422_naming_the_field(ca_server):
    for field, value in (("gender", "4"), ("date_of_birth", "1990-13-40"), ("name", "")):
        body = issue_body("card-signature", "op-bad-person", person={**PERSON, field: value})
        assert_refused(ca_server, "POST", "/api/v1/certificates", 422, f"person.{field}", json=body)


@pytest.mark.parametrize("profile", ["phone-signature", "phone-authentication"])
def test_phone_profile_without_card_serial_is_422(ca_server, profile):
    problem = assert_refused(ca_server, "POST", "/api/v1/certificates", 422, "needs card_serial",
                             json=issue_body(profile, "op-no-card"))
    assert problem.get("field") == "card_serial"


def test_card_profile_with_card_serial_is_422(ca_server, card):
    assert_refused(ca_server, "POST", "/api/v1/certificates", 422, "card_serial is only for phone profiles",
                   json=issue_body("card-authentication", "op-card-card", card_serial=card["serial"]))


def test_card_serial_of_an_unknown_card_is_422(ca_server, card):
    unknown = _unknown_serial(card["serial"])
    problem = assert_refused(ca_server, "POST", "/api/v1/certificates", 422, unknown,
                             "not a card signature certificate",
                             json=issue_body("phone-authentication", "op-unknown-card", card_serial=unknown))
    assert problem.get("field") == "card_serial"


def test_card_serial_of_a_card_authentication_certificate_is_422(ca_server):
    auth_card = _issue(ca_server, issue_body("card-authentication", unique("card-auth")))
    assert_refused(ca_server, "POST", "/api/v1/certificates", 422, "not a card signature certificate",
                   json=issue_body("phone-authentication", "op-auth-card", card_serial=auth_card["serial"]))


@pytest.mark.parametrize("status", ["revoked", "held"])
def test_card_serial_of_a_revoked_or_held_card_is_422(ca_server, card, status):
    if status == "revoked":
        _change(ca_server, card["serial"], "revoke", unique("rev-card"), reason="affiliationChanged")
    else:
        _change(ca_server, card["serial"], "hold", unique("hold-card"))
    problem = assert_refused(ca_server, "POST", "/api/v1/certificates", 422, f"is {status}",
                             json=issue_body("phone-signature", "op-dead-card", card_serial=card["serial"]))
    assert problem.get("field") == "card_serial"


def test_card_serial_not_hex_is_422(ca_server):
    assert_refused(ca_server, "POST", "/api/v1/certificates", 422, "card_serial",
                   json=issue_body("phone-authentication", "op-hex", card_serial="xyz-not-hex"))


# -- validity ---------------------------------------------------------------------------------
def _iso(when: dt.datetime) -> str:
    return when.isoformat()


def test_not_after_beyond_the_policy_is_422(ca_server):
    too_late = dt.datetime.now(dt.UTC) + dt.timedelta(days=5 * 365 + 30)
    problem = assert_refused(ca_server, "POST", "/api/v1/certificates", 422, "beyond the issuing policy",
                             json=issue_body("card-authentication", "op-late", not_after=_iso(too_late)))
    assert problem.get("field") == "not_after"


def test_not_after_beyond_the_card_is_422(ca_server):
    card_end = (dt.datetime.now(dt.UTC) + dt.timedelta(days=30)).replace(microsecond=0)
    short_card = _issue(ca_server, issue_body("card-signature", unique("short-card"), not_after=_iso(card_end)))
    assert dt.datetime.fromisoformat(short_card["not_after"]) == card_end
    beyond = card_end + dt.timedelta(days=1)
    assert_refused(ca_server, "POST", "/api/v1/certificates", 422, "beyond the card certificate's notAfter",
                   json=issue_body("phone-signature", "op-beyond-card", card_serial=short_card["serial"],
                                   not_after=_iso(beyond)))


def test_not_after_in_the_past_is_422(ca_server):
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    assert_refused(ca_server, "POST", "/api/v1/certificates", 422, "not_after is not in the future",
                   json=issue_body("card-authentication", "op-past", not_after=_iso(past)))


def test_not_after_without_time_zone_is_422(ca_server):
    naive = (dt.datetime.now() + dt.timedelta(days=10)).replace(microsecond=0).isoformat()
    assert_refused(ca_server, "POST", "/api/v1/certificates", 422, "not_after must carry a time zone",
                   json=issue_body("card-authentication", "op-naive", not_after=naive))


# -- serials ----------------------------------------------------------------------------------
def test_unknown_serial_is_404_for_every_operation(ca_server, phone):
    unknown = _unknown_serial(phone["serial"])
    for method, path, json in (
        ("GET", f"/api/v1/certificates/{unknown}", None),
        ("POST", f"/api/v1/certificates/{unknown}/revoke", {"operation_id": "op-u1", "reason": "superseded"}),
        ("POST", f"/api/v1/certificates/{unknown}/hold", {"operation_id": "op-u2"}),
        ("POST", f"/api/v1/certificates/{unknown}/release", {"operation_id": "op-u3"}),
    ):
        problem = assert_refused(ca_server, method, path, 404, unknown, "no certificate", json=json)
        assert problem["type"].endswith("/unknown-certificate"), (method, path)


def test_non_hex_serial_is_422_naming_the_serial(ca_server, phone):
    for method, path, json in (
        ("GET", "/api/v1/certificates/not-a-serial", None),
        ("POST", "/api/v1/certificates/zz12/revoke", {"operation_id": "op-h1", "reason": "superseded"}),
        ("POST", "/api/v1/certificates/12g4/hold", {"operation_id": "op-h2"}),
        ("POST", "/api/v1/certificates/0x1f/release", {"operation_id": "op-h3"}),
        ("GET", f"/api/v1/certificates/{'a' * 41}", None),
    ):
        problem = assert_refused(ca_server, method, path, 422, "serial", json=json)
        assert any(error["field"].endswith("serial") for error in problem["errors"]), problem


def test_serial_spelling_is_normalised_not_refused(ca_server, phone):
    # Upper case (and a leading zero where the length allows) name the same certificate.
    spelling = phone["serial"].upper()
    spelling = spelling if len(spelling) >= 40 else "0" + spelling
    with store_unchanged(ca_server), ca_server.client() as client:
        response = client.get(f"/api/v1/certificates/{spelling}")
    assert response.status_code == 200 and response.json()["serial"] == phone["serial"]


# -- status changes the rules refuse ----------------------------------------------------------
def test_release_of_a_good_certificate_is_409(ca_server, phone):
    problem = assert_refused(ca_server, "POST", f"/api/v1/certificates/{phone['serial']}/release", 409,
                             "only a held certificate can be released", "good",
                             json={"operation_id": "op-release-good"})
    assert problem["type"].endswith("/status-change-refused") and problem["current_status"] == "good"


def test_revoke_of_a_revoked_certificate_with_a_weaker_reason_is_409(ca_server, phone):
    _change(ca_server, phone["serial"], "revoke", unique("rev-kc"), reason="keyCompromise")
    for reason in ("superseded", "keyCompromise", "unspecified"):
        problem = assert_refused(ca_server, "POST", f"/api/v1/certificates/{phone['serial']}/revoke", 409,
                                 "already revoked", json={"operation_id": f"op-{reason}", "reason": reason})
        assert problem["current_status"] == "revoked" and problem["current_reason"] == "keyCompromise"


@pytest.mark.parametrize("action", ["hold", "release"])
def test_hold_or_release_of_a_revoked_certificate_is_409(ca_server, phone, action):
    _change(ca_server, phone["serial"], "revoke", unique("rev"), reason="superseded")
    problem = assert_refused(ca_server, "POST", f"/api/v1/certificates/{phone['serial']}/{action}", 409,
                             "revoked", json={"operation_id": f"op-{action}"})
    assert problem["current_status"] == "revoked" and problem["current_reason"] == "superseded"


def test_hold_of_a_held_certificate_is_409(ca_server, phone):
    _change(ca_server, phone["serial"], "hold", unique("hold-1"))
    assert_refused(ca_server, "POST", f"/api/v1/certificates/{phone['serial']}/hold", 409,
                   "only a good certificate can be put on hold", json={"operation_id": "hold-2"})


@pytest.mark.parametrize("reason", ["certificateHold", "removeFromCRL", "stolen", ""])
def test_revocation_reason_that_is_not_one_is_422(ca_server, phone, reason):
    problem = assert_refused(ca_server, "POST", f"/api/v1/certificates/{phone['serial']}/revoke", 422,
                             "revocation reason", repr(reason),
                             json={"operation_id": "op-bad-reason", "reason": reason})
    assert problem.get("field") == "reason"


def test_invalidity_date_in_the_future_or_naive_is_422(ca_server, phone):
    future = (dt.datetime.now(dt.UTC) + dt.timedelta(days=2)).isoformat()
    assert_refused(ca_server, "POST", f"/api/v1/certificates/{phone['serial']}/revoke", 422,
                   "invalidity_date is in the future",
                   json={"operation_id": "op-inv", "reason": "superseded", "invalidity_date": future})
    assert_refused(ca_server, "POST", f"/api/v1/certificates/{phone['serial']}/revoke", 422,
                   "invalidity_date must carry a time zone",
                   json={"operation_id": "op-inv2", "reason": "superseded",
                         "invalidity_date": "2025-01-01T00:00:00"})


# -- idempotency ------------------------------------------------------------------------------
def test_issue_operation_id_reused_with_other_content_is_409_and_same_content_replays(ca_server, card):
    op_issue = unique("op-issue")
    body = issue_body("phone-signature", op_issue, card_serial=card["serial"])
    first = _issue(ca_server, body)

    with store_unchanged(ca_server), ca_server.client() as client:
        again = client.post("/api/v1/certificates", json=body)
    assert again.status_code == 201, again.text
    assert again.json() == first

    other = {**body, "csr_pem": csr_pem(rsa.generate_private_key(65537, 2048))}
    problem = assert_refused(ca_server, "POST", "/api/v1/certificates", 409, op_issue, "already used",
                             json=other)
    assert problem["type"].endswith("/operation-conflict") and problem.get("field") == "operation_id"
    assert_refused(ca_server, "POST", "/api/v1/certificates", 409, op_issue,
                   json={**body, "profile": "phone-authentication", "person": None})
    # The same id for another kind of operation is a conflict too.
    assert_refused(ca_server, "POST", f"/api/v1/certificates/{first['serial']}/hold", 409, op_issue,
                   json={"operation_id": op_issue})

    with ca_server.client() as client:
        derived = client.get("/api/v1/certificates", params={"card_serial": card["serial"]}).json()
    assert [c["serial"] for c in derived] == [first["serial"]]


def test_revoke_operation_id_reused_with_other_content_is_409_and_same_content_replays(ca_server, phone):
    serial = phone["serial"]
    op_rev = unique("op-rev")
    first = _change(ca_server, serial, "revoke", op_rev, reason="superseded")
    assert first["status"] == "revoked" and first["reason"] == "superseded"

    # The same call again: the same answer, no second event, nothing written.
    with store_unchanged(ca_server), ca_server.client() as client:
        again = client.post(f"/api/v1/certificates/{serial}/revoke",
                            json={"operation_id": op_rev, "reason": "superseded"})
    assert again.status_code == 200 and again.json() == first

    # Even the replay of a keyCompromise-upgrade-able request replays rather than upgrades.
    assert_refused(ca_server, "POST", f"/api/v1/certificates/{serial}/revoke", 409, op_rev, "already used",
                   json={"operation_id": op_rev, "reason": "keyCompromise"})
    assert_refused(ca_server, "POST", f"/api/v1/certificates/{serial}/revoke", 409, op_rev,
                   json={"operation_id": op_rev, "reason": "superseded",
                         "invalidity_date": "2025-01-01T00:00:00Z"})
    assert_refused(ca_server, "POST", f"/api/v1/certificates/{serial}/hold", 409, op_rev,
                   json={"operation_id": op_rev})

    with ca_server.client() as client:
        history = client.get(f"/api/v1/certificates/{serial}").json()["history"]
    assert [(e["status"], e["reason"], e["operation_id"]) for e in history] == [
        ("good", None, phone["operation_id"]), ("revoked", "superseded", op_rev)]


def test_revoke_replay_after_a_later_change_still_answers_the_first_result(ca_server, phone):
    serial = phone["serial"]
    op_hold = unique("op-hold")
    first = _change(ca_server, serial, "hold", op_hold)
    _change(ca_server, serial, "release", unique("op-release"))
    with store_unchanged(ca_server), ca_server.client() as client:
        replay = client.post(f"/api/v1/certificates/{serial}/hold", json={"operation_id": op_hold})
    assert replay.status_code == 200 and replay.json() == first and first["status"] == "held"


@pytest.mark.parametrize("operation_id", ["", "has space", "a" * 129, "slash/inside", "ünïcode"])
def test_bad_operation_id_is_422(ca_server, phone, operation_id):
    assert_refused(ca_server, "POST", f"/api/v1/certificates/{phone['serial']}/hold", 422, "operation_id",
                   json={"operation_id": operation_id})


# -- HTTP-level refusals ----------------------------------------------------------------------
def test_oversized_body_is_413(ca_server):
    body = issue_body("card-authentication", "op-big")
    body["csr_pem"] = body["csr_pem"] + "A" * (64 * 1024 + 1)
    problem = assert_refused(ca_server, "POST", "/api/v1/certificates", 413, "65536 bytes", json=body)
    assert problem["type"].endswith("/body-too-large")


def test_oversized_chunked_body_is_413(ca_server):
    def chunks():
        for _ in range(20):
            yield b"x" * 8192

    assert_refused(ca_server, "POST", "/api/v1/certificates", 413, "65536 bytes", content=chunks(),
                   headers={"content-type": "application/json"})


def test_missing_bearer_is_401_with_www_authenticate(ca_server):
    with store_unchanged(ca_server), ca_server.client(authorised=False) as client:
        responses = [
            client.post("/api/v1/certificates", json=issue_body("card-authentication", "op-anon")),
            client.get("/api/v1/certificates/1234"),
            client.post("/api/v1/certificates", json=issue_body("card-authentication", "op-basic"),
                        headers={"Authorization": "Basic dXNlcjpwYXNz"}),
            client.post("/api/v1/certificates", json=issue_body("card-authentication", "op-empty"),
                        headers={"Authorization": "Bearer"}),
        ]
    for response in responses:
        assert_problem(response, 401, "missing bearer credential")
        assert response.headers["www-authenticate"].startswith("Bearer")


def test_wrong_bearer_is_401_with_www_authenticate(ca_server):
    with store_unchanged(ca_server), ca_server.client(authorised=False) as client:
        response = client.post("/api/v1/certificates", json=issue_body("card-authentication", "op-wrong"),
                               headers={"Authorization": f"Bearer {ca_server.token}x"})
    assert_problem(response, 401, "not accepted")
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert ca_server.token not in response.text


def test_unknown_route_is_404_problem(ca_server):
    for method, path in (("GET", "/nope"), ("POST", "/api/v2/certificates"),
                         ("GET", "/api/v1/certificates/1/x")):
        problem = assert_refused(ca_server, method, path, 404, "not found")
        assert problem["type"].endswith("/http-404")


def test_wrong_method_is_405_problem(ca_server, phone):
    assert_refused(ca_server, "DELETE", f"/api/v1/certificates/{phone['serial']}", 405, "method not allowed")


@pytest.mark.parametrize("content,words", [
    (b'{"operation_id": "x", "profile": ', ("json",)),
    (b"\xff not json, not even UTF-8", ("json",)),
    (b"[1, 2, 3]", ("body",)),
    (b"", ("body",)),
], ids=["truncated", "binary", "array", "empty"])
def test_malformed_json_body_is_422(ca_server, content, words):
    problem = assert_refused(ca_server, "POST", "/api/v1/certificates", 422, *words, content=content,
                             headers={"content-type": "application/json"})
    assert problem["type"].endswith("/invalid-request") and problem["errors"]


def test_unknown_and_missing_fields_are_422_naming_them(ca_server):
    body = {**issue_body("card-authentication", "op-extra"), "individual_number": "x"}
    assert_refused(ca_server, "POST", "/api/v1/certificates", 422, "individual_number", json=body)
    body = issue_body("card-authentication", "op-missing")
    del body["csr_pem"]
    assert_refused(ca_server, "POST", "/api/v1/certificates", 422, "body.csr_pem", "required", json=body)
    assert_refused(ca_server, "POST", "/api/v1/certificates", 422, "profile",
                   json={**issue_body("card-authentication", "op-prof"), "profile": "phone-banking"})


# -- CRL and CA certificate names -------------------------------------------------------------
@pytest.mark.parametrize("path,named", [
    ("/crl/nope.crl", "'nope'"), ("/crl/nope-delta.crl", "'nope'"), ("/crl/sign.txt", "'sign.txt'"),
    ("/crl/sign", "'sign'"), ("/crl/sign-ocsp.crl", "'sign-ocsp'"), ("/ca/nope.cer", "'nope'"),
    ("/ca/sign.der", "'sign.der'"), ("/crl/root-delta.crl", "root publishes no delta"),
])
def test_unknown_crl_or_ca_name_is_404_problem(ca_server, path, named):
    problem = assert_refused(ca_server, "GET", path, 404, named)
    assert problem["type"].endswith("/unknown-authority")


# -- OCSP -------------------------------------------------------------------------------------
def _ocsp_post(ca_server, der: bytes) -> ocsp.OCSPResponse:
    with store_unchanged(ca_server):
        response = httpx.post(f"{ca_server.url}/ocsp", content=der,
                              headers={"content-type": "application/ocsp-request"}, timeout=30)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/ocsp-response"
    return ocsp.load_der_ocsp_response(response.content)


def _issuer(ca_server, name: str) -> x509.Certificate:
    return x509.load_der_x509_certificate(httpx.get(f"{ca_server.url}/ca/{name}.cer").content)


def _cert_id_hashes(issuer: x509.Certificate, algorithm: str = "sha1") -> tuple[bytes, bytes]:
    parsed = asn1_x509.Certificate.load(issuer.public_bytes(serialization.Encoding.DER))
    key_bits = parsed.public_key["public_key"].contents[1:]
    return hashlib.new(algorithm, parsed.subject.dump()).digest(), hashlib.new(algorithm, key_bits).digest()


@pytest.mark.parametrize("garbage", [b"garbage", b"", b"\x30\x03\x02\x01\x01", os.urandom(600)],
                         ids=["text", "empty", "wrong-der", "random"])
def test_ocsp_garbage_post_is_malformed_request(ca_server, garbage):
    answer = _ocsp_post(ca_server, garbage)
    assert answer.response_status is ocsp.OCSPResponseStatus.MALFORMED_REQUEST


@pytest.mark.parametrize("path", ["/ocsp/this is not base64", "/ocsp/%%%%", "/ocsp/QUJD*REVG",
                                  "/ocsp/" + base64.b64encode(b"hello, not DER").decode()],
                         ids=["spaces", "percent", "star", "base64-of-garbage"])
def test_ocsp_get_with_a_bad_request_is_malformed_request(ca_server, path):
    with store_unchanged(ca_server):
        response = httpx.get(ca_server.url + path, timeout=30)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/ocsp-response"
    answer = ocsp.load_der_ocsp_response(response.content)
    assert answer.response_status is ocsp.OCSPResponseStatus.MALFORMED_REQUEST
    assert "cache-control" not in response.headers  # an error is not cached as an answer


def test_ocsp_oversized_post_is_refused_as_malformed(ca_server):
    with store_unchanged(ca_server):
        response = httpx.post(f"{ca_server.url}/ocsp", content=b"\x30" * (9 * 1024), timeout=30)
    assert response.status_code == 413
    answer = ocsp.load_der_ocsp_response(response.content)
    assert answer.response_status is ocsp.OCSPResponseStatus.MALFORMED_REQUEST


def test_ocsp_for_an_unknown_issuer_is_unauthorized(ca_server, phone):
    request = ocsp.OCSPRequestBuilder().add_certificate_by_hash(
        os.urandom(20), os.urandom(20), int(phone["serial"], 16), hashes.SHA1()).build()
    answer = _ocsp_post(ca_server, request.public_bytes(serialization.Encoding.DER))
    assert answer.response_status is ocsp.OCSPResponseStatus.UNAUTHORIZED

    # The root is a CA of this hierarchy, but not one this responder answers for.
    name_hash, key_hash = _cert_id_hashes(_issuer(ca_server, "root"))
    request = ocsp.OCSPRequestBuilder().add_certificate_by_hash(
        name_hash, key_hash, int(phone["serial"], 16), hashes.SHA1()).build()
    assert _ocsp_post(ca_server, request.public_bytes(serialization.Encoding.DER)).response_status is \
        ocsp.OCSPResponseStatus.UNAUTHORIZED


def test_ocsp_with_a_hash_algorithm_it_does_not_serve_is_unauthorized(ca_server, phone):
    issuer = _issuer(ca_server, "auth")
    name_hash, key_hash = _cert_id_hashes(issuer, "sha512")
    request = ocsp.OCSPRequestBuilder().add_certificate_by_hash(
        name_hash, key_hash, int(phone["serial"], 16), hashes.SHA512()).build()
    assert _ocsp_post(ca_server, request.public_bytes(serialization.Encoding.DER)).response_status is \
        ocsp.OCSPResponseStatus.UNAUTHORIZED


@pytest.mark.parametrize("algorithm", ["sha1", "sha256"])
def test_ocsp_with_nonce_for_an_unknown_serial_is_unknown_and_echoes_the_nonce(ca_server, phone, algorithm):
    issuer = _issuer(ca_server, "auth")
    name_hash, key_hash = _cert_id_hashes(issuer, algorithm)
    serial = int(_unknown_serial(phone["serial"]), 16)
    nonce = os.urandom(16)
    request = (
        ocsp.OCSPRequestBuilder()
        .add_certificate_by_hash(name_hash, key_hash, serial,
                                 hashes.SHA1() if algorithm == "sha1" else hashes.SHA256())
        .add_extension(x509.OCSPNonce(nonce), critical=False)
        .build()
    )
    answer = _ocsp_post(ca_server, request.public_bytes(serialization.Encoding.DER))
    assert answer.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL
    assert answer.certificate_status is ocsp.OCSPCertStatus.UNKNOWN
    assert answer.serial_number == serial
    assert (answer.issuer_name_hash, answer.issuer_key_hash) == (name_hash, key_hash)
    assert answer.hash_algorithm.name == algorithm
    assert answer.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce == nonce
    # Signed by the auth CA's delegated responder, which chains to the auth CA.
    signer = answer.certificates[0]
    signer.verify_directly_issued_by(issuer)
    signer.public_key().verify(answer.signature, answer.tbs_response_bytes,
                               *_verify_args(signer, answer))


def _verify_args(signer: x509.Certificate, answer: ocsp.OCSPResponse) -> tuple:
    from cryptography.hazmat.primitives.asymmetric import padding

    if isinstance(signer.public_key(), rsa.RSAPublicKey):
        return padding.PKCS1v15(), answer.signature_hash_algorithm
    return (ec.ECDSA(answer.signature_hash_algorithm),)


def test_ocsp_for_a_serial_of_the_other_issuing_ca_is_unknown(ca_server, card):
    # card is issued by the signature CA; asking the auth CA about it must not say good.
    name_hash, key_hash = _cert_id_hashes(_issuer(ca_server, "auth"))
    for with_nonce in (False, True):
        builder = ocsp.OCSPRequestBuilder().add_certificate_by_hash(
            name_hash, key_hash, int(card["serial"], 16), hashes.SHA1())
        if with_nonce:
            builder = builder.add_extension(x509.OCSPNonce(os.urandom(8)), critical=False)
        answer = _ocsp_post(ca_server, builder.build().public_bytes(serialization.Encoding.DER))
        assert answer.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL
        assert answer.certificate_status is ocsp.OCSPCertStatus.UNKNOWN, with_nonce

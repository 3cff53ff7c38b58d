"""Partitioned CRLs (ca_mock/crl/partitions.py): each certificate names its partition's CRL, a
partition's CRL is scoped to it by a critical issuingDistributionPoint, its delta follows it, one
status change re-publishes one partition, and a fully revoked partition stays under 1 MiB.

The independent judges are the same as for the whole-issuer CRLs: ``openssl verify -crl_check``
and pyhanko-certvalidator (CRL-only), each fed only what the CA publishes.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import random
import subprocess
from pathlib import Path

import aiohttp
import httpx
import pytest
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pyhanko_certvalidator import CertificateValidator, ValidationContext
from pyhanko_certvalidator.errors import RevokedError
from pyhanko_certvalidator.fetchers.aiohttp_fetchers import AIOHttpFetcherBackend
from pyhanko_certvalidator.policy_decl import CertRevTrustPolicy, RevocationCheckingPolicy, RevocationCheckingRule
from sqlalchemy import insert

from ca_mock.certificates.models import IssuedCertificate
from ca_mock.certificates.schemas import IssueRequest
from ca_mock.certificates.service import change_status, issue_certificate
from ca_mock.certificates.status_rules import StatusAction
from ca_mock.crl import partitions
from ca_mock.crl.entries import encode_entry
from ca_mock.crl.models import CertificatePartition, CRLPartition, PublishedCRL
from ca_mock.crl.service import current_crl, publish_all_due
from ca_mock.settings import CASettings
from tests.helpers import issue_body

SIZE = 4  # certificates per partition in these tests, so that a handful make several partitions
MiB = 1 << 20


def uris(cert: x509.Certificate, extension) -> list[str]:
    return [name.value for point in cert.extensions.get_extension_for_class(extension).value
            for name in point.full_name]


def load(issued: dict) -> x509.Certificate:
    return x509.load_pem_x509_certificate(issued["certificate_pem"].encode())


def idp_uri(crl: x509.CertificateRevocationList) -> tuple[bool, str, bool]:
    extension = crl.extensions.get_extension_for_class(x509.IssuingDistributionPoint)
    (name,) = extension.value.full_name
    return extension.critical, name.value, extension.value.only_contains_user_certs


def number(crl: x509.CertificateRevocationList) -> int:
    return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number


def listed(crl: x509.CertificateRevocationList) -> dict[str, x509.ReasonFlags]:
    return {format(entry.serial_number, "x"): entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
            for entry in crl}


# -- in-process, both databases --------------------------------------------------------------------

@pytest.fixture
def settings(ca_settings: CASettings) -> CASettings:
    return ca_settings.model_copy(update={"crl_partition_size": SIZE})


@pytest.fixture
def issued(store, settings, hierarchy) -> dict[str, list[dict]]:
    """One card signature certificate and 6 phone signature certificates (partitions 0, 1) of
    'sign'; one phone authentication certificate of 'auth' (its partition 0)."""
    card = issue_certificate(store, settings, IssueRequest(**issue_body("card-signature", "card")))
    phones = [issue_certificate(store, settings, IssueRequest(**issue_body(
        "phone-signature", f"phone-{i}", card_serial=card["serial"]))) for i in range(6)]
    auth = issue_certificate(store, settings, IssueRequest(**issue_body(
        "phone-authentication", "auth-0", card_serial=card["serial"])))
    return {"sign": [card, *phones], "auth": [auth]}


def test_each_certificate_names_its_partition(store, settings, issued):
    base = settings.public_url
    sign = issued["sign"]
    for i, result in enumerate(sign):  # sequential: the card is the first of 'sign', partition 0
        cert, partition = load(result), i // SIZE
        assert uris(cert, x509.CRLDistributionPoints) == [f"{base}/crl/sign-p{partition}.crl"]
        assert uris(cert, x509.FreshestCRL) == [f"{base}/crl/sign-p{partition}-delta.crl"]
        assert partitions.partition_of(store, result["serial"]) == partition
    auth = load(issued["auth"][0])
    assert uris(auth, x509.CRLDistributionPoints) == [f"{base}/crl/auth-p0.crl"]
    with store.sessions() as session:
        rows = session.query(CRLPartition.authority, CRLPartition.partition).order_by(
            CRLPartition.authority, CRLPartition.partition).all()
    assert [tuple(r) for r in rows] == [("auth", 0), ("sign", 0), ("sign", 1)]


def test_partition_crl_lists_its_own_revocations_with_its_idp(store, settings, hierarchy, issued):
    sign = issued["sign"]
    revoked = sign[5]  # partition 1
    change_status(store, settings, revoked["serial"], StatusAction.REVOKE, "r", "keyCompromise",
                  dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    issuer_key = hierarchy.get("sign").certificate.public_key()

    p1 = x509.load_der_x509_crl(current_crl(store, settings, "sign", "full", partition=1).der)
    p0 = x509.load_der_x509_crl(current_crl(store, settings, "sign", "full", partition=0).der)
    for index, crl in ((0, p0), (1, p1)):
        assert crl.is_signature_valid(issuer_key)
        assert idp_uri(crl) == (True, f"{settings.public_url}/crl/sign-p{index}.crl", True)
        assert uris(crl, x509.FreshestCRL) == [f"{settings.public_url}/crl/sign-p{index}-delta.crl"]
    assert listed(p1) == {revoked["serial"]: x509.ReasonFlags.key_compromise}
    assert listed(p0) == {}
    # The whole-issuer CRL (named by certificates issued before partitions) still lists everything.
    whole = x509.load_der_x509_crl(current_crl(store, settings, "sign", "full").der)
    assert revoked["serial"] in listed(whole)
    with pytest.raises(x509.ExtensionNotFound):
        whole.extensions.get_extension_for_class(x509.IssuingDistributionPoint)


def test_delta_lists_a_later_revocation_and_remove_from_crl_after_a_release(store, settings, issued):
    sign = issued["sign"]
    held, later = sign[4], sign[6]  # both in partition 1
    change_status(store, settings, held["serial"], StatusAction.HOLD, "h")
    base_full = x509.load_der_x509_crl(current_crl(store, settings, "sign", "full", partition=1).der)
    assert listed(base_full) == {held["serial"]: x509.ReasonFlags.certificate_hold}

    change_status(store, settings, held["serial"], StatusAction.RELEASE, "rel")
    change_status(store, settings, later["serial"], StatusAction.REVOKE, "r", "superseded")
    full = x509.load_der_x509_crl(current_crl(store, settings, "sign", "full", partition=1).der)
    delta = x509.load_der_x509_crl(current_crl(store, settings, "sign", "delta", partition=1).der)

    assert listed(full) == {later["serial"]: x509.ReasonFlags.superseded}
    assert listed(delta) == {held["serial"]: x509.ReasonFlags.remove_from_crl,
                             later["serial"]: x509.ReasonFlags.superseded}
    indicator = delta.extensions.get_extension_for_class(x509.DeltaCRLIndicator)
    assert indicator.critical and indicator.value.crl_number <= number(base_full) < number(full) == number(delta)
    # Same scope as its base: the identical IDP (RFC 5280 6.3.3 (b)(2)(i); openssl and pyHanko compare it).
    assert (delta.extensions.get_extension_for_class(x509.IssuingDistributionPoint)
            == full.extensions.get_extension_for_class(x509.IssuingDistributionPoint))
    # Partition 0's delta saw none of it.
    assert listed(x509.load_der_x509_crl(
        current_crl(store, settings, "sign", "delta", partition=0).der)) == {}


def test_only_changed_partitions_are_republished(store, settings, issued):
    first = publish_all_due(store, settings)
    assert {(p.authority, p.partition) for p in first if p.partition is not None} == {
        ("sign", 0), ("sign", 1), ("auth", 0)}
    assert [p for p in publish_all_due(store, settings) if p.partition is not None] == []  # idle round

    change_status(store, settings, issued["sign"][5]["serial"], StatusAction.REVOKE, "r", "keyCompromise")
    change_status(store, settings, issued["sign"][6]["serial"], StatusAction.HOLD, "h")
    again = [p for p in publish_all_due(store, settings) if p.partition is not None]
    assert [(p.authority, p.partition, p.full_entries) for p in again] == [("sign", 1, 2)]
    # Per-partition numbering: partition 1 moved on, partition 0 did not.
    with store.sessions() as session:
        numbers = {(r.authority, r.partition, r.kind): r.number
                   for r in session.query(PublishedCRL).where(PublishedCRL.partition.is_not(None))}
    assert numbers[("sign", 1, "full")] == numbers[("sign", 1, "delta")] == 2
    assert numbers[("sign", 0, "full")] == numbers[("auth", 0, "full")] == 1


def test_partitions_off_names_the_whole_issuer_crl(store, ca_settings, hierarchy):
    settings = ca_settings.model_copy(update={"crl_partition_size": 0})
    result = issue_certificate(store, settings, IssueRequest(**issue_body("card-signature", "card")))
    cert = load(result)
    assert uris(cert, x509.CRLDistributionPoints) == [f"{settings.public_url}/crl/sign.crl"]
    assert partitions.partition_of(store, result["serial"]) is None


def test_the_default_size_keeps_a_fully_revoked_partition_under_one_mib(store, ca_settings, hierarchy):
    """Worst case: every certificate of a default-size partition revoked, each entry as long as an
    entry can be (a 20-byte serial, GeneralizedTime dates, a reason and an invalidity date)."""
    size = CASettings.model_fields["crl_partition_size"].default
    worst_time = dt.datetime(2051, 1, 1, tzinfo=dt.UTC)  # from 2050 on, GeneralizedTime: longer
    rng = random.Random(5)
    serials = {(1 << 158) | rng.getrandbits(158) for _ in range(size)}
    assert len(serials) == size
    entries = {s: encode_entry(s, worst_time, "cessationOfOperation", worst_time) for s in serials}
    assert max(map(len, entries.values())) == 81  # the invalidity date is always GeneralizedTime
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    rows = [{"serial": format(s, "x"), "authority": "sign", "profile": "phone-signature", "card_serial": None,
             "not_before": now, "not_after": now + dt.timedelta(days=365), "der": b"", "status": "revoked",
             "reason": "cessationOfOperation", "revoked_at": worst_time, "invalidity_date": worst_time,
             "status_changed_at": now, "crl_entry_der": entries[s]} for s in serials]
    with store.engine.begin() as connection:
        connection.execute(insert(IssuedCertificate.__table__), rows)
        connection.execute(insert(CertificatePartition.__table__),
                           [{"serial": r["serial"], "authority": "sign", "partition": 7} for r in rows])
        connection.execute(insert(CRLPartition.__table__), [{"authority": "sign", "partition": 7, "crl_number": 0,
                                                            "dirty": True}])
    settings = ca_settings  # the defaults
    full = current_crl(store, settings, "sign", "full", partition=7)
    delta = current_crl(store, settings, "sign", "delta", partition=7)  # all changed just now
    assert full.entries == delta.entries == size
    assert len(full.der) < MiB and len(delta.der) < MiB, (len(full.der), len(delta.der))
    crl = x509.load_der_x509_crl(full.der)
    assert len(crl) == size and crl.is_signature_valid(hierarchy.get("sign").certificate.public_key())


# -- the independent judges, over HTTP -----------------------------------------------------------

@pytest.fixture
def small_partitions(monkeypatch):
    """The CA server process (and the in-process settings) get partitions of SIZE certificates."""
    monkeypatch.setenv("JPKI_CA_CRL_PARTITION_SIZE", str(SIZE))


@pytest.fixture
def served(small_partitions, ca_server, tmp_path: Path) -> dict:
    """A card and 6 phone signature certificates over the API: partitions 0 (card + 3) and 1 (3)."""
    with ca_server.client(admin=True) as client:  # the card needs the administrator credential
        def issue(profile, op, **kw):
            response = client.post("/api/v1/certificates", json=issue_body(profile, op, **kw))
            assert response.status_code == 201, response.text
            return response.json()
        card = issue("card-signature", "card")
        phones = [issue("phone-signature", f"phone-{i}", card_serial=card["serial"]) for i in range(6)]
    files = {}
    for name in ("root", "sign"):
        der = httpx.get(f"{ca_server.url}/ca/{name}.cer").content
        files[name] = tmp_path / f"{name}.pem"
        files[name].write_bytes(x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM))
    for i, result in enumerate([card, *phones]):
        files[i] = tmp_path / f"cert-{i}.pem"
        files[i].write_text(result["certificate_pem"])
    return {"certs": [card, *phones], "files": files, "root_der": httpx.get(f"{ca_server.url}/ca/root.cer").content}


def _change(ca_server, serial: str, action: str, op: str, **body) -> None:
    with ca_server.client() as client:
        response = client.post(f"/api/v1/certificates/{serial}/{action}", json={"operation_id": op, **body})
    assert response.status_code == 200, response.text


def _fetch_crl(url: str, path: Path) -> Path:
    """A CRL fetched from a URL written in a certificate, saved as PEM for openssl."""
    response = httpx.get(url, timeout=30)
    assert response.status_code == 200 and response.headers["content-type"] == "application/pkix-crl", url
    path.write_bytes(x509.load_der_x509_crl(response.content).public_bytes(serialization.Encoding.PEM))
    return path


def openssl(*args) -> subprocess.CompletedProcess:
    return subprocess.run(["openssl", *map(str, args)], capture_output=True, text=True, timeout=60)


@pytest.mark.e2e
def test_openssl_judges_partition_crls(served, ca_server, tmp_path):
    certs, files = served["certs"], served["files"]
    revoked = 5  # partition 1; 4 and 6 are its unrevoked neighbours, 1 is in partition 0
    _change(ca_server, certs[revoked]["serial"], "revoke", "r", reason="keyCompromise")
    (p1_url,) = uris(load(certs[revoked]), x509.CRLDistributionPoints)
    assert p1_url.endswith("/crl/sign-p1.crl")
    p1 = _fetch_crl(p1_url, tmp_path / "p1.crl.pem")
    p0 = _fetch_crl(uris(load(certs[1]), x509.CRLDistributionPoints)[0], tmp_path / "p0.crl.pem")
    chain = ["-CAfile", files["root"], "-untrusted", files["sign"]]

    refused = openssl("verify", "-crl_check", *chain, "-CRLfile", p1, files[revoked])
    assert refused.returncode != 0 and "error 23" in refused.stdout + refused.stderr, refused.stdout + refused.stderr
    for neighbour in (4, 6):
        ok = openssl("verify", "-crl_check", *chain, "-CRLfile", p1, files[neighbour])
        assert ok.returncode == 0 and ": OK" in ok.stdout, ok.stdout + ok.stderr

    # IDP mismatch: partition 1's CRL is not about partition 0's certificates ("error 44 ... different
    # CRL scope"), and openssl accepts them with their own partition's CRL only.
    mismatch = openssl("verify", "-crl_check", *chain, "-CRLfile", p1, files[1])
    said = mismatch.stdout + mismatch.stderr
    assert mismatch.returncode != 0 and "error 44" in said and "different CRL scope" in said, said
    own = openssl("verify", "-crl_check", *chain, "-CRLfile", p0, files[1])
    assert own.returncode == 0, own.stdout + own.stderr
    # Given both partitions' CRLs, openssl picks each certificate's by its IDP.
    both = ["-CRLfile", p0, "-CRLfile", p1]
    assert openssl("verify", "-crl_check", *chain, *both, files[0], files[6]).returncode == 0
    picked = openssl("verify", "-crl_check", *chain, *both, files[revoked])
    assert picked.returncode != 0 and "error 23" in picked.stdout + picked.stderr

    # The partition's delta, as openssl prints it: same IDP, delta indicator, the revocation.
    delta = _fetch_crl(uris(load(certs[revoked]), x509.FreshestCRL)[0], tmp_path / "p1-delta.crl.pem")
    text = openssl("crl", "-in", delta, "-noout", "-text", "-CAfile", files["sign"])
    assert text.returncode == 0 and "verify OK" in text.stdout + text.stderr, text.stderr
    assert "Delta CRL Indicator: critical" in text.stdout
    assert "Issuing Distribution Point: critical" in text.stdout and p1_url in text.stdout
    assert certs[revoked]["serial"].upper() in text.stdout.replace(":", "").upper()
    # -use_deltas: openssl applies the delta to its base (same IDP required).
    with_delta = openssl("verify", "-crl_check", "-use_deltas", *chain, "-CRLfile", p1, "-CRLfile", delta,
                         files[revoked])
    assert "error 23" in with_delta.stdout + with_delta.stderr, with_delta.stdout + with_delta.stderr


CRL_ONLY = CertRevTrustPolicy(RevocationCheckingPolicy(RevocationCheckingRule.CRL_REQUIRED,
                                                       RevocationCheckingRule.CHECK_IF_DECLARED))


async def _validate(cert_pem: str, root_der: bytes) -> tuple[Exception | None, set[str]]:
    fetched: set[str] = set()

    async def on_request_start(_session, _context, params) -> None:
        fetched.add(params.url.path)

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_request_start)
    async with aiohttp.ClientSession(trace_configs=[trace]) as session:
        vc = ValidationContext(trust_roots=[asn1_x509.Certificate.load(root_der)], allow_fetching=True,
                               fetcher_backend=AIOHttpFetcherBackend(session), revinfo_policy=CRL_ONLY)
        try:
            cert = asn1_x509.Certificate.load(load({"certificate_pem": cert_pem}).public_bytes(
                serialization.Encoding.DER))
            try:
                await CertificateValidator(cert, validation_context=vc).async_validate_usage(
                    {"digital_signature", "non_repudiation"})
                return None, fetched
            except Exception as exc:
                return exc, fetched
        finally:
            await vc.aclose()


def validate(cert: dict, root_der: bytes) -> tuple[Exception | None, set[str]]:
    return asyncio.run(_validate(cert["certificate_pem"], root_der))


@pytest.mark.e2e
def test_pyhanko_certvalidator_judges_partition_crls(served, ca_server):
    certs, root_der = served["certs"], served["root_der"]
    _change(ca_server, certs[5]["serial"], "revoke", "r", reason="keyCompromise")

    error, fetched = validate(certs[5], root_der)
    assert isinstance(error, RevokedError) and error.reason.native == "key_compromise", (error, fetched)
    assert {"/crl/sign-p1.crl", "/crl/sign-p1-delta.crl"} <= fetched and "/crl/sign.crl" not in fetched

    for neighbour in (4, 1):  # same partition; the other partition
        error, fetched = validate(certs[neighbour], root_der)
        assert error is None, (error, fetched)
        assert f"/crl/sign-p{neighbour // SIZE}.crl" in fetched and "/crl/sign.crl" not in fetched

    # Hold, then release: the full CRL drops it and the delta says removeFromCRL; pyHanko uses both.
    _change(ca_server, certs[6]["serial"], "hold", "h")
    error, _ = validate(certs[6], root_der)
    assert isinstance(error, RevokedError) and error.reason.native == "certificate_hold", error
    _change(ca_server, certs[6]["serial"], "release", "rel")
    error, fetched = validate(certs[6], root_der)
    assert error is None and "/crl/sign-p1-delta.crl" in fetched, (error, fetched)

    # Served like the issuer's CRLs: an ETag of its own numbering, 304, and 404 for a partition
    # that no certificate was given (or a name that is no partition).
    response = httpx.get(f"{ca_server.url}/crl/sign-p1.crl")
    etag = response.headers["etag"]
    assert response.status_code == 200 and etag.startswith('"sign-p1-full-'), etag
    assert httpx.get(f"{ca_server.url}/crl/sign-p1.crl", headers={"If-None-Match": etag}).status_code == 304
    for missing in ("sign-p9.crl", "sign-p9-delta.crl", "root-p0.crl", "sign-p01.crl"):
        answer = httpx.get(f"{ca_server.url}/crl/{missing}")
        assert answer.status_code == 404 and answer.headers["content-type"] == "application/problem+json", missing

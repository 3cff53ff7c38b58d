"""The mock CA judged by pyHanko and its certificate validator (pyhanko-certvalidator).

A real ``jpki-ca serve`` process answers over HTTP, one per backend for the module (each test issues
certificates of its own). The validator gets the root certificate as
its only trust anchor and nothing else: it fetches the issuing CA from the caIssuers URL and
the OCSP answers and CRLs from the URLs written in the certificates, in hard-fail mode (a
declared source of revocation information that cannot be used fails the validation).

Every HTTP request the validator makes is recorded by an aiohttp trace hook on a session the
test owns, so each test can say which published object was actually used.
"""
from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import httpx
import pytest
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pyhanko.keys import load_private_key_from_pemder_data
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign import fields, signers
from pyhanko.sign.general import SigningError
from pyhanko.sign.validation.dss import DocumentSecurityStore
from pyhanko_certvalidator import CertificateValidator, ValidationContext
from pyhanko_certvalidator.errors import InvalidCertificateError, RevokedError
from pyhanko_certvalidator.fetchers.aiohttp_fetchers import AIOHttpFetcherBackend
from pyhanko_certvalidator.policy_decl import (
    CertRevTrustPolicy,
    RevocationCheckingPolicy,
    RevocationCheckingRule,
)
from pyhanko_certvalidator.registry import SimpleCertificateStore

from tests.helpers import PERSON, issue_body
from tests.pdf_fixtures import one_page_pdf, pyhanko_ltv, pyhanko_now, validation_context_now
from tests.shared_ca import _fresh_keys_per_test, module_ca_server, unique  # noqa: F401 (a fixture)

pytestmark = pytest.mark.e2e

SIGNATURE_USAGE = {"digital_signature", "non_repudiation"}
AUTHENTICATION_USAGE = {"digital_signature"}

# Revocation policies. "hard-fail" is certvalidator's legacy mode: OCSP first, the CRL only when
# OCSP does not say good. The two ETSI rules force one source for the end-entity certificate and
# never consult the other. The issuing CAs declare only a CRL (of the root), checked in every mode.
MODES = {
    "hard-fail": None,
    "ocsp-only": CertRevTrustPolicy(RevocationCheckingPolicy(RevocationCheckingRule.OCSP_REQUIRED,
                                                             RevocationCheckingRule.CHECK_IF_DECLARED)),
    "crl-only": CertRevTrustPolicy(RevocationCheckingPolicy(RevocationCheckingRule.CRL_REQUIRED,
                                                            RevocationCheckingRule.CHECK_IF_DECLARED)),
}


@dataclass
class Outcome:
    requests: list[tuple[str, str]] = field(default_factory=list)  # (method, URL path), in order
    path: list[str] | None = None  # subject CNs, trust anchor first, when the validation succeeded
    error: Exception | None = None
    ocsp_statuses: list[str] = field(default_factory=list)  # certStatus of each OCSP answer used

    def fetched(self, method: str = "GET") -> set[str]:
        return {path for m, path in self.requests if m == method}

    def explain(self) -> str:
        return f"error={self.error!r} requests={self.requests}"


def _der(pem: str) -> bytes:
    return x509.load_pem_x509_certificate(pem.encode()).public_bytes(serialization.Encoding.DER)


def _crl_paths(pem: str) -> tuple[str, str]:
    """URL paths of the CRL DP and Freshest CRL a certificate names: its CRL partition's full and
    delta CRL (/crl/sign-p0.crl, /crl/sign-p0-delta.crl; ca_mock/crl/partitions.py)."""
    cert = x509.load_pem_x509_certificate(pem.encode())
    (full,), (delta,) = ([httpx.URL(name.value).path for point in cert.extensions.get_extension_for_class(kind).value
                          for name in point.full_name] for kind in (x509.CRLDistributionPoints, x509.FreshestCRL))
    return full, delta


def _asn1(pem_or_der: str | bytes) -> asn1_x509.Certificate:
    return asn1_x509.Certificate.load(_der(pem_or_der) if isinstance(pem_or_der, str) else pem_or_der)


async def _validate(cert_pem: str, root_der: bytes, key_usage: set[str], mode: str,
                    intermediates: list[bytes], extended_key_usage: set[str] | None) -> Outcome:
    outcome = Outcome()

    async def on_request_start(_session, _context, params: aiohttp.TraceRequestStartParams) -> None:
        outcome.requests.append((params.method, params.url.path))

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_request_start)
    async with aiohttp.ClientSession(trace_configs=[trace]) as session:
        policy = MODES[mode]
        options = {"revinfo_policy": policy} if policy else {"revocation_mode": "hard-fail"}
        vc = ValidationContext(trust_roots=[asn1_x509.Certificate.load(root_der)], allow_fetching=True,
                               fetcher_backend=AIOHttpFetcherBackend(session), **options)
        try:
            validator = CertificateValidator(
                _asn1(cert_pem), intermediate_certs=[asn1_x509.Certificate.load(d) for d in intermediates],
                validation_context=vc,
            )
            try:
                path = await validator.async_validate_usage(key_usage, extended_key_usage)
                outcome.path = [cert.subject.native["common_name"] for cert in path]
            except Exception as exc:  # the tests judge the exception itself
                outcome.error = exc
            outcome.ocsp_statuses = [
                response["tbs_response_data"]["responses"][0]["cert_status"].name
                for response in (o["response_bytes"]["response"].parsed for o in vc.ocsps)
            ]
        finally:
            await vc.aclose()  # closes nothing it does not own; the session closes below
    return outcome


def validate(cert_pem: str, root_der: bytes, key_usage: set[str] = SIGNATURE_USAGE, mode: str = "hard-fail",
             intermediates: list[bytes] = (), extended_key_usage: set[str] | None = None) -> Outcome:
    return asyncio.run(_validate(cert_pem, root_der, key_usage, mode, list(intermediates),
                                 extended_key_usage))


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def ca_server(request, tmp_path_factory):
    """``jpki-ca serve`` on a store of its own, once per backend for the module (conftest's is once per
    test): each test judges certificates it issued itself, under operation ids no other test uses."""
    with module_ca_server(request.param, tmp_path_factory.mktemp(f"pyhanko-{request.param}")) as running:
        yield running


@pytest.fixture
def root_der(ca_server) -> bytes:
    """The trust anchor, taken from the CA as a relying party would once, out of band."""
    response = httpx.get(f"{ca_server.url}/ca/root.cer")
    assert response.status_code == 200
    return response.content


def _issue(client: httpx.Client, profile: str, op: str, **kw) -> dict:
    response = client.post("/api/v1/certificates", json=issue_body(profile, unique(op), **kw))
    assert response.status_code == 201, response.text
    return response.json()


def _change(ca_server, serial: str, action: str, op: str, admin: bool = False, **body) -> None:
    with ca_server.client(admin=admin) as client:
        response = client.post(f"/api/v1/certificates/{serial}/{action}",
                               json={"operation_id": unique(op), **body})
    assert response.status_code == 200, response.text


@pytest.fixture
def phone(ca_server) -> dict[str, dict]:
    """A card signature certificate and the two phone certificates derived from it."""
    with ca_server.client(admin=True) as admin:  # card certificates need the administrator credential
        card = _issue(admin, "card-signature", "card")
    with ca_server.client() as client:
        return {
            "card": card,
            "sign": _issue(client, "phone-signature", "phone-sign", card_serial=card["serial"]),
            "auth": _issue(client, "phone-authentication", "phone-auth", card_serial=card["serial"]),
        }


# -- good certificates --------------------------------------------------------------------------

def test_good_phone_signature_validates_from_the_root_alone(ca_server, root_der, phone):
    outcome = validate(phone["sign"]["certificate_pem"], root_der, SIGNATURE_USAGE)

    assert outcome.error is None, outcome.explain()
    assert outcome.path is not None and len(outcome.path) == 3
    assert outcome.path[:2] == ["JPKI Mock Root CA", "JPKI Mock Signature CA"]
    # The issuing CA came from the caIssuers URL, its status from the root's CRL (its CRL DP),
    # the leaf's from the OCSP responder (POST); a good OCSP answer makes the leaf's CRL moot.
    assert "/ca/sign.cer" in outcome.fetched()
    assert "/crl/root.crl" in outcome.fetched()
    assert outcome.fetched("POST") == {"/ocsp"}
    assert outcome.ocsp_statuses == ["good"]
    assert _crl_paths(phone["sign"]["certificate_pem"])[0] not in outcome.fetched()


def test_an_intermediate_given_by_the_caller_is_not_fetched(ca_server, root_der, phone):
    sign_ca = httpx.get(f"{ca_server.url}/ca/sign.cer").content
    outcome = validate(phone["sign"]["certificate_pem"], root_der, SIGNATURE_USAGE, intermediates=[sign_ca])

    assert outcome.error is None, outcome.explain()
    assert outcome.path is not None and outcome.path[1] == "JPKI Mock Signature CA"
    assert "/ca/sign.cer" not in outcome.fetched()
    assert outcome.ocsp_statuses == ["good"]


@pytest.mark.parametrize("mode", list(MODES))
def test_good_phone_signature_validates_in_every_mode(ca_server, root_der, phone, mode):
    outcome = validate(phone["sign"]["certificate_pem"], root_der, SIGNATURE_USAGE, mode=mode)

    assert outcome.error is None, outcome.explain()
    if mode == "crl-only":
        # The leaf's full CRL and the delta CRL its Freshest CRL extension names; no OCSP at all.
        assert set(_crl_paths(phone["sign"]["certificate_pem"])) <= outcome.fetched()
        assert outcome.fetched("POST") == set() and outcome.ocsp_statuses == []
    else:
        assert outcome.fetched("POST") == {"/ocsp"} and outcome.ocsp_statuses == ["good"]
        assert _crl_paths(phone["sign"]["certificate_pem"])[0] not in outcome.fetched()


def test_phone_authentication_validates_for_digital_signature_and_client_auth(ca_server, root_der, phone):
    pem = phone["auth"]["certificate_pem"]
    outcome = validate(pem, root_der, AUTHENTICATION_USAGE, extended_key_usage={"client_auth"})

    assert outcome.error is None, outcome.explain()
    assert outcome.path is not None
    assert outcome.path[:2] == ["JPKI Mock Root CA", "JPKI Mock User Authentication CA"]
    assert "/ca/auth.cer" in outcome.fetched() and outcome.ocsp_statuses == ["good"]

    # An authentication certificate is no signature certificate: no nonRepudiation.
    refused = validate(pem, root_der, SIGNATURE_USAGE)
    assert isinstance(refused.error, InvalidCertificateError), refused.explain()
    assert str(refused.error).endswith("not valid for the purpose of non repudiation")


# -- revoked, held, released ------------------------------------------------------------------

@pytest.mark.parametrize("mode", list(MODES))
def test_revoked_phone_signature_fails_with_key_compromise(ca_server, root_der, phone, mode):
    _change(ca_server, phone["sign"]["serial"], "revoke", "revoke-1", reason="keyCompromise")

    outcome = validate(phone["sign"]["certificate_pem"], root_der, SIGNATURE_USAGE, mode=mode)

    assert isinstance(outcome.error, RevokedError), outcome.explain()
    assert outcome.error.reason.native == "key_compromise"
    assert "compromised key" in str(outcome.error)
    if mode == "crl-only":
        assert str(outcome.error).startswith("CRL indicates")
        assert _crl_paths(phone["sign"]["certificate_pem"])[0] in outcome.fetched()
        assert outcome.fetched("POST") == set()
    else:
        assert str(outcome.error).startswith("OCSP response indicates")
        assert outcome.ocsp_statuses == ["revoked"]
        assert _crl_paths(phone["sign"]["certificate_pem"])[0] not in outcome.fetched()


@pytest.mark.parametrize("mode", list(MODES))
def test_held_fails_as_revoked_with_certificate_hold_and_release_restores(ca_server, root_der, phone, mode):
    serial, pem = phone["sign"]["serial"], phone["sign"]["certificate_pem"]
    _change(ca_server, serial, "hold", "hold-1")

    held = validate(pem, root_der, SIGNATURE_USAGE, mode=mode)
    assert isinstance(held.error, RevokedError), held.explain()
    assert held.error.reason.native == "certificate_hold"
    assert str(held.error).startswith("CRL indicates" if mode == "crl-only" else "OCSP response indicates")

    _change(ca_server, serial, "release", "release-1")

    released = validate(pem, root_der, SIGNATURE_USAGE, mode=mode)
    assert released.error is None, released.explain()
    if mode == "crl-only":
        # The delta CRL now carries removeFromCRL for it, the full CRL no longer lists it.
        assert _crl_paths(pem)[1] in released.fetched()
    else:
        assert released.ocsp_statuses == ["good"]


@pytest.mark.parametrize("mode", ["hard-fail", "crl-only"])
def test_phone_authentication_hold_and_release(ca_server, root_der, phone, mode):
    serial, pem = phone["auth"]["serial"], phone["auth"]["certificate_pem"]
    _change(ca_server, serial, "hold", "hold-auth")
    held = validate(pem, root_der, AUTHENTICATION_USAGE, mode=mode)
    assert isinstance(held.error, RevokedError), held.explain()
    assert held.error.reason.native == "certificate_hold"

    _change(ca_server, serial, "release", "release-auth")
    released = validate(pem, root_der, AUTHENTICATION_USAGE, mode=mode)
    assert released.error is None, released.explain()
    assert (_crl_paths(pem)[0] in released.fetched()) == (mode == "crl-only")


def test_revoking_one_certificate_leaves_its_sibling_valid(ca_server, root_der, phone):
    _change(ca_server, phone["sign"]["serial"], "revoke", "revoke-sign", reason="keyCompromise")

    sibling = validate(phone["auth"]["certificate_pem"], root_der, AUTHENTICATION_USAGE, mode="crl-only")
    assert sibling.error is None, sibling.explain()
    card = validate(phone["card"]["certificate_pem"], root_der, SIGNATURE_USAGE)
    assert card.error is None, card.explain()


def test_full_and_delta_crl_fetched_together_right_after_a_change_both_show_it(ca_server, phone):
    """pyHanko fetches a certificate's CRL and its delta CRL in parallel (see the crl-only mode
    above). Both must reflect a status change that committed before either request was sent, and
    they must be one publication (same CRL number), or a released certificate stays held."""
    serial = phone["sign"]["serial"]
    number = int(serial, 16)
    for round_ in range(8):
        action = "hold" if round_ % 2 == 0 else "release"
        _change(ca_server, serial, action, f"{action}-{round_}")
        with ThreadPoolExecutor(2) as pool:
            full, delta = (x509.load_der_x509_crl(r.content) for r in pool.map(
                lambda path: httpx.get(f"{ca_server.url}{path}", timeout=30),
                ["/crl/sign.crl", "/crl/sign-delta.crl"]))
        crl_numbers = [c.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
                       for c in (full, delta)]
        assert crl_numbers[0] == crl_numbers[1], f"round {round_} ({action}): numbers {crl_numbers}"
        in_full = full.get_revoked_certificate_by_serial_number(number)
        in_delta = delta.get_revoked_certificate_by_serial_number(number)
        assert in_delta is not None, f"round {round_} ({action}): not in the delta CRL"
        delta_reason = in_delta.extensions.get_extension_for_class(x509.CRLReason).value.reason
        if action == "hold":
            assert in_full is not None, f"round {round_}: held certificate missing from the full CRL"
            assert delta_reason is x509.ReasonFlags.certificate_hold
        else:
            assert in_full is None, f"round {round_}: released certificate still in the full CRL"
            assert delta_reason is x509.ReasonFlags.remove_from_crl, f"round {round_}: {delta_reason}"


# -- a signed PDF -------------------------------------------------------------------------------

CARD_PASSWORD = "ABC123"


def _make_card(ca_server, tmp_path: Path) -> dict:
    """A card from ``jpki-ca card issue``, the municipal-office step, on the server's store."""
    out = tmp_path / "card.json"
    env = {**os.environ, "JPKI_CA_DATA_DIR": str(ca_server.settings.data_dir),
           "JPKI_CA_DATABASE_URL": ca_server.settings.resolved_database_url(),
           "JPKI_CARD_PASSWORD": CARD_PASSWORD, "JPKI_CARD_PIN": "1234"}
    result = subprocess.run(
        [sys.executable, "-m", "ca_mock", "card", "issue", "--out", str(out), "--name", PERSON["name"],
         "--birth", PERSON["date_of_birth"], "--gender", PERSON["gender"], "--address", PERSON["address"]],
        env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(out.read_text())


class CountingSigner(signers.SimpleSigner):
    """Counts the real (non-dry-run) uses of the private key."""

    real_signatures = 0

    async def async_sign_raw(self, data, digest_algorithm, dry_run=False):
        if not dry_run:
            self.real_signatures += 1
        return await super().async_sign_raw(data, digest_algorithm, dry_run)


async def _sign(signer: signers.Signer, root_der: bytes) -> bytes:
    vc = validation_context_now(root_der)
    try:
        metadata = signers.PdfSignatureMetadata(
            field_name="Signature1", subfilter=fields.SigSeedSubFilter.PADES,
            embed_validation_info=True, validation_context=vc,
        )
        signed = await signers.async_sign_pdf(IncrementalPdfFileWriter(io.BytesIO(one_page_pdf())), metadata,
                                              signer=signer)
        return signed.getvalue()
    finally:
        await vc.aclose()


def test_pades_signature_with_the_card_key_round_trips_and_revocation_stops_signing(
        ca_server, root_der, tmp_path):
    card = _make_card(ca_server, tmp_path)
    certificate_pem = card["signature"]["certificate_pem"]
    key = load_private_key_from_pemder_data(card["signature"]["private_key_pem"].encode(),
                                            CARD_PASSWORD.encode())
    chain = SimpleCertificateStore.from_certs([_asn1(card["chain"]["sign"]), _asn1(card["chain"]["root"])])
    signer = CountingSigner(signing_cert=_asn1(certificate_pem), signing_key=key, cert_registry=chain)

    pdf = asyncio.run(_sign(signer, root_der))
    assert signer.real_signatures == 1

    # The revocation information pyHanko fetched is embedded (PAdES B-LT style DSS).
    dss = DocumentSecurityStore.read_dss(PdfFileReader(io.BytesIO(pdf)))
    assert dss.ocsps and dss.crls

    status = pyhanko_now(pdf, root_der)
    assert status.bottom_line is True, status.pretty_print_details()
    assert status.intact and status.valid and status.trusted and not status.revoked
    assert status.signing_cert.dump() == _der(certificate_pem)
    # Revocation information embedded but no signature timestamp: B-B, not B-LT. pyHanko's
    # long-term validation (tests/test_pdf_ltv.py judges the phone's B-LT signatures with it)
    # wants the timestamp before anything else.
    long_term = pyhanko_ltv(pdf, root_der)
    assert long_term.indication == "SIG_CONSTRAINTS_FAILURE" and not long_term.timestamp_passed, long_term.explain()

    _change(ca_server, card["signature"]["serial"], "revoke", "card-revoked", admin=True, reason="keyCompromise")

    # Signing with a revoked certificate is refused before the key is used.
    signer.real_signatures = 0
    with pytest.raises(SigningError) as refused:
        asyncio.run(_sign(signer, root_der))
    assert isinstance(refused.value.__cause__, RevokedError)
    assert refused.value.__cause__.reason.native == "key_compromise"
    assert signer.real_signatures == 0

    # And the document signed before is now judged against the current status: revoked.
    after = pyhanko_now(pdf, root_der)
    assert after.bottom_line is False and after.revoked
    assert after.revocation_details.revocation_reason.native == "key_compromise"

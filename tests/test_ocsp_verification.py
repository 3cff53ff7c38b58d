"""The service believes a certificate status only from an OCSP answer it has verified (DESIGN.md 8;
RFC 6960 3.2 and 4.2.2.2; jpki_service/adapters/ocsp_verification.py).

The CA's certificates name an OCSP URL that is a small real HTTP server of this test: it passes the
service's requests to the real ``jpki-ca serve`` (the genuine answers), or answers with an answer
forged with cryptography's OCSPResponseBuilder: a replayed genuine one, one signed by a key of the
hierarchy that is no responder for the issuing CA, a stale one, one about another issuer's
certificate, one with another nonce or none. Each is refused with ``503 status-unverified`` and
changes nothing in the service's lifecycle tables.
"""
from __future__ import annotations

import datetime as dt
import secrets
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from ca_mock.authorities.service import initialise, load_hierarchy
from ca_mock.certificates.service import change_status
from ca_mock.certificates.status_rules import StatusAction
from ca_mock.db import migrate
from ca_mock.settings import CASettings
from jpki_common.owner_proof import proof_message, sign_message
from jpki_common.store import Store
from jpki_service.adapters.ocsp_verification import OCSPAnswerRefused, OCSPFreshness, ocsp_question, verify_ocsp_answer
from tests.conftest import RunningCA, free_port, start_process, start_service, stop_process
from tests.service_helpers import PhoneForTests, make_card, proof_for, read, register, register_body
from tests.test_service_flows import wait_for
from tests.test_service_proofs import assert_problem, snapshot

pytestmark = pytest.mark.e2e

Forger = Callable[[ocsp.OCSPRequest], bytes]


# -- the OCSP URL in every certificate: a real HTTP server in front of the real CA ------------------

@dataclass
class OCSPStub:
    """Passes requests to the real CA, remembering its answers; or answers with ``forge``'s answer."""

    ca_url: str
    forge: Forger | None = None
    genuine: dict[int, list[bytes]] = field(default_factory=dict)  # serial -> the CA's answers, oldest first

    def answer(self, request_der: bytes) -> bytes:
        request = ocsp.load_der_ocsp_request(request_der)
        if self.forge is not None:
            return self.forge(request)
        der = httpx.post(f"{self.ca_url}/ocsp", content=request_der,
                         headers={"content-type": "application/ocsp-request"}, timeout=30).content
        self.genuine.setdefault(request.serial_number, []).append(der)
        return der


def _serve(stub: OCSPStub, port: int) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            answer = stub.answer(body)
            self.send_response(200)
            self.send_header("content-type", "application/ocsp-response")
            self.send_header("content-length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@dataclass
class World:
    ca: RunningCA
    stub: OCSPStub
    service_url: str
    service_database_url: str

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.service_url, timeout=60)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Iterator[World]:
    """The CA (its certificates point at the stub), the stub, and ``jpki-service serve``, once per module."""
    tmp_path = tmp_path_factory.mktemp("ocsp")
    stub_port, ca_port = free_port(), free_port()
    settings = CASettings(data_dir=tmp_path / "ca", database_url=f"sqlite:///{tmp_path / 'ca.sqlite3'}",
                          public_url=f"http://127.0.0.1:{stub_port}")
    store = Store(settings.resolved_database_url())
    migrate(store.url)
    initialise(store, settings)
    ca_url = f"http://127.0.0.1:{ca_port}"
    env = {"JPKI_CA_DATA_DIR": str(settings.data_dir),
           "JPKI_CA_DATABASE_URL": settings.resolved_database_url()}
    process = start_process([sys.executable, "-m", "ca_mock", "serve", "--port", str(ca_port)], env,
                            f"{ca_url}/healthz", tmp_path / "ca-server.log")
    ca = RunningCA(ca_url, settings.resolved_api_token() or "", settings, store, process)
    stub = OCSPStub(ca_url)
    server = _serve(stub, stub_port)
    service_database_url = f"sqlite:///{tmp_path / 'service.sqlite3'}"
    service = start_service(ca, service_database_url, tmp_path)
    try:
        yield World(ca, stub, service.url, service_database_url)
    finally:
        stop_process(service.process)
        server.shutdown()
        server.server_close()
        stop_process(process)
        store.dispose()


@pytest.fixture
def stub(world: World) -> Iterator[OCSPStub]:
    yield world.stub
    world.stub.forge = None


# -- forged answers ---------------------------------------------------------------------------------

def _nonce(request: ocsp.OCSPRequest) -> bytes:
    return request.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce


def forged_answer(request: ocsp.OCSPRequest, signer_certificate: x509.Certificate, signer_key, *,
                  cert_id: tuple[bytes, bytes] | None = None, this_update: dt.datetime | None = None,
                  next_update: dt.datetime | None = None, nonce: bytes | None | str = "echo",
                  status: ocsp.OCSPCertStatus = ocsp.OCSPCertStatus.GOOD) -> bytes:
    """A "good" (by default) answer to ``request``, built and signed as a responder would, but with
    whatever signer, CertID (issuer name hash, issuer key hash), times and nonce the test chooses."""
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    this_update = this_update or now
    name_hash, key_hash = cert_id or (request.issuer_name_hash, request.issuer_key_hash)
    builder = (ocsp.OCSPResponseBuilder()
               .add_response_by_hash(issuer_name_hash=name_hash, issuer_key_hash=key_hash,
                                     serial_number=request.serial_number, algorithm=request.hash_algorithm,
                                     cert_status=status, this_update=this_update,
                                     next_update=next_update or this_update + dt.timedelta(hours=24),
                                     revocation_time=None, revocation_reason=None)
               .responder_id(ocsp.OCSPResponderEncoding.HASH, signer_certificate)
               .certificates([signer_certificate]))
    if nonce is not None:
        echoed = _nonce(request) if nonce == "echo" else nonce
        builder = builder.add_extension(x509.OCSPNonce(echoed), critical=False)
    return builder.sign(signer_key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def by_the_genuine_responder(world: World, **changes) -> Forger:
    """Answers signed by the signature CA's own delegated responder, changed as ``changes`` say."""
    signer = load_hierarchy(world.ca.store).ocsp_signer("sign")
    return lambda request: forged_answer(request, signer.certificate, signer.key, **changes)


# -- the flows under test ---------------------------------------------------------------------------

def revoked_card(world: World):
    """A card whose signature certificate the CA revoked (the owner moved house)."""
    card = make_card(world.ca.store, world.ca.settings)
    change_status(world.ca.store, world.ca.settings, card.serial, StatusAction.REVOKE,
                  f"move-{secrets.token_hex(4)}", "affiliationChanged")
    return card


def assert_register_refused_unverified(world: World, card) -> dict:
    """Registering with ``card`` answers 503 status-unverified and changes nothing."""
    with world.client() as client:
        body = register_body(client, card, PhoneForTests())
        before = snapshot(world.service_database_url)
        problem = assert_problem(client.post("/api/v1/registrations", json=body), 503, "status-unverified")
        assert problem["detail"].startswith("the card's status could not be verified"), problem
        assert snapshot(world.service_database_url) == before
    return problem


def login(client: httpx.Client, certificate_pem: str, key) -> httpx.Response:
    challenge = client.post("/rp/v1/login/challenge").json()
    message = proof_message("login", None, challenge["challenge_id"], challenge["nonce"])
    return client.post("/rp/v1/login", json={"challenge_id": challenge["challenge_id"],
                                             "certificate_pem": certificate_pem,
                                             "signature": sign_message(key, message)})


# -- genuine answers are believed -------------------------------------------------------------------

def test_genuine_answers_of_the_real_ca_are_believed(world: World, stub: OCSPStub):
    card, phone = make_card(world.ca.store, world.ca.settings), PhoneForTests()
    with world.client() as client:
        assert register(client, card, phone).status_code == 201
        assert int(card.serial, 16) in stub.genuine  # the card was checked through the certificate's URL
        document = read(client, phone)
        authentication = next(c for c in document["certificates"] if c["kind"] == "authentication")
        answer = login(client, authentication["certificate_pem"], phone.authentication_key)
        assert answer.status_code == 200 and answer.json()["ocsp"] == "good", answer.text
        # A genuine "held" is believed too: the login is refused because of the status, not the answer.
        change_status(world.ca.store, world.ca.settings, authentication["serial"], StatusAction.HOLD,
                      f"lost-{secrets.token_hex(4)}")
        problem = assert_problem(login(client, authentication["certificate_pem"], phone.authentication_key),
                                 403, "proof-rejected")
        assert "certificateHold" in problem["detail"]
    # And a genuine "revoked" for a card.
    with world.client() as client:
        body = register_body(client, revoked_card(world), PhoneForTests())
        problem = assert_problem(client.post("/api/v1/registrations", json=body), 403, "proof-rejected")
        assert "revoked" in problem["detail"]


def test_an_answer_signed_by_the_issuing_ca_itself_is_believed(world: World, stub: OCSPStub):
    """RFC 6960 4.2.2.2: the issuing CA may sign its own answers."""
    card = revoked_card(world)
    issuing = load_hierarchy(world.ca.store).get("sign")
    stub.forge = lambda request: forged_answer(request, issuing.certificate, issuing.key,
                                               status=ocsp.OCSPCertStatus.UNKNOWN)
    with world.client() as client:
        problem = assert_problem(client.post("/api/v1/registrations",
                                             json=register_body(client, card, PhoneForTests())),
                                 403, "proof-rejected")
    assert "unknown" in problem["detail"]


# -- forged answers are refused and change nothing --------------------------------------------------

def test_replayed_good_answer_does_not_let_a_suspended_phone_log_in(world: World, stub: OCSPStub):
    """The review's case: the "good" the CA gave before the suspension, sent again."""
    card, phone = make_card(world.ca.store, world.ca.settings), PhoneForTests()
    with world.client() as client:
        assert register(client, card, phone).status_code == 201
        document = read(client, phone)
        authentication = next(c for c in document["certificates"] if c["kind"] == "authentication")
        assert login(client, authentication["certificate_pem"], phone.authentication_key).status_code == 200
        good_before_suspension = stub.genuine[int(authentication["serial"], 16)][-1]
        change_status(world.ca.store, world.ca.settings, authentication["serial"], StatusAction.HOLD,
                      f"lost-{secrets.token_hex(4)}")
        stub.forge = lambda _request: good_before_suspension
        before = snapshot(world.service_database_url)
        problem = assert_problem(login(client, authentication["certificate_pem"], phone.authentication_key),
                                 503, "status-unverified")
        assert "nonce" in problem["detail"]
        assert snapshot(world.service_database_url) == before


def test_replayed_good_answer_does_not_let_a_revoked_card_register(world: World, stub: OCSPStub):
    card = make_card(world.ca.store, world.ca.settings)
    # The CA's genuine "good" to a request like the service's (not by registering: the card cascade
    # would then change that registration in the background while this test compares snapshots).
    certificate = x509.load_pem_x509_certificate(card.certificate_pem.encode())
    good_before_revocation = stub.answer(
        ocsp_question(certificate, load_hierarchy(world.ca.store).get("sign").certificate).der)
    assert ocsp.load_der_ocsp_response(good_before_revocation).certificate_status == ocsp.OCSPCertStatus.GOOD
    change_status(world.ca.store, world.ca.settings, card.serial, StatusAction.REVOKE,
                  f"move-{secrets.token_hex(4)}", "affiliationChanged")
    stub.forge = lambda _request: good_before_revocation
    assert "nonce" in assert_register_refused_unverified(world, card)["detail"]


def test_answer_signed_by_the_cards_own_key(world: World, stub: OCSPStub):
    """The review's case: the card vouches for itself (a certificate of the hierarchy, not a responder)."""
    card = revoked_card(world)
    card_certificate = x509.load_pem_x509_certificate(card.certificate_pem.encode())
    stub.forge = lambda request: forged_answer(request, card_certificate, card.key)
    assert "unauthorized" in assert_register_refused_unverified(world, card)["detail"]


def test_answer_signed_by_the_cards_own_key_does_not_allow_a_password_reset(world: World, stub: OCSPStub):
    """The review's case exactly: reset-password with a revoked card and its self-signed "good"."""
    card, phone = make_card(world.ca.store, world.ca.settings), PhoneForTests()
    with world.client() as client:
        assert register(client, card, phone).status_code == 201
        change_status(world.ca.store, world.ca.settings, card.serial, StatusAction.REVOKE,
                      f"move-{secrets.token_hex(4)}", "affiliationChanged")

        def cascade_done():  # the background card cascade must be over before the snapshot
            document = read(client, phone)
            signature = next(c for c in document["certificates"] if c["kind"] == "signature")
            return signature["status"] == "revoked" and document["ca_sync"] == "done"

        wait_for(cascade_done, timeout=30)
        card_certificate = x509.load_pem_x509_certificate(card.certificate_pem.encode())
        stub.forge = lambda request: forged_answer(request, card_certificate, card.key)
        body = proof_for(client, "reset-password", phone, card.key)
        body["proof"]["card_certificate_pem"] = card.certificate_pem
        before = snapshot(world.service_database_url)
        problem = assert_problem(client.post(f"/api/v1/registrations/{phone.registration_id}/reset-password",
                                             json=body), 503, "status-unverified")
        assert "unauthorized" in problem["detail"]
        assert snapshot(world.service_database_url) == before


def test_answer_signed_by_the_other_issuing_cas_responder(world: World, stub: OCSPStub):
    """The user-authentication CA's OCSP signer is a real responder, but not for the signature CA."""
    card = revoked_card(world)
    other = load_hierarchy(world.ca.store).ocsp_signer("auth")
    stub.forge = lambda request: forged_answer(request, other.certificate, other.key)
    assert "unauthorized" in assert_register_refused_unverified(world, card)["detail"]


@pytest.mark.parametrize("when", ["nextUpdate passed", "thisUpdate too old", "thisUpdate in the future"])
def test_stale_answer(world: World, stub: OCSPStub, when: str):
    card = revoked_card(world)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    minute = dt.timedelta(minutes=1)
    times = {
        "nextUpdate passed": {"this_update": now - 3 * minute, "next_update": now - 2 * minute},
        "thisUpdate too old": {"this_update": now - 6 * minute, "next_update": now + 24 * 60 * minute},
        "thisUpdate in the future": {"this_update": now + 2 * minute},
    }[when]
    stub.forge = by_the_genuine_responder(world, **times)
    assert_register_refused_unverified(world, card)


def test_answer_with_the_certid_of_another_issuer(world: World, stub: OCSPStub):
    """An answer about the same serial at the user-authentication CA, by that CA's responder."""
    card = revoked_card(world)
    auth = load_hierarchy(world.ca.store)
    auth_ca, auth_signer = auth.get("auth"), auth.ocsp_signer("auth")
    stub.forge = lambda request: forged_answer(
        request, auth_signer.certificate, auth_signer.key,
        cert_id=auth_ca.cert_id_hashes[request.hash_algorithm.name])
    assert "not about this certificate" in assert_register_refused_unverified(world, card)["detail"]


@pytest.mark.parametrize("nonce", ["another request's", "none"])
def test_answer_without_our_nonce(world: World, stub: OCSPStub, nonce: str):
    card = revoked_card(world)
    stub.forge = by_the_genuine_responder(world, nonce=secrets.token_bytes(32) if nonce != "none" else None)
    assert "nonce" in assert_register_refused_unverified(world, card)["detail"]


# -- the judge on its own: the checks the flows above cannot isolate --------------------------------

def test_verify_ocsp_answer_checks_each_rule_alone(world: World):
    """The same genuine-responder answer, passing, then failing one rule at a time."""
    card = make_card(world.ca.store, world.ca.settings)
    hierarchy = load_hierarchy(world.ca.store)
    certificate = x509.load_pem_x509_certificate(card.certificate_pem.encode())
    issuer, signer = hierarchy.get("sign").certificate, hierarchy.ocsp_signer("sign")
    freshness = OCSPFreshness(max_age=dt.timedelta(minutes=5), clock_skew=dt.timedelta(seconds=60))
    question = ocsp_question(certificate, issuer)
    request = ocsp.load_der_ocsp_request(question.der)
    assert _nonce(request) == question.nonce and len(question.nonce) == 32
    genuine = forged_answer(request, signer.certificate, signer.key)
    assert verify_ocsp_answer(genuine, question, certificate, issuer, freshness).certificate_status \
        == ocsp.OCSPCertStatus.GOOD
    now = dt.datetime.now(dt.UTC)
    for moment, reason in ((now + dt.timedelta(minutes=6), "more than 300 s ago"),
                           (now - dt.timedelta(minutes=2), "too recent")):
        with pytest.raises(OCSPAnswerRefused, match=reason):
            verify_ocsp_answer(genuine, question, certificate, issuer, freshness, now=moment)
    with pytest.raises(OCSPAnswerRefused, match="nonce"):
        verify_ocsp_answer(genuine, ocsp_question(certificate, issuer), certificate, issuer, freshness)
    tampered = bytearray(genuine)
    signature = ocsp.load_der_ocsp_response(genuine).signature
    tampered[genuine.index(signature) + 10] ^= 1  # one bit of the signature
    with pytest.raises(OCSPAnswerRefused, match="signature"):
        verify_ocsp_answer(bytes(tampered), question, certificate, issuer, freshness)
    unsuccessful = ocsp.OCSPResponseBuilder.build_unsuccessful(ocsp.OCSPResponseStatus.TRY_LATER)
    with pytest.raises(OCSPAnswerRefused, match="TRY_LATER"):
        verify_ocsp_answer(unsuccessful.public_bytes(serialization.Encoding.DER), question, certificate,
                           issuer, freshness)
    with pytest.raises(OCSPAnswerRefused, match="not an OCSP response"):
        verify_ocsp_answer(b"<html>proxy error</html>", question, certificate, issuer, freshness)

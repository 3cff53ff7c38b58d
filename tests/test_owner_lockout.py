"""Issue 12, item 4: limits that cannot be turned against the owner. Through the real `jpki-service serve`
process over HTTP, behind a trusted proxy (JPKI_TRUSTED_PROXIES=127.0.0.1) so that the stranger and the owner
are counted under the addresses the proxy gives (X-Forwarded-For).

- A stranger who knows a registration id asks 1,000 challenges for it: refused (429) once over the per-client
  limit, so at most that many are issued, and none counts against the registration.
- The stranger's refused proofs are counted per registration: over the limit they answer 429 with Retry-After
  instead of 403.
- The owner's valid proofs are admitted all the same: a password reset with the card, then the revoke.
- The relying party's login challenges are limited per client; its refused logins are counted per client.
- An expired challenge leaves the table at the background worker's next round; spending it then meets
  ``challenge-unknown`` saying so.

The service's windows follow its own clock, so where a window's edge could fall inside a burst the assertions
allow for it (a burst spans at most the windows counted around it) instead of timing anything.

One CA and one service with these limits per backend for the module (tests/shared_ca.py). The limits count per
client address (and per registration), so the tests on that service send from addresses no other test uses (the
stranger and the owner; the relying party's flood and guesser), never from the proxy's own, and each registers
a card of a person of its own. The test that needs a short challenge lifetime has a service of its own on the
module's CA.
"""
from __future__ import annotations

import datetime as dt
import time

import httpx
import pytest
import sqlalchemy as sa

from jpki_common.owner_proof import Action
from jpki_service.adapters.db import Store, migrate
from jpki_service.challenges.models import Challenge
from jpki_service.challenges.service import issue_challenge, purge_expired_challenges, spend_challenge
from jpki_service.common.problems import ChallengeExpired, ChallengeUnknown
from tests.conftest import start_service, stop_process
from tests.service_helpers import PhoneForTests, make_card, register, signed
from tests.shared_ca import _fresh_keys_per_test, own_service_database_url, shared_servers, unique_person  # noqa: F401 (fixtures)
from tests.test_service_flows import wait_for
from tests.test_service_proofs import assert_problem

pytestmark = pytest.mark.e2e

# Each address is one test's only, on the module's service: the per-client counts are the service's, not a test's.
STRANGER, OWNER, RP_FLOOD, RP_GUESSER = "198.51.100.66", "203.0.113.7", "198.51.100.77", "198.51.100.88"
CHALLENGES_PER_CLIENT = 20
FAILED_PER_REGISTRATION = 3
RP_CHALLENGES_PER_CLIENT = 5
RP_FAILED_PER_CLIENT = 2
LIMITS = {
    "JPKI_TRUSTED_PROXIES": "127.0.0.1",
    "JPKI_CHALLENGES_PER_CLIENT_PER_MINUTE": str(CHALLENGES_PER_CLIENT),
    "JPKI_FAILED_PROOFS_PER_CLIENT_PER_MINUTE": "1000",  # here the per-registration count is the one that trips
    "JPKI_FAILED_PROOFS_PER_REGISTRATION_PER_HOUR": str(FAILED_PER_REGISTRATION),
    "JPKI_RP_CHALLENGES_PER_CLIENT_PER_MINUTE": str(RP_CHALLENGES_PER_CLIENT),
    "JPKI_RP_FAILED_LOGINS_PER_CLIENT_PER_MINUTE": str(RP_FAILED_PER_CLIENT),
}

ca_server, service_server = shared_servers("lockout", **LIMITS)


def windows(started: float, ended: float, seconds: int) -> int:
    """How many of the service's fixed windows a burst between ``started`` and ``ended`` can have touched."""
    return int(ended // seconds) - int(started // seconds) + 1


def assert_too_many(response: httpx.Response, scope: str) -> None:
    problem = assert_problem(response, 429, "too-many-attempts")
    assert problem["scope"] == scope, problem
    assert int(response.headers["retry-after"]) >= 1


@pytest.fixture
def service(service_server):
    """The module's service, with LIMITS."""
    return service_server


def as_client(service, address: str) -> httpx.Client:
    client = service.client()
    client.headers["X-Forwarded-For"] = address
    return client


def test_a_strangers_flood_does_not_stop_the_owner(ca_server, service):
    card, phone = make_card(ca_server.store, ca_server.settings, unique_person()), PhoneForTests()
    with as_client(service, OWNER) as owner, as_client(service, STRANGER) as stranger:
        assert register(owner, card, phone).status_code == 201
        registration = phone.registration_id
        # 1,000 challenges for the owner's registration, from one stranger.
        started = time.time()
        answers = [stranger.post("/api/v1/challenges", json={"action": "revoke", "registration_id": registration})
                   for _ in range(1000)]
        ended = time.time()
        issued = [a.json() for a in answers if a.status_code == 201]
        refused = [a for a in answers if a.status_code != 201]
        assert refused, "the per-client limit refused nothing"
        for answer in refused:
            assert_too_many(answer, "challenge-client")
        assert CHALLENGES_PER_CLIENT <= len(issued) <= CHALLENGES_PER_CLIENT * windows(started, ended, 60)

        # The stranger's proofs (its own key, over the challenges it got) are refused; over the
        # per-registration limit of refused proofs they answer 429, with Retry-After, instead of 403.
        url = f"/api/v1/registrations/{registration}/revoke"
        key = PhoneForTests().signature_key
        codes = []
        for c in issued:
            answer = stranger.post(url, json={"proof": {"challenge_id": c["challenge_id"],
                                                        "signature": signed(c, key)}})
            codes.append(answer.status_code)
            if answer.status_code == 429:
                assert_too_many(answer, "failed-proof-registration")
                break
            assert_problem(answer, 403, "proof-rejected")
        # The first FAILED_PER_REGISTRATION are 403 (an hour's edge could at most double that), then 429.
        assert codes[:FAILED_PER_REGISTRATION] == [403] * FAILED_PER_REGISTRATION
        assert codes[-1] == 429 and len(codes) <= 2 * FAILED_PER_REGISTRATION + 1, codes

        # Right after that 429, over the limit, the owner's valid proofs are admitted: the card...
        c = owner.post("/api/v1/challenges", json={"action": "reset-password", "registration_id": registration})
        assert c.status_code == 201, c.text
        reset = owner.post(f"/api/v1/registrations/{registration}/reset-password", json={"proof": {
            "challenge_id": c.json()["challenge_id"], "signature": signed(c.json(), card.key),
            "card_certificate_pem": card.certificate_pem}})
        assert reset.status_code == 200, reset.text
        assert reset.json()["reset_allowed"] is True
        # ... and the phone signature key: the revoke.
        c = owner.post("/api/v1/challenges", json={"action": "revoke", "registration_id": registration})
        assert c.status_code == 201, c.text
        revoked = owner.post(url, json={"proof": {"challenge_id": c.json()["challenge_id"],
                                                  "signature": signed(c.json(), phone.signature_key)}})
        assert revoked.status_code in (200, 202), revoked.text
        assert revoked.json()["state"] == "revoked"


def test_relying_party_login_challenges_and_refused_logins_are_limited(ca_server, service):
    with as_client(service, RP_FLOOD) as flood:
        started = time.time()
        answers = [flood.post("/rp/v1/login/challenge") for _ in range(4 * RP_CHALLENGES_PER_CLIENT)]
        ended = time.time()
    issued = [a for a in answers if a.status_code == 201]
    refused = [a for a in answers if a.status_code != 201]
    assert refused
    for answer in refused:
        assert_too_many(answer, "rp-challenge-client")
    assert RP_CHALLENGES_PER_CLIENT <= len(issued) <= RP_CHALLENGES_PER_CLIENT * windows(started, ended, 60)

    # A card's signature certificate is no user-authentication certificate: each login is refused (403),
    # and over the per-client limit of refused logins the refusal is 429.
    card = make_card(ca_server.store, ca_server.settings, unique_person())
    codes = []
    with as_client(service, RP_GUESSER) as guesser:
        for _ in range(2 * RP_FAILED_PER_CLIENT + 1):
            c = guesser.post("/rp/v1/login/challenge")
            assert c.status_code == 201, c.text
            answer = guesser.post("/rp/v1/login", json={"challenge_id": c.json()["challenge_id"],
                                                        "certificate_pem": card.certificate_pem,
                                                        "signature": signed(c.json(), card.key)})
            codes.append(answer.status_code)
            if answer.status_code == 429:
                assert_too_many(answer, "rp-failed-login-client")
                break
            assert_problem(answer, 403, "proof-rejected")
    assert codes[0] == 403 and codes[-1] == 429, codes


def test_an_expired_challenge_leaves_the_table(ca_server, own_service_database_url, tmp_path):
    # A service of this test's own (another challenge lifetime, and no limits), on the module's CA.
    running = start_service(ca_server, own_service_database_url, tmp_path,
                            settings={"JPKI_CHALLENGE_TTL_SECONDS": "1"})
    engine = sa.create_engine(own_service_database_url)

    def present(challenge_id: str) -> bool:
        with engine.connect() as connection:
            return connection.execute(sa.text("SELECT count(*) FROM challenges WHERE id = :i"),
                                      {"i": challenge_id}).scalar_one() == 1

    try:
        with running.client() as client:
            c = client.post("/api/v1/challenges", json={"action": "register", "registration_id": None}).json()
            assert present(c["challenge_id"])
            wait_for(lambda: not present(c["challenge_id"]), timeout=60)  # the worker's round after expiry
            answer = client.post("/api/v1/registrations", json={
                "proof": {"challenge_id": c["challenge_id"], "signature": "AAAA", "card_certificate_pem": "x"},
                "device": {"model": "m", "device_public_key_pem": "x"},
                "signature_csr_pem": "x", "authentication_csr_pem": "x"})
        problem = assert_problem(answer, 404, "challenge-unknown")
        assert "expired and removed; ask for a new one" in problem["detail"]
    finally:
        stop_process(running.process)
        engine.dispose()


def test_purge_removes_every_expired_challenge_and_only_those(service_database_url):
    """The purge itself, on the store (no worker): expired challenges go, spent or not, at once; a live one stays.
    Between expiry and the purge, spending one meets challenge-expired; after it, challenge-unknown."""
    migrate(service_database_url)
    store = Store(service_database_url)
    try:
        expired, spent, live = (issue_challenge(store, 120, Action.REGISTER, None)["challenge_id"] for _ in range(3))
        spend_challenge(store, spent, Action.REGISTER, None)
        just_now = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)  # expired a second ago, not an hour
        with store.transaction() as session:
            for challenge_id in (expired, spent):
                session.get_one(Challenge, challenge_id).expires_at = just_now
        with pytest.raises(ChallengeExpired):
            spend_challenge(store, expired, Action.REGISTER, None)
        assert purge_expired_challenges(store) == 2
        with store.sessions() as session:
            assert session.get(Challenge, expired) is None and session.get(Challenge, spent) is None
            assert session.get(Challenge, live) is not None
        with pytest.raises(ChallengeUnknown, match="expired and removed"):
            spend_challenge(store, expired, Action.REGISTER, None)
    finally:
        store.dispose()

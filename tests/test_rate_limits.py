"""Rate limits: challenges per client (never per registration), refused proofs per client and per
registration (a valid proof is never refused), operator logins per client. Each refusal is a 429
problem with Retry-After, and refused attempts change nothing. The owner-lockout case through the
real process, behind a trusted proxy: test_owner_lockout.py."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from jpki_service.adapters.db import migrate
from jpki_service.common.settings import ServiceSettings
from jpki_service.entrypoints.app import create_app
from jpki_service.operators.roles import Role
from jpki_service.operators.service import add_operator
from jpki_service.rate_limits import service as rate_limits
from jpki_service.rate_limits.models import AttemptCounter
from jpki_service.rate_limits.service import Limit, attempts, purge_expired_counters
from jpki_service.registrations.models import Registration
from tests.service_helpers import PhoneForTests, signed

REGISTRATION_ID, OTHER_REGISTRATION_ID = "ab" * 16, "cd" * 16
DEVICE = PhoneForTests()  # the device key of both registrations (proofs of uninstall)
# 30 s into a minute and into an hour (1_800_000_000 is a whole number of hours): no test here
# depends on when it runs, and none crosses a window's edge unless it moves the clock itself.
START = 1_800_000_030.0


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> Clock:
    """The rate limits' clock, set to ``START``; a test moves it by assigning ``clock.now``."""
    fixed = Clock(START)
    monkeypatch.setattr(rate_limits, "clock", fixed)
    return fixed


@pytest.fixture
def service(service_database_url: str, tmp_path: Path, clock: Clock):
    """The service in-process, with small limits and no CA (nothing here reaches one), on a set clock."""
    migrate(service_database_url)
    settings = ServiceSettings(data_dir=tmp_path / "service", database_url=service_database_url,
                               ca_url="http://127.0.0.1:9", challenges_per_client_per_minute=5,
                               failed_proofs_per_client_per_minute=4, failed_proofs_per_registration_per_hour=3,
                               login_attempts_per_client_per_minute=4)
    app = create_app(settings, background=False)
    ctx = app.app.state.context
    now = dt.datetime.now(dt.UTC)
    with ctx.store.transaction() as session:
        for registration_id in (REGISTRATION_ID, OTHER_REGISTRATION_ID):
            session.add(Registration(id=registration_id, case_reference=f"ABCD-EFGH-{registration_id[:4].upper()}",
                                     state="active", reason=None, person_key="p" * 64,
                                     card_serial="1", device_model="m", created_at=now, updated_at=now,
                                     device_public_key_pem=DEVICE.device_public_pem()))
    with TestClient(app) as client:
        yield client, ctx
    ctx.store.dispose()


def _challenge(client, registration_id=None, action="register"):
    return client.post("/api/v1/challenges", json={"action": action, "registration_id": registration_id})


def test_challenges_per_client(service):
    client, ctx = service
    answers = [_challenge(client) for _ in range(6)]
    assert [a.status_code for a in answers] == [201] * 5 + [429]
    refused = answers[-1]
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["type"].endswith("too-many-attempts") and refused.json()["scope"] == "challenge-client"
    assert 1 <= int(refused.headers["retry-after"]) <= 61
    assert int(refused.headers["retry-after"]) == 31  # 30 s left in the window, rounded up, plus one
    assert "at most 5 per 60 s" in refused.json()["detail"]


def test_next_window_counts_afresh(service, clock):
    client, ctx = service
    assert [_challenge(client).status_code for _ in range(6)] == [201] * 5 + [429]
    clock.now = START + 29  # the last second of the same minute: still refused
    assert _challenge(client).status_code == 429
    clock.now = START + 30  # the next minute
    assert [_challenge(client).status_code for _ in range(6)] == [201] * 5 + [429]


def test_challenges_are_not_limited_per_registration(service):
    """Anyone may ask for a challenge on any registration: only the client's own budget runs out."""
    client, ctx = service
    answers = [_challenge(client, REGISTRATION_ID, "revoke") for _ in range(6)]
    assert [a.status_code for a in answers] == [201] * 5 + [429]
    assert answers[-1].json()["scope"] == "challenge-client"
    assert attempts(ctx.store, Limit("failed-proof-registration", 3, 3600, ""), REGISTRATION_ID) == 0


def _uninstall(client, registration_id: str, key) -> object:
    challenge = _challenge(client, registration_id, "uninstall").json()
    return client.post(f"/api/v1/registrations/{registration_id}/uninstall",
                       json={"proof": {"challenge_id": challenge["challenge_id"], "signature": signed(challenge, key)}})


def test_refused_proofs_per_registration(service, clock):
    client, ctx = service
    wrong = PhoneForTests().device_key
    answers = [_uninstall(client, REGISTRATION_ID, wrong) for _ in range(4)]
    assert [a.status_code for a in answers] == [403] * 3 + [429]
    assert all(a.json()["type"].endswith("proof-rejected") for a in answers[:3])
    refused = answers[-1]
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["type"].endswith("too-many-attempts")
    assert refused.json()["scope"] == "failed-proof-registration"
    assert int(refused.headers["retry-after"]) == 3571  # 30 s into the hour: 3570 s left, plus one
    assert "at most 3 per 3600 s" in refused.json()["detail"]
    with ctx.store.sessions() as session:
        assert session.get(Registration, REGISTRATION_ID).state == "active"  # nothing changed
    # The next minute (a fresh per-client window): still refused on this registration for the hour, not on another.
    clock.now = START + 30
    assert _uninstall(client, REGISTRATION_ID, wrong).status_code == 429
    assert _uninstall(client, OTHER_REGISTRATION_ID, wrong).status_code == 403
    clock.now = START + 3570  # the next hour counts afresh
    assert _uninstall(client, REGISTRATION_ID, wrong).status_code == 403


def test_a_valid_proof_is_admitted_over_the_limit(service):
    client, ctx = service
    wrong = PhoneForTests().device_key
    assert [_uninstall(client, REGISTRATION_ID, wrong).status_code for _ in range(4)] == [403] * 3 + [429]
    # The owner's device key: admitted (and not counted), over the limit of refused proofs.
    admitted = _uninstall(client, REGISTRATION_ID, DEVICE.device_key)
    assert admitted.status_code in (200, 202), admitted.text
    assert admitted.json()["state"] == "expired"
    assert attempts(ctx.store, Limit("failed-proof-registration", 3, 3600, ""), REGISTRATION_ID) == 4


def test_refused_proofs_per_client(service):
    client, ctx = service
    wrong = PhoneForTests().device_key
    # Spread over two registrations, so that only the client's count (4 a minute) is over.
    answers = [_uninstall(client, registration_id, wrong)
               for registration_id in (REGISTRATION_ID, OTHER_REGISTRATION_ID) * 2 + (REGISTRATION_ID,)]
    assert [a.status_code for a in answers] == [403] * 4 + [429]
    assert answers[-1].json()["scope"] == "failed-proof-client"
    # Both counts went on: the client's fifth refusal still counted against its registration.
    assert attempts(ctx.store, Limit("failed-proof-registration", 3, 3600, ""), REGISTRATION_ID) == 3


def test_operator_logins_per_client_before_any_hash(service):
    client, ctx = service
    add_operator(ctx.store, "rita", Role.OPERATOR, "correct horse battery")
    answers = [client.post("/api/v1/operator/session", json={"username": f"user{i}", "password": "x"})
               for i in range(5)]
    assert [a.status_code for a in answers] == [401] * 4 + [429]
    # Even the right password waits for the window: the address is over its limit.
    right = client.post("/api/v1/operator/session", json={"username": "rita", "password": "correct horse battery"})
    assert right.status_code == 429 and right.json()["scope"] == "login-client"


def test_counters_expire(service, clock):
    client, ctx = service
    limit = Limit("challenge-client", 5, 60, "challenges")
    for _ in range(2):
        assert _challenge(client).status_code == 201
    assert attempts(ctx.store, limit, "testclient") == 2
    assert purge_expired_counters(ctx.store) == 0  # the current window stays
    clock.now = START + 30  # the window has ended, but its row expires only after that second
    assert purge_expired_counters(ctx.store) == 0
    assert attempts(ctx.store, limit, "testclient") == 0  # a new window counts afresh
    clock.now = START
    with ctx.store.transaction() as session:
        session.execute(update(AttemptCounter).values(expires_at=dt.datetime(2000, 1, 1, tzinfo=dt.UTC)))
    assert purge_expired_counters(ctx.store) == 1
    assert attempts(ctx.store, limit, "testclient") == 0

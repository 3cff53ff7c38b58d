"""Issue 12, item 4: the per-client limits key on the address that really connected. X-Forwarded-For
is believed only from a proxy named in JPKI_TRUSTED_PROXIES (uvicorn's forwarded-allow-ips); uvicorn's
own default believes it from 127.0.0.1, which let any local client choose the address it is counted
under. The audit trail records a sign-in's address by the same rule (issue 13, item 6). Through the real
`jpki-service serve` process."""
from __future__ import annotations

import pytest

from jpki_service.adapters.db import Store
from jpki_service.audit.service import entries
from tests.service_helpers import OPERATOR_PASSWORD, add_operator
from tests.shared_ca import _fresh_keys_per_test, module_service_server, shared_servers  # noqa: F401 (a fixture)

pytestmark = pytest.mark.e2e
# One CA per backend for the module (conftest's is one per test); each test keeps a service of its own, with
# its own settings, rate limits and audit trail.
ca_server = shared_servers("trusted-proxies")[0]

LIMITED = {"JPKI_CHALLENGES_PER_CLIENT_PER_MINUTE": "3"}


def _challenges(service, forwarded_for: list[str]) -> list[int]:
    with service.client() as client:
        return [client.post("/api/v1/challenges", json={"action": "register", "registration_id": None},
                            headers={"X-Forwarded-For": address}).status_code
                for address in forwarded_for]


def _sign_in_recorded_from(service, forwarded_for: str) -> str:
    """Sign in with a claimed address; the address the audit trail recorded for it."""
    add_operator(service, "rina", "operator")
    with service.client() as client:
        answer = client.post("/api/v1/operator/session", json={"username": "rina", "password": OPERATOR_PASSWORD},
                             headers={"X-Forwarded-For": forwarded_for})
    assert answer.status_code == 201, answer.text
    store = Store(service.database_url)
    try:
        with store.sessions() as session:
            [login] = [e for e in entries(session, limit=1000) if e["action"] == "login"]
    finally:
        store.dispose()
    return login["details"]["client"]


def test_a_claimed_address_is_not_believed_without_a_trusted_proxy(ca_server, tmp_path):
    with module_service_server(ca_server, tmp_path, **LIMITED) as service:
        # Four different claimed addresses, one real peer: counted together, the fourth is refused.
        codes = _challenges(service, ["203.0.113.1", "203.0.113.2", "203.0.113.3", "203.0.113.4"])
        recorded = _sign_in_recorded_from(service, "203.0.113.7")
    assert codes == [201, 201, 201, 429]
    assert recorded == "127.0.0.1"  # the peer that really connected, not the claim


def test_a_trusted_proxy_is_believed(ca_server, tmp_path):
    with module_service_server(ca_server, tmp_path, **LIMITED, JPKI_TRUSTED_PROXIES="127.0.0.1") as service:
        # Behind the trusted proxy, each client is counted under its own address...
        spread = _challenges(service, ["198.51.100.1", "198.51.100.2", "198.51.100.3", "198.51.100.4"])
        # ... and one client is still limited, whichever of its requests comes through.
        one = _challenges(service, ["198.51.100.9"] * 4)
        recorded = _sign_in_recorded_from(service, "198.51.100.7")
    assert recorded == "198.51.100.7"  # as the trusted proxy says
    assert spread == [201, 201, 201, 201]
    assert one == [201, 201, 201, 429]

"""Who asks, and the two-person rule (issue 13, items 3 and 4), through the real service over HTTP and
the real `jpki-operator`, with the default policy: a supervisor's lift and a keyCompromise revocation
wait for a second supervisor.

- A proxy may ask for a suspension only: a lift or a revocation asked for by a proxy is refused, and
  nothing changes; every act records who asked.
- An approval is asked for (202, nothing done: the CA still says held), refused to the one who asked,
  approved by another supervisor (the act done, at the CA too), or rejected, or expired; each step is
  in the audit trail; pending approvals are listed (API and CLI).

One CA and one service with the default policy per backend for the module (tests/shared_ca.py): each test's
card is of a person of its own, its operators' usernames are its own, and what it reads of the approvals and the
audit trail is its own registration's and its own operators'. The CLI test, which reads that nothing at all waits
for approval, has a service of its own on the module's CA.
"""
from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.service_helpers import PhoneForTests, make_card, operator_client, read, register
from tests.shared_ca import _fresh_keys_per_test, module_service_server, shared_servers, unique_person  # noqa: F401 (a fixture)
from tests.test_operator_cli import PASSWORDS, ROLES, Operator
from tests.test_service_flows import ocsp_status

pytestmark = pytest.mark.e2e

LOST = {"reason": "lost", "caller": "self", "ticket": "T-1"}
FOUND = {"reason": "owner found the phone, identity checked", "caller": "self", "ticket": "T-2"}
# The default two-person policy (the suite's other services turn it off).
DEFAULT_POLICY = {"JPKI_TWO_PERSON_ACTS": "lift,revoke:keyCompromise"}

ca_server, service_server = shared_servers("approvals", **DEFAULT_POLICY)


@pytest.fixture
def default_policy_service(service_server):
    """The module's service, with the default two-person policy."""
    return service_server


@pytest.fixture
def own_default_policy_service(ca_server, tmp_path: Path):
    """A service of one test's own with the default two-person policy, on the module's CA and its backend."""
    with module_service_server(ca_server, tmp_path, **DEFAULT_POLICY) as running:
        yield running


def _username(name: str) -> str:
    """An operator username no other test on the module's service has."""
    return f"{name}-{uuid.uuid4().hex[:8]}"


def _suspended(ca_server, service) -> tuple[PhoneForTests, dict, str]:
    card = make_card(ca_server.store, ca_server.settings, unique_person())
    phone = PhoneForTests()
    with service.client() as client:
        registered = register(client, card, phone)
    assert registered.status_code == 201, registered.text
    path = f"/api/v1/operator/registrations/{phone.case_reference}"
    with operator_client(service, _username("olga"), "operator") as operator:
        assert operator.post(f"{path}/suspend", json=LOST).status_code == 200
    pems = {c["kind"]: c["certificate_pem"] for c in registered.json()["certificates"]}
    return phone, pems, path


def _audit(service) -> list[dict]:
    with operator_client(service, _username("aiko"), "auditor") as auditor:
        return auditor.get("/api/v1/operator/audit", params={"limit": 1000}).json()["entries"]


def test_a_proxy_may_ask_for_a_suspension_only_and_every_act_records_who_asked(ca_server, default_policy_service):
    phone, pems, path = _suspended(ca_server, default_policy_service)
    with operator_client(default_policy_service, _username("sara"), "supervisor") as supervisor:
        for act, body in (("lift", FOUND), ("revoke", {"reason": "keyCompromise", "ticket": "T-3"})):
            refused = supervisor.post(f"{path}/{act}", json={**body, "caller": "proxy", "relationship": "spouse"})
            assert refused.status_code == 422, refused.text
            assert refused.headers["content-type"] == "application/problem+json"
            assert "a proxy may ask for a suspension only" in refused.json()["detail"]
        missing = supervisor.post(f"{path}/lift", json={k: v for k, v in FOUND.items() if k != "caller"})
        assert missing.status_code == 422 and "caller" in missing.text
    assert read(default_policy_service.client(), phone)["state"] == "suspended"
    assert {ocsp_status(ca_server.url, pem) for pem in pems.values()} == {"revoked:certificateHold"}
    [suspension] = [e for e in _audit(default_policy_service)
                    if e["action"] == "suspend" and e["case_reference"] == phone.case_reference]
    assert suspension["details"]["caller"] == "self"


def test_a_supervisors_lift_waits_for_a_second_supervisor(ca_server, default_policy_service):
    service = default_policy_service
    phone, pems, path = _suspended(ca_server, service)
    sara, sven, oto = _username("sara"), _username("sven"), _username("oto")

    def pending() -> list[str]:  # this registration's pending approvals (other tests' are the service's too)
        return [a["approval_id"] for a in second.get("/api/v1/operator/approvals").json()["approvals"]
                if a["case_reference"] == phone.case_reference]

    with operator_client(service, sara, "supervisor") as first, \
            operator_client(service, sven, "supervisor") as second, \
            operator_client(service, oto, "operator") as operator:
        asked = first.post(f"{path}/lift", json=FOUND)
        assert asked.status_code == 202, asked.text
        waiting = asked.json()["awaiting_approval"]
        assert waiting["state"] == "pending" and waiting["action"] == "lift" and waiting["requested_by"] == sara
        assert waiting["request"]["caller"] == "self" and asked.json()["state"] == "suspended"
        assert {ocsp_status(ca_server.url, pem) for pem in pems.values()} == {"revoked:certificateHold"}  # not done
        again = first.post(f"{path}/lift", json=FOUND)
        assert again.status_code == 409 and waiting["approval_id"] in again.json()["detail"]

        approval = f"/api/v1/operator/approvals/{waiting['approval_id']}"
        own = first.post(f"{approval}/approve")
        assert own.status_code == 403 and own.json()["type"].endswith("second-person-needed")
        assert operator.post(f"{approval}/approve").status_code == 403  # an operator may not approve
        assert pending() == [waiting["approval_id"]]
        history = second.get(f"{path}/history").json()["registration"]
        assert [a["approval_id"] for a in history["pending_approvals"]] == [waiting["approval_id"]]

        approved = second.post(f"{approval}/approve")
        assert approved.status_code == 200, approved.text
        assert approved.json()["state"] == "active" and approved.json()["decided_approval"]["state"] == "approved"
        assert ocsp_status(ca_server.url, pems["authentication"]) == "good"
        assert ocsp_status(ca_server.url, pems["signature"]) == "revoked:superseded"
        assert pending() == []
        assert second.post(f"{approval}/approve").status_code == 409  # decided once

    everything = _audit(service)
    trail = [e for e in everything if e["case_reference"] == phone.case_reference]
    steps = {e["action"]: e for e in trail}
    assert steps["approval-requested"]["actor"] == f"supervisor:{sara}"
    assert steps["lift"]["actor"] == f"supervisor:{sven}" and steps["lift"]["details"]["requested_by"] == sara
    assert steps["approval-granted"]["details"]["approval"] == waiting["approval_id"]
    # The refusals of this test's operators (a refused approval names no registration).
    ours = {f"supervisor:{sara}", f"supervisor:{sven}", f"operator:{oto}"}
    refused = [e for e in everything if e["action"] == "refused" and e["actor"] in ours]
    assert [(e["actor"], e["details"]["attempted"]) for e in refused] == [
        (f"operator:{oto}", "approve or reject another supervisor's lift or revocation")]


def test_a_keycompromise_revocation_is_rejected_or_expires_and_other_reasons_need_no_second(
        ca_server, default_policy_service):
    service = default_policy_service
    phone, pems, path = _suspended(ca_server, service)
    compromised = {"reason": "keyCompromise", "ticket": "T-4", "caller": "internal", "note": "fraud team"}
    with operator_client(service, _username("sara"), "supervisor") as first, \
            operator_client(service, _username("sven"), "supervisor") as second:
        asked = first.post(f"{path}/revoke", json=compromised).json()["awaiting_approval"]
        rejected = second.post(f"/api/v1/operator/approvals/{asked['approval_id']}/reject")
        assert rejected.status_code == 200 and rejected.json()["decided_approval"]["state"] == "rejected"
        assert rejected.json()["state"] == "suspended"

        # Asked again, and left: once expired it can no longer be approved.
        asked = first.post(f"{path}/revoke", json=compromised).json()["awaiting_approval"]
        engine = sa.create_engine(service.database_url)
        try:
            with engine.begin() as connection:  # the clock moved on past the approval's time
                connection.execute(sa.text("UPDATE approvals SET expires_at = :past WHERE id = :id"),
                                   {"past": dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1),
                                    "id": asked["approval_id"]})
        finally:
            engine.dispose()
        expired = second.post(f"/api/v1/operator/approvals/{asked['approval_id']}/approve")
        assert expired.status_code == 410 and expired.json()["type"].endswith("approval-expired")
        assert {ocsp_status(ca_server.url, pem) for pem in pems.values()} == {"revoked:certificateHold"}
        listed = second.get("/api/v1/operator/approvals", params={"all": "true"}).json()["approvals"]
        # This registration's (other tests' approvals are the service's too).
        assert {a["state"] for a in listed if a["case_reference"] == phone.case_reference} == {"rejected", "expired"}

        # Another reason is not under the rule: done at once by one supervisor.
        done = first.post(f"{path}/revoke", json={**compromised, "reason": "cessationOfOperation"})
        assert done.status_code == 200 and done.json()["state"] == "revoked" and not done.json()["awaiting_approval"]
    assert {ocsp_status(ca_server.url, pem) for pem in pems.values()} == {"revoked:cessationOfOperation"}


def test_approvals_over_the_cli(ca_server, own_default_policy_service, tmp_path: Path):
    # A service of this test's own: its last step reads that nothing at all waits for approval.
    service = own_default_policy_service
    phone, _pems, _path = _suspended(ca_server, service)
    from jpki_service.adapters.db import Store
    from jpki_service.operators.service import add_operator

    store = Store(service.database_url)
    try:
        for username in ("sv.suzuki", "op.sato"):
            add_operator(store, username, ROLES[username], PASSWORDS[username])
        add_operator(store, "sv.tanaka", ROLES["sv.suzuki"], PASSWORDS["sv.suzuki"])
    finally:
        store.dispose()
    first, second = Operator("sv.suzuki", service.url, tmp_path / "a"), Operator("sv.tanaka", service.url,
                                                                                  tmp_path / "b")
    password = PASSWORDS["sv.suzuki"]  # both supervisors' (sv.tanaka is not in PASSWORDS)
    for person in (first, second):
        person.ok("login", password=password)
    proxy = first.refused("lift", phone.case_reference, "--reason", "found", "--caller", "proxy", "--relationship",
                          "son", "--ticket", "T-5", code=2, message="a proxy may ask for a suspension only")
    assert "--caller proxy" in proxy
    asked = first.ok("lift", phone.case_reference, "--reason", "found at home", "--caller", "self",
                     "--ticket", "T-5").stdout
    assert "NOT DONE YET" in asked and "jpki-operator approve" in asked
    approval_id = asked.split("jpki-operator approve ", 1)[1].split("`", 1)[0]
    assert approval_id in second.ok("approvals", password=password).stdout
    first.refused("approve", approval_id, code=1, message="second supervisor must approve")
    done = second.ok("approve", approval_id, password=password).stdout
    assert f"approval {approval_id}: lift of {phone.case_reference}, approved" in done
    assert f"registration {phone.case_reference}: active" in done
    assert "nothing waits for approval" in second.ok("approvals", password=password).stdout

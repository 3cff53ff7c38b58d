"""The call centre over the HTTP API, against the real CA and service processes: suspension and
its lifting (by the owner with card + phone, and by a supervisor), revocation while suspended,
the owner's notices, the audit trail, and every refusal leaving nothing changed. Each outcome
is checked at the CA's OCSP responder, as a relying party sees it.

The tests share one CA and one service per backend (tests/shared_ca.py): each registers persons of its own,
signs in operators of its own and looks only at the notices and audit entries of its own cases and operators.
The one that stops the CA has servers of its own."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.service_helpers import (
    PhoneForTests,
    lift_body,
    make_card,
    operator_client,
    proof_for,
    read,
    register,
)
from tests.shared_ca import (  # noqa: F401 (fixtures)
    _fresh_keys_per_test,
    own_ca_server,
    own_service_server,
    shared_servers,
    unique,
    unique_person,
)
from tests.test_service_flows import ocsp_status, wait_for

pytestmark = pytest.mark.e2e

LOST = {"reason": "lost", "caller": "self", "ticket": "T-1001"}

ca_server, service_server = shared_servers("call-centre")

_FULL_WIDTH_DIGITS = str.maketrans("0123456789-", "０１２３４５６７８９－")


def _registered(ca_server, service_server, person=None):
    card = make_card(ca_server.store, ca_server.settings, person or unique_person())
    phone = PhoneForTests()
    with service_server.client() as client:
        answer = register(client, card, phone)
    assert answer.status_code == 201, answer.text
    return card, phone, answer.json()


def _pems(document) -> dict[str, str]:
    return {c["kind"]: c["certificate_pem"] for c in document["certificates"] if c["current"]}


def _serials(document) -> dict[str, str]:
    return {c["kind"]: c["serial"] for c in document["certificates"] if c["current"]}


def _notices(service_server, case_reference: str) -> list[dict]:
    """The notices about ``case_reference`` (the shared service's file has every test's)."""
    path = service_server.data_dir / "notifications.jsonl"
    notices = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    return [n for n in notices if n.get("case_reference") == case_reference]


def test_lost_phone_suspended_then_found_and_lifted_in_the_app(ca_server, service_server):
    person = unique_person()
    card, phone, registered = _registered(ca_server, service_server, person)
    code = registered["suspension_code"]
    old = _pems(registered)
    with operator_client(service_server, unique("olivia"), "operator") as operator, service_server.client() as owner:
        # The owner calls: the operator finds the registration from what the caller says, spelt
        # with a full-width space and full-width digits.
        found = operator.post("/api/v1/operator/registrations/search",
                              json={"name": "山田　太郎", "birth": person["date_of_birth"],
                                    "address": person["address"].translate(_FULL_WIDTH_DIGITS)})
        assert found.status_code == 200, found.text
        [hit] = found.json()["results"]
        assert hit["case_reference"] == phone.case_reference and hit["masked_name"] == "山* 太*"
        assert "registration_id" not in hit and phone.registration_id not in found.text  # staff never see the id
        assert "東京" not in found.text and person["date_of_birth"][:4] not in found.text  # nothing more than needed
        by_code = operator.post("/api/v1/operator/registrations/search", json={"code": code.lower().replace("-", " ")})
        assert by_code.json()["results"][0]["case_reference"] == phone.case_reference

        suspended = operator.post(f"/api/v1/operator/registrations/{phone.case_reference}/suspend", json=LOST)
        assert suspended.status_code == 200, suspended.text
        assert suspended.json()["state"] == "suspended"
        assert {c["status"] for c in suspended.json()["certificates"]} == {"held"}
        assert all(ocsp_status(ca_server.url, pem) == "revoked:certificateHold" for pem in old.values())

        # The phone, online, learns that and why.
        seen = read(owner, phone)
        assert seen["state"] == "suspended" and seen["reason"] == "lost"
        assert seen["last_change"]["actor"] == "operator" and "suspension_code" not in {
            k for k, v in seen.items() if v is not None}

        # Found again: the owner lifts in the app with the card and the phone.
        new_key = rsa.generate_private_key(65537, 2048)
        lifted = owner.post(f"/api/v1/registrations/{phone.registration_id}/lift-suspension",
                            json=lift_body(owner, card, phone, new_key))
        assert lifted.status_code == 200, lifted.text
        document = lifted.json()
        assert document["state"] == "active" and not document["signature_reissue_needed"]
        assert _serials(document)["authentication"] == _serials(registered)["authentication"]
        assert _serials(document)["signature"] != _serials(registered)["signature"]
        assert ocsp_status(ca_server.url, _pems(document)["authentication"]) == "good"
        assert ocsp_status(ca_server.url, old["signature"]) == "revoked:superseded"
        assert ocsp_status(ca_server.url, _pems(document)["signature"]) == "good"

    # Told through another channel than the phone: the suspension, not the owner's own lift.
    notices = wait_for(lambda: _notices(service_server, phone.case_reference) or None)
    assert [(n["case_reference"], n["event"]) for n in notices] == [(phone.case_reference, "suspended")]
    assert phone.registration_id not in json.dumps(notices)  # a notice names the case, never the id


def test_lost_abroad_a_family_member_calls_with_the_code(ca_server, service_server):
    _card, phone, registered = _registered(ca_server, service_server)
    proxy_call = {"reason": "stolen", "caller": "proxy", "relationship": "spouse", "ticket": "T-2002"}
    oscar = unique("oscar")
    with operator_client(service_server, oscar, "operator") as operator, \
            operator_client(service_server, unique("aiko"), "auditor") as auditor:
        [hit] = operator.post("/api/v1/operator/registrations/search",
                              json={"code": registered["suspension_code"]}).json()["results"]
        without_relationship = operator.post(f"/api/v1/operator/registrations/{hit['case_reference']}/suspend",
                                             json={**proxy_call, "relationship": None})
        assert without_relationship.status_code == 422 and "relationship" in without_relationship.text
        suspended = operator.post(f"/api/v1/operator/registrations/{hit['case_reference']}/suspend", json=proxy_call)
        assert suspended.status_code == 200 and suspended.json()["reason"] == "stolen"
        assert all(ocsp_status(ca_server.url, pem) == "revoked:certificateHold"
                   for pem in _pems(registered).values())

        history = operator.get(f"/api/v1/operator/registrations/{phone.case_reference}/history").json()
        assert history["events"][-1]["operator"] == oscar
        assert "proxy (spouse)" in history["events"][-1]["note"]
        trail = auditor.get("/api/v1/operator/audit").json()["entries"]
        # This test's acts: oscar's (the other tests' operators act on the same service).
        act = next(e for e in trail if e["action"] == "suspend" and e["actor"].endswith(f":{oscar}"))
        assert act["actor"] == f"operator:{oscar}" and act["case_reference"] == phone.case_reference
        assert phone.registration_id not in json.dumps(trail)  # the audit trail names cases, never ids
        assert act["details"] == {"reason": "stolen", "caller": "proxy", "relationship": "spouse",
                                  "ticket": "T-2002", "channel": "phone"}
        # The look-up is audited without what was searched for.
        find = next(e for e in trail if e["action"] == "find" and e["actor"].endswith(f":{oscar}"))
        assert find["details"]["by"] == "suspension code" and registered["suspension_code"] not in json.dumps(trail)


def test_supervisor_lift_then_the_app_reissues_the_signature(ca_server, service_server):
    card, phone, registered = _registered(ca_server, service_server)
    old = _pems(registered)
    registration, case = phone.registration_id, phone.case_reference
    with operator_client(service_server, unique("sara"), "supervisor") as supervisor, \
            service_server.client() as owner:
        assert supervisor.post(f"/api/v1/operator/registrations/{case}/suspend", json=LOST).status_code == 200
        lifted = supervisor.post(f"/api/v1/operator/registrations/{case}/lift",
                                 json={"reason": "owner found the phone, identity checked", "ticket": "T-3003",
                                       "caller": "self"})
        assert lifted.status_code == 200, lifted.text
        assert lifted.json()["state"] == "active" and lifted.json()["signature_reissue_needed"]
        assert ocsp_status(ca_server.url, old["authentication"]) == "good"
        assert ocsp_status(ca_server.url, old["signature"]) == "revoked:superseded"

        reissued = owner.post(f"/api/v1/registrations/{registration}/lift-suspension",
                              json=lift_body(owner, card, phone, rsa.generate_private_key(65537, 2048)))
        assert reissued.status_code == 200, reissued.text
        assert not reissued.json()["signature_reissue_needed"]
        assert ocsp_status(ca_server.url, _pems(reissued.json())["signature"]) == "good"
        again = owner.post(f"/api/v1/registrations/{registration}/lift-suspension",
                           json=lift_body(owner, card, phone, rsa.generate_private_key(65537, 2048)))
        assert again.status_code == 409 and again.json()["state"] == "active"
    events = [n["event"] for n in wait_for(lambda: len(_notices(service_server, case)) >= 2
                                           and _notices(service_server, case))]
    assert events == ["suspended", "supervisor-lifted"]


def test_revoke_while_suspended_by_a_supervisor_or_from_a_new_phone(ca_server, service_server):
    card, lost, first = _registered(ca_server, service_server)
    _card2, gone, second = _registered(ca_server, service_server, dict(unique_person("佐藤 花子"), gender="2"))
    with operator_client(service_server, unique("sven"), "supervisor") as supervisor, \
            service_server.client() as owner:
        for case in (lost.case_reference, gone.case_reference):
            assert supervisor.post(f"/api/v1/operator/registrations/{case}/suspend",
                                   json=LOST).status_code == 200
        # The phone is gone for good: a supervisor revokes for key compromise.
        revoked = supervisor.post(f"/api/v1/operator/registrations/{gone.case_reference}/revoke",
                                  json={"reason": "keyCompromise", "ticket": "T-4004", "caller": "self"})
        assert revoked.status_code == 200 and revoked.json()["state"] == "revoked"
        assert all(ocsp_status(ca_server.url, pem) == "revoked:keyCompromise" for pem in _pems(second).values())
        # The other owner registers a new phone: the suspended one is superseded.
        new_phone = PhoneForTests()
        assert register(owner, card, new_phone).json()["superseded"] == [lost.registration_id]
        assert all(ocsp_status(ca_server.url, pem) == "revoked:superseded" for pem in _pems(first).values())


def test_misuse_is_refused_and_changes_nothing(ca_server, service_server):
    card, phone, registered = _registered(ca_server, service_server)
    registration = phone.registration_id
    path = f"/api/v1/operator/registrations/{phone.case_reference}"
    lift = {"reason": "found again", "ticket": "T-5005", "caller": "self"}
    otto, ada = unique("otto"), unique("ada")
    with operator_client(service_server, otto, "operator") as operator, \
            operator_client(service_server, unique("sue"), "supervisor") as supervisor, \
            operator_client(service_server, ada, "auditor") as auditor, service_server.client() as anonymous:
        def state() -> tuple:
            document = read(anonymous, phone)
            return document["state"], tuple(c["status"] for c in document["certificates"])

        before = state()
        assert anonymous.post(f"{path}/suspend", json=LOST).status_code == 401
        bogus = {"Authorization": "Bearer not-a-session"}
        assert anonymous.post(f"{path}/suspend", json=LOST, headers=bogus).json()["type"].endswith("not-signed-in")
        refused = auditor.post(f"{path}/suspend", json=LOST)
        assert refused.status_code == 403 and refused.headers["content-type"] == "application/problem+json"
        assert "an auditor may not suspend" in refused.json()["detail"]
        lift_not_suspended = supervisor.post(f"{path}/lift", json=lift)
        assert lift_not_suspended.status_code == 409 and "active" in lift_not_suspended.json()["detail"]
        owner_lift = anonymous.post(f"/api/v1/registrations/{registration}/lift-suspension",
                                    json=lift_body(anonymous, card, phone, rsa.generate_private_key(65537, 2048)))
        assert owner_lift.status_code == 409
        assert auditor.post("/api/v1/operator/registrations/search", json={"code": "ABCD-EFGH-JKMN"}).status_code == 403
        nothing = operator.post("/api/v1/operator/registrations/search",
                                json={"name": "誰 でもない", "birth": "2000-01-01", "address": "どこか"})
        assert nothing.status_code == 404 and nothing.json()["type"].endswith("nothing-found")
        bad_date = operator.post("/api/v1/operator/registrations/search",
                                 json={"name": "山田 太郎", "birth": "02/01/1990", "address": "東京"})
        assert bad_date.status_code == 422 and bad_date.json()["field"] == "birth"
        assert operator.post(f"{path}/suspend", json={**LOST, "reason": "bored"}).status_code == 422
        assert state() == before

        assert operator.post(f"{path}/suspend", json=LOST).status_code == 200
        suspended = state()
        forbidden = operator.post(f"{path}/lift", json=lift)
        assert forbidden.status_code == 403 and "only: supervisor" in forbidden.json()["detail"]
        assert operator.post(f"{path}/revoke",
                             json={"reason": "keyCompromise", "ticket": "T-1", "caller": "self"}).status_code == 403
        assert operator.post(f"{path}/suspend", json=LOST).status_code == 409  # already suspended
        assert state() == suspended
        refusals = [e for e in auditor.get("/api/v1/operator/audit").json()["entries"] if e["action"] == "refused"]
        assert {(e["actor"], e["details"]["attempted"]) for e in refusals} >= {
            (f"operator:{otto}", "lift a suspension"), (f"operator:{otto}", "revoke"), (f"auditor:{ada}", "suspend")}

        assert supervisor.post(f"{path}/revoke",
                               json={"reason": "keyCompromise", "ticket": "T-6", "caller": "self"}).status_code == 200
        revoked = state()
        again = operator.post(f"{path}/suspend", json=LOST)
        assert again.status_code == 409 and again.json()["state"] == "revoked"
        assert supervisor.post(f"{path}/lift", json=lift).status_code == 409
        assert state() == revoked

    # Every act is in the chain, and the chain verifies.
    env = {**os.environ, "JPKI_DATA_DIR": str(service_server.data_dir),
           "JPKI_DATABASE_URL": service_server.database_url}
    verified = subprocess.run([sys.executable, "-m", "jpki_service", "audit", "verify"], env=env,
                              capture_output=True, text=True, timeout=60)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "intact" in verified.stdout


def test_only_the_owner_token_reads_a_registration_and_staff_see_a_case_reference(ca_server, service_server):
    person = unique_person()
    _card, phone, registered = _registered(ca_server, service_server, person)
    url = f"/api/v1/registrations/{phone.registration_id}"
    holder_items = ("山田", person["date_of_birth"][:4], "東京", "BEGIN CERTIFICATE")
    with operator_client(service_server, unique("otis"), "operator") as operator, \
            operator_client(service_server, unique("ayu"), "auditor") as auditor, service_server.client() as anonymous:
        # Nobody without the owner token reads it: no token, a wrong one, a staff session's token.
        missing = anonymous.get(url)
        assert missing.status_code == 401 and missing.json()["type"].endswith("owner-token-missing")
        assert missing.headers["www-authenticate"].startswith("Bearer")
        wrong = anonymous.get(url, headers={"Authorization": "Bearer " + "A" * 43})
        staff = operator.get(url)
        unknown = anonymous.get("/api/v1/registrations/" + "0" * 32, headers={"Authorization": "Bearer " + "A" * 43})
        assert wrong.status_code == staff.status_code == unknown.status_code == 404
        assert wrong.json()["type"] == unknown.json()["type"]  # a stranger cannot tell an id that exists
        for answer in (missing, wrong, staff, unknown):
            assert not any(item in answer.text for item in holder_items), answer.text

        # Staff find it, open it and act on it by its case reference; nothing they get names the id
        # or carries the holder's items beyond the masked name.
        found = operator.post("/api/v1/operator/registrations/search", json={"code": registered["suspension_code"]})
        history = operator.get(f"/api/v1/operator/registrations/{phone.case_reference.lower()}/history")
        assert history.status_code == 200, history.text
        by_id = operator.get(f"/api/v1/operator/registrations/{phone.registration_id}/history")
        assert by_id.status_code == 422 and by_id.json()["field"] == "case_reference"  # the id unlocks nothing
        trail = auditor.get("/api/v1/operator/audit", params={"case_reference": phone.case_reference})
        assert {e["action"] for e in trail.json()["entries"]} == {"view-history"}
        for answer in (found, history, trail):
            assert phone.registration_id not in answer.text
            assert not any(item in answer.text for item in holder_items), answer.text

        # The owner's phone reads it with its token; proving its device key gets a new one, and the old stops.
        assert read(anonymous, phone)["state"] == "active"
        renewed = anonymous.post(f"{url}/owner-token", json=proof_for(anonymous, "owner-token", phone,
                                                                        phone.device_key))
        assert renewed.status_code == 200, renewed.text
        old_token, phone.owner_token = phone.owner_token, renewed.json()["owner_token"]
        assert phone.owner_token != old_token and read(anonymous, phone)["case_reference"] == phone.case_reference
        assert anonymous.get(url, headers={"Authorization": f"Bearer {old_token}"}).status_code == 404
        signed_by_another = anonymous.post(f"{url}/owner-token", json=proof_for(anonymous, "owner-token", phone,
                                                                                 phone.signature_key))
        assert signed_by_another.status_code == 403
        assert "owner_token" not in signed_by_another.text


def test_operator_login_is_throttled_never_locked(service_server):
    """Within the 5 free failures (per username, per address) nothing waits and nothing locks; the waits
    after them, strangers and owners: tests/test_operator_accounts.py."""
    from tests.service_helpers import add_operator

    lena = unique("lena")
    add_operator(service_server, lena, "operator")
    with service_server.client() as client:
        answers = [client.post("/api/v1/operator/session", json={"username": lena, "password": f"wrong-{i}"})
                   for i in range(3)]
        assert [a.status_code for a in answers] == [401] * 3
        unknown = client.post("/api/v1/operator/session", json={"username": "nobody", "password": "x"})
        assert unknown.status_code == 401 and unknown.json() == answers[0].json()
        right = client.post("/api/v1/operator/session", json={"username": lena, "password": "correct horse battery"})
        assert right.status_code == 201, right.text  # 4 failures from this address: no wait, and no lock


def test_lifting_needs_the_ca_to_check_the_card_and_changes_nothing_without_it(own_ca_server, own_service_server):
    """It stops its CA: a CA and a service of its own."""
    ca_server, service_server = own_ca_server, own_service_server
    card, phone, registered = _registered(ca_server, service_server)
    registration = phone.registration_id
    with operator_client(service_server, "omar", "operator") as operator, service_server.client() as owner:
        assert operator.post(f"/api/v1/operator/registrations/{phone.case_reference}/suspend",
                             json=LOST).status_code == 200
        body = lift_body(owner, card, phone, rsa.generate_private_key(65537, 2048))
        ca_server.stop()
        try:
            refused = owner.post(f"/api/v1/registrations/{registration}/lift-suspension", json=body)
            assert refused.status_code == 503 and refused.json()["type"].endswith("ca-unreachable")
            assert "card" in refused.json()["detail"]
            still = read(owner, phone)
            assert still["state"] == "suspended" and still["pending_ca_operations"] == 0
            assert _serials(still) == _serials(registered)
        finally:
            ca_server.start()
        lifted = owner.post(f"/api/v1/registrations/{registration}/lift-suspension",
                            json=lift_body(owner, card, phone, rsa.generate_private_key(65537, 2048)))
        assert lifted.status_code == 200 and lifted.json()["state"] == "active", lifted.text

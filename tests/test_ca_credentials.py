"""The CA's credentials are scoped, a phone signature certificate carries the card's four items, and a
public key is certified once (issue 10, point 5; docs/ca.md, "The two credentials").

Through a real ``jpki-ca serve`` process (SQLite and PostgreSQL; one per backend for the module, each
test writing under operation ids and keys of its own): the service credential may issue and
change phone certificates only; card certificates need the administrator credential (or the CLI).
"""
from __future__ import annotations

import datetime as dt
import os
import stat
import subprocess
import sys

import httpx
import pytest
import sqlalchemy as sa
from alembic import command
from asn1crypto import core
from cryptography import x509

from ca_mock.authorities.service import initialise
from ca_mock.db import VERSION_TABLE, alembic_config, is_older_store, migrate
from tests.conftest import free_port, start_process, stop_process
from tests.helpers import PERSON, csr_pem, issue_body, rsa_key
from tests.shared_ca import _fresh_keys_per_test, module_ca_server, unique  # noqa: F401 (a fixture)
from tests.test_api_bad_input import assert_problem, store_unchanged

pytestmark = pytest.mark.e2e

CARD_PROFILES = ("card-signature", "card-authentication")
PHONE_PROFILES = ("phone-signature", "phone-authentication")


def _post(ca_server, path: str, body: dict, admin: bool = False):
    with ca_server.client(admin=admin) as client:
        return client.post(path, json=body)


def _issued(ca_server, body: dict, admin: bool = False) -> dict:
    response = _post(ca_server, "/api/v1/certificates", body, admin)
    assert response.status_code == 201, response.text
    return response.json()


def _problem(response, status: int, field: str | None = None) -> dict:
    """A problem document (tests/test_api_bad_input.py) naming ``field``."""
    problem = assert_problem(response, status)
    if field is not None:
        assert problem["field"] == field, problem
    return problem


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def ca_server(request, tmp_path_factory):
    """``jpki-ca serve`` on a store of its own, once per backend for the module (conftest's is once per
    test); the tests that need a store of their own take conftest's ``store`` and ``hierarchy``."""
    with module_ca_server(request.param, tmp_path_factory.mktemp(f"credentials-{request.param}")) as running:
        yield running


@pytest.fixture
def card(ca_server) -> dict:
    """A card signature certificate, issued with the administrator credential."""
    return _issued(ca_server, issue_body("card-signature", unique("card-1")), admin=True)


def _four_items(certificate_pem: str) -> dict[str, str]:
    """The four items of a signature certificate's subjectAltName otherNames (DESIGN.md section 4)."""
    cert = x509.load_pem_x509_certificate(certificate_pem.encode())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    values = {name.type_id.dotted_string: name.value for name in san.get_values_for_type(x509.OtherName)}
    birth = core.PrintableString.load(values["1.2.392.200149.8.5.5.4"]).native
    return {
        "name": core.UTF8String.load(values["1.2.392.200149.8.5.5.1"]).native,
        "gender": core.PrintableString.load(values["1.2.392.200149.8.5.5.3"]).native,
        "date_of_birth": dt.datetime.strptime(birth, "%Y%m%d").date().isoformat(),
        "address": core.UTF8String.load(values["1.2.392.200149.8.5.5.5"]).native,
    }


# -- the service credential -------------------------------------------------------------------
@pytest.mark.parametrize("profile", CARD_PROFILES)
def test_service_credential_cannot_issue_card_profiles(ca_server, profile):
    with store_unchanged(ca_server):
        response = _post(ca_server, "/api/v1/certificates", issue_body(profile, f"svc-{profile}"))
    problem = _problem(response, 403)
    assert f"may not issue {profile}" in problem["detail"] and "administrator credential" in problem["detail"]
    assert problem["action"] == "issue" and problem["profile"] == profile


@pytest.mark.parametrize("action", ["revoke", "hold", "release"])
def test_service_credential_cannot_change_a_card_certificates_status(ca_server, card, action):
    body = {"operation_id": f"svc-{action}", **({"reason": "keyCompromise"} if action == "revoke" else {})}
    if action == "release":  # only a held certificate can be released: hold it first, as administrator
        held = _post(ca_server, f"/api/v1/certificates/{card['serial']}/hold", {"operation_id": unique("admin-hold")},
                     admin=True)
        assert held.status_code == 200, held.text
    with store_unchanged(ca_server):
        problem = _problem(_post(ca_server, f"/api/v1/certificates/{card['serial']}/{action}", body), 403)
    assert f"may not {action} card-signature" in problem["detail"]
    with ca_server.client() as client:  # reading stays allowed
        looked_up = client.get(f"/api/v1/certificates/{card['serial']}")
    assert looked_up.status_code == 200
    assert looked_up.json()["status"] == ("held" if action == "release" else "good")


def test_service_credential_issues_and_changes_phone_certificates(ca_server, card):
    issued = [_issued(ca_server, issue_body(profile, unique(f"svc-{profile}"), card_serial=card["serial"]))
              for profile in PHONE_PROFILES]
    assert [c["profile"] for c in issued] == list(PHONE_PROFILES)
    serial = issued[1]["serial"]
    for action, status in (("hold", "held"), ("release", "good"), ("revoke", "revoked")):
        body = {"operation_id": unique(f"svc-{action}"), **({"reason": "superseded"} if action == "revoke" else {})}
        response = _post(ca_server, f"/api/v1/certificates/{serial}/{action}", body)
        assert response.status_code == 200, response.text
        assert response.json()["status"] == status


# -- the administrator credential -------------------------------------------------------------
def test_admin_credential_issues_card_profiles_and_changes_their_status(ca_server):
    issued = [_issued(ca_server, issue_body(profile, unique(f"admin-{profile}")), admin=True)
              for profile in CARD_PROFILES]
    assert [c["profile"] for c in issued] == list(CARD_PROFILES)
    response = _post(ca_server, f"/api/v1/certificates/{issued[0]['serial']}/revoke",
                     {"operation_id": unique("admin-revoke"), "reason": "affiliationChanged"}, admin=True)
    assert response.status_code == 200 and response.json()["status"] == "revoked", response.text


def test_an_unknown_token_is_still_401(ca_server):
    with ca_server.client(authorised=False) as client:
        response = client.post("/api/v1/certificates", json=issue_body("card-signature", "x"),
                               headers={"Authorization": "Bearer not-a-token-of-this-ca"})
    _problem(response, 401)


# -- the four items come from the card --------------------------------------------------------
def test_phone_signature_without_person_carries_the_cards_four_items(ca_server, card):
    body = issue_body("phone-signature", unique("phone-sig"), card_serial=card["serial"])
    del body["person"]
    issued = _issued(ca_server, body)
    assert _four_items(issued["certificate_pem"]) == _four_items(card["certificate_pem"]) == PERSON
    # A person that agrees with the card is accepted (older clients still send it).
    agreeing = _issued(ca_server, issue_body("phone-signature", unique("phone-sig-2"), card_serial=card["serial"]))
    assert _four_items(agreeing["certificate_pem"]) == PERSON


@pytest.mark.parametrize("item, other", [("name", "山田 花子"), ("date_of_birth", "1990-01-03"),
                                         ("gender", "2"), ("address", "東京都千代田区千代田1-2")])
def test_a_person_disagreeing_with_the_card_is_refused_and_nothing_is_written(ca_server, card, item, other):
    person = {**PERSON, item: other}
    body = issue_body("phone-signature", "phone-sig", card_serial=card["serial"], person=person)
    with store_unchanged(ca_server):
        problem = _problem(_post(ca_server, "/api/v1/certificates", body), 422, field="person")
    assert "disagrees with the card signature certificate" in problem["detail"]
    assert person["name"] not in problem["detail"] and person["address"] not in problem["detail"]


# -- one key, one certificate -----------------------------------------------------------------
def test_the_same_public_key_is_certified_once(ca_server, card):
    key, auth_1 = rsa_key(), unique("auth-1")
    first = _issued(ca_server, {**issue_body("phone-authentication", auth_1, card_serial=card["serial"]),
                                "csr_pem": csr_pem(key)})
    # An idempotent retry of the same operation is answered with the same certificate.
    retried = _issued(ca_server, {**issue_body("phone-authentication", auth_1, card_serial=card["serial"]),
                                  "csr_pem": csr_pem(key)})
    assert retried["serial"] == first["serial"]

    attempts = [  # the same profile again; the 4-digit-PIN key as the legal signature key; a card profile
        ({**issue_body("phone-authentication", "auth-2", card_serial=card["serial"]), "csr_pem": csr_pem(key)}, False),
        ({**issue_body("phone-signature", "sig-1", card_serial=card["serial"]), "csr_pem": csr_pem(key)}, False),
        ({**issue_body("card-signature", "card-2"), "csr_pem": csr_pem(key)}, True),
    ]
    for body, admin in attempts:
        with store_unchanged(ca_server):
            problem = _problem(_post(ca_server, "/api/v1/certificates", body, admin), 409, field="csr_pem")
        assert "already certified" in problem["detail"] and first["serial"] in problem["detail"]


def test_a_store_made_before_the_rule_gets_the_fingerprints_and_refuses_known_keys(store, hierarchy, ca_settings):
    """A store made by create_all before the rule (and before the CA's migrations) has no such column:
    migrate adds and fills it (the earliest certificate of a key keeps the key; a duplicate issued before
    the rule stays as it was), then brings the store under Alembic."""
    from ca_mock.certificates.schemas import IssueRequest
    from ca_mock.certificates.service import issue_certificate
    from ca_mock.problems import KeyAlreadyCertified

    key = rsa_key()
    first = issue_certificate(store, ca_settings, IssueRequest(
        operation_id="old-1", profile="card-authentication", csr_pem=csr_pem(key)))
    command.downgrade(alembic_config(store.url), "0001")  # the schema create_all made before the migrations
    with store.engine.begin() as connection:  # make it an old store holding a duplicate, as before the rule
        connection.exec_driver_sql(f"DROP TABLE {VERSION_TABLE}")
        connection.exec_driver_sql("DROP INDEX ux_certificates_public_key_sha256")
        connection.exec_driver_sql("ALTER TABLE certificates DROP COLUMN public_key_sha256")
        table = sa.Table("certificates", sa.MetaData(), autoload_with=connection)
        row = dict(connection.execute(sa.select(table)).mappings().one())
        connection.execute(table.insert().values({**row, "serial": "abc123",
                                                  "not_before": row["not_before"] + dt.timedelta(seconds=1)}))
    migrate(store.url)
    migrate(store.url)  # once only: a second start finds the column
    assert not is_older_store(store.engine)
    with store.engine.connect() as connection:
        fingerprints = dict(connection.exec_driver_sql(
            "SELECT serial, public_key_sha256 FROM certificates ORDER BY serial").all())
    assert fingerprints[first["serial"]] is not None and fingerprints["abc123"] is None
    with pytest.raises(KeyAlreadyCertified):
        issue_certificate(store, ca_settings, IssueRequest(
            operation_id="new-1", profile="card-signature", csr_pem=csr_pem(key), person=PERSON))


# -- the CLI and the token files --------------------------------------------------------------
def _ca_cli(ca_server, *args: str, **env: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "JPKI_CA_DATA_DIR": str(ca_server.settings.data_dir),
                   "JPKI_CA_DATABASE_URL": ca_server.settings.resolved_database_url(), **env}
    return subprocess.run([sys.executable, "-m", "ca_mock", *args], env=environment, capture_output=True,
                          text=True, timeout=120)


def test_jpki_ca_card_issue_and_revoke_still_work(ca_server, tmp_path):
    made = _ca_cli(ca_server, "card", "issue", "--out", str(tmp_path / "card.json"), "--name", PERSON["name"],
                   "--birth", PERSON["date_of_birth"], "--gender", PERSON["gender"],
                   "--address", PERSON["address"], JPKI_CARD_PASSWORD="CARD1234", JPKI_CARD_PIN="1234")
    assert made.returncode == 0, made.stderr
    serial = next(line.split()[-1] for line in made.stdout.splitlines() if "signature certificate" in line)
    with ca_server.client() as client:
        assert client.get(f"/api/v1/certificates/{serial}").json()["status"] == "good"
    revoked = _ca_cli(ca_server, "revoke", serial, "--reason", "affiliationChanged")
    assert revoked.returncode == 0, revoked.stderr
    with ca_server.client() as client:
        assert client.get(f"/api/v1/certificates/{serial}").json()["status"] == "revoked"


def test_init_exist_ok_writes_the_admin_token_a_store_made_before_it_lacks(ca_settings, store):
    initialise(store, ca_settings)
    admin_file = ca_settings.data_dir / "admin-token"
    service_token = (ca_settings.data_dir / "api-token").read_text()
    assert stat.S_IMODE(admin_file.stat().st_mode) == 0o600
    admin_file.unlink()  # as a store made before the administrator credential
    initialise(store, ca_settings, exist_ok=True)
    assert stat.S_IMODE(admin_file.stat().st_mode) == 0o600
    admin_token = admin_file.read_text().strip()
    assert len(admin_token) >= 32 and admin_token != service_token.strip()
    assert (ca_settings.data_dir / "api-token").read_text() == service_token  # kept unchanged
    initialise(store, ca_settings, exist_ok=True)
    assert admin_file.read_text().strip() == admin_token  # never replaced


def test_serve_refuses_an_admin_token_equal_to_the_service_token(ca_settings, hierarchy):
    env = {**os.environ, "JPKI_CA_DATA_DIR": str(ca_settings.data_dir),
           "JPKI_CA_DATABASE_URL": ca_settings.resolved_database_url(),
           "JPKI_CA_ADMIN_TOKEN": ca_settings.resolved_api_token()}
    result = subprocess.run([sys.executable, "-m", "ca_mock", "serve", "--port", str(free_port())], env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "administrator token equals the service token" in result.stderr
    assert ca_settings.resolved_api_token() not in result.stdout + result.stderr


def test_a_store_whose_key_is_not_its_certificates_is_refused(ca_settings, hierarchy):
    """The CA loads its own keys without cryptography's slow RSA check (jpki_common/keys.py) and checks
    instead that each key is its certificate's: a store whose two issuing keys were swapped is refused
    with the authority named, and signs nothing."""
    with sa.create_engine(ca_settings.resolved_database_url()).begin() as connection:
        keys = dict(connection.exec_driver_sql("SELECT name, private_key_pem FROM authorities").all())
        names = sorted(name for name in keys if name != "root")[:2]
        for name, other in zip(names, reversed(names), strict=True):
            connection.execute(sa.text("UPDATE authorities SET private_key_pem = :pem WHERE name = :name"),
                               {"pem": keys[other], "name": name})
    env = {**os.environ, "JPKI_CA_DATA_DIR": str(ca_settings.data_dir),
           "JPKI_CA_DATABASE_URL": ca_settings.resolved_database_url()}
    result = subprocess.run([sys.executable, "-m", "ca_mock", "crl", "--issuer", "sign"], env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "in this store is not its certificate's" in result.stderr and names[0] in result.stderr
    assert "BEGIN X509 CRL" not in result.stdout


def test_a_store_without_an_admin_token_serves_and_says_how_to_get_one(ca_settings, hierarchy, tmp_path):
    (ca_settings.data_dir / "admin-token").unlink()
    port = int(ca_settings.public_url.rsplit(":", 1)[1])
    env = {"JPKI_CA_DATA_DIR": str(ca_settings.data_dir), "JPKI_CA_DATABASE_URL": ca_settings.resolved_database_url()}
    url = f"http://127.0.0.1:{port}"
    process = start_process([sys.executable, "-m", "ca_mock", "serve", "--port", str(port)], env, f"{url}/healthz",
                            tmp_path / "ca.log")
    try:
        response = httpx.post(f"{url}/api/v1/certificates", json=issue_body("card-signature", "c"),
                              headers={"Authorization": f"Bearer {ca_settings.resolved_api_token()}"})
        assert "jpki-ca init --exist-ok" in _problem(response, 403)["detail"]
    finally:
        stop_process(process)
    assert "no administrator token" in (tmp_path / "ca.log").read_text()

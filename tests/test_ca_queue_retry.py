"""No accepted change dies in the CA queue (DESIGN.md section 8; docs/faults-and-races.md, "The CA
refuses our credential, or fails for minutes").

- The CA's token is rotated the way docs/ca.md describes: the service's token is refused (401).
  The owner's revocation waits, visibly (registration document, ``jpki-service status``,
  ``/metrics``, a log warning); ``serve`` with the stale token refuses to start; restarted with the
  new token, the service carries it. 0 lost, ``openssl ocsp`` at the CA says revoked.
- The CA answers 500 for a long stretch, then recovers: 0 lost, 0 diverged.
- A definite refusal of the command ends it ``failed``, shown with the CA's reason; ``jpki-service
  ca-commands requeue`` puts it back once the cause is fixed, audited; a re-queue never carries a
  status a later change has made moot.

Between the service and the CA sits a small forwarding proxy that can answer in the CA's place
(500, or a problem document refusing a command), so each fault is exactly the one named.
"""
from __future__ import annotations

import contextlib
import http.server
import json
import os
import secrets
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from jpki_service.ca_commands.service import queue_summary
from tests.conftest import free_port
from tests.service_helpers import PhoneForTests, proof_for, read
from tests.test_faults import (
    LOST,
    Bench,
    _registered,
    _revoked_both,
    ca_certificate,
    divergences,
    make_bench,
    service_cli,
    service_snapshot,
)
from tests.test_openssl_judge import openssl

pytestmark = pytest.mark.e2e

OUTAGE_SECONDS = 8.0  # stands in for minutes: the retry back-off is capped at 1 s here (30 s by default)


# -- a CA that misbehaves on demand ----------------------------------------------------------------
class FaultyCA:
    """Forwards every request to the real CA, unless told to answer in its place:
    ``status`` for every request (e.g. 500), or ``refuse`` = (status, path suffix) for the
    commands whose path ends so (a problem document, as the CA's own refusals are)."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.status: int | None = None
        self.refuse: tuple[int, str] | None = None
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *_args) -> None:
                pass

            def _answer(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                refused = proxy.refuse and self.path.endswith(proxy.refuse[1])
                if proxy.status is not None or refused:
                    status = proxy.status or proxy.refuse[0]
                    problem = json.dumps({"type": "https://jpki-mock.invalid/problems/test-refusal",
                                          "title": "Refused for the test", "status": status,
                                          "detail": f"the test's CA answers {status}"}).encode()
                    self.send_response(status)
                    self.send_header("Content-Type", "application/problem+json")
                    self.send_header("Content-Length", str(len(problem)))
                    self.end_headers()
                    self.wfile.write(problem)
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() in ("authorization", "content-type")}
                answer = httpx.request(self.command, f"{proxy.upstream}{self.path}", headers=headers, content=body,
                                       timeout=30)
                self.send_response(answer.status_code)
                self.send_header("Content-Type", answer.headers.get("content-type", "application/octet-stream"))
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            do_GET = do_POST = _answer

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextlib.contextmanager
def bench_behind_proxy(kind: str, tmp: Path):
    """A bench (tests/test_faults.py) whose service reaches the CA's API through a :class:`FaultyCA`."""
    with contextlib.ExitStack() as stack:
        bench = make_bench(kind, tmp, stack)
        proxy = FaultyCA(bench.ca.url)
        stack.callback(proxy.close)
        bench.service.env["JPKI_CA_URL"] = proxy.url
        bench.service.start()
        bench.tokens["operator"] = bench.service.login("olga", "operator")
        bench.tokens["supervisor"] = bench.service.login("sven", "supervisor")
        yield bench, proxy


# -- what the operator and the owner see -----------------------------------------------------------
def registration(bench: Bench, phone: PhoneForTests) -> dict:
    with bench.service.client() as client:
        return read(client, phone)


def wait_for(condition, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)


def ocsp_at_ca(bench: Bench, tmp: Path, certificate_pem: str) -> str:
    """The status ``openssl ocsp`` reads at the OCSP URL in the certificate, verified against the CA's
    published chain: good | revoked | unknown."""
    certificate = x509.load_pem_x509_certificate(certificate_pem.encode())
    issuer_name = "sign" if "sign" in certificate.issuer.rfc4514_string().lower() else "auth"
    chain = tmp / f"chain-{issuer_name}.pem"
    issuer = tmp / f"{issuer_name}.pem"
    ders = {name: httpx.get(f"{bench.ca.url}/ca/{name}.cer").content for name in ("root", issuer_name)}
    pems = {name: x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM)
            for name, der in ders.items()}
    issuer.write_bytes(pems[issuer_name])
    chain.write_bytes(pems["root"] + pems[issuer_name])
    path = tmp / f"cert-{certificate.serial_number:x}.pem"
    path.write_text(certificate_pem)
    url = certificate.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    ocsp_url = next(d.access_location.value for d in url if d.access_method.dotted_string == "1.3.6.1.5.5.7.48.1")
    result = openssl("ocsp", "-issuer", issuer, "-cert", path, "-url", ocsp_url, "-CAfile", chain, "-resp_text")
    assert result.returncode == 0 and "Response verify OK" in result.stdout + result.stderr, \
        result.stdout + result.stderr
    line = next(line for line in result.stdout.splitlines() if line.startswith(f"{path}:"))
    return line.split(":", 1)[1].strip()


def current_pems(document: dict) -> dict[str, str]:
    return {c["kind"]: c["certificate_pem"] for c in document["certificates"] if c["current"]}


# -- the token rotated -----------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_token_rotated_the_revocation_waits_then_reaches_the_ca(kind, tmp_path):
    with contextlib.ExitStack() as stack:
        bench = make_bench(kind, tmp_path, stack)
        bench.service.start()
        case = _registered(bench)
        pems = current_pems(registration(bench, case.phone))
        assert {k: ocsp_at_ca(bench, tmp_path, p) for k, p in pems.items()} == {"signature": "good",
                                                                               "authentication": "good"}

        # docs/ca.md, "The API token": replace the file and restart `jpki-ca serve`.
        new_token = secrets.token_urlsafe(32)
        bench.ca.stop()
        bench.ca.settings.token_file.write_text(new_token)
        bench.ca.start()

        # The owner sells the phone: recorded, but the CA refuses the service's (old) token.
        with bench.service.client() as owner:
            answer = owner.post(f"/api/v1/registrations/{case.registration_id}/revoke",
                                json=proof_for(owner, "revoke", case.phone, case.phone.signature_key))
        assert answer.status_code == 202, answer.text
        assert (answer.json()["state"], answer.json()["ca_sync"]) == ("revoked", "pending")

        time.sleep(OUTAGE_SECONDS / 2)  # the dispatcher keeps trying, and never gives up
        document = registration(bench, case.phone)
        assert document["ca_sync"] == "pending" and document["failed_ca_operations"] == 0, document
        assert "keeps carrying it" in document["ca_sync_reason"] and "attempts so far" in document["ca_sync_reason"]
        assert "JPKI_CA_TOKEN" not in document["ca_sync_reason"]  # the operators' business, not the owner's
        status = service_cli(bench, "status").stdout
        assert "CA queue       pending 2, failed 0" in status, status
        assert "retrying: the CA refused our credential (401): check JPKI_CA_TOKEN" in status, status
        with bench.service.client() as client:
            metrics = client.get("/metrics").text
        assert 'jpki_ca_commands_retrying{last_error="the CA refused our credential (401): check JPKI_CA_TOKEN"}' \
            in metrics, metrics
        assert "the CA refused our credential (401)" in bench.service.log.read_text()  # the log warning
        assert {k: ocsp_at_ca(bench, tmp_path, p) for k, p in pems.items()} == {"signature": "good",
                                                                               "authentication": "good"}

        # Restarted with the stale token, serve refuses to start, and says why.
        bench.service.stop()
        refused = subprocess.run([sys.executable, "-m", "jpki_service", "serve", "--port", str(free_port())],
                                 env={**os.environ, **bench.service.env}, capture_output=True, text=True, timeout=120)
        assert refused.returncode == 1, refused.stdout + refused.stderr
        assert "the CA refused our credential (401): check JPKI_CA_TOKEN" in refused.stderr, refused.stderr
        assert "Nothing was started" in refused.stderr
        assert new_token not in refused.stderr + refused.stdout

        # With the new token it starts, and carries what waited.
        bench.service.env["JPKI_CA_TOKEN"] = bench.ca.token = new_token
        bench.service.start()
        queue = bench.service.settle()
        assert queue.get("failed", 0) == 0, queue
        document = registration(bench, case.phone)
        assert document["ca_sync"] == "done" and document["ca_sync_reason"] is None, document
        assert _revoked_both("cessationOfOperation")(bench, case, document) == []  # 0 lost
        assert divergences(bench, case.card.serial) == []
        assert {k: ocsp_at_ca(bench, tmp_path, p) for k, p in pems.items()} == {"signature": "revoked",
                                                                               "authentication": "revoked"}


def test_serve_starts_with_a_warning_when_the_ca_does_not_answer(tmp_path):
    """A CA outage must not stop owners revoking, a restart of the service included: a warning, and start."""
    from tests.conftest import start_process, stop_process

    port = free_port()
    env = {"JPKI_DATA_DIR": str(tmp_path / "service"), "JPKI_DATABASE_URL": f"sqlite:///{tmp_path / 'svc.sqlite3'}",
           "JPKI_CA_URL": f"http://127.0.0.1:{free_port()}", "JPKI_CA_TOKEN": "whatever"}
    process = start_process([sys.executable, "-m", "jpki_service", "serve", "--port", str(port)], env,
                            f"http://127.0.0.1:{port}/healthz", tmp_path / "service.log")
    stop_process(process)
    log = (tmp_path / "service.log").read_text()
    assert f"warning: the CA at JPKI_CA_URL={env['JPKI_CA_URL']} does not answer" in log and "whatever" not in log


# -- the CA failing for minutes --------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_ca_failing_500_for_a_long_stretch_nothing_lost_nothing_diverged(kind, tmp_path):
    with bench_behind_proxy(kind, tmp_path) as (bench, proxy):
        cases = [_registered(bench) for _ in range(3)]
        proxy.status = 500
        with bench.service.client() as owner, bench.service.client(bench.tokens["operator"]) as operator:
            answers = [owner.post(f"/api/v1/registrations/{cases[0].registration_id}/revoke",
                                  json=proof_for(owner, "revoke", cases[0].phone, cases[0].phone.signature_key))]
            for case in cases[1:]:
                answers.append(operator.post(f"/api/v1/operator/registrations/{case.phone.case_reference}/suspend",
                                             json=LOST))
            answers.append(owner.post(f"/api/v1/registrations/{cases[2].registration_id}/revoke",
                                      json=proof_for(owner, "revoke", cases[2].phone, cases[2].phone.signature_key)))
        assert [a.status_code for a in answers] == [202] * 4, [a.text for a in answers]

        time.sleep(OUTAGE_SECONDS)
        status = service_cli(bench, "status").stdout
        assert "CA queue       pending 8, failed 0" in status, status  # 2 revokes, 2 + 2 holds, 2 revokes
        assert f"retrying: the CA at {proxy.url} failed (500)" in status, status
        assert queue_summary(bench.service.db()).get("failed", 0) == 0

        proxy.status = None
        queue = bench.service.settle()
        assert queue.get("failed", 0) == 0, queue
        expected = {cases[0].registration_id: "revoked", cases[1].registration_id: "held",
                    cases[2].registration_id: "revoked"}
        for case in cases:
            assert divergences(bench, case.card.serial) == []
            document = registration(bench, case.phone)
            assert document["ca_sync"] == "done", document
            for kind_, serial in case.before.items():
                assert ca_certificate(bench, serial)["status"] == expected[case.registration_id], (kind_, serial)
            assert {ocsp_at_ca(bench, tmp_path, p) for p in current_pems(document).values()} == {"revoked"}
        assert "failed (500)" in bench.service.log.read_text()


# -- a definite refusal ----------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_refused_command_is_failed_shown_and_requeued_with_an_audit_entry(kind, tmp_path):
    with bench_behind_proxy(kind, tmp_path) as (bench, proxy):
        case = _registered(bench)
        moot = _registered(bench)  # its holds are refused, then a lift makes them moot
        proxy.refuse = (422, "/revoke")
        with bench.service.client() as owner:
            answer = owner.post(f"/api/v1/registrations/{case.registration_id}/revoke",
                                json=proof_for(owner, "revoke", case.phone, case.phone.signature_key))
        assert answer.status_code == 202 and answer.json()["ca_sync"] == "failed", answer.text
        proxy.refuse = (409, "/hold")
        with bench.service.client(bench.tokens["operator"]) as operator:
            assert operator.post(f"/api/v1/operator/registrations/{moot.phone.case_reference}/suspend",
                                 json=LOST).status_code == 202
        proxy.refuse = None
        with bench.service.client(bench.tokens["supervisor"]) as supervisor:
            lifted = supervisor.post(f"/api/v1/operator/registrations/{moot.phone.case_reference}/lift",
                                     json={"reason": "phone found", "ticket": "T-2", "caller": "self"})
        assert lifted.status_code == 202 and lifted.json()["ca_sync"] == "failed", lifted.text

        # Shown, with the CA's reason: the registration document, the owner's app, the operators' status.
        document = registration(bench, case.phone)
        assert (document["ca_sync"], document["failed_ca_operations"]) == ("failed", 2), document
        assert "the CA refused the revoke (422 Refused for the test: the test's CA answers 422)" \
            in document["ca_sync_reason"], document
        status = service_cli(bench, "status").stdout
        assert "CA queue       pending 0, failed 4" in status, status
        assert f"revoke of the signature certificate, registration {case.registration_id}: the CA refused the " \
               "revoke (422" in status, status
        assert "jpki-service ca-commands requeue" in status
        listed = service_cli(bench, "ca-commands", "list", "--state", "failed").stdout
        assert listed.count("last error: the CA refused the") == 4, listed
        with bench.service.client() as client:
            assert 'jpki_ca_commands{state="failed"} 4.0' in client.get("/metrics").text
        pems = current_pems(document)
        assert {ocsp_at_ca(bench, tmp_path, p) for p in pems.values()} == {"good"}  # not at the CA: not hidden

        # The cause fixed, the operator re-queues; the CA gets the revocation; the moot holds are not sent.
        requeued = service_cli(bench, "ca-commands", "requeue", "--all").stdout
        assert "re-queued 2" in requeued and "ended as superseded 2" in requeued, requeued
        queue = bench.service.settle()
        assert queue.get("failed", 0) == 0 and queue.get("superseded") == 2, queue
        document = registration(bench, case.phone)
        assert document["ca_sync"] == "done", document
        assert _revoked_both("cessationOfOperation")(bench, case, document) == []
        assert {ocsp_at_ca(bench, tmp_path, p) for p in pems.values()} == {"revoked"}
        assert registration(bench, moot.phone)["ca_sync"] == "done"
        for c in (case, moot):
            assert divergences(bench, c.card.serial) == [], service_snapshot(bench, c.card.serial)

        # Audited: who (the local account), what, for which registration; the chain still verifies.
        from jpki_service.audit.service import entries

        with bench.service.db().sessions() as session:
            audited = {e["case_reference"]: e for e in entries(session) if e["action"] == "ca-commands-requeued"}
        assert set(audited) == {case.phone.case_reference, moot.phone.case_reference}
        assert audited[case.phone.case_reference]["actor"].startswith("administrator:")
        assert len(audited[case.phone.case_reference]["details"]["requeued"]) == 2
        assert len(audited[moot.phone.case_reference]["details"]["superseded"]) == 2
        assert "audit trail intact" in service_cli(bench, "audit", "verify").stdout

        # Nothing left to re-queue; asking for a command that is not failed says so.
        again = service_cli(bench, "ca-commands", "requeue", "999999", check=False)
        assert again.returncode == 1 and "not failed (or no such command): 999999" in again.stderr


def test_requeue_needs_a_selection(tmp_path):
    result = subprocess.run([sys.executable, "-m", "jpki_service", "ca-commands", "requeue", "--data",
                             str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "say which: command ids, --registration ID, or --all" in result.stderr


def test_the_owner_is_not_told_nothing_more_to_do_before_the_ca_has_it(capsys):
    """The app's words after a revocation; the flow itself is tests/test_e2e_phone.py (CA down while revoking)."""
    from app_client.cli import _say_where_the_ca_stands
    from app_client.service_client import Registration

    for sync, reason, expected in (
            ("pending", "recorded here, not yet at the CA", "The revocation is recorded by the service and will be "
                                                            "carried to the CA"),
            ("failed", "the CA refused the revoke (422 ...)", "the CA refused it (ca_sync failed: the CA refused")):
        _say_where_the_ca_stands(Registration("ab" * 16, "revoked", "owner-revoked", sync, (), ca_sync_reason=reason),
                                 "the revocation")
        out = capsys.readouterr().out
        assert expected in out and "nothing more to do" not in out, out
        assert "jpki-app status" in out and f"ca_sync {sync}" in out
    _say_where_the_ca_stands(Registration("ab" * 16, "revoked", "owner-revoked", "done", ()), "the revocation")
    assert capsys.readouterr().out == ""

"""The card cascade believes only a current CRL: a replayed old one would hide the card revocations made
since. ``CAClient.revoked_card_serials`` against a real HTTP server that serves CRLs signed with the real
signature CA's key, current or stale."""
from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from ca_mock.authorities.service import Hierarchy
from jpki_service.adapters.ca_client import CAClient, CAUnavailable
from tests.conftest import free_port

REVOKED_SERIAL = 0x1234


def _crl(hierarchy: Hierarchy, this_update: dt.datetime, next_update: dt.datetime) -> bytes:
    sign = hierarchy.get("sign")
    entry = (x509.RevokedCertificateBuilder().serial_number(REVOKED_SERIAL).revocation_date(this_update)
             .add_extension(x509.CRLReason(x509.ReasonFlags.affiliation_changed), False).build())
    crl = (x509.CertificateRevocationListBuilder().issuer_name(sign.certificate.subject)
           .last_update(this_update).next_update(next_update).add_revoked_certificate(entry)
           .sign(sign.key, hashes.SHA256()))
    return crl.public_bytes(serialization.Encoding.DER)


@pytest.fixture
def serving(hierarchy: Hierarchy) -> Iterator[tuple[str, dict[str, bytes]]]:
    """A real HTTP server answering /ca/sign.cer and /crl/sign.crl with what the test puts in ``files``."""
    files = {"/ca/sign.cer": hierarchy.get("sign").certificate.public_bytes(serialization.Encoding.DER)}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            body = files[self.path]
            self.send_response(200)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    port = free_port()
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{port}", files
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_current_crl_is_believed_and_a_stale_or_future_one_is_not(hierarchy: Hierarchy, serving):
    url, files = serving
    client = CAClient(url, None)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    hour, day = dt.timedelta(hours=1), dt.timedelta(days=1)
    try:
        files["/crl/sign.crl"] = _crl(hierarchy, now - hour, now + day)
        assert client.revoked_card_serials() == {format(REVOKED_SERIAL, "x"): "affiliationChanged"}

        files["/crl/sign.crl"] = _crl(hierarchy, now - 3 * day, now - 2 * day)  # replayed, expired
        with pytest.raises(CAUnavailable, match="CRL is not current"):
            client.revoked_card_serials()

        files["/crl/sign.crl"] = _crl(hierarchy, now + day, now + 2 * day)  # from the future
        with pytest.raises(CAUnavailable, match="CRL is not current"):
            client.revoked_card_serials()
    finally:
        client.close()

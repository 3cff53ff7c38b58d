"""Small builders the tests share: key pairs, CSRs and issue requests."""
from __future__ import annotations

import contextlib
import threading

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from jpki_common import keys

PERSON = {"name": "山田 太郎", "date_of_birth": "1990-01-02", "gender": "1", "address": "東京都千代田区千代田1-1"}

# Key generation dominates test time: keys made once per test process are handed out again in
# later tests (each has a CA store of its own), but never twice in one test, since the CA certifies
# a key only once.
_KEYS: list = []
_handed_out = 0
_keys_lock = threading.Lock()


def rsa_key() -> rsa.RSAPrivateKey:
    """An RSA-2048 key not handed out before in this test."""
    global _handed_out
    with _keys_lock:
        if _handed_out == len(_KEYS):
            _KEYS.append(rsa.generate_private_key(65537, 2048))
        _handed_out += 1
        return _KEYS[_handed_out - 1]


# The same for the CA's own keys (root, issuing CAs, OCSP signers, TSA: six per hierarchy, two
# seconds of key generation), per key algorithm.
_CA_KEYS: dict[str, list] = {}
_ca_handed_out: dict[str, int] = {}


def start_handing_out_keys_again() -> None:
    """At the start of each test (conftest.py): its CA store has certified none of the keys."""
    global _handed_out
    with _keys_lock:
        _handed_out = 0
        _ca_handed_out.clear()


@contextlib.contextmanager
def reused_ca_keys(keys_module):
    """While in the block, ``keys_module.generate_private_key`` (what ``initialise`` makes the CA's keys
    with) hands out keys made earlier in this test process: never one handed out before in this test,
    so two CAs of one test never share a key. For a hierarchy that lives only as long as its test."""
    generate = keys_module.generate_private_key

    def pooled(algorithm: str):
        with _keys_lock:
            pool = _CA_KEYS.setdefault(algorithm, [])
            index = _ca_handed_out.get(algorithm, 0)
            if index == len(pool):
                pool.append(generate(algorithm))
            _ca_handed_out[algorithm] = index + 1
            return pool[index]

    keys_module.generate_private_key = pooled
    try:
        yield
    finally:
        keys_module.generate_private_key = generate


def csr_pem(key=None, common_name: str = "ignored by the CA") -> str:
    return keys.csr_pem(key or rsa_key(), common_name)


def p256_csr_pem() -> str:
    return csr_pem(ec.generate_private_key(ec.SECP256R1()))


def issue_body(profile: str, operation_id: str, card_serial: str | None = None, **extra) -> dict:
    body = {"operation_id": operation_id, "profile": profile, "csr_pem": csr_pem()}
    if profile.endswith("signature"):
        body["person"] = PERSON
    if card_serial:
        body["card_serial"] = card_serial
    body.update(extra)
    return body


def openssl_ocsp(ca_url: str, certificate_pem: str, folder) -> str:
    """The CA's status of a certificate as the ``openssl ocsp`` CLI sees it, response signature verified:
    ``good``, or ``revoked:<reason as openssl prints it>`` (e.g. ``revoked:certificateHold``)."""
    import subprocess
    from pathlib import Path

    import httpx

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cert = x509.load_pem_x509_certificate(certificate_pem.encode())
    issuer_name = "sign" if "signature" in cert.subject.rfc4514_string() else "auth"
    pem = lambda name: x509.load_der_x509_certificate(  # noqa: E731
        httpx.get(f"{ca_url}/ca/{name}.cer").content).public_bytes(serialization.Encoding.PEM)
    (folder / "cert.pem").write_text(certificate_pem)
    (folder / "issuer.pem").write_bytes(pem(issuer_name))
    (folder / "chain.pem").write_bytes(pem("root") + pem(issuer_name))
    result = subprocess.run(
        ["openssl", "ocsp", "-issuer", folder / "issuer.pem", "-cert", folder / "cert.pem",
         "-url", f"{ca_url}/ocsp", "-CAfile", folder / "chain.pem", "-resp_text"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0 and "Response verify OK" in result.stderr + result.stdout, result.stderr
    line = next(line for line in result.stdout.splitlines() if line.startswith(f"{folder / 'cert.pem'}:"))
    status = line.split(":", 1)[1].strip()
    if status == "good":
        return "good"
    reason = next((line.split(":", 1)[1].strip() for line in result.stdout.splitlines()
                   if line.strip().startswith("Reason:")), "unspecified")
    return f"{status}:{reason}"

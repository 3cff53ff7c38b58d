"""The privacy scan of tests/test_e2e_phone.py must be able to fail: it finds what it looks for.

The search for the holders' items covers only what the lifecycle service keeps (its database files,
tables, data folder and logs): the CA's store holds the certificates, and so the items, by design."""
from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import sqlite3
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from jpki_service import holder_data
from tests.privacy_scan import Holder, scan, service_sources
from tests.test_e2e_phone import INDIVIDUAL_NUMBER as PATTERN


def test_the_individual_number_pattern_finds_a_number_and_ignores_hex_and_utctime():
    assert re.search(PATTERN, '{"my_number": "123456789012"}')
    assert re.search(PATTERN, "log: number=123456789012\n")
    assert not re.search(PATTERN, "serial 7f2474125f88e937f798cf2e1234567890123ab")
    assert not re.search(PATTERN, "\x17\r261122211247Z")  # a UTCTime inside DER


# -- the search for the holders' items (tests/privacy_scan.py) -------------------------------------
HOLDER = Holder("山田 太郎", "1990-01-02", "東京都千代田区千代田1-1")


def _certificate_with_items() -> str:
    """A certificate carrying the items in subjectAltName as a phone signature certificate does."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "phone")])
    items = [x509.OtherName(x509.ObjectIdentifier(f"1.2.392.200149.8.5.5.{i}"), bytes([0x0C, len(v)]) + v)
             for i, v in enumerate((HOLDER.name.encode(), b"19900102", HOLDER.address.encode()), start=1)]
    now = dt.datetime.now(dt.UTC)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now)
                   .not_valid_after(now + dt.timedelta(days=1))
                   .add_extension(x509.SubjectAlternativeName(items), critical=False)
                   .sign(key, hashes.SHA256()))
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


def test_the_scan_finds_the_items_inside_a_certificate_in_clear_and_not_inside_a_sealed_one():
    pem = _certificate_with_items()
    assert HOLDER.name not in pem  # base64: a plain text search misses it, as the scan before did
    found = scan({"row": pem.encode()}, [HOLDER])
    assert any("name '山田 太郎' (DER UTF8String) in row (inside base64)" in f for f in found)
    assert any("as YYYYMMDD" in f for f in found)
    assert scan({"json": json.dumps({"certificate_pem": pem}).encode()}, [HOLDER])  # PEM with "\n" escapes
    sealed = holder_data.seal_certificate(os.urandom(32), "0a", pem)
    assert scan({"sealed": sealed.encode()}, [HOLDER]) == []


def test_the_scan_finds_an_email_address_in_clear_and_not_a_sealed_one():
    holder = Holder(HOLDER.name, HOLDER.birth, HOLDER.address, "taro.yamada@example.jp")
    assert any("e-mail 'taro.yamada@example.jp'" in f
               for f in scan({"row": b'{"email": "taro.yamada@example.jp"}'}, [holder]))
    assert any("local part 'taro.yamada'" in f for f in scan({"log": b"mail for taro.yamada failed"}, [holder]))
    sealed = holder_data.seal_email(os.urandom(32), "ab" * 16, "taro.yamada@example.jp")
    assert scan({"sealed": sealed.encode()}, [holder]) == []


def test_the_scan_finds_the_items_in_clear_and_json_escaped():
    assert scan({"log": "holder at 東京都千代田区千代田 registered".encode()}, [HOLDER])
    assert scan({"notice": json.dumps({"name": "山田 太郎"}).encode()}, [HOLDER])  # \\u5c71\\u7530
    assert scan({"row": b"born 1990-01-02"}, [HOLDER])
    assert scan({"row": b"nothing here: 1990-01-03, 19900103"}, [HOLDER]) == []


def test_the_scan_reads_a_sqlite_store_and_the_service_folder(tmp_path: Path):
    database = tmp_path / "svc.sqlite3"
    with contextlib.closing(sqlite3.connect(database)) as db, db:
        db.execute("CREATE TABLE phone_certificates (certificate_pem TEXT)")
        db.execute("INSERT INTO phone_certificates VALUES (?)", (_certificate_with_items(),))
    (tmp_path / "service").mkdir()
    (tmp_path / "service" / "notifications.jsonl").write_text('{"to": "東京都千代田区千代田1-1"}\n')
    sources = service_sources(f"sqlite:///{database}", tmp_path / "service", [tmp_path / "service.log"])
    found = scan(sources, [HOLDER])
    assert any("in svc.sqlite3 tables (inside base64)" in f for f in found)
    assert any("in service data notifications.jsonl" in f for f in found)

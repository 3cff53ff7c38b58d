"""What the PDF tests share: a one-page document, a phone whose SE signature key the CA certified
(issued straight from the SE's CSR: the lifecycle service's part is not what those tests are about),
and a password provider that counts how often pyHanko's signer really asked."""
from __future__ import annotations

import io
from pathlib import Path

import pytest
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.writer import PageObject, PdfFileWriter

from app_client import flows
from app_client.app_data import AppState
from app_client.secure_element import KeySlot
from ca_mock.cards.service import issue_card
from ca_mock.certificates.schemas import IssueRequest, PersonIn
from ca_mock.certificates.service import issue_certificate
from tests.app_client.conftest import CARD_PASSWORD, CARD_PIN, PHONE_PASSWORD, PHONE_PIN
from tests.helpers import PERSON

REGISTRATION = "0123456789abcdef0123456789abcdef"


class PasswordAsked:
    """The password provider, counting how often pyHanko's signer really asked for it."""

    def __init__(self, password: str = PHONE_PASSWORD) -> None:
        self.password, self.calls = password, 0

    def __call__(self) -> str:
        self.calls += 1
        return self.password


@pytest.fixture
def document(tmp_path: Path) -> Path:
    writer = PdfFileWriter()
    content = writer.add_object(generic.StreamObject(stream_data=b"BT /F1 12 Tf 20 20 Td (contract) Tj ET"))
    writer.insert_page(PageObject(content, (0, 0, 200, 100)))
    out = io.BytesIO()
    writer.write(out)
    path = tmp_path / "contract.pdf"
    path.write_bytes(out.getvalue())
    return path


@pytest.fixture
def phone(ca_server, tmp_path: Path) -> flows.Phone:
    """A registered phone: its SE key certified by the CA, the CA chain pinned from the card."""
    store, settings = ca_server.store, ca_server.settings
    card = issue_card(store, settings, PersonIn(**PERSON), CARD_PASSWORD, CARD_PIN)
    phone = flows.open_phone(tmp_path / "phone", "http://127.0.0.1:9")
    enrolment = phone.se.enrol(PHONE_PASSWORD, PHONE_PIN)
    issued = issue_certificate(store, settings, IssueRequest(
        operation_id="phone-signature", profile="phone-signature", csr_pem=enrolment.signature_csr_pem,
        person=PersonIn(**PERSON), card_serial=card["signature"]["serial"],
    ))
    phone.se.bind(REGISTRATION)
    phone.se.store_certificate(KeySlot.SIGNATURE, issued["certificate_pem"])
    phone.app_data.save(AppState(registration_id=REGISTRATION, ca_chain=card["chain"]))
    return phone

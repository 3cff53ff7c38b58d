"""Fixtures of the phone app's tests: a card made by a real mock CA, and enrolled secure elements.

Both are made once per session and copied into each test's folder: CA set-up and key
generation would dominate the run otherwise, and each test still owns its own files (counters!).
The CA store is SQLite only here (this overrides the two-backend ``database_url`` of
tests/conftest.py for this folder): the store is not what these tests are about.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from app_client.secure_element import SecureElement
from ca_mock.authorities.service import initialise
from ca_mock.cards.service import issue_card, write_card
from ca_mock.certificates.schemas import PersonIn
from ca_mock.db import migrate
from ca_mock.settings import CASettings
from jpki_common.store import Store
from tests.helpers import PERSON

CARD_PASSWORD = "CARD2024X"
CARD_PIN = "4321"
PHONE_PASSWORD = "PHONE2025PW"
PHONE_PIN = "8642"


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'ca.sqlite3'}"


@pytest.fixture(scope="session")
def card_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A card file from ``issue_card`` on a CA of its own (never served: no HTTP needed)."""
    folder = tmp_path_factory.mktemp("card-ca")
    settings = CASettings(data_dir=folder, database_url=f"sqlite:///{folder / 'ca.sqlite3'}",
                          public_url="http://127.0.0.1:9")
    store = Store(settings.resolved_database_url())
    migrate(store.url)
    initialise(store, settings)
    card = issue_card(store, settings, PersonIn(**PERSON), CARD_PASSWORD, CARD_PIN)
    store.dispose()
    write_card(card, folder / "card.json")
    return folder / "card.json"


@pytest.fixture
def card_file(card_template: Path, tmp_path: Path) -> Path:
    target = tmp_path / "cards" / "card.json"
    target.parent.mkdir()
    shutil.copy2(card_template, target)
    return target


def card_slot(card_file: Path, slot: str = "signature") -> dict:
    return json.loads(card_file.read_text())[slot]


@pytest.fixture(scope="session")
def enrolled_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("se-template") / "se"
    SecureElement(folder).enrol(PHONE_PASSWORD, PHONE_PIN)
    return folder


@pytest.fixture
def se(enrolled_template: Path, tmp_path: Path) -> SecureElement:
    """A secure element with freshly enrolled keys (RSA-2048), bound to no registration yet."""
    folder = tmp_path / "phone" / "se"
    shutil.copytree(enrolled_template, folder)
    return SecureElement(folder)

"""One person, however the card spells them (issue 12, item 5).

A renewed card may write the name with an ideographic space (U+3000) where the old card had U+0020,
or the address with full-width digits: it is the same person, so registering with it supersedes the
old phone. The one normaliser (``holder_data.normalise_item``) decides what is the same spelling;
the person key and the call-centre search both use it. People stored before the person key was
normalised (keys of the raw items) are still recognised and re-keyed at their next registration,
also when two of their cards race each other.
"""
from __future__ import annotations

import hashlib
import hmac
import re
import threading
import unicodedata

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, select, update

from jpki_service.adapters.db import Store
from jpki_service.cards.service import legacy_person_key, person_key
from jpki_service.holder_data import DASHES, holder_index, normalise_item
from jpki_service.lifecycle import LIVE
from jpki_service.registrations.models import Person, Registration
from tests.helpers import PERSON
from tests.service_helpers import PhoneForTests, make_card, operator_client, read, register, register_body
from tests.shared_ca import _fresh_keys_per_test, shared_servers, unique, unique_person  # noqa: F401 (a fixture)

SPACED = dict(PERSON, name="山田\u3000太郎")  # the renewed card: ideographic space
FULL_WIDTH = dict(PERSON, address="東京都千代田区千代田１－１")  # full-width digits and hyphen-minus

SPACES = ["\u0020", "\u3000", "\u00a0", *map(chr, range(0x2000, 0x200B)), "\u202f", "\u205f", "\u1680", "\t",
          "\n", "\u2028", "\u2029"]
INVISIBLE = ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad", "\u200e", "\u200f", "\u180e"]
DASH_LOOK_ALIKES = ["-", "\u2010", "\u2011", "\u2012", "\u2013", "\u2014", "\u2015", "\u2212", "\u2043", "\u02d7",
                    "\u207b", "\u208b", "\u2796", "\u2e3a", "\u2e3b", "\ufe58", "\ufe63", "\uff0d", "\u2500", "\u2501"]


# -- the normaliser --------------------------------------------------------------------------
@pytest.mark.parametrize("space", SPACES, ids=lambda c: f"U+{ord(c):04X}")
def test_every_space_is_folded(space):
    assert normalise_item(f"山田{space}太郎") == normalise_item("山田 太郎") == "山田太郎"


@pytest.mark.parametrize("mark", INVISIBLE, ids=lambda c: f"U+{ord(c):04X}")
def test_invisible_format_characters_are_dropped(mark):
    assert normalise_item(f"山田{mark}太郎") == "山田太郎"


@pytest.mark.parametrize("dash", DASH_LOOK_ALIKES, ids=lambda c: f"U+{ord(c):04X}")
def test_every_dash_look_alike_is_one_hyphen(dash):
    assert normalise_item(f"千代田1{dash}1") == "千代田1-1"


@pytest.mark.parametrize("kept", ["ー", "〜", "\u3030", "゠", "・"], ids=lambda c: f"U+{ord(c):04X}")
def test_the_prolonged_sound_mark_and_other_name_marks_are_not_dashes(kept):
    assert normalise_item(f"サ{kept}ト") == f"サ{kept}ト"
    assert normalise_item(f"サ{kept}ト") != normalise_item("サ-ト")


def test_half_width_katakana_and_its_prolonged_mark_are_the_full_width_ones():
    assert normalise_item("ｻｰﾄｳ ﾀﾛｳ") == normalise_item("サートウ　タロウ") == "サートウタロウ"


def test_full_width_letters_digits_and_case():
    assert normalise_item("ＴＡＮＡＫＡ　Ｈａｎａｋｏ") == normalise_item("tanaka hanako") == "tanakahanako"
    assert normalise_item("千代田区１丁目２番地") == "千代田区1丁目2番地"


def test_every_dash_in_the_list_is_folded():
    assert all(normalise_item(f"1{d}2") == "1-2" for d in DASHES)


# -- existing blind indexes are unchanged ----------------------------------------------------
_OLD_DASHES = re.compile("[\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe63\uff0d]")


def _old_normalise_item(text: str) -> str:
    """``normalise_item`` as it was before issue 12 (the call-centre blind indexes stored so far)."""
    text = unicodedata.normalize("NFKC", text)
    text = _OLD_DASHES.sub("-", text)
    return "".join(text.split()).casefold()


# Besides the Cf characters: the dashes neither the old list nor NFKC made "-" (U+2043, U+2500, U+2E3A...).
_NEWLY_FOLDED = {c for c in DASHES if _old_normalise_item(c) != "-"}


def _newly_folded(text: str) -> bool:
    return any(unicodedata.category(c) == "Cf" or c in _NEWLY_FOLDED for c in text)


REPRESENTATIVE = [
    "山田 太郎", "山田　太郎", "山田太郎", "ＴＡＮＡＫＡ　Ｈａｎａｋｏ", "サトウ ハナコ", "ｻﾄｳ ﾊﾅｺ", "佐藤　ハナコ",
    "髙橋　一郎", "齋藤 惠子", "Smith John", "O'Brien Mary-Ann", "Ærøskøbing Straße", "Σίσυφος",
    "東京都千代田区千代田1-1", "東京都千代田区千代田１－１", "東京都千代田区千代田1‐1", "東京都千代田区千代田1―1",
    "大阪府大阪市北区梅田３丁目１番１号", "北海道札幌市中央区北1条西2丁目", "沖縄県那覇市泉崎1−2−2 アパート101",
    "京都府京都市 左京区", "福岡県福岡市博多区博多駅前2-1-1　ビル５Ｆ", "1990-01-02", "\t山田\n太郎\u2028",
]


@pytest.mark.parametrize("text", REPRESENTATIVE)
def test_the_blind_index_of_what_was_accepted_before_is_unchanged(text):
    """Under the index's first rules (``rules=1``), which indexes made before spoken addresses are still found
    by; the rules now also read an address's block numbers (tests/test_japanese_items.py)."""
    assert not _newly_folded(text)
    assert normalise_item(text) == _old_normalise_item(text)
    key = b"k" * 32
    assert holder_index(key, text, "1990-01-02", text, rules=1) == hmac.new(
        key, "\x1f".join((_old_normalise_item(text), "1990-01-02", _old_normalise_item(text))).encode(),
        hashlib.sha256).hexdigest()


@given(st.text(max_size=40).filter(lambda t: not _newly_folded(t)))
@settings(max_examples=500, deadline=None)
def test_the_normaliser_changed_nothing_but_the_newly_folded_characters(text):
    assert normalise_item(text) == _old_normalise_item(text)


# -- the person key --------------------------------------------------------------------------
SECRET = b"person-key-for-tests"


def test_the_person_key_is_one_for_every_spelling_of_the_person():
    key = person_key(SECRET, PERSON)
    assert person_key(SECRET, SPACED) == key
    assert person_key(SECRET, FULL_WIDTH) == key
    assert person_key(SECRET, dict(PERSON, name="山田\u200b 太郎", address="東京都千代田区千代田1\u22121")) == key
    assert person_key(SECRET, dict(PERSON, gender="2")) != key
    assert person_key(SECRET, dict(PERSON, name="山田 太朗")) != key
    assert person_key(SECRET, dict(PERSON, name="サト-")) != person_key(SECRET, dict(PERSON, name="サトー"))


def test_the_legacy_key_is_the_raw_items_hash_and_differs_from_the_new_one():
    raw = "\x1f".join(PERSON[k] for k in ("name", "date_of_birth", "gender", "address"))
    assert legacy_person_key(SECRET, PERSON) == hmac.new(SECRET, raw.encode(), hashlib.sha256).hexdigest()
    assert legacy_person_key(SECRET, PERSON) != legacy_person_key(SECRET, SPACED)
    assert legacy_person_key(SECRET, PERSON) != person_key(SECRET, PERSON)


# -- through the service ---------------------------------------------------------------------
# One CA and one service per backend for the tests below: each registers a person of its own (born on a day
# and living at an address no other test's person has), with the spellings it compares, and looks only at the
# rows it made (the registrations and people that were not there when it began).
ca_server, service_server = shared_servers("person-matching")

_FULL_WIDTH_DIGITS = str.maketrans("0123456789-", "０１２３４５６７８９－")


def _full_width(address: str) -> str:
    """``address`` with full-width digits and hyphen-minus, as FULL_WIDTH spells PERSON's."""
    return address.translate(_FULL_WIDTH_DIGITS)


def _spaced(person: dict) -> dict:
    """As SPACED: ``person``'s renewed card, U+3000 between the names."""
    return dict(person, name=person["name"].replace(" ", "\u3000"))


def _secret(service_server) -> bytes:
    return (service_server.data_dir / "person-key").read_text().strip().encode()


def _before(store: Store) -> tuple[set[str], set[str]]:
    """The people and the registrations there are before the test makes any: the other tests'."""
    with store.sessions() as session:
        return set(session.scalars(select(Person.person_key))), set(session.scalars(select(Registration.id)))


def _live(store: Store, before: tuple[set[str], set[str]]) -> list[Registration]:
    """The live registrations this test made."""
    with store.sessions() as session:
        return list(session.scalars(select(Registration).where(Registration.state.in_([s.value for s in LIVE]),
                                                               Registration.id.not_in(before[1]))))


def _as_before_the_change(store: Store, secret: bytes, person: dict, before: tuple[set[str], set[str]]) -> str:
    """Every row this test made keyed the way the service keyed it before issue 12: the raw items of
    ``person``'s card (the other tests' rows are left as they are)."""
    legacy = legacy_person_key(secret, person)
    with store.transaction() as session:
        session.execute(update(Registration).where(Registration.id.not_in(before[1])).values(person_key=legacy))
        session.execute(delete(Person).where(Person.person_key.not_in(before[0])))
        session.flush()
        session.add(Person(person_key=legacy))
    return legacy


def _keys(store: Store, before: tuple[set[str], set[str]]) -> tuple[set[str], set[str]]:
    """The keys of the people and of the registrations this test made."""
    with store.sessions() as session:
        return (set(session.scalars(select(Person.person_key))) - before[0],
                set(session.scalars(select(Registration.person_key).where(Registration.id.not_in(before[1])))))


RENEWED = {"name-U+3000": _spaced, "address-full-width": lambda person: dict(person, address=_full_width(
    person["address"]))}


@pytest.mark.parametrize("renewed", list(RENEWED), ids=list(RENEWED))
def test_a_renewed_card_spelling_the_person_differently_supersedes_the_old_phone(ca_server, service_server, renewed):
    person = unique_person()
    old_card, new_card = make_card(ca_server.store, ca_server.settings, person), make_card(
        ca_server.store, ca_server.settings, RENEWED[renewed](person))
    old_phone, new_phone = PhoneForTests(), PhoneForTests()
    store = Store(service_server.database_url)
    try:
        before = _before(store)
        with service_server.client() as client:
            assert register(client, old_card, old_phone).status_code == 201
            second = register(client, new_card, new_phone)
            assert second.status_code == 201, second.text
            assert second.json()["superseded"] == [old_phone.registration_id]
            old = read(client, old_phone)
            assert old["state"] == "revoked" and old["reason"] == "superseded"
        assert [r.id for r in _live(store, before)] == [new_phone.registration_id]
        assert _keys(store, before) == ({person_key(_secret(service_server), person)},) * 2
    finally:
        store.dispose()


def test_a_person_registered_before_the_change_is_recognised_and_re_keyed(ca_server, service_server):
    person = unique_person()
    card = make_card(ca_server.store, ca_server.settings, person)
    old_phone, new_phone = PhoneForTests(), PhoneForTests()
    store = Store(service_server.database_url)
    secret = _secret(service_server)
    try:
        before = _before(store)
        with service_server.client() as client:
            assert register(client, card, old_phone).status_code == 201
            legacy = _as_before_the_change(store, secret, person, before)
            assert _keys(store, before) == ({legacy},) * 2
            second = register(client, card, new_phone)
            assert second.status_code == 201, second.text
            assert second.json()["superseded"] == [old_phone.registration_id]
        assert [r.id for r in _live(store, before)] == [new_phone.registration_id]
        # Re-keyed in that transaction: the old row is gone, every registration of the person is under the new key.
        assert _keys(store, before) == ({person_key(secret, person)},) * 2
    finally:
        store.dispose()


def test_a_person_registered_before_the_change_with_the_other_spelling_is_recognised(ca_server, service_server):
    """The old card wrote U+0020 (stored under its raw key), the renewed card U+3000: its own raw key finds
    nothing, the blind index and the old phone's signature certificate find the person."""
    person = unique_person()
    old_card, new_card = make_card(ca_server.store, ca_server.settings, person), make_card(
        ca_server.store, ca_server.settings, _spaced(person))
    old_phone, new_phone = PhoneForTests(), PhoneForTests()
    store = Store(service_server.database_url)
    secret = _secret(service_server)
    try:
        before = _before(store)
        with service_server.client() as client:
            assert register(client, old_card, old_phone).status_code == 201
            _as_before_the_change(store, secret, person, before)
            second = register(client, new_card, new_phone)
            assert second.status_code == 201, second.text
            assert second.json()["superseded"] == [old_phone.registration_id]
        assert [r.id for r in _live(store, before)] == [new_phone.registration_id]
        assert _keys(store, before) == ({person_key(secret, person)},) * 2
    finally:
        store.dispose()


OTHERS = {"other-name": {"name": "山田 花子", "gender": "2"},
          "same-name-other-gender": {"name": "山田　太郎", "gender": "2"}}


@pytest.mark.parametrize("other", list(OTHERS), ids=list(OTHERS))
def test_a_different_person_at_the_same_address_is_not_superseded(ca_server, service_server, other):
    """The second: the blind index (no gender) points at the old phone, whose certificate says another person."""
    person = unique_person()
    mine, theirs = make_card(ca_server.store, ca_server.settings, person), make_card(
        ca_server.store, ca_server.settings, dict(person, **OTHERS[other]))
    store = Store(service_server.database_url)
    try:
        before = _before(store)
        with service_server.client() as client:
            assert register(client, mine, PhoneForTests()).status_code == 201
            _as_before_the_change(store, _secret(service_server), person, before)
            answer = register(client, theirs, PhoneForTests())
            assert answer.status_code == 201, answer.text
            assert answer.json()["superseded"] == []
        assert len(_live(store, before)) == 2
    finally:
        store.dispose()


def test_the_call_centre_finds_the_person_however_the_caller_spells_them(ca_server, service_server):
    person = unique_person()
    card = make_card(ca_server.store, ca_server.settings, _spaced(person))
    phone = PhoneForTests()
    with service_server.client() as client:
        assert register(client, card, phone).status_code == 201
    address, birth = person["address"], person["date_of_birth"]
    assert address.startswith("東京都千代田区千代田1-")
    with operator_client(service_server, unique("olga"), "operator") as operator:
        for name, spelt in [("山田 太郎", address),
                            ("山田\u200b\u3000太郎", _full_width(address).replace("－", "−")),
                            ("山田太郎", address.replace("-", "\u2010"))]:
            found = operator.post("/api/v1/operator/registrations/search",
                                  json={"name": name, "birth": birth, "address": spelt})
            assert found.status_code == 200, (name, spelt, found.text)
            assert [hit["case_reference"] for hit in found.json()["results"]] == [phone.case_reference]
        missed = operator.post("/api/v1/operator/registrations/search",
                               json={"name": "山田 太朗", "birth": birth, "address": address})
        assert missed.status_code == 404


def _post(url: str, body: dict, barrier: threading.Barrier, answers: list[httpx.Response]) -> None:
    with httpx.Client(base_url=url, timeout=120) as client:
        barrier.wait()
        answers.append(client.post("/api/v1/registrations", json=body))


@pytest.mark.e2e
def test_a_legacy_keyed_and_a_new_keyed_request_racing_end_with_one_live_registration(ca_server, service_server):
    """A person stored under the old raw key; the old card (its raw key is the stored one) and the renewed card
    (U+3000: only the new key finds the person) register two phones at once, round after round."""
    person = unique_person()
    cards = [make_card(ca_server.store, ca_server.settings, person),
             make_card(ca_server.store, ca_server.settings, _spaced(person))]
    store = Store(service_server.database_url)
    secret = _secret(service_server)
    rounds = 4 if service_server.database_url.startswith("postgresql") else 2
    try:
        mine = _before(store)
        with service_server.client() as client:
            assert register(client, cards[0], PhoneForTests()).status_code == 201
            for number in range(rounds):
                _as_before_the_change(store, secret, person, mine)
                before = {r.id for r in _live(store, mine)}
                bodies = [register_body(client, card, PhoneForTests()) for card in cards]
                answers: list[httpx.Response] = []
                barrier = threading.Barrier(len(bodies))
                threads = [threading.Thread(target=_post, args=(service_server.url, body, barrier, answers))
                           for body in bodies]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join()
                # 202: accepted, the CA's part still under way (the other request's commands go first).
                assert all(a.status_code in (201, 202) for a in answers), [a.text for a in answers]
                live = _live(store, mine)
                assert len(live) == 1, f"round {number}: {len(live)} live registrations"
                created = {a.json()["registration_id"] for a in answers}
                superseded = [rid for a in answers for rid in a.json()["superseded"]]
                assert live[0].id in created and sorted(superseded) == sorted(before | created - {live[0].id})
                assert _keys(store, mine) == ({person_key(secret, person)},) * 2
    finally:
        store.dispose()

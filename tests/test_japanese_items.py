"""Dates of birth in the Japanese era and addresses as people say them (issue 14, items 3 and 4).

The rules are in ``jpki_service/japanese_items.py``, applied by ``holder_data`` (``normalise_birth_date``,
``normalise_address``) for the call-centre search and the person key alike. The end-to-end tests
register through the real service and find through its call-centre API: by an era date, by a spoken
address, and a registration indexed before these rules, before and after the service recomputes its
index from the sealed signature certificate.
"""
from __future__ import annotations

import pytest
from japanera import ERA_DATA_GENERAL
from sqlalchemy import select, update

from jpki_service.adapters.ca_client import CAClient
from jpki_service.adapters.context import ServiceContext
from jpki_service.adapters.db import Store, migrate
from jpki_service.adapters.service_keys import load_service_keys
from jpki_service.cards.service import person_key, previous_person_key
from jpki_service.common.problems import InvalidInput
from jpki_service.common.settings import ServiceSettings
from jpki_service.holder_data import (
    HOLDER_INDEX_RULES,
    holder_index,
    normalise_address,
    normalise_birth_date,
    normalise_item,
)
from jpki_service.japanese_items import MODERN_ERAS
from jpki_service.registrations.models import PhoneCertificate, Registration
from jpki_service.registrations.service import reindex_holders
from tests.helpers import PERSON
from tests.service_helpers import PhoneForTests, make_card, operator_client, read, register
from tests.shared_ca import (  # noqa: F401 (a fixture)
    _fresh_keys_per_test,
    module_service_server,
    shared_servers,
    unique,
    unique_person,
)

SEARCH = "/api/v1/operator/registrations/search"

# One CA and one service per backend for the module's tests that only register and search: each registers a person
# no other test here registers, and signs in as an operator of its own. The test that rewrites rows as the service
# wrote them before the rules and recomputes the whole index has a service of its own (own_service_server), on the
# module's CA (it only has cards issued there, for persons no other test has).
ca_server, service_server = shared_servers("japanese-items")


@pytest.fixture
def own_service_server(ca_server, tmp_path):
    """``jpki-service serve`` for one test, on a new database of the CA's backend, talking to the module's CA."""
    with module_service_server(ca_server, tmp_path) as running:
        yield running


# -- era dates -------------------------------------------------------------------------------------
# Each era's first and last day, as japanera dates them (its ``until`` is the next era's first day).
BOUNDARIES = [
    ("明治元年1月23日", "1868-01-23"), ("明治45年7月29日", "1912-07-29"),
    ("大正元年7月30日", "1912-07-30"), ("大正15年12月24日", "1926-12-24"),
    ("昭和元年12月25日", "1926-12-25"), ("昭和64年1月7日", "1989-01-07"),
    ("平成元年1月8日", "1989-01-08"), ("平成31年4月30日", "2019-04-30"),
    ("令和元年5月1日", "2019-05-01"),
]


@pytest.mark.parametrize(("said", "iso"), BOUNDARIES)
def test_each_era_s_first_and_last_day(said, iso):
    assert normalise_birth_date(said) == iso


def test_the_boundaries_are_japanera_s():
    assert [era.kanji for era in MODERN_ERAS] == ["明治", "大正", "昭和", "平成", "令和"]
    firsts = {era.kanji: era.since.isoformat() for era in ERA_DATA_GENERAL if era in MODERN_ERAS}
    assert firsts == {"明治": "1868-01-23", "大正": "1912-07-30", "昭和": "1926-12-25", "平成": "1989-01-08",
                      "令和": "2019-05-01"}


@pytest.mark.parametrize("said", [
    "平成2年1月2日", "平成２年１月２日", "平成二年一月二日", "平成 2年 1月 2日", "平成02年01月02日",
    "平成2.1.2", "平成2/1/2", "平成2-1-2", "H2.1.2", "h2.1.2", "Ｈ２．１．２", "㍻2年1月2日",
    "平成2年1月2日生", "平成2年1月2日生まれ",
    "1990-01-02", "１９９０－０１－０２", "1990年1月2日", "1990/1/2", " 1990-01-02 ",
])
def test_one_day_however_it_is_written(said):
    assert normalise_birth_date(said) == "1990-01-02"


@pytest.mark.parametrize(("said", "iso"), [
    ("昭和60年5月5日", "1985-05-05"), ("昭和六十年五月五日", "1985-05-05"), ("昭和六〇年五月五日", "1985-05-05"),
    ("令和元年5月1日", "2019-05-01"), ("令和1年5月1日", "2019-05-01"), ("平成元年1月8日", "1989-01-08"),
    ("平成三十一年四月三十日", "2019-04-30"), ("昭和六十年十二月二十五日", "1985-12-25"), ("S60.12.25", "1985-12-25"),
    ("大正十五年十二月二十四日", "1926-12-24"), ("明治四十五年七月二十九日", "1912-07-29"),
    ("平成4年2月29日", "1992-02-29"),
])
def test_kanji_numerals_and_the_first_year(said, iso):
    assert normalise_birth_date(said) == iso


@pytest.mark.parametrize(("said", "reason"), [
    ("平成32年1月1日", "平成 ended in its year 31, on 平成31年4月30日 (2019-04-30): there is no 平成32年"),
    ("平成三十二年一月一日", "there is no 平成32年"),
    ("昭和65年1月1日", "昭和 ended in its year 64, on 昭和64年1月7日 (1989-01-07)"),
    ("平成元年1月7日", "平成 began on 1989-01-08 (平成元年1月8日): 1989-01-07 is 昭和64年1月7日"),
    ("平成31年5月1日", "平成 ended on 2019-04-30 (平成31年4月30日): 2019-05-01 is 令和元年5月1日"),
    ("令和元年4月30日", "令和 began on 2019-05-01 (令和元年5月1日): 2019-04-30 is 平成31年4月30日"),
    ("明治45年7月30日", "1912-07-30 is 大正元年7月30日"),
    ("昭和元年12月24日", "1926-12-24 is 大正15年12月24日"),
    ("平成2年2月30日", "平成2年2月 has 28 days: there is no 平成2年2月30日"),
    ("平成3年2月29日", "平成3年2月 has 28 days"),
    ("1990-02-30", "1990年2月 has 28 days"),
    ("平成2年13月1日", "there is no month 13"),
    ("平成0年1月1日", "the years of an era count from 1 (元年): there is no 平成0年"),
])
def test_an_impossible_date_is_refused_with_the_reason(said, reason):
    with pytest.raises(InvalidInput) as refused:
        normalise_birth_date(said)
    assert refused.value.extra["field"] == "birth"
    assert refused.value.detail.startswith("birth is not a real date: ") and reason in refused.value.detail


@pytest.mark.parametrize("said", ["02/01/1990", "90年1月2日", "平成2年", "平成2年1月", "平成", "昨日",
                                  "平成十十年1月1日", "天保3年1月1日", "X2.1.2", ""])
def test_what_is_no_date_is_refused_saying_what_a_date_looks_like(said):
    with pytest.raises(InvalidInput) as refused:
        normalise_birth_date(said, "date_of_birth")
    assert refused.value.extra["field"] == "date_of_birth"
    assert refused.value.detail.startswith("date_of_birth must be a date as YYYY-MM-DD or as the card prints it")
    assert "平成2年1月2日" in refused.value.detail


# -- spoken addresses ------------------------------------------------------------------------------
@pytest.mark.parametrize("said", [
    "千代田1-1", "千代田一丁目1番", "千代田1丁目1番地", "千代田一丁目一番", "千代田 一丁目 一番", "千代田１丁目１番地",
    "千代田１－１", "千代田1丁目1", "千代田一丁目一", "千代田１丁目１番", "千代田1丁目 1番地", "千代田1‐1",
])
def test_one_address_however_its_block_numbers_are_said(said):
    assert normalise_address(said) == "千代田1-1"


@pytest.mark.parametrize("said", ["1丁目1番1号", "1-1-1", "一丁目一番一号", "1丁目1番地1", "1丁目1-1", "１丁目１番１号",
                                  "1 丁目 1 番 1 号", "一丁目1番1"])
def test_district_block_and_house(said):
    assert normalise_address(f"大阪府大阪市北区梅田{said}") == "大阪府大阪市北区梅田1-1-1"


@pytest.mark.parametrize(("said", "spelled"), [
    ("梅田３丁目１番１号", "梅田3-1-1"), ("梅田十二丁目二十三番", "梅田12-23"), ("梅田１丁目１", "梅田1-1"),
    ("千代田区一番町", "千代田区一番町"), ("千代田区一番町1-1", "千代田区一番町1-1"),
    ("千代田区一番町一番", "千代田区一番町1"), ("千代田区三番町六番地", "千代田区三番町6"),
    ("仙台市青葉区一番町四丁目", "仙台市青葉区一番町4"), ("中央区八丁堀三丁目", "中央区八丁堀3"),
    ("品川区五反田1-1", "品川区五反田1-1"), ("三軒茶屋二丁目", "三軒茶屋2"), ("一号館", "一号館"),
    ("千代田1-1 ハイツ101号室", "千代田1-1ハイツ101室"), ("千代田1丁目1番 千代田ビル", "千代田1-1千代田ビル"),
])
def test_kanji_numerals_become_digits_only_as_block_numbers(said, spelled):
    assert normalise_address(said) == spelled


def test_a_place_name_with_a_kanji_numeral_is_not_another_place():
    assert normalise_address("千代田区一番町1-1") != normalise_address("千代田区1町1-1")
    assert normalise_address("千代田区一番町1-1") != normalise_address("千代田区二番町1-1")
    assert normalise_address("千代田区一番町一番") != normalise_address("千代田区1-1")


def test_different_blocks_stay_different():
    assert len({normalise_address(a) for a in ("千代田1-1", "千代田1-2", "千代田2-1", "千代田11", "千代田1-1-1",
                                                "千代田一丁目十一番", "千代田十一丁目一番")}) == 7


def test_names_are_not_read_as_addresses():
    # A name goes through normalise_item alone: 一番 (a given name's characters) stays as written.
    assert normalise_item("一番 一号") == "一番一号"
    key = b"k" * 32
    assert holder_index(key, "一番 一号", "1990-01-02", "x") != holder_index(key, "1-1", "1990-01-02", "x")


def test_the_person_key_takes_the_address_s_block_numbers_as_the_search_does():
    secret = b"person-key-for-tests"
    spoken = dict(PERSON, address="東京都千代田区千代田一丁目一番")
    assert person_key(secret, spoken) == person_key(secret, PERSON)
    # An address without spoken block numbers keeps the key it had; a spoken one had another.
    assert previous_person_key(secret, PERSON) == person_key(secret, PERSON)
    assert previous_person_key(secret, spoken) != person_key(secret, spoken)


def test_the_index_under_the_rules_before_spelled_the_address_by_normalise_item_alone():
    key, name, birth = b"k" * 32, "山田 太郎", "1990-01-02"
    assert HOLDER_INDEX_RULES == 2
    assert holder_index(key, name, birth, "千代田1-1", rules=1) == holder_index(key, name, birth, "千代田1-1")
    assert holder_index(key, name, birth, "千代田一丁目1番", rules=1) != holder_index(key, name, birth, "千代田1-1")
    assert holder_index(key, name, birth, "千代田一丁目1番") == holder_index(key, name, birth, "千代田1-1")
    assert holder_index(key, name, "平成2年1月2日", "千代田1-1") == holder_index(key, name, birth, "千代田1-1")


# -- through the service ---------------------------------------------------------------------------
def _register(ca_server, service_server, person: dict) -> PhoneForTests:
    phone = PhoneForTests()
    with service_server.client() as client:
        answer = register(client, make_card(ca_server.store, ca_server.settings, person), phone)
        assert answer.status_code == 201, answer.text
        assert {c["status"] for c in read(client, phone)["certificates"]} == {"good"}
    return phone


def _found(operator, name: str, birth: str, address: str) -> list[str]:
    answer = operator.post(SEARCH, json={"name": name, "birth": birth, "address": address})
    assert answer.status_code in (200, 404), answer.text
    return [hit["case_reference"] for hit in answer.json().get("results", [])]


@pytest.mark.e2e
def test_the_call_centre_finds_a_registration_by_an_era_date_and_a_spoken_address(ca_server, service_server):
    # The card: 1990-01-02, 東京都千代田区千代田1-1. No other test here registers PERSON (the search finds only this).
    phone = _register(ca_server, service_server, PERSON)
    with operator_client(service_server, unique("erika"), "operator") as operator:
        for birth, address in [("平成2年1月2日", "東京都千代田区千代田一丁目一番"),
                               ("平成２年１月２日", "東京都千代田区千代田1丁目1番地"),
                               ("H2.1.2", "東京都 千代田区 千代田 一丁目 一番"),
                               ("1990-01-02", "東京都千代田区千代田１－１")]:
            assert _found(operator, "山田　太郎", birth, address) == [phone.case_reference], (birth, address)
        assert _found(operator, "山田 太郎", "平成2年1月3日", "東京都千代田区千代田1-1") == []
        assert _found(operator, "山田 太郎", "平成2年1月2日", "東京都千代田区千代田1-2") == []
        impossible = operator.post(SEARCH, json={"name": "山田 太郎", "birth": "平成32年1月2日",
                                                 "address": "東京都千代田区千代田1-1"})
        assert impossible.status_code == 422 and impossible.headers["content-type"] == "application/problem+json"
        assert impossible.json()["field"] == "birth"
        assert "平成 ended in its year 31" in impossible.json()["detail"]


def _context(service_server) -> ServiceContext:
    """The service's store and keys, as its start hands them to its start-up steps (the CA is not asked)."""
    settings = ServiceSettings(data_dir=service_server.data_dir, database_url=service_server.database_url,
                               ca_url="http://127.0.0.1:9")
    return ServiceContext(Store(service_server.database_url), CAClient("http://127.0.0.1:9", None, 1), settings,
                          load_service_keys(settings, create=False))


def _as_indexed_before_the_rules(ctx: ServiceContext, phone: PhoneForTests, person: dict) -> None:
    """The row as the service wrote it before era dates and spoken addresses: index and person key of the
    address by ``normalise_item`` alone, under rules 1."""
    with ctx.store.transaction() as session:
        session.execute(update(Registration).where(Registration.id == phone.registration_id).values(
            holder_index=holder_index(ctx.keys.holder_index, person["name"], person["date_of_birth"],
                                      person["address"], rules=1),
            holder_index_rules=1, person_key=previous_person_key(ctx.keys.person_index, person)))


@pytest.mark.e2e
def test_a_registration_indexed_before_the_rules_is_found_before_and_after_its_index_is_recomputed(
        ca_server, own_service_server):
    # A service of its own: the recomputation counts and the rules it checks are the whole store's.
    service_server = own_service_server
    spoken = dict(PERSON, name="佐藤 花子", gender="2", address="大阪府大阪市北区梅田一丁目1番")
    unissued = dict(PERSON, name="鈴木 一郎", address="大阪府大阪市北区梅田二丁目2番")
    phone, waiting = _register(ca_server, service_server, spoken), _register(ca_server, service_server, unissued)
    ctx = _context(service_server)
    try:
        _as_indexed_before_the_rules(ctx, phone, spoken)
        _as_indexed_before_the_rules(ctx, waiting, unissued)
        # The second's signature certificate is not there to read the items from (as before the CA issued it).
        with ctx.store.transaction() as session:
            session.execute(update(PhoneCertificate).where(PhoneCertificate.registration_id == waiting.registration_id,
                                                           PhoneCertificate.kind == "signature")
                            .values(certificate_pem=None))
        with operator_client(service_server, "ren", "operator") as operator:
            # Under the old index, found by what found it before (the search looks under both rules) ...
            mine, theirs = [phone.case_reference], [waiting.case_reference]
            assert _found(operator, "佐藤花子", "1990-01-02", "大阪府大阪市北区梅田一丁目1番") == mine
            assert _found(operator, "鈴木一郎", "平成2年1月2日", "大阪府大阪市北区梅田二丁目2番") == theirs
            # ... but not yet by a spoken variant.
            assert _found(operator, "佐藤花子", "1990-01-02", "大阪府大阪市北区梅田1-1") == []

            assert reindex_holders(ctx) == (1, 1)  # the start-up step
            assert reindex_holders(ctx) == (0, 1)  # idempotent: the unissued one waits for its certificate

            for address in ("大阪府大阪市北区梅田1-1", "大阪府大阪市北区梅田１丁目１", "大阪府大阪市北区梅田一丁目1番"):
                assert _found(operator, "佐藤 花子", "平成2年1月2日", address) == mine, address
            assert _found(operator, "鈴木一郎", "1990-01-02", "大阪府大阪市北区梅田二丁目2番") == theirs
        with ctx.store.sessions() as session:
            rules = dict(session.execute(select(Registration.id, Registration.holder_index_rules)).all())
        assert rules == {phone.registration_id: HOLDER_INDEX_RULES, waiting.registration_id: 1}
    finally:
        ctx.store.dispose()
        ctx.ca.close()


@pytest.mark.e2e
def test_a_person_keyed_before_spoken_addresses_is_re_keyed_and_superseded(ca_server, service_server):
    """The card writes 梅田一丁目1番: before the rules its person key spelled that as it is; registering again
    with the same card finds the old phone under that key, supersedes it and moves it to the new key."""
    spoken = dict(unique_person(PERSON["name"]), address="大阪府大阪市北区梅田一丁目1番")  # born on a day of its own
    old_phone = _register(ca_server, service_server, spoken)
    ctx = _context(service_server)
    try:
        _as_indexed_before_the_rules(ctx, old_phone, spoken)
        new_phone = PhoneForTests()
        with service_server.client() as client:
            answer = register(client, make_card(ca_server.store, ca_server.settings, spoken), new_phone)
            assert answer.status_code in (201, 202), answer.text
            assert answer.json()["superseded"] == [old_phone.registration_id]
        with ctx.store.sessions() as session:  # this test's two registrations (others share the service)
            keys = set(session.scalars(select(Registration.person_key).where(
                Registration.id.in_((old_phone.registration_id, new_phone.registration_id)))))
        assert keys == {person_key(ctx.keys.person_index, spoken)}
    finally:
        ctx.store.dispose()
        ctx.ca.close()


def test_nothing_to_recompute_on_a_fresh_store(service_database_url, tmp_path):
    migrate(service_database_url)
    settings = ServiceSettings(data_dir=tmp_path / "service", database_url=service_database_url,
                               ca_url="http://127.0.0.1:9")
    ctx = ServiceContext(Store(service_database_url), CAClient("http://127.0.0.1:9", None, 1), settings,
                         load_service_keys(settings))
    try:
        assert reindex_holders(ctx) == (0, 0)
    finally:
        ctx.store.dispose()
        ctx.ca.close()


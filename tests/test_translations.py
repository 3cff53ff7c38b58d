"""Japanese first (issue 14): every string marked for translation has its Japanese, and the
catalogues load as the programs load them."""
from __future__ import annotations

import pytest

from jpki_common import catalogues
from jpki_common.i18n import Messages, choose_language, japan_time, language_from_header


@pytest.mark.parametrize("domain", catalogues.DOMAINS, ids=lambda d: d.name)
def test_every_marked_string_has_its_japanese(domain):
    assert catalogues.extract(domain), f"{domain.name}: no string is marked for translation"
    missing = catalogues.untranslated(domain)
    assert not missing, (f"{domain.name}: no Japanese for {missing}; run `python -m jpki_common.catalogues "
                         f"update` and translate them in {domain.po().relative_to(catalogues.ROOT)}")


@pytest.mark.parametrize("domain", catalogues.DOMAINS, ids=lambda d: d.name)
def test_each_catalogue_translates_what_its_program_asks(domain):
    messages = Messages(catalogues.ROOT / domain.locale_dir, domain.name)
    source = next(m.id for m in catalogues.extract(domain) if m.id and isinstance(m.id, str))
    messages.use("ja")
    assert messages(source) != source
    messages.use("en")
    assert messages(source) == source


def test_the_language_is_chosen_by_header_then_setting():
    assert language_from_header("en-US,en;q=0.9", "ja") == "en"
    assert language_from_header("fr-FR, en;q=0.5, ja;q=0.8", "en") == "ja"
    assert language_from_header("fr", "en") == "en"
    assert language_from_header(None, "ja") == "ja"
    assert choose_language(None, "", "en_US.UTF-8") == "en"
    assert choose_language("C.UTF-8") == "ja"


def test_a_person_reads_japan_time_with_the_zone_named():
    assert japan_time("2025-04-01T23:30:12+00:00", "en") == "2025-04-02 08:30:12 JST"
    assert japan_time("2025-04-01T23:30:12", "ja") == "2025-04-02 08:30:12 日本時間"
    assert japan_time(None) == "" and japan_time("not a time") == "not a time"

"""Languages and Japan time for what a person reads: Japanese first, English available.

Each part keeps its own message catalogue beside its code (one gettext *domain* per program:
``jpki_service/locale/ja/LC_MESSAGES/service.po`` for the console and the owner notices,
``jpki_service/locale/ja/LC_MESSAGES/operator_cli.po`` for ``jpki-operator``,
``app_client/locale/ja/LC_MESSAGES/app_client.po`` for ``jpki-app``). The source strings are
English, so English needs no catalogue; Japanese is the default (the users are Japanese,
DESIGN.md 9). ``_("...")`` translates now; ``N_("...")`` only marks a string for the catalogue
(a table of labels), to be translated where it is shown.

Catalogues are kept as ``.po`` files only and compiled in memory by Babel when first used, so a
fresh clone needs no build step and a ``.mo`` can never be stale. ``tests/test_translations.py``
extracts every marked string (Babel's extractors, Jinja2's for the templates) and fails when one
has no Japanese translation.

Times: storage and the APIs keep UTC; wherever a person reads a time it is shown in Japan time
with the zone named (:func:`japan_time`).
"""
from __future__ import annotations

import datetime as dt
import functools
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol
from zoneinfo import ZoneInfo

LANGUAGES = ("ja", "en")
DEFAULT_LANGUAGE = "ja"
JAPAN = ZoneInfo("Asia/Tokyo")


def N_(message: str) -> str:
    """Marks a string for the catalogue where it is defined; it is translated where it is shown."""
    return message


class Sentence:
    """A catalogued English sentence and the values put into it: ``str()`` is the English (what the
    APIs and the logs carry), :meth:`translate` the same sentence in a page's language, with the same
    values (themselves translated when the catalogue knows them: a word such as ``lift``, or a nested
    ``Sentence``). ``Sentence("no registration matches this {by}", by=N_("suspension code"))``."""

    __slots__ = ("message", "values")

    def __init__(self, message: str, /, **values: Any) -> None:
        self.message, self.values = message, values

    def __str__(self) -> str:
        return self.message.format(**self.values)

    def __repr__(self) -> str:
        return f"Sentence({str(self)!r})"

    def translate(self, gettext: Callable[[str], str]) -> str:
        values = {key: value.translate(gettext) if isinstance(value, Sentence)
                  else gettext(value) if isinstance(value, str) and value else value
                  for key, value in self.values.items()}
        try:
            return gettext(self.message).format(**values)
        except (KeyError, IndexError, ValueError):  # a translation that names a value the English does not
            return str(self)


class Translator(Protocol):
    def gettext(self, message: str) -> str: ...
    def ngettext(self, singular: str, plural: str, n: int) -> str: ...


def choose_language(*wishes: str | None) -> str:
    """The first supported language among the wishes, in order (a ``--lang`` option, a setting, an
    environment variable such as ``LANG=en_US.UTF-8``...); Japanese when none is supported."""
    for wish in wishes:
        if not wish:
            continue
        code = wish.strip().replace("-", "_").split(".")[0].split("_")[0].lower()
        if code in LANGUAGES:
            return code
    return DEFAULT_LANGUAGE


def language_from_header(accept_language: str | None, fallback: str = DEFAULT_LANGUAGE) -> str:
    """The language an HTTP ``Accept-Language`` header prefers among ours (quality values honoured,
    by Babel's negotiation), or ``fallback`` when it names none of them."""
    if not accept_language:
        return fallback
    from babel import Locale

    wished = []
    for part in accept_language.split(","):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        if tag and tag != "*" and quality > 0:
            wished.append((quality, tag.strip()))
    wished.sort(key=lambda item: -item[0])  # stable: equal qualities keep the header's order
    chosen = Locale.negotiate([tag for _, tag in wished], list(LANGUAGES), sep="-")
    return chosen.language if chosen is not None else fallback


@functools.cache
def translations(locale_dir: str, domain: str, language: str) -> Translator:
    """The catalogue of ``domain`` in ``language`` (``<locale_dir>/<language>/LC_MESSAGES/<domain>.po``),
    compiled in memory; the source strings themselves for English or a missing catalogue."""
    import gettext

    po = Path(locale_dir) / language / "LC_MESSAGES" / f"{domain}.po"
    if language == "en" or not po.is_file():
        return gettext.NullTranslations()
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po
    from babel.support import Translations

    with po.open("rb") as source:
        catalog = read_po(source, locale=language, domain=domain)
    compiled = io.BytesIO()
    write_mo(compiled, catalog, use_fuzzy=False)
    compiled.seek(0)
    return Translations(compiled, domain=domain)


def japan_time(moment: dt.datetime | str | None, language: str = DEFAULT_LANGUAGE, seconds: bool = True) -> str:
    """A moment as a person in Japan reads it, the zone named: ``2025-04-01 18:30:12 JST``.

    A naive moment is taken as UTC (as the stores keep it); an ISO string is parsed first and
    returned unchanged when it is not one. The digits are the same in both languages (a call-centre
    operator reads them out); only the zone's name follows the language (JST / 日本時間)."""
    if moment is None or moment == "":
        return ""
    if isinstance(moment, str):
        try:
            parsed = dt.datetime.fromisoformat(moment)
        except ValueError:
            return moment
        moment = parsed
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    local = moment.astimezone(JAPAN)
    text = local.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")
    return f"{text} {'日本時間' if language == 'ja' else 'JST'}"


class Messages:
    """One program's ``_``: ``_ = Messages(<locale dir>, "<domain>")``, then ``_("Revoked.")``.

    ``use(language)`` picks the language for what follows (a CLI's ``--lang`` option, a notice's
    setting); ``for_language(language)`` gives the catalogue without changing it (a web page, which
    serves callers of different languages at once)."""

    def __init__(self, locale_dir: Path, domain: str) -> None:
        self.locale_dir = str(locale_dir)
        self.domain = domain
        self.language = DEFAULT_LANGUAGE

    def use(self, language: str) -> None:
        self.language = choose_language(language)

    def for_language(self, language: str) -> Translator:
        return translations(self.locale_dir, self.domain, choose_language(language))

    def __call__(self, message: str) -> str:
        return self.for_language(self.language).gettext(message)

    def plural(self, singular: str, plural: str, n: int) -> str:
        return self.for_language(self.language).ngettext(singular, plural, n)

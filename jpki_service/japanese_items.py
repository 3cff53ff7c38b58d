"""Two of the card's items as Japanese write and say them: the date of birth in the era calendar, and the
address with its block numbers (丁目, 番地, 番, 号) spoken out. ``holder_data`` applies both, after its one
text normaliser (``normalise_item``: invisible characters out, NFKC, dashes to "-", spaces out, case
folded), so every function here reads text already in that form.

**Era dates** (``read_date``): besides ISO ``YYYY-MM-DD`` (and ``YYYY年M月D日``, ``YYYY/M/D``), a date as
the card prints it: an era of 明治, 大正, 昭和, 平成, 令和 (or its initial M, T, S, H, R, or the one-character
era sign ㍻ that NFKC spells out), the year of the era in digits, kanji numerals or 元 (元年, the first
year), then month and day, with 年月日 or with ``.``, ``/`` or ``-`` between them, and an optional
trailing 生 or 生まれ ("born"). Full-width digits are half-width after NFKC; kanji numerals are read by
``kanjize``. The eras, their first days and the year arithmetic are ``japanera``'s (offline, maintained):
nothing here lists an era. Its boundaries, first and last day (its ``until`` is the next era's first day):

- 明治 1868-01-23 .. 1912-07-29 (japanera's first day; the era was proclaimed on 1868-10-23 and applied
  from the start of 慶応4年, 1868-01-25 in the Gregorian calendar; before 明治6年 (1873) Japan counted
  days in the lunisolar calendar, and a 明治 date is read with Gregorian months and days: no living
  card holder was born before 1873);
- 大正 1912-07-30 .. 1926-12-24; 昭和 1926-12-25 .. 1989-01-07; 平成 1989-01-08 .. 2019-04-30;
  令和 2019-05-01 on.

One era per day, as japanera has it: the days an era changed on the very day of the emperor's death
(1912-07-30, 1926-12-25) are the new era's (大正元年7月30日, 昭和元年12月25日), as a resident record
writes them; 明治45年7月30日 is refused with the reason and the era's own spelling of that day.

An impossible date is refused with the reason: a year the era never reached (平成32年: 平成 ended in
its year 31, on 平成31年4月30日), a day before the era began (平成元年1月7日 is 昭和64年1月7日), a day
after it ended, year 0 of an era, a month or day that does not exist (2月30日).

**Spoken addresses** (``block_numbers``): a house is found by its 丁目 (district), 番地 or 番 (block) and
号 (house), which people say and write as ``一丁目1番1号``, ``1丁目1番地1``, ``1-1-1``, ``1丁目1-1``
and ``1丁目1`` alike. A run of block numbers is written in the hyphen form: each number in digits
(kanji numerals read by ``kanjize``), the markers between them as "-", a marker after the last number
dropped, so all of those are ``1-1-1`` (and ``千代田一丁目1番`` is ``千代田1-1``, as a card's
``千代田1-1``). A block number is:

- digits followed by 丁目, 番地, 番 or 号;
- kanji numerals followed by 丁目 or 番地 (no place name holds those words);
- kanji numerals followed by 番 or 号 only when a number or the end of the address follows: 番 and 号
  also end place names written with kanji numerals (千代田区一番町, 四番丁, 一号館), which stay as
  they are: ``一番町`` is a name, ``一番`` at the end or ``一番一号`` a block number;
- after block numbers, a last number without its marker (``梅田一丁目一``, ``梅田1丁目1``).

Kanji numerals anywhere else are part of a name and kept (八丁堀, 五反田, 三軒茶屋, 一番町). Limits: a
place name that ends in a kanji numeral right before the 丁目 number would lose it to that number
(none is known to the writer), a building name written right after a kanji 番 or 号 without a space
(一番千代田ビル) keeps the marker, and 番地の2 (with の) is not read as 番地2.
"""
from __future__ import annotations

import calendar
import datetime as dt
import re
from typing import Any

from japanera import ERA_DATA_GENERAL, EraDate
from kanjize import kanji2number

from jpki_common.i18n import Sentence

# -- era dates -------------------------------------------------------------------------------------
_MEIJI = next(era for era in ERA_DATA_GENERAL if era.kanji == "明治")
# The eras a living holder can be born in: 明治 and the eras after it, as japanera dates them.
MODERN_ERAS: tuple[Any, ...] = tuple(era for era in ERA_DATA_GENERAL if era.since >= _MEIJI.since)
_ERA_BY_NAME: dict[str, Any] = {
    **{era.kanji: era for era in MODERN_ERAS},
    **{era.english_head.casefold(): era for era in MODERN_ERAS},  # H2.1.2 (case folded by normalise_item)
}
_KANJI_DIGITS = "〇一二三四五六七八九十百千"
_NUMBER = rf"[0-9]+|[{_KANJI_DIGITS}]+"
_DATE = re.compile(
    rf"(?P<era>{'|'.join(map(re.escape, _ERA_BY_NAME))})?(?P<year>{_NUMBER}|元)(?:年|[./-])"
    rf"(?:(?P<month>{_NUMBER})(?:(?:月|[./-])(?:(?P<day>{_NUMBER})日?)?)?)?(?:生(?:まれ)?)?")
ERA_NAMES = "、".join(era.kanji for era in MODERN_ERAS)


class UnreadableDate(ValueError):
    """Not written in any form a date is read in."""


class ImpossibleDate(ValueError):
    """Written as a date, but naming no day: the message says why."""


def _number(text: str) -> int | None:
    """Digits, or kanji numerals as ``kanjize`` reads them (六十, 三十一, 二〇); None for kanji that are no
    number (十十)."""
    if text.isdigit():
        return int(text)
    try:
        return kanji2number(text)
    except ValueError:
        return None


def _date_number(text: str, whole: str) -> int:
    number = _number(text)
    if number is None:
        raise UnreadableDate(whole)
    return number


def era_spelling(day: dt.date) -> str:
    """The day as the card prints it (平成31年4月30日), by japanera's era of that day."""
    era = EraDate.from_date(day).era
    year = era.absolute_year_to_relative_year(day.year)
    return f"{era.kanji}{'元' if year == 1 else year}年{day.month}月{day.day}日"


def _last_day(era: Any) -> dt.date | None:
    return None if era.until is None else era.until - dt.timedelta(days=1)


def read_date(text: str) -> dt.date:
    """A date of birth as ``normalise_item`` spells what was typed: ISO, or an era date (see the module).
    ``UnreadableDate`` when it is no form of a date, ``ImpossibleDate`` (with the reason) when it names no day."""
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        pass
    found = _DATE.fullmatch(text)
    if found is None:
        raise UnreadableDate(text)
    era = _ERA_BY_NAME.get(found["era"] or "")
    written = found["year"]
    if era is None:
        if not re.fullmatch("[0-9]{4}", written):
            raise UnreadableDate(text)  # 90年1月2日: which century? Give the era or four digits
        year, shown = int(written), f"{written}年"
    else:
        relative = 1 if written == "元" else _date_number(written, text)
        shown = f"{era.kanji}{'元' if relative == 1 else relative}年"
        if relative < 1:
            no_such_year = f"{era.kanji}{relative}年"
            raise ImpossibleDate(Sentence("the years of an era count from 1 (元年): there is no {year}",
                                          year=no_such_year))
        year = era.relative_year_to_absolute_year(relative)
        last = _last_day(era)
        if last is not None and year > last.year:
            final = era.absolute_year_to_relative_year(last.year)
            raise ImpossibleDate(Sentence("{era} ended in its year {final}, on {last} ({iso}): there is no {shown}",
                                          era=era.kanji, final=final, last=era_spelling(last), iso=last.isoformat(),
                                          shown=shown))
    if found["month"] is None or found["day"] is None:
        raise UnreadableDate(text)
    month, day = _date_number(found["month"], text), _date_number(found["day"], text)
    shown_month, shown_day = f"{shown}{month}月", f"{shown}{month}月{day}日"
    if not 1 <= month <= 12:
        raise ImpossibleDate(Sentence("there is no month {month} ({shown})", month=month, shown=shown_month))
    days = calendar.monthrange(year, month)[1]
    if not 1 <= day <= days:
        raise ImpossibleDate(Sentence("{month} has {days} days: there is no {date}", month=shown_month, days=days,
                                      date=shown_day))
    date = dt.date(year, month, day)
    if era is not None and date not in era:
        if date < era.since:
            raise ImpossibleDate(Sentence("{era} began on {iso} ({since}): {date} is {spelled}", era=era.kanji,
                                          iso=era.since.isoformat(), since=era_spelling(era.since),
                                          date=date.isoformat(), spelled=era_spelling(date)))
        last = _last_day(era)
        assert last is not None  # an era without an end holds every day after its start
        raise ImpossibleDate(Sentence("{era} ended on {iso} ({last}): {date} is {spelled}", era=era.kanji,
                                      iso=last.isoformat(), last=era_spelling(last), date=date.isoformat(),
                                      spelled=era_spelling(date)))
    return date


# -- block numbers of an address -------------------------------------------------------------------
_MARKER = "丁目|番地|番|号"
_KANJI_NUMBER = f"[{_KANJI_DIGITS}]+"
# What may follow a kanji number's 番 or 号 for it to be a block number: a number (a kanji one only if
# it is itself a block number or ends the address), or the end.
_NUMBER_OR_END = rf"(?=[0-9]|{_KANJI_NUMBER}(?:{_MARKER}|$)|$)"
_BLOCK = rf"(?:[0-9]+(?:{_MARKER})|{_KANJI_NUMBER}(?:丁目|番地|(?:番|号){_NUMBER_OR_END}))"
_BLOCK_RUN = re.compile(rf"(?:{_BLOCK})+(?:[0-9]+|{_KANJI_NUMBER}$)?")
_RUN_NUMBER = re.compile(rf"[0-9]+|{_KANJI_NUMBER}")


def _hyphen_form(run: re.Match[str]) -> str:
    numbers = [_number(n) for n in _RUN_NUMBER.findall(run.group())]
    if None in numbers:  # kanji that are no number (十十): a name after all, kept as written
        return run.group()
    return "-".join(map(str, numbers))


def block_numbers(address: str) -> str:
    """The address as ``normalise_item`` spells it, its block numbers in the hyphen form (see the module)."""
    return _BLOCK_RUN.sub(_hyphen_form, address)

"""The privacy scan of tests/test_e2e_phone.py must be able to fail: it finds what it looks for."""
from __future__ import annotations

import re

from tests.test_e2e_phone import INDIVIDUAL_NUMBER as PATTERN


def test_the_individual_number_pattern_finds_a_number_and_ignores_hex_and_utctime():
    assert re.search(PATTERN, '{"my_number": "123456789012"}')
    assert re.search(PATTERN, "log: number=123456789012\n")
    assert not re.search(PATTERN, "serial 7f2474125f88e937f798cf2e1234567890123ab")
    assert not re.search(PATTERN, "\x17\r261122211247Z")  # a UTCTime inside DER

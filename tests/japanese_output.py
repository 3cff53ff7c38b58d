"""A heuristic for the Japanese output of the command lines: English sentences left untranslated.

Values stay as they are in either language (URLs, commands and options, serials, case references,
file paths, ALL-CAPS names such as SE or OCSP, a certificate's distinguished name), and so does what
the service itself said (after サービスの説明:). What is left must hold no run of three or more English words."""
from __future__ import annotations

import re

_VALUES = (
    r"`[^`]*`",  # a command to type
    r"https?://\S+",
    r"（サービスの説明: [^）]*）",  # the service's own detail, quoted
    r"\bCN=.*?,C=[A-Z]{2}\b",  # a distinguished name, as RFC 4514 writes it (a trust root's subject)
    r"(?<![\w-])(?:jpki-[\w-]+|--[\w-]+|[\w./-]*/[\w./-]+|[A-Z][A-Z0-9_]+|\w*\d\w*)(?![\w-])",
)
_ENGLISH_RUN = re.compile(r"[A-Za-z]+(?:[ ,]+[A-Za-z]+){2,}")


def untranslated(text: str) -> list[str]:
    """The runs of 3+ English words in ``text`` once the values are taken out."""
    for pattern in _VALUES:
        text = re.sub(pattern, " ", text)
    return _ENGLISH_RUN.findall(text)

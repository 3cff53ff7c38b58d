"""``jpki-app``'s words: one catalogue (domain ``app_client``, app_client/locale), Japanese first.

``_("...")`` translates into the language the command line chose (``--lang``, ``JPKI_LANG``);
``N_("...")`` only marks a string for the catalogue, to be translated where it is shown.
How to add a string: docs/development.md ("Translated strings").
"""
from __future__ import annotations

import os
from pathlib import Path

from jpki_common.i18n import Messages, choose_language

_ = Messages(Path(__file__).parent / "locale", "app_client")
_.use(choose_language(os.environ.get("JPKI_LANG")))  # the command line's --lang overrides it


def N_(message: str) -> str:  # noqa: N802 - gettext's name for "mark only"
    return message

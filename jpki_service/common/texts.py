"""The catalogue of what the service says to people: the console's pages and the owner notices.

The source strings are English; ``jpki_service/locale/ja/LC_MESSAGES/service.po`` holds their
Japanese (jpki_common/i18n.py; ``python -m jpki_common.catalogues update`` adds new ones).
"""
from __future__ import annotations

from pathlib import Path

from jpki_common.i18n import N_, Messages, Sentence

TEXTS = Messages(Path(__file__).resolve().parent.parent / "locale", "service")

__all__ = ["TEXTS", "N_", "Sentence"]

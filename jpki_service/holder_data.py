"""The holder's personal data at rest, and the two ways the call centre finds a registration.

The service keeps as little as it can (DESIGN.md 3, "minimised and protected"):

- the holder's **name**, sealed with AES-256-GCM, only so the console can show it masked;
- the owner's **e-mail address** for notices, if the owner gave one, sealed the same way and bound to
  its registration (``seal_email``): only the notice sender opens it;
- the phone **certificates** the CA issued (a signature certificate carries the four items in its
  subjectAltName), sealed with the same key and function, the associated data naming what is
  sealed (a certificate also its serial), so a sealed name and a sealed certificate cannot be swapped;
- a **blind index** of name + date of birth + address: a keyed HMAC of the normalised items,
  so an operator can find a registration from what the caller says without the table holding
  the items (a copy of the table without the data key reveals nothing and cannot be searched);
- a **suspension code** given to the owner once at registration (as the German Smart-eID's
  blocking code), stored only as a keyed HMAC;
- a **case reference** in the same spoken form, what staff see: not a secret, and not the
  registration id (which, with the owner token, is the owner's alone).

The gender, the date of birth and the address are not stored in clear anywhere (only inside the
sealed signature certificate).

``normalise_item`` is the one rule by which two spellings of an item are the same item: the
call-centre search (caller's words against the card's) and the person key (a renewed card against
the old one, ``cards/service.py``) both use it, and nothing else compares items. In order:

1. invisible format characters (Unicode category Cf: zero-width space U+200B, joiners U+200C/D,
   word joiner U+2060, BOM U+FEFF, soft hyphen U+00AD, bidi marks) are removed;
2. NFKC: full-width letters, digits and hyphen-minus become ASCII, half-width katakana full-width,
   and every compatibility space (U+3000 ideographic, U+00A0, U+2000-U+200A, U+202F, U+205F)
   becomes U+0020;
3. every dash look-alike (``DASHES``) becomes "-"; the katakana prolonged sound mark U+30FC (and
   its half-width U+FF70) is a letter of names and is kept, and so are the wave dashes U+301C,
   U+3030 and the katakana double hyphen U+30A0;
4. all white space (``str.isspace``: every Zs space, tabs, line breaks) is removed;
5. case-folded (Latin, Greek, Cyrillic letters).

Variation selectors (the IVS of a kanji glyph variant) are kept: a card writes what J-LIS writes.

Two items have Japanese forms on top of that rule (``jpki_service/japanese_items.py``): the date of
birth (``normalise_birth_date``: ISO or an era date as the card prints it, 平成2年1月2日, in the ISO
form) and the address (``normalise_address``: block numbers as said, 一丁目1番, 1丁目1番地, in the
hyphen form 1-1). The name has no such rule. ``HOLDER_INDEX_RULES`` numbers the blind index's rules:
a registration indexed under older rules keeps its index until the service recomputes it from its
sealed signature certificate (``registrations/service.py``, ``reindex_holders``), and the search
looks under both meanwhile.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
import unicodedata

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from jpki_common.i18n import Sentence
from jpki_service.common.problems import InvalidInput
from jpki_service.japanese_items import ImpossibleDate, UnreadableDate, block_numbers, read_date

# Crockford base32: no I, L, O, U, so a code read out over the phone is hard to mistake.
CODE_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
CODE_LENGTH = 12  # 60 bits: guessing one among millions of codes is hopeless within any rate limit
_CODE_CONFUSABLES = str.maketrans({"O": "0", "I": "1", "L": "1"})
# Dash look-alikes folded into "-": the Unicode dash punctuation (Pd) but the wave dashes and the
# katakana double hyphen, plus minus signs, the hyphen bullet and the box-drawing horizontals
# (written for a hyphen in Japanese addresses). U+30FC and U+FF70 (prolonged sound mark) are not here.
DASHES = (
    "\u058a\u05be\u1400\u1806\u2010\u2011\u2012\u2013\u2014\u2015\u2e17\u2e1a\u2e3a\u2e3b\u2e40\u2e5d"
    "\ufe31\ufe32\ufe58\ufe63\uff0d\U00010ead"  # Pd
    "\u2212\u207b\u208b\u02d7\u2796\u2043\u2500\u2501"  # minus signs, hyphen bullet, box drawing
)
_DASHES = re.compile(f"[{DASHES}]")
_NAME_AAD = b"jpki-service/holder-name/1"
_CERTIFICATE_AAD = b"jpki-service/phone-certificate/1"
_EMAIL_AAD = b"jpki-service/owner-email/1"


# -- normalisation -------------------------------------------------------------------------------
def normalise_item(text: str) -> str:
    """One card item as the caller or the card may spell it, in one canonical form (see the module)."""
    text = "".join(c for c in text if unicodedata.category(c) != "Cf")
    text = unicodedata.normalize("NFKC", text)
    text = _DASHES.sub("-", text)
    return "".join(text.split()).casefold()


def normalise_birth_date(text: str, field: str = "birth") -> str:
    """The date of birth, written as ISO or as the card prints it in the Japanese era, in the ISO form."""
    try:
        return read_date(normalise_item(text)).isoformat()
    except UnreadableDate:
        raise InvalidInput(Sentence("{field} must be a date as YYYY-MM-DD or as the card prints it in the Japanese "
                                    "era (平成2年1月2日, 昭和六十年五月五日, 令和元年5月1日, H2.1.2)", field=field),
                           field=field) from None
    except ImpossibleDate as exc:
        raise InvalidInput(Sentence("{field} is not a real date: {reason}", field=field, reason=exc.args[0]),
                           field=field) from None


def normalise_address(text: str) -> str:
    """The address in ``normalise_item``'s form, its block numbers (丁目, 番地, 番, 号) in the hyphen form."""
    return block_numbers(normalise_item(text))


# -- blind indexes -------------------------------------------------------------------------------
# The rules of the blind index, numbered: 1 spelled the address by ``normalise_item`` alone; 2 (now)
# by ``normalise_address``. Stored with each index (registrations.holder_index_rules).
HOLDER_INDEX_RULES = 2
_ADDRESS_RULES = {1: normalise_item, 2: normalise_address}


def holder_index(key: bytes, name: str, birth: str, address: str, rules: int = HOLDER_INDEX_RULES) -> str:
    """The blind index of what a caller says (or what the card says): equal items, equal index.
    ``rules``: an older rule set, only to find registrations still indexed under it."""
    items = (normalise_item(name), normalise_birth_date(birth), _ADDRESS_RULES[rules](address))
    if not all(items):
        raise InvalidInput(Sentence("name, birth date and address are all needed to find a holder"), field="name")
    return hmac.new(key, "\x1f".join(items).encode(), hashlib.sha256).hexdigest()


def _new_spoken_code() -> str:
    code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
    return "-".join(code[i:i + 4] for i in range(0, CODE_LENGTH, 4))


def _normalise_spoken_code(text: str, field: str, what: str) -> str:
    """A code as read out over the phone: any case, width, spaces or hyphens, O for 0, I or L for 1."""
    code = "".join(unicodedata.normalize("NFKC", text).upper().replace("-", "").split())
    code = code.translate(_CODE_CONFUSABLES)
    if len(code) != CODE_LENGTH or any(c not in CODE_ALPHABET for c in code):
        raise InvalidInput(f"{field} must be the {CODE_LENGTH}-character {what} (like ABCD-EFGH-JKMN)", field=field)
    return code


def new_suspension_code() -> str:
    return _new_spoken_code()


def normalise_suspension_code(text: str, field: str = "code") -> str:
    return _normalise_spoken_code(text, field, "suspension code the app shows")


def new_case_reference() -> str:
    """What staff, the audit trail and owner notices name a registration by. Not a secret, and it
    unlocks nothing: the owner reads the registration with the owner token or the device key."""
    return _new_spoken_code()


def normalise_case_reference(text: str, field: str = "case_reference") -> str:
    """The stored form (ABCD-EFGH-JKMN) of a case reference as an operator types or reads it."""
    code = _normalise_spoken_code(text, field, "case reference the console shows")
    return "-".join(code[i:i + 4] for i in range(0, CODE_LENGTH, 4))


def suspension_code_index(key: bytes, code: str) -> str:
    return hmac.new(key, b"code\x1f" + normalise_suspension_code(code).encode(), hashlib.sha256).hexdigest()


# -- sealing at rest ------------------------------------------------------------------------------
# One AES-256-GCM seal under the holder-data key; what is sealed is named in the associated data, so
# a sealed name cannot be passed off as a sealed certificate (or one certificate as another's).
def _seal(key: bytes, plain: bytes, aad: bytes) -> str:
    nonce = os.urandom(12)
    return base64.b64encode(nonce + AESGCM(key).encrypt(nonce, plain, aad)).decode()


def _open(key: bytes, sealed: str, aad: bytes) -> bytes | None:
    try:
        raw = base64.b64decode(sealed, validate=True)
        return AESGCM(key).decrypt(raw[:12], raw[12:], aad)
    except (InvalidTag, ValueError):
        return None


def seal_name(key: bytes, name: str) -> str:
    return _seal(key, name.encode(), _NAME_AAD)


def open_name(key: bytes, sealed: str | None) -> str | None:
    """The name, or None when there is none or it cannot be opened with this key."""
    if not sealed:
        return None
    plain = _open(key, sealed, _NAME_AAD)
    return plain.decode() if plain is not None else None


def seal_email(key: bytes, registration_id: str, address: str) -> str:
    """The owner's notice address, sealed and bound to its registration (never stored in clear)."""
    return _seal(key, address.encode(), _EMAIL_AAD + b"\x1f" + registration_id.encode())


def open_email(key: bytes, registration_id: str, sealed: str | None) -> str | None:
    """The owner's notice address, or None when there is none or it does not open (another key or registration)."""
    if not sealed:
        return None
    plain = _open(key, sealed, _EMAIL_AAD + b"\x1f" + registration_id.encode())
    return plain.decode() if plain is not None else None


# -- the sealed phone certificates ---------------------------------------------------------------
# A phone signature certificate carries the four items (subjectAltName), so every certificate the
# CA issues is stored sealed (authentication certificates too: one rule), bound to its serial.
def _certificate_aad(serial: str) -> bytes:
    return _CERTIFICATE_AAD + b"\x1f" + serial.encode()


def certificate_in_clear(stored: str | None) -> bool:
    """A certificate stored before sealing (a PEM as the CA gave it), to be sealed at the next start."""
    return stored is not None and stored.lstrip().startswith("-----BEGIN")


def seal_certificate(key: bytes, serial: str, pem: str) -> str:
    return _seal(key, pem.encode(), _certificate_aad(serial))


def open_certificate(key: bytes, serial: str | None, stored: str | None) -> str | None:
    """The PEM of a stored certificate, or None when there is none or it cannot be opened with this key
    (or was sealed for another serial). A PEM still in clear (stored before sealing, until the start-up
    step seals it) is returned as it is."""
    if not stored or serial is None:
        return None
    if certificate_in_clear(stored):
        return stored
    plain = _open(key, stored, _certificate_aad(serial))
    return plain.decode() if plain is not None else None


def mask_name(name: str | None) -> str:
    """What an operator needs to confirm a caller, and no more: each part's first character."""
    if not name:
        return "(not recorded)"
    parts = unicodedata.normalize("NFKC", name).split()
    return " ".join(part[0] + "*" * (len(part) - 1) for part in parts)

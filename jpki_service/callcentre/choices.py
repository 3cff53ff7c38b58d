"""The call-centre API's choices (docs/operator-api.md), light on purpose: ``jpki-operator`` offers them in
its ``--help`` without loading pydantic (jpki_service/callcentre/schemas.py uses them in the requests)."""
from __future__ import annotations

import enum


class SuspensionReason(str, enum.Enum):
    LOST = "lost"
    STOLEN = "stolen"
    SOLD = "sold"  # sold or given away without revoking
    OTHER = "other"


class CallerKind(str, enum.Enum):
    SELF = "self"  # the owner
    PROXY = "proxy"  # someone on the owner's behalf, e.g. family while the owner is abroad
    INTERNAL = "internal"  # nobody called: the call centre's own decision (fraud team, a court order, ...)


class Channel(str, enum.Enum):
    PHONE = "phone"
    COUNTER = "counter"
    MAIL = "mail"

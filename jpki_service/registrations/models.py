"""Registrations (one phone each), their certificates and their history."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, Index, Integer, String, Text, false
from sqlalchemy.orm import Mapped, mapped_column

from jpki_service.adapters.db import Base, UTCDateTime


class Registration(Base):
    __tablename__ = "registrations"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # 128-bit random, hex; the owner's phone's
    # What staff, the audit trail and notices name it by (holder_data.new_case_reference): unlocks nothing.
    case_reference: Mapped[str] = mapped_column(String(16), unique=True, index=True)
    # SHA-256 of the owner token, which reads the registration (registrations/service.py); None for a
    # registration made before tokens, until its phone asks for one with its device key.
    owner_token_hash: Mapped[str | None] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(32))
    # Keyed hash of the card's four items: finds the same person's other phones without
    # storing who they are.
    person_key: Mapped[str] = mapped_column(String(64), index=True)
    card_serial: Mapped[str] = mapped_column(String(40), index=True)
    device_model: Mapped[str] = mapped_column(String(64))
    device_public_key_pem: Mapped[str] = mapped_column(Text)
    # The holder's name, sealed (AES-GCM, key from settings): the console shows it masked. The
    # look-ups use keyed blind indexes, never the plain items (jpki_service/holder_data.py).
    holder_sealed: Mapped[str | None] = mapped_column(Text)
    holder_index: Mapped[str | None] = mapped_column(String(64), index=True)
    # The rules holder_index was made under (holder_data.HOLDER_INDEX_RULES): an older number is
    # recomputed from the sealed signature certificate (registrations/service.py, reindex_holders).
    holder_index_rules: Mapped[int | None] = mapped_column(Integer)
    suspension_code_index: Mapped[str | None] = mapped_column(String(64), index=True, unique=True)
    # The owner's e-mail address for notices, if given (holder_data.seal_email): sealed, never in clear.
    email_sealed: Mapped[str | None] = mapped_column(Text)
    # The owner asked to be told of each log-in with the phone's user-authentication certificate.
    login_notices: Mapped[bool] = mapped_column(default=False, server_default=false())
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class PhoneCertificate(Base):
    __tablename__ = "phone_certificates"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    registration_id: Mapped[str] = mapped_column(ForeignKey("registrations.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # signature | authentication
    public_key_pem: Mapped[str] = mapped_column(Text)  # from the CSR: proofs verify against it
    serial: Mapped[str | None] = mapped_column(String(40), unique=True)
    status: Mapped[str] = mapped_column(String(10))  # pending | good | held | revoked
    certificate_pem: Mapped[str | None] = mapped_column(Text)
    current: Mapped[bool] = mapped_column(default=True)

    __table_args__ = (Index("ix_phone_certificates_current", "registration_id", "kind", "current"),)


class RegistrationEvent(Base):
    """Append-only history of a registration: what happened, caused by whom."""

    __tablename__ = "registration_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    registration_id: Mapped[str] = mapped_column(ForeignKey("registrations.id"), index=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    event: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(16))
    from_state: Mapped[str] = mapped_column(String(16))
    to_state: Mapped[str] = mapped_column(String(16))
    operator: Mapped[str | None] = mapped_column(String(64))  # the call-centre account, when one acted
    note: Mapped[str | None] = mapped_column(String(200))  # the reason given (suspension, lift, revocation)


class Person(Base):
    """One row per keyed person hash: locked to serialise registrations of the same person,
    so that two phones registering at once cannot both end up active."""

    __tablename__ = "people"

    person_key: Mapped[str] = mapped_column(String(64), primary_key=True)

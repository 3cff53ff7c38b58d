"""Call-centre accounts and their sessions (console cookie or API bearer: the same row)."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, Integer, String, Text, false
from sqlalchemy.orm import Mapped, mapped_column

from jpki_service.adapters.db import Base, UTCDateTime


class Operator(Base):
    __tablename__ = "operators"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))  # operator | supervisor | auditor
    password_hash: Mapped[str] = mapped_column(Text)  # argon2id, never the password
    disabled: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    # Set by `jpki-service operator reset-password`: a session of this account can only change the password.
    must_change_password: Mapped[bool] = mapped_column(default=False, server_default=false())
    last_login_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class OperatorSession(Base):
    """A logged-in operator. Only a hash of the token is kept: a copy of this table opens nothing."""

    __tablename__ = "operator_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    operator_id: Mapped[int] = mapped_column(ForeignKey("operators.id"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class OperatorSource(Base):
    """An address this operator signed in from before (an HMAC of it, never the address): from here the
    right password is throttled only by this address's own failures, not the account's (operators/throttle.py)."""

    __tablename__ = "operator_sources"

    operator_id: Mapped[int] = mapped_column(ForeignKey("operators.id"), primary_key=True)
    source_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    last_login_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)

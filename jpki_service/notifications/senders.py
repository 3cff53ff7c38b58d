"""Where owner notifications go. The service only builds the message; a sender delivers it.

Two senders are for the embedded setup and tests: a JSON-lines file (one message a line, durable
before it counts as sent) and the log. Beside them, :class:`SmtpSender` sends a notice by e-mail to
an owner who gave an address (``JPKI_SMTP_HOST``; ``notifications.service.send_due`` chooses). A
sender raises on failure; the outbox then keeps the notification and retries it.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import os
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Protocol

from jpki_common.private_files import private_folder
from jpki_service.common.settings import ServiceSettings

log = logging.getLogger("jpki_service.notifications")


class Sender(Protocol):
    def send(self, message: dict) -> None:
        """Deliver one message, or raise: returning means it was delivered."""


class FileSender:
    """Appends each message as one JSON line, and syncs it to disk before returning.

    The file is created readable by its owner only: it says whose certificates changed when.
    Each line is one ``write`` on an ``O_APPEND`` descriptor, so two processes never interleave.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def send(self, message: dict) -> None:
        line = (json.dumps(message, ensure_ascii=False, sort_keys=True) + "\n").encode("utf-8")
        private_folder(self.path.parent)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            written = os.write(fd, line)
            if written != len(line):
                raise OSError(f"short write to {self.path}: {written} of {len(line)} bytes")
            os.fsync(fd)
        finally:
            os.close(fd)


class LogSender:
    """Logs each message at INFO on ``jpki_service.notifications`` (for a log pipeline to forward)."""

    def send(self, message: dict) -> None:
        log.info("owner notification %s", json.dumps(message, ensure_ascii=False, sort_keys=True))


@dataclass(frozen=True)
class OwnerMail:
    """One notice as an e-mail (``notifications.service.owner_mail``): plain text, UTF-8."""

    to: str
    subject: str
    body: str
    notification_id: int
    at: dt.datetime


class MailSender(Protocol):
    def send_mail(self, mail: OwnerMail) -> None:
        """Hand one e-mail to the mail system, or raise: returning means the server accepted it."""


class SmtpSender:
    """Sends each notice as one e-mail through an SMTP server (``JPKI_SMTP_*``), one connection a message.

    The Message-ID is made from the notification's id, so a notice sent twice (at-least-once delivery)
    is recognisably the same e-mail. Any refusal (connection, STARTTLS, AUTH, a refused recipient)
    raises, and the outbox retries."""

    def __init__(self, host: str, port: int, sender: str, *, starttls: bool = False, username: str | None = None,
                 password: str | None = None, timeout: float = 10.0) -> None:
        self.host, self.port, self.sender, self.starttls = host, port, sender, starttls
        self.username, self.password, self.timeout = username, password, timeout

    def message(self, mail: OwnerMail) -> EmailMessage:
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = mail.to
        message["Subject"] = mail.subject
        message["Date"] = format_datetime(mail.at.astimezone(dt.UTC))
        domain = self.sender.rpartition("@")[2] or "localhost"
        message["Message-ID"] = f"<jpki-notice-{mail.notification_id}@{domain}>"
        message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies to it
        message.set_content(mail.body, charset="utf-8")
        return message

    def send_mail(self, mail: OwnerMail) -> None:
        with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
            if self.starttls:
                smtp.starttls(context=ssl.create_default_context())
            if self.username:
                smtp.login(self.username, self.password or "")
            try:
                smtp.send_message(self.message(mail))
            # A refusal's text may hold the owner's address (a server echoes it): only its code is logged and stored.
            except smtplib.SMTPRecipientsRefused as exc:
                codes = ", ".join(str(code) for code, _reason in exc.recipients.values())
                raise MailRefused(f"the SMTP server refused the owner's address (SMTP {codes})") from None
            except smtplib.SMTPResponseException as exc:
                raise MailRefused(f"the SMTP server refused the message (SMTP {exc.smtp_code})") from None


class MailRefused(Exception):
    """The SMTP server refused the recipient or the message; said by its code, never its text (which may hold the
    owner's address, personal data)."""


def make_mail_sender(settings: ServiceSettings) -> SmtpSender | None:
    """The e-mail sender of ``JPKI_SMTP_HOST`` and the other ``JPKI_SMTP_*`` settings; None when it is unset."""
    if not settings.smtp_host:
        return None
    return SmtpSender(settings.smtp_host, settings.smtp_port, settings.smtp_from, starttls=settings.smtp_starttls,
                      username=settings.smtp_username, password=settings.smtp_password,
                      timeout=settings.smtp_timeout_seconds)


SENDER_NAMES = ("file", "log")


def make_sender(settings: ServiceSettings) -> Sender:
    """The sender named by ``JPKI_NOTIFICATION_SENDER``."""
    name = settings.notification_sender.strip().lower()
    if name == "file":
        return FileSender(settings.notification_file or settings.data_dir / "notifications.jsonl")
    if name == "log":
        return LogSender()
    raise ValueError(f"unknown notification sender {settings.notification_sender!r}: "
                     f"JPKI_NOTIFICATION_SENDER must be one of {', '.join(SENDER_NAMES)}")

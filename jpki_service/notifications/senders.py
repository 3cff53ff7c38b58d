"""Where owner notifications go. The service only builds the message; a sender delivers it.

Real deployments would post to a mail or push gateway. The two built in are for the embedded
setup and tests: a JSON-lines file (one message a line, durable before it counts as sent) and
the log. A sender raises on failure; the outbox then keeps the notification and retries it.
"""
from __future__ import annotations

import json
import logging
import os
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

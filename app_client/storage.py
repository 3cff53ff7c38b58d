"""Small file primitives shared by the secure element, the card reader and the app data.

Writes are atomic (a temporary file in the same folder, then ``os.replace``), so a crash leaves
either the old or the new content, never half of each: a retry counter must never be lost to a
torn write. Files are created owner-only (0600).
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def read_json(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as handle:
        data = json.load(handle)
    if not isinstance(data, dict):
        raise ValueError(f"{path} does not hold a JSON object")
    return data


def write_json(path: Path, data: dict[str, Any]) -> None:
    write_bytes(path, json.dumps(data, ensure_ascii=False, indent=2).encode())


def write_bytes(path: Path, content: bytes) -> None:
    """Replace ``path`` with ``content`` atomically; the file is readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # mkstemp: mode 0600
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


@contextlib.contextmanager
def exclusive(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` (Linux ``flock`` on the directory itself).

    Two processes reading a counter, both spending "the same" try and both writing it back
    would give an attacker extra tries; the lock serialises them, as the chip does.
    """
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock

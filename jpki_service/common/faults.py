"""Crash points: a test hook for killing the service at a chosen step (tests/test_faults.py).

``crash_point(name)`` does nothing unless the environment variable ``JPKI_CRASH_AT`` names that
point; then the process kills itself with SIGKILL, as a power cut or ``kill -9`` would: no
``finally``, no rollback handler, no flush. ``JPKI_CRASH_AT=name:N`` crashes the N-th time the
process passes the point (counted per process, from 1). Unset, a call costs one dict lookup.

``JPKI_CRASH_AT_FILE=path`` arms a running process instead: while the file exists, its content is the
target, read at each pass (the crash matrix arms the service it already runs, rather than starting
another process for each case). Passes are counted only while armed for the point.

Never set ``JPKI_CRASH_AT`` or ``JPKI_CRASH_AT_FILE`` outside tests. The points, in the order a request meets them
(docs/faults-and-races.md):

``after-record``     the transition's transaction has committed; no CA call made yet
                     (``registrations.transitions.carry_quietly``)
``during-ca-call``   a command is about to be sent to the CA (``ca_commands.service.dispatch``)
``after-ca-answer``  the CA has answered (it has done it) and the answer is not recorded yet
``before-reply``     everything is recorded; the HTTP answer is not sent yet (the views' ``_synced``)
"""
from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path

ENV = "JPKI_CRASH_AT"
FILE_ENV = "JPKI_CRASH_AT_FILE"
POINTS = ("after-record", "during-ca-call", "after-ca-answer", "before-reply")

_passes: dict[str, int] = {}
_lock = threading.Lock()


def crash_point(name: str) -> None:
    """SIGKILL this process if ``JPKI_CRASH_AT`` (or the file ``JPKI_CRASH_AT_FILE`` names) is ``name``
    (or ``name:N`` and this is the N-th pass)."""
    target = os.environ.get(ENV)
    if target is None and (armed_by := os.environ.get(FILE_ENV)):
        target = _target_in(Path(armed_by))
    if target is not None:
        _maybe_crash(name, target)


def _target_in(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except FileNotFoundError:
        return None


def _maybe_crash(name: str, target: str) -> None:
    point, _, nth = target.partition(":")
    if point != name:
        return
    with _lock:
        _passes[name] = count = _passes.get(name, 0) + 1
    if count != (int(nth) if nth else 1):
        return
    sys.stderr.write(f"JPKI_CRASH_AT: crash point {name} (pass {count}) reached, SIGKILL\n")
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)

"""What each of the project's programs does as it starts (``jpki-ca``, ``jpki-service``, ``jpki-app``,
``jpki-operator``)."""
from __future__ import annotations

import atexit
import gc


def no_garbage_collection_at_exit() -> None:
    """Freeze every object as the program exits, so that the interpreter's last garbage collections do not
    walk them all. With SQLAlchemy, pydantic, FastAPI and cryptography loaded, that walk costs 0.1-0.2 s of
    CPU (a fifth of a short command such as ``jpki-ca status``); the process's memory goes back to the
    system with it anyway. Nothing depends on it: stores are committed and files written and closed by the
    code that opened them, and SQLite replays a WAL that a connection left behind when next opened."""
    atexit.register(gc.freeze)

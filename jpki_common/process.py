"""What each of the project's programs does as it starts (``jpki-ca``, ``jpki-service``, ``jpki-app``,
``jpki-operator``)."""
from __future__ import annotations

import atexit
import gc
import sys


def no_garbage_collection_at_exit() -> None:
    """As the program exits, close its stores' connections, then freeze every object, so that the
    interpreter's last garbage collections do not walk them all: with SQLAlchemy, pydantic, FastAPI and
    cryptography loaded, that walk costs 0.1-0.2 s of CPU (a fifth of a short command such as
    ``jpki-ca status``), and the process's memory goes back to the system with it anyway. The connections
    are closed first and explicitly, not by that walk: on SQLite the last one to close folds the WAL into
    the store file (tests/test_cli.py, test_a_command_leaves_the_store_whole)."""
    atexit.register(_at_exit)


def _at_exit() -> None:
    store = sys.modules.get("jpki_common.store")  # a program that never opened a store has none to close
    if store is not None:
        store.close_every_engine()
    gc.freeze()

"""Folders and logs readable by their owner only, from the moment they exist, whatever the umask.

``Path.mkdir(mode=0o700, parents=True)`` gives the mode to the last folder only (its parents get the default,
0755 under the usual umask) and the umask may cut it further; these helpers chmod what they make.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import IO

FOLDER_MODE = 0o700
FILE_MODE = 0o600


def private_folder(path: Path) -> Path:
    """Make ``path`` and its missing parents, each 0700; an existing folder is left as it is."""
    path = Path(path)
    missing = []
    folder = path.absolute()
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for made in reversed(missing):
        try:
            made.mkdir(mode=FOLDER_MODE)
        except FileExistsError:  # another process made it first: its mode is its maker's
            continue
        os.chmod(made, FOLDER_MODE)
    return path


def private_log(path: Path) -> IO[str]:
    """``path`` opened for appending; made 0600 (and its folder 0700) if missing."""
    path = Path(path)
    private_folder(path.parent)
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, FILE_MODE)
    if os.fstat(descriptor).st_size == 0:
        os.fchmod(descriptor, FILE_MODE)  # a file just made (or empty): owner-only whatever the umask
    return os.fdopen(descriptor, "a")

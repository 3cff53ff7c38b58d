"""The commands of a Markdown page, as a reader would paste them, with the output the page promises.

A command is an indented code line starting with ``$ `` (a trailing ``\\`` continues it on the next
line); the indented lines after it, up to the next command or the end of the block, are its output
as printed in the page. Tests run the commands in order and hold the real output against the page.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

# Values that differ on every run: ids, serials, suspension codes, times. Each is learnt from the real
# output at the same place in the same line, and replaced in the commands that follow.
_VARYING = re.compile(
    r"\b[0-9a-f]{24,64}\b"                     # registration ids, certificate serials, subject CNs, fingerprints
    r"|\b[0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4}\b"                # suspension codes, case references
    r"|\b\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:\d{2})?"  # times
    r"|\b[A-Z][a-z]{2} [ \d]\d \d{2}:\d{2}:\d{2} \d{4} GMT\b"      # times as openssl prints them
)
# A command the page shows failing: our CLIs' "error: ...", openssl verify's "error 23 at 0 depth lookup: ...",
# openssl ocsp's "Responder Error: ...".
_FAILURE = re.compile(r"^(error[: ]|Responder Error: )")


@dataclass
class DocCommand:
    section: str
    command: str
    promised: list[str] = field(default_factory=list)

    @property
    def expects_failure(self) -> bool:
        return any(_FAILURE.match(line) for line in self.promised)


def commands(page: Path) -> list[DocCommand]:
    found: list[DocCommand] = []
    section = ""
    continuing = False
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            section = line[3:].strip()
        if not line.startswith("    "):
            if line.strip():
                continuing = False
            continue
        text = line[4:]
        if continuing:
            found[-1].command += "\n" + text
        elif text.startswith("$ "):
            found.append(DocCommand(section, text[2:]))
        elif found and found[-1].section == section and text.strip():
            found[-1].promised.append(text.rstrip())
        continuing = text.endswith("\\") and bool(found)
    return found


def shape(line: str) -> str:
    """A line with its varying values blanked and its spacing collapsed: what must match."""
    return " ".join(_VARYING.sub("<>", line).split())


class Substitutions:
    """Values the page printed (its run's ids, serials, codes), mapped to this run's."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    def learn(self, promised: list[str], printed: str) -> list[str]:
        """Pair each promised line with the printed line of the same shape; returns the lines not found."""
        printed_lines = [line.rstrip() for line in printed.splitlines()]
        missing = []
        for line in promised:
            if line.strip() in ("...",):
                continue
            match = next((p for p in printed_lines if shape(p) == shape(line)), None)
            if match is None:
                missing.append(line)
                continue
            for ours, theirs in zip(_VARYING.findall(line), _VARYING.findall(match), strict=False):
                self.values.setdefault(ours, theirs)
        return missing

    def apply(self, command: str) -> str:
        for ours, theirs in self.values.items():
            command = command.replace(ours, theirs)
        return command

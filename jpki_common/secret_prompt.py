"""Prompting a person at a terminal, the same way in every command line of the project.

A secret is read from its environment variable when set (scripts), else asked without echo. With
no terminal, the answer is read from standard input (a pipe: nothing is echoed) without Python's
``GetPassWarning``; when standard input has nothing either, :class:`NoTerminal` names the
environment variable that supplies the answer (never a bare "Aborted."), and each program says so
in its own words and language.
"""
from __future__ import annotations

import sys

import typer


class NoTerminal(Exception):
    """Nothing to ask at: the program should say which environment variable gives the answer."""

    def __init__(self, variable: str) -> None:
        super().__init__(variable)
        self.variable = variable


def ask(prompt: str, variable: str, hide_input: bool = True, err: bool = False) -> str:
    """One answer, typed at the terminal (hidden by default) or read from a pipe; :class:`NoTerminal`
    when there is neither."""
    if _at_a_terminal():
        return str(typer.prompt(prompt, hide_input=hide_input, err=err))
    stream = sys.stderr if err else sys.stdout
    stream.write(f"{prompt}: ")
    stream.flush()
    line = sys.stdin.readline() if sys.stdin is not None else ""
    stream.write("\n")  # what the person typed is not shown: end the prompt's line
    stream.flush()
    if not line:
        raise NoTerminal(variable)
    return line.rstrip("\r\n")


def _at_a_terminal() -> bool:
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except ValueError:  # stdin closed
        return False

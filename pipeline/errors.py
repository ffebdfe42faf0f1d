"""User-facing errors: raised for bad configuration or input; the CLI prints them in one line.

A ``PipelineError`` is never a bug: it says what is wrong and what to do next, and the CLI
turns it into exit code 2 instead of a traceback. Messages are kept to one line of bounded
length (:func:`one_line`), and values a user wrote are shown through :func:`show`, which cuts
them short without expanding them first (a YAML alias bomb is a few hundred bytes of text but
gigabytes once printed in full).
"""

from __future__ import annotations

import reprlib

#: Longest message the CLI prints (the fix comes early in every message; the rest is detail).
MAX_MESSAGE = 1000

_SHOW = reprlib.Repr()
_SHOW.maxlevel = 3
_SHOW.maxstring = 80
_SHOW.maxother = 80
_SHOW.maxlong = 40
_SHOW.maxdict = _SHOW.maxlist = _SHOW.maxtuple = _SHOW.maxset = 6


def show(value: object) -> str:
    """A short ``repr`` of a user's value for an error message: nested containers, long strings
    and numbers are elided (``...``) without building the full repr."""
    return one_line(_SHOW.repr(value), 200)


def one_line(text: str, limit: int = MAX_MESSAGE) -> str:
    """``text`` on one line (line breaks and tabs as spaces), cut to ``limit`` characters."""
    flat = str(text).replace("\r\n", " ").replace("\r", " ").replace("\n", " ").replace("\t", " ")
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


class PipelineError(Exception):
    """An error the user can fix (bad params, missing input); printed without a traceback."""

    def __init__(self, message: object = "") -> None:
        super().__init__(one_line(str(message)))


class ConfigError(PipelineError):
    """A params.yaml or flag problem: names the file, the key and the fix."""

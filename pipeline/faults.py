"""Crash points for the kill/resume tests: a process can be told to SIGKILL itself at one.

Why in the shipped code: the interesting kills (between writing a commit journal and the first
rename, between moving the old output aside and moving the new one in) last microseconds, so a
test that polls from outside cannot hit them reliably. ``DERM1M_KILL_AT=<point>`` (or
``<point>:<n>`` for its n-th pass) makes the stage kill itself there with a real SIGKILL, no
cleanup, exactly as ``kill -9`` would. Unset (always, outside the tests) it costs one dict lookup.
"""

from __future__ import annotations

import os
import signal

KILL_ENV = "DERM1M_KILL_AT"
_passes: dict[str, int] = {}


def kill_point(name: str) -> None:
    """SIGKILL this process if ``DERM1M_KILL_AT`` names this point (and this pass of it)."""
    target = os.environ.get(KILL_ENV)
    if not target:
        return
    point, _, nth = target.partition(":")
    if point != name:
        return
    _passes[name] = _passes.get(name, 0) + 1
    if _passes[name] >= int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)

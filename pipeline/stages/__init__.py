"""Stages: each composes steps into one DVC stage, reading and writing declared tables only.

Each module exposes ``run(params) -> StageResult``; the CLI wraps it. No stage imports another.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field


@dataclass
class StageResult:
    """What a stage did, for the one-line summary and for tests."""

    stage: str
    rows_in: int = 0
    rows_out: int = 0
    rejected: int = 0
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)

    def summary(self) -> str:
        extra = "".join(f", {k} {v}" for k, v in self.extra.items())
        return (f"[{self.stage}] rows in {self.rows_in}, out {self.rows_out}, rejected {self.rejected}"
                f"{extra}, {self.seconds:.1f} s")


class Timer:
    """Measure a stage's wall time into its result and print the summary line at the end."""

    def __init__(self, result: StageResult) -> None:
        self.result = result

    def __enter__(self) -> StageResult:
        self.start = time.perf_counter()
        return self.result

    def __exit__(self, *exc: object) -> None:
        self.result.seconds = time.perf_counter() - self.start
        if exc[0] is None:
            print(self.result.summary(), file=sys.stderr)

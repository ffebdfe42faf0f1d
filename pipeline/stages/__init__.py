"""Stages: each composes steps into one DVC stage, reading and writing declared tables only.

Each module exposes ``run(params) -> StageResult``; the CLI wraps it. No stage imports another.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path


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


#: Where the ``derm1m`` command keeps each stage's last summary, beside the stage tables.
SUMMARY_DIR = "stage_summaries"


def summary_dir(params: dict) -> Path:
    """``<data>/stage_summaries/`` (``data/stage_summaries`` in the demo), beside the ingest output.

    Outside every DVC out on purpose: wall times and memory differ on every run, and the outs
    must not (the report turns them into ``report/stage_times.csv``, which DVC does not track)."""
    ingest = params.get("ingest") or {}
    return Path(ingest.get("out", "data/ingest") if isinstance(ingest, dict) else "data/ingest").parent / SUMMARY_DIR


def write_summary(params: dict, result: StageResult) -> Path:
    """Record a finished stage's result, wall time and peak memory (this process and its
    largest worker, resident set) as ``<stage>.json``; the last run of each stage wins."""
    from pipeline.tables import write_json

    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    doc = {**asdict(result), "max_rss_mb": round(me.ru_maxrss / 1024, 1),
           "max_worker_rss_mb": round(kids.ru_maxrss / 1024, 1)}
    path = summary_dir(params) / f"{result.stage}.json"
    write_json(json.loads(json.dumps(doc, default=str)), path)
    return path


def read_summaries(params: dict) -> list[dict]:
    """The recorded stage summaries, in file-name order ([] when none was written yet)."""
    folder = summary_dir(params)
    out = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(doc, dict) and isinstance(doc.get("stage"), str):
            out.append(doc)
    return out

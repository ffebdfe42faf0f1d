"""Shared readers for the source-kind adapters: every malformed file becomes a reject, not a traceback.

``read_csv_rows`` in :mod:`pipeline.sources.base` raises on a missing file or column (right for
the sources whose layout is fixed); the adapters for Derm1M's source kinds (video, article
figures, forum, textbook, public datasets) read user-assembled files, so here a missing or
unparsable file is a ``source_file_unreadable`` reject and a missing column a
``column_missing`` reject, and ingest carries on with the other sources.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator
from pathlib import Path

from pipeline.rejects import Reject
from pipeline.safeio import FileProblem, read_regular
from pipeline.sources.base import CsvRowProblem, SourceAdapter, iter_csv


def rel(adapter: SourceAdapter, path: Path) -> str:
    """``path`` relative to the adapter's root, as POSIX (for reject rows)."""
    try:
        return path.relative_to(adapter.root).as_posix()
    except ValueError:
        return path.as_posix()


def csv_rows(adapter: SourceAdapter, path: Path, required: list[str]) -> Iterator[tuple[int, dict[str, str]] | Reject]:
    """(line, row) per CSV row, or one reject if the file is missing/unreadable or lacks a column.

    A row with bytes that are not UTF-8 is an ``encoding_invalid`` reject and a row with more
    fields than the header a ``record_malformed`` one (see :func:`~pipeline.sources.base.iter_csv`);
    a missing column says which delimiter the file seems to use when it is not a comma.
    """
    name = rel(adapter, path)
    if not os.path.lexists(path):   # never raises, unlike Path.exists on a name too long
        yield adapter.reject(name, "source_file_unreadable", f"{name} not found", str(path))
        return
    try:
        for i, row in iter_csv(path, required, adapter.max_file_bytes):
            if isinstance(row, CsvRowProblem):
                yield adapter.reject(f"{name}:{row.line}", row.reason, row.detail, str(path))
                continue
            yield i, {k: v.strip() for k, v in row.items()}
    except CsvRowProblem as exc:
        yield adapter.reject(name, exc.reason, exc.detail, str(path))
    except FileProblem as exc:
        yield file_reject(adapter, name, exc, str(path))
    except (OSError, csv.Error, UnicodeError) as exc:
        yield adapter.reject(name, "source_file_unreadable", f"{name}: {exc}", str(path))


def file_reject(adapter: SourceAdapter, name: str, problem: FileProblem, path: str) -> Reject:
    """The reject for a metadata file :mod:`pipeline.safeio` refused: its own code for a FIFO or
    device (``file_not_regular``) or an oversized file (``file_too_large``), else unreadable."""
    reason = problem.reason if problem.reason in ("file_not_regular", "file_too_large") else "source_file_unreadable"
    return adapter.reject(name, reason, f"{name}: {problem.detail}", path)


def read_text(adapter: SourceAdapter, path: Path) -> str:
    """A metadata file's text (UTF-8, BOM allowed), through :func:`pipeline.safeio.read_regular`.

    Raises :class:`~pipeline.safeio.FileProblem`; bytes that are not UTF-8 are replaced (the
    JSON/transcript parsers then see the damage and say where)."""
    return read_regular(path, adapter.max_file_bytes).decode("utf-8-sig", errors="replace")


def read_json(adapter: SourceAdapter, path: Path) -> object | Reject:
    """The parsed JSON document, or a ``source_file_unreadable`` reject."""
    name = rel(adapter, path)
    try:
        return json.loads(read_text(adapter, path))
    except FileProblem as exc:
        return file_reject(adapter, name, exc, str(path))
    except OSError as exc:
        return adapter.reject(name, "source_file_unreadable", f"cannot read {name}: {exc.strerror or exc}", str(path))
    except ValueError as exc:
        return adapter.reject(name, "source_file_unreadable", f"{name} is not valid JSON: {exc}", str(path))
    except RecursionError:
        return adapter.reject(name, "source_file_unreadable", f"{name}: JSON nested too deeply to read", str(path))


def jsonl_rows(adapter: SourceAdapter, path: Path) -> Iterator[tuple[int, dict] | Reject]:
    """(line, object) per JSON Lines row; an unparsable line or a non-object is a reject of its own."""
    name = rel(adapter, path)
    try:
        lines = read_text(adapter, path).splitlines()
    except FileProblem as exc:
        yield file_reject(adapter, name, exc, str(path))
        return
    except OSError as exc:
        yield adapter.reject(name, "source_file_unreadable", f"cannot read {name}: {exc.strerror or exc}", str(path))
        return
    for i, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as exc:
            yield adapter.reject(f"{name}:{i}", "record_malformed", f"{name} line {i} is not valid JSON: {exc}", str(path))
            continue
        except RecursionError:
            yield adapter.reject(f"{name}:{i}", "record_malformed", f"{name} line {i}: JSON nested too deeply",
                                 str(path))
            continue
        if not isinstance(obj, dict):
            yield adapter.reject(f"{name}:{i}", "record_malformed", f"{name} line {i} is not a JSON object", str(path))
            continue
        yield i, {k: ("" if v is None else v) for k, v in obj.items()}


def text(value: object) -> str:
    """A JSON/CSV field as a stripped string ('' for None)."""
    return "" if value is None else str(value).strip()

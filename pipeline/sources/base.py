"""The adapter interface and the record every adapter yields.

An adapter knows one raw layout (a CSV and an image root, a folder tree, ...). It yields one
:class:`SourceRecord` per image-caption record, or a :class:`~pipeline.rejects.Reject` for a
row it cannot read. It never opens images: validation is the ingest stage's job, done once per
file and in parallel.
"""

from __future__ import annotations

import csv
import math
import numbers
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import ConfigError, PipelineError, show
from pipeline.rejects import Reject
from pipeline.safeio import DEFAULT_MAX_METADATA_BYTES, FileProblem, open_regular_text


@dataclass(frozen=True)
class SourceRecord:
    """One image-caption record as a source describes it."""

    source: str            # the source's name in params.yaml
    source_type: str       # Derm1M's kinds: edu, knowledge, forum (or the adapter's own)
    record_id: str         # the id of the record inside its source (stable across runs)
    image_relpath: str     # image path relative to the source root, as written by the source
    caption: str
    caption_index: int = 0
    licence: str = ""
    context: str = ""      # title of the video/article/thread: used when the caption names no condition
    source_label: str | None = None   # a structured label from the source (e.g. HAM10000 dx)
    group_key: str | None = None      # records that must share a split (lesion or patient id)
    language: str | None = None       # ISO 639-1 code when the adapter knows it (forum); else ingest detects it


class SourceAdapter:
    """Base class: holds the source's name, root and options; subclasses implement ``records``."""

    kind: str = ""
    #: option name -> (type, default); ``None`` default means required.
    options_spec: dict[str, tuple[type, object]] = {}

    #: options that name a file or folder under the root (never a glob, never outside the root)
    path_options: tuple[str, ...] = ()
    #: the most bytes one metadata file (CSV, JSON, transcript) may have (``ingest.max_metadata_bytes``)
    max_file_bytes: int = DEFAULT_MAX_METADATA_BYTES

    def __init__(self, name: str, root: str | Path, options: dict | None = None) -> None:
        self.name = name
        self.root = Path(root)
        options = dict(options or {})
        where = f"params.yaml: ingest source {show(name)} ({self.kind})"
        unknown = sorted(str(k) for k in set(options) - set(self.options_spec))
        if unknown:
            raise ConfigError(f"{where}: unknown option(s) {show(unknown)}; valid: {sorted(self.options_spec)}")
        self.options = {}
        for key, (kind, default) in self.options_spec.items():
            value = options.get(key, default)
            if value is None:
                raise ConfigError(f"{where} needs option {key!r}; add it")
            if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
                raise ConfigError(f"{where}: option {key} must be {kind.__name__}, got {type(value).__name__} "
                                  f"{show(value)}; fix the value")
            if isinstance(value, numbers.Real) and not isinstance(value, bool) and not math.isfinite(value):
                raise ConfigError(f"{where}: option {key} must be a finite number, got {show(value)}; fix the value")
            if key in self.path_options:
                for item in value if isinstance(value, list) else [value]:
                    if not isinstance(item, str) or any(c in item for c in "*?[\x00"):
                        raise ConfigError(f"{where}: option {key} names a file, got {show(item)} (a glob or not a "
                                          "file name); fix: write the file's name")
            self.options[key] = value
        if not os.path.exists(self.root):
            raise PipelineError(f"ingest source {show(name)}: root {show(str(self.root))} does not exist; fix its "
                                "path in params.yaml")
        if not self.root.is_dir():
            raise ConfigError(f"{where}: path {show(str(self.root))} is a file; a source's path is its data folder: "
                              "fix the path")

    def records(self) -> Iterator[SourceRecord | Reject]:
        raise NotImplementedError

    def reject(self, record_id: str, reason: str, detail: str, path: str | None = None) -> Reject:
        return Reject("ingest", self.name, record_id, reason, detail, path)


_SNIFF_DELIMITERS = ",;\t|"
# Python's csv module refuses a field over its limit (128 KiB by default) with an error that
# stops the reader, so every row after it would be lost. The bytes a file may have are capped
# instead (ingest.max_metadata_bytes, checked before reading), so no field limit is needed, and a
# very long caption is a caption filter's business (caption_too_long), not a parse error.
csv.field_size_limit(2**31 - 1)
#: A field that names an image file: one sign that a line inside a quoted field is really a row.
_IMAGE_NAME = re.compile(r"\.(?:jpe?g|png|webp|bmp|tiff?|gif)$", re.IGNORECASE)


class CsvRowProblem(ValueError):
    """A CSV row that cannot be trusted as read: carries the reason code and its detail.

    ``line`` is the record number + 1 (as rows are numbered), or ``"<n>+<k>"`` for the k-th row
    swallowed by record n's unclosed quote."""

    def __init__(self, line: int | str, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.line, self.reason, self.detail = line, reason, detail


def sniffed_delimiter(path: Path) -> str | None:
    """The delimiter ``csv.Sniffer`` sees in the file's first lines, when it is not a comma."""
    try:
        with open(path, newline="", encoding="utf-8-sig", errors="replace") as fh:
            sample = fh.read(16384)
        found = csv.Sniffer().sniff(sample, delimiters=_SNIFF_DELIMITERS).delimiter
    except (OSError, csv.Error):
        return None
    return found if found != "," else None


def missing_columns_detail(path: Path, missing: list[str], header: list[str]) -> str:
    """What a missing-column message says: the columns, the header found and, for a file written
    with another delimiter (Excel in a semicolon locale), the delimiter to fix."""
    detail = f"{path.name} lacks column(s) {missing}; found {header}"
    delim = sniffed_delimiter(path) if len(header) <= 1 or any(d in "".join(header) for d in ";\t|") else None
    if delim:
        detail += f"; the file looks {delim!r}-delimited: save it comma-separated"
    return detail


def undecodable(row: dict[str, str]) -> str | None:
    """Which field of a row held bytes that are not UTF-8 (read with ``surrogateescape``), or None."""
    for key, value in row.items():
        if value and any("\udc80" <= ch <= "\udcff" for ch in value):
            raw = value.encode("utf-8", "surrogateescape")
            bad = bytes(b for b in raw if b >= 0x80)[:4]
            return f"column {key!r} holds bytes that are not UTF-8 ({bad.hex(' ')}...); re-save the file as UTF-8"
    return None


def swallowed_rows(fields: list[str], width: int) -> list[str]:
    """Lines inside the quoted fields of one record that parse as rows of their own.

    Why: an unbalanced quote makes the csv module read on, across line ends, until the next
    quote character, so the following rows become part of one caption and are silently lost. A
    legitimate multi-line caption rarely holds a line with exactly the header's number of fields
    that also names an image file (or, for four columns and more, the header's field count
    alone); such a line means the quotes are out of step."""
    found = []
    for field in fields:
        if "\n" not in field and "\r" not in field:
            continue
        for line in field.splitlines()[1:]:
            try:
                parsed = next(csv.reader([line]), [])
            except csv.Error:
                continue
            if len(parsed) == width and (width >= 4 or any(_IMAGE_NAME.search(f.strip()) for f in parsed)):
                found.append(line)
    return found


def iter_csv(path: Path, required: list[str],
             limit: int = DEFAULT_MAX_METADATA_BYTES) -> Iterator[tuple[int, dict[str, str] | CsvRowProblem]]:
    """Open a UTF-8 CSV (BOM allowed) and yield (record number + 1, row or the row's problem).

    Raises ``CsvRowProblem`` (line 1, ``column_missing``) when the header lacks a required
    column, and :class:`~pipeline.safeio.FileProblem` for a file that is not a regular file or
    has more than ``limit`` bytes. Rows are never repaired silently: bytes that are not UTF-8
    make the row an ``encoding_invalid`` problem (it is not decoded with replacement
    characters), a row with more fields than the header (an unquoted delimiter in a caption) a
    ``record_malformed`` one, and so does a row whose quotes are out of step (an unclosed quote
    swallowing the rows after it, :func:`swallowed_rows`), together with one problem per
    swallowed row, so rows in = rows out. A row the csv module cannot parse is a problem of its
    own and reading goes on. Quoted fields may hold delimiters, quotes (doubled) and newlines,
    as RFC 4180 allows.
    """
    with open_regular_text(path, limit, encoding="utf-8-sig", errors="surrogateescape", newline="") as fh:
        reader = csv.reader(fh)
        try:
            header = next(reader, [])
        except csv.Error as exc:
            raise CsvRowProblem(1, "source_file_unreadable", f"{path.name}: header not readable ({exc})") from None
        missing = [c for c in required if c not in header]
        if missing:
            raise CsvRowProblem(1, "column_missing", missing_columns_detail(path, missing, list(header)))
        i = 1
        while True:
            start = reader.line_num
            try:
                fields = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                i += 1
                yield i, CsvRowProblem(i, "record_malformed", f"{path.name} line {start + 1}: {exc}")
                if reader.line_num == start:
                    break   # no progress: the rest of the file cannot be read
                continue
            if not fields:
                continue   # a blank line is no record (as csv.DictReader skips it)
            i += 1
            lost = swallowed_rows(fields, len(header))
            if lost:
                yield i, CsvRowProblem(i, "record_malformed", f"{path.name} record {i - 1} (line {start + 1}): a quote "
                                       f"opened here is not closed before {len(lost)} more row(s); close the quote")
                for k, line in enumerate(lost, start=1):
                    yield i, CsvRowProblem(f"{i}+{k}", "record_malformed",
                                           f"{path.name}: row {line[:60]!r} is inside the unclosed quote of record "
                                           f"{i - 1}; close the quote")
                continue
            row = {name: (fields[j] if j < len(fields) else "") for j, name in enumerate(header)}
            extra = fields[len(header):]
            bad = undecodable(row) or (undecodable({"(extra)": ",".join(extra)}) if extra else None)
            if bad:
                yield i, CsvRowProblem(i, "encoding_invalid", f"{path.name} record {i - 1}: {bad}")
            elif extra:
                yield i, CsvRowProblem(i, "record_malformed", f"{path.name} record {i - 1} has {len(fields)}"
                                       f" fields, the header {len(header)}: quote fields that hold a delimiter")
            else:
                yield i, row


def read_csv_rows(path: Path, required: list[str],
                  limit: int = DEFAULT_MAX_METADATA_BYTES) -> Iterator[tuple[int, dict[str, str]]]:
    """Yield (line number, row) from a CSV of a fixed layout (the demo corpus, HAM10000).

    A missing file or column, bytes that are not UTF-8 or a row with too many fields stop the
    source with a one-line error naming the file and the fix: these layouts are written by
    programs, so a bad row means a damaged file, not one odd record.
    """
    if not os.path.exists(path):
        raise PipelineError(f"{path}: metadata CSV not found; check the source path in params.yaml")
    try:
        for i, row in iter_csv(path, required, limit):
            if isinstance(row, CsvRowProblem):
                raise row
            yield i, row
    except CsvRowProblem as exc:
        raise PipelineError(f"{path}: {exc.detail}") from None
    except FileProblem as exc:
        raise PipelineError(f"{exc.detail}; check the source path in params.yaml") from None
    except csv.Error as exc:
        raise PipelineError(f"{path}: not a readable CSV ({exc}); check quoting") from None

"""The adapter interface and the record every adapter yields.

An adapter knows one raw layout (a CSV and an image root, a folder tree, ...). It yields one
:class:`SourceRecord` per image-caption record, or a :class:`~pipeline.rejects.Reject` for a
row it cannot read. It never opens images: validation is the ingest stage's job, done once per
file and in parallel.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import ConfigError, PipelineError
from pipeline.rejects import Reject


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

    def __init__(self, name: str, root: str | Path, options: dict | None = None) -> None:
        self.name = name
        self.root = Path(root)
        options = dict(options or {})
        unknown = sorted(set(options) - set(self.options_spec))
        if unknown:
            raise ConfigError(
                f"params.yaml: ingest source {name!r} ({self.kind}): unknown option(s) {unknown}; "
                f"valid: {sorted(self.options_spec)}"
            )
        self.options = {}
        for key, (kind, default) in self.options_spec.items():
            value = options.get(key, default)
            if value is None:
                raise ConfigError(f"params.yaml: ingest source {name!r} ({self.kind}) needs option {key!r}")
            if not isinstance(value, kind):
                raise ConfigError(
                    f"params.yaml: ingest source {name!r}: option {key} must be {kind.__name__}, got {value!r}"
                )
            self.options[key] = value
        if not self.root.exists():
            raise PipelineError(f"ingest source {name!r}: root {self.root} does not exist; fix its path in params.yaml")

    def records(self) -> Iterator[SourceRecord | Reject]:
        raise NotImplementedError

    def reject(self, record_id: str, reason: str, detail: str, path: str | None = None) -> Reject:
        return Reject("ingest", self.name, record_id, reason, detail, path)


def read_csv_rows(path: Path, required: list[str]) -> Iterator[tuple[int, dict[str, str]]]:
    """Yield (line number, row) from a CSV; a missing column is a clear error naming the file."""
    if not path.exists():
        raise PipelineError(f"{path}: metadata CSV not found; check the source path in params.yaml")
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as fh:
        reader = csv.DictReader(fh)
        header = reader.fieldnames or []
        missing = [c for c in required if c not in header]
        if missing:
            raise PipelineError(f"{path}: missing required column(s) {missing}; found {header}")
        for i, row in enumerate(reader, start=2):
            yield i, {k: (v if v is not None else "") for k, v in row.items() if k is not None}

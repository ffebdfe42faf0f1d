"""Adapter for the built-in demo corpus: ``records.csv`` (one row per record) plus image files."""

from __future__ import annotations

from collections.abc import Iterator

from pipeline.rejects import Reject
from pipeline.sources.base import SourceAdapter, SourceRecord, read_csv_rows

COLUMNS = ["record_id", "image_path", "caption", "source", "source_type", "licence", "context"]


class DemoAdapter(SourceAdapter):
    kind = "demo"
    path_options = ("records_csv",)
    options_spec = {"records_csv": (str, "records.csv")}

    def records(self) -> Iterator[SourceRecord | Reject]:
        for line, row in read_csv_rows(self.root / self.options["records_csv"], COLUMNS):
            rid = row["record_id"].strip() or f"line-{line}"
            if not row["image_path"].strip():
                yield self.reject(rid, "record_malformed", f"line {line}: empty image_path")
                continue
            yield SourceRecord(
                source=self.name,
                source_type=row["source_type"] or "unknown",
                record_id=rid,
                image_relpath=row["image_path"].strip(),
                caption=row["caption"],
                licence=row["licence"],
                context=row["context"],
                source_label=None,
                group_key=None,
            )

"""Adapter for Derm1M's release layout: ``Derm1M_v2_pretrain.csv`` / ``..._validation.csv``.

Columns as released (filename, caption, truncated_caption, source, source_type, disease_label,
...); ``filename`` is relative to the image root. The released labels are kept as the
structured ``source_label`` so our annotation can be compared with theirs.

The CSVs are read row by row into rejects (``column_missing`` naming a sniffed delimiter,
``encoding_invalid``, ``record_malformed``) rather than stopping the run: a user-assembled copy
of the release is often re-saved by a spreadsheet. Filenames stay relative to the root
(``..`` or an absolute path is ``path_outside_root`` at ingest). Unpack the released zip with
``derm1m unpack`` (safe extraction) and point ``path`` at the folder.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Iterator

from pipeline.errors import PipelineError
from pipeline.rejects import Reject
from pipeline.sources.base import SourceAdapter, SourceRecord
from pipeline.sources.common import csv_rows

DEFAULT_CSVS = ["Derm1M_v2_pretrain.csv", "Derm1M_v2_validation.csv"]


class Derm1MReleaseAdapter(SourceAdapter):
    kind = "derm1m_release"
    path_options = ("csv_files", "image_root")
    options_spec = {"csv_files": (list, DEFAULT_CSVS), "image_root": (str, "."), "licence": (str, "CC BY-NC 4.0")}

    def records(self) -> Iterator[SourceRecord | Reject]:
        csvs = [self.root / c for c in self.options["csv_files"]]
        present = [c for c in csvs if os.path.exists(c)]
        if not present:
            raise PipelineError(f"source {self.name!r}: none of {self.options['csv_files']} found in {self.root}")
        seen: dict[str, int] = {}
        for csv_path in present:
            for item in csv_rows(self, csv_path, ["filename", "caption"]):
                if isinstance(item, Reject):
                    yield item
                    continue
                line, row = item
                filename = row["filename"]
                rid = f"{csv_path.stem}:{line}"
                if not filename:
                    yield self.reject(rid, "record_malformed", f"{csv_path.name} line {line}: empty filename")
                    continue
                # Derm1M repeats a filename once per caption: number the captions of each image.
                index = seen.get(filename, 0)
                seen[filename] = index + 1
                label = row.get("disease_label", "") or None
                yield SourceRecord(
                    source=self.name,
                    source_type=row.get("source_type", "") or "unknown",
                    record_id=f"{filename}#{index}",
                    image_relpath=posixpath.normpath(posixpath.join(self.options["image_root"], filename)),
                    caption=row["caption"],
                    caption_index=index,
                    licence=self.options["licence"],
                    context="",
                    source_label=label,
                    group_key=None,
                )

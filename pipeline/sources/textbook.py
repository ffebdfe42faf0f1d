"""Adapter ``textbook``: educational material (textbooks, atlases, lecture slides) as image + caption CSV.

Expected layout (paths relative to the source root)::

    captions.csv        image_path,caption[,book][,chapter][,figure_id][,licence]
    figures/...         the images named by image_path

One row per image-caption pair (an image may have several rows; they are numbered as its
caption indices). ``book`` and ``chapter`` become the record's context ("Book — Chapter"),
used by annotation when the caption names no condition. Option ``captions_csv`` renames the
CSV, ``licence`` is the default for rows without one.
"""

from __future__ import annotations

from collections.abc import Iterator

from pipeline.rejects import Reject
from pipeline.sources.base import SourceAdapter, SourceRecord
from pipeline.sources.common import csv_rows


class TextbookAdapter(SourceAdapter):
    kind = "textbook"
    path_options = ("captions_csv",)
    options_spec = {"captions_csv": (str, "captions.csv"), "licence": (str, ""), "source_type": (str, "edu")}

    def records(self) -> Iterator[SourceRecord | Reject]:
        seen: dict[str, int] = {}
        for item in csv_rows(self, self.root / self.options["captions_csv"], ["image_path", "caption"]):
            if isinstance(item, Reject):
                yield item
                continue
            line, row = item
            image = row["image_path"]
            if not image:
                yield self.reject(f"line-{line}", "record_malformed", f"line {line}: empty image_path")
                continue
            if not row["caption"]:
                yield self.reject(f"{image}#line-{line}", "caption_missing", f"line {line}: empty caption", image)
                continue
            index = seen.get(image, 0)
            seen[image] = index + 1
            context = " — ".join(v for v in (row.get("book", ""), row.get("chapter", "")) if v)
            yield SourceRecord(
                source=self.name, source_type=self.options["source_type"], record_id=f"{image}#{index}",
                image_relpath=image, caption=row["caption"], caption_index=index,
                licence=row.get("licence", "") or self.options["licence"], context=context,
                source_label=None, group_key=None,
            )

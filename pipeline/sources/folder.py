"""Adapter for a plain image folder, with an optional captions CSV.

Captions come from ``captions_csv`` (columns ``image_path,caption``; several rows per image
allowed) when given. Images without a CSV caption get ``label_template`` filled with their
parent folder's name when the folder is a class folder (the DermNet layout: one folder per
condition); otherwise they are rejected as ``caption_missing``.

The captions CSV is read like the other user-assembled files (:func:`~pipeline.sources.common.csv_rows`:
a bad row or a missing column is a reject row, not an error). A CSV row naming a path outside
the folder (``..``, absolute) is ``path_outside_root``; the image listing never follows a
symlinked folder, and a symlinked file pointing out of the root is rejected at ingest.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator
from pathlib import Path

from pipeline.rejects import Reject
from pipeline.sources.base import SourceAdapter, SourceRecord
from pipeline.sources.common import csv_rows

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"}


def list_images(root: Path) -> list[str]:
    """Image files under ``root`` (recursive), as sorted POSIX paths relative to it."""
    found = [p.relative_to(root).as_posix() for p in root.rglob("*")
             if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")]
    return sorted(found)


class ImageFolderAdapter(SourceAdapter):
    kind = "folder"
    path_options = ("captions_csv",)
    options_spec = {
        "captions_csv": (str, ""),
        "label_template": (str, "A clinical photograph of {label}."),
        "source_type": (str, "knowledge"),
        "licence": (str, ""),
    }

    def records(self) -> Iterator[SourceRecord | Reject]:
        captions: dict[str, list[str]] = {}
        if self.options["captions_csv"]:
            for item in csv_rows(self, Path(self.options["captions_csv"]), ["image_path", "caption"]):
                if isinstance(item, Reject):
                    yield item
                    continue
                captions.setdefault(item[1]["image_path"], []).append(item[1]["caption"])
        images = list_images(self.root)
        for rel in images:
            label = Path(rel).parent.name if "/" in rel else None
            texts = captions.pop(rel, None)
            if texts is None:
                if label is None:
                    yield self.reject(rel, "caption_missing", "no caption in the CSV and no class folder", rel)
                    continue
                texts = [self.options["label_template"].format(label=label)]
            for i, text in enumerate(texts):
                yield SourceRecord(
                    source=self.name, source_type=self.options["source_type"], record_id=f"{rel}#{i}",
                    image_relpath=rel, caption=text, caption_index=i, licence=self.options["licence"],
                    context="", source_label=label, group_key=None,
                )
        # CSV rows naming images that are not in the folder: still records, rejected as missing.
        for rel in sorted(captions):
            escapes = posixpath.isabs(rel) or posixpath.normpath(rel).split("/")[0] == ".."
            for i, _ in enumerate(captions[rel]):
                if escapes:
                    yield self.reject(f"{rel}#{i}", "path_outside_root", f"captions CSV names {rel!r}, outside {self.root}", rel)
                else:
                    yield self.reject(f"{rel}#{i}", "image_missing", f"captions CSV names {rel}, not found under {self.root}", rel)

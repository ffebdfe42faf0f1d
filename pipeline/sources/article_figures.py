"""Adapter ``article_figures``: figures of articles (PubMed Central style) with their captions.

Expected layout: a figures file under the source root, JSON Lines (``figures.jsonl``, one
object per line) or CSV (option ``figures``; the suffix decides), with the fields::

    article_id, figure_id, image_path, caption, article_title[, panel][, licence]

``image_path`` is relative to the source root. A figure is one row; a compound figure whose
panels are given as separate images is one row per panel with ``panel`` = ``A``, ``B``, ...
(every row may repeat the full compound caption). The caption is then split into its lead
text and sub-captions — "(A) ... (B) ...", "A) ..."/"a) ...", or "A, ... B, ..." at sentence
starts; panel letters must run in order from A; a caption that ends with its last letter,
"Psoriasis (A) and eczema (B).", labels the text before each letter — and each panel's caption is the lead text
plus its own sub-caption. The article title is the record's context; the article id is the
group key (an article's figures stay in one split).

Rejects: an unreadable figures file is ``source_file_unreadable``, a missing CSV column
``column_missing``, a row without article id, figure id or image ``record_malformed``, an
empty caption ``caption_missing``, and a panel whose letter is not in the caption
``subcaption_missing``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator

from pipeline.rejects import Reject
from pipeline.sources.base import SourceAdapter, SourceRecord
from pipeline.sources.common import csv_rows, jsonl_rows, text

FIELDS = ["article_id", "figure_id", "image_path", "caption", "article_title"]
_MARKER = re.compile(
    r"\((?P<p>[A-Za-z])\)\s*"                          # (A) text
    r"|(?:(?<=\A)|(?<=[\s.;:]))(?P<b>[A-Za-z])\)\s+"   # A) text / a) text
    r"|(?:(?<=\A)|(?<=[.;:]\s))(?P<c>[A-Z]),\s+"       # A, text (at a sentence start)
)


def split_compound(caption: str) -> tuple[str, dict[str, str]]:
    """(lead text, {panel letter (upper case): sub-caption}); no panels found gives {}."""
    markers: list[tuple[str, int, int]] = []
    expected = "a"
    for m in _MARKER.finditer(caption):
        letter = (m.group("p") or m.group("b") or m.group("c")).lower()
        if letter == expected:
            markers.append((letter.upper(), m.start(), m.end()))
            expected = chr(ord(expected) + 1)
    if not markers:
        return caption.strip(), {}
    if not caption[markers[-1][2]:].strip(" .;,"):
        # postfix markers ("Psoriasis (A) and eczema (B)."): each letter labels the text before it
        subs, prev = {}, 0
        for letter, start, end in markers:
            subs[letter] = caption[prev:start].strip(" ;,").removeprefix("and ").strip()
            prev = end
        return "", subs
    lead = caption[: markers[0][1]].strip()
    subs = {}
    for i, (letter, _, end) in enumerate(markers):
        stop = markers[i + 1][1] if i + 1 < len(markers) else len(caption)
        subs[letter] = caption[end:stop].strip().rstrip(";,").strip()
    return lead, subs


class ArticleFiguresAdapter(SourceAdapter):
    kind = "article_figures"
    path_options = ("figures",)
    options_spec = {"figures": (str, "figures.jsonl"), "licence": (str, ""), "source_type": (str, "knowledge")}

    def _rows(self) -> Iterator[tuple[int, dict] | Reject]:
        path = self.root / self.options["figures"]
        if path.suffix.lower() == ".csv":
            yield from csv_rows(self, path, ["article_id", "figure_id", "image_path", "caption"])
        elif not os.path.lexists(path):
            yield self.reject(self.options["figures"], "source_file_unreadable", f"{path.name} not found", str(path))
        else:
            yield from jsonl_rows(self, path)

    def records(self) -> Iterator[SourceRecord | Reject]:
        for item in self._rows():
            if isinstance(item, Reject):
                yield item
                continue
            line, raw = item
            odd = [k for k in [*FIELDS, "panel", "licence"] if isinstance(raw.get(k), (list, dict, bool))]
            if odd:
                yield self.reject(f"line-{line}", "record_malformed", f"line {line}: {odd} must be text, not lists or objects")
                continue
            row = {k: text(raw.get(k)) for k in [*FIELDS, "panel", "licence"]}
            article, figure, image, panel = row["article_id"], row["figure_id"], row["image_path"], row["panel"].upper()
            rid = "/".join(v for v in (article, figure, panel) if v) or f"line-{line}"
            if not article or not figure or not image:
                yield self.reject(rid, "record_malformed", f"line {line}: needs article_id, figure_id and image_path")
                continue
            caption = row["caption"]
            if not caption:
                yield self.reject(rid, "caption_missing", f"line {line}: empty caption", image)
                continue
            if panel:
                lead, subs = split_compound(caption)
                if panel not in subs:
                    yield self.reject(rid, "subcaption_missing",
                                      f"panel {panel!r} not found in the caption (panels found: {sorted(subs)})", image)
                    continue
                caption = f"{lead} {subs[panel]}".strip()
            yield SourceRecord(
                source=self.name, source_type=self.options["source_type"], record_id=rid, image_relpath=image,
                caption=caption, licence=row["licence"] or self.options["licence"], context=row["article_title"],
                source_label=None, group_key=article,
            )

"""Reason codes for rejected rows, and the rejects table every stage writes.

Every input row ends in an output table or here: no row is silently dropped. A reason is a
stable snake_case code (users group by it in DuckDB); ``detail`` carries the specifics.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

# Documented reason codes (README "Rejects"). Keep codes stable: they are part of the data contract.
REASONS: dict[str, str] = {
    "image_missing": "the record points to an image file that does not exist",
    "image_empty": "the image file has zero bytes",
    "image_not_an_image": "the file is not a decodable image (e.g. text or HTML named .jpg)",
    "image_truncated": "the image file ends before its data does (partial download)",
    "image_too_large": "the image exceeds the pixel limit (decompression-bomb guard)",
    "image_too_small": "the image is smaller than ingest.min_side pixels on a side",
    "image_aspect_extreme": "one side is more than ingest.max_aspect_ratio times the other (a banner or strip, not a"
                            " photo; CLIP's resize would blow it up)",
    "image_unreadable": "the image could not be opened for another reason (see detail)",
    "path_outside_root": "the record's image path escapes the source's data root",
    "caption_empty": "the caption is empty or whitespace only after cleaning (e.g. it was only HTML or boilerplate)",
    "caption_missing": "the record has no caption and none can be derived, or the caption is a null marker"
                       " (NaN, None, null, N/A, -)",
    "caption_too_short": "the caption has fewer words than ingest.filters.min_words and names no condition or concept",
    "caption_too_long": "the caption has more characters than ingest.filters.max_chars",
    "caption_not_dermatology": "the caption has no skin or dermatology word at all",
    "caption_not_english": "the caption's language is not in ingest.filters.languages"
                           " (only with ingest.filters.non_english: reject)",
    "record_malformed": "the source row lacks a required field or has an invalid value",
    "hash_failed": "the image could not be re-read for perceptual hashing",
    "shard_image_failed": "the image could not be re-encoded for the shard",
    "source_file_unreadable": "a source's metadata file (CSV, JSON, JSONL, transcript) is missing or cannot be parsed",
    "column_missing": "a source's metadata CSV lacks a column its adapter needs",
    "timestamp_invalid": "a video keyframe's timestamp (file name or frames.csv) is not a time",
    "image_path_case_mismatch": "the image path differs from the file on disk only in letter case (see detail)",
    "subcaption_missing": "a figure panel's letter is not found in its compound caption",
    "encoding_invalid": "the source row holds bytes that are not UTF-8 (detail: line and bytes); re-save the file as"
                        " UTF-8",
    "metadata_invalid": "a structured metadata field is out of range (e.g. an age of 300 or -5; see detail)",
    "archive_entry_unsafe": "an archive entry escapes the destination (absolute path, '..', a link out, a device"
                            " file) or repeats a name; not extracted",
    "archive_too_large": "an archive entry (or the archive) unpacks beyond the size or compression-ratio limit"
                         " (zip bomb); not extracted",
    "file_not_regular": "the path names a FIFO, a device, a socket or another file that is not a regular file"
                        " (reading it would hang or never end); not opened",
    "file_too_large": "the file (an image or a source's metadata file) has more bytes than ingest.max_image_bytes /"
                      " ingest.max_metadata_bytes; not read",
    "path_invalid": "the record's path cannot name a file: a NUL byte, a symbolic link loop, a name too long",
    "image_header_invalid": "the file starts like an image (JPEG, PNG, GIF, WebP, TIFF, BMP signature) but its header"
                            " is invalid (e.g. a height of 0)",
    "decontaminated": "the pair's image (or its cluster/group) matches a benchmark image and was kept out of train"
                      " (see the decontaminated table)",
}


@dataclass(frozen=True)
class Reject:
    """One rejected input row: which stage, which record, why."""

    stage: str
    source: str
    record_id: str
    reason: str
    detail: str
    path: str | None = None

    def __post_init__(self) -> None:
        if self.reason not in REASONS:
            raise ValueError(f"undocumented reject reason {self.reason!r}; add it to pipeline/rejects.py")

    def row(self) -> dict:
        """The table row; text that cannot be stored as UTF-8 (a lone surrogate from a file name in
        another encoding or a JSON ``\\ud800``) is written with backslash escapes."""
        return {k: printable(v) if isinstance(v, str) else v for k, v in asdict(self).items()}


def printable(text: str) -> str:
    """``text`` with lone surrogates as ``\\udcXX`` escapes, so it can be written as UTF-8."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")

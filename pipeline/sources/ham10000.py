"""Adapter for labelled public datasets in HAM10000's layout (``HAM10000_metadata.csv``).

Each row becomes a templated caption in Derm1M's public-dataset style ("This is a dermoscopic
image of ..."), with the ``dx`` code kept as ``source_label`` and ``lesion_id`` as the group key
so that one lesion photographed several times never spans two splits.
"""

from __future__ import annotations

from collections.abc import Iterator

from pipeline.rejects import Reject
from pipeline.sources.base import SourceAdapter, SourceRecord, read_csv_rows

DX_NAMES = {
    "akiec": "actinic keratosis",
    "bcc": "basal cell carcinoma",
    "bkl": "benign keratosis",
    "df": "dermatofibroma",
    "mel": "melanoma",
    "nv": "melanocytic nevus",
    "vasc": "vascular lesion",
}
DX_TYPE_TEXT = {
    "histo": "confirmed by histopathology",
    "follow_up": "confirmed by follow-up examination",
    "consensus": "based on expert consensus",
    "confocal": "confirmed by in-vivo confocal microscopy",
}


def ham_caption(dx: str, dx_type: str, age: str, sex: str, localization: str) -> str:
    """Derm1M-style template caption for one HAM10000 row; unknown fields are left out."""
    name = DX_NAMES.get(dx, dx)
    site = f" on the {localization}" if localization and localization != "unknown" else ""
    who = ""
    try:
        years = int(float(age))
    except (ValueError, OverflowError):   # "", "n/a", "1e999" (infinite), "nan"
        years = None
    noun = {"male": "man", "female": "woman"}.get(sex)
    if years is not None and noun:
        who = f" of a {years}-year-old {noun}"
    elif noun:
        who = f" of a {noun}"
    how = DX_TYPE_TEXT.get(dx_type, "")
    tail = f", {how}" if how else ""
    return f"This is a dermoscopic image of a lesion{site}{who}. The final diagnosis is {name}{tail}."


class HAM10000Adapter(SourceAdapter):
    kind = "ham10000"
    path_options = ("metadata_csv", "image_dir")
    options_spec = {
        "metadata_csv": (str, "HAM10000_metadata.csv"),
        "image_dir": (str, "images"),
        "licence": (str, "CC BY-NC 4.0"),
    }

    def records(self) -> Iterator[SourceRecord | Reject]:
        cols = ["lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization"]
        for line, row in read_csv_rows(self.root / self.options["metadata_csv"], cols):
            image = row["image_id"].strip()
            if not image or not row["dx"].strip():
                yield self.reject(image or f"line-{line}", "record_malformed", f"line {line}: empty image_id or dx")
                continue
            yield SourceRecord(
                source=self.name, source_type="knowledge", record_id=image,
                image_relpath=f"{self.options['image_dir']}/{image}.jpg",
                caption=ham_caption(row["dx"].strip(), row["dx_type"].strip(), row["age"].strip(),
                                    row["sex"].strip(), row["localization"].strip()),
                licence=self.options["licence"], context="",
                source_label=row["dx"].strip(), group_key=row["lesion_id"].strip() or None,
            )

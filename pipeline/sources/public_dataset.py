"""Adapter ``public_dataset``: labelled dermatology datasets' metadata layouts -> templated captions.

Option ``layout`` picks one of the published layouts below; ``metadata_csv`` and ``image_dir``
override the file names. Each row becomes a caption in Derm1M's public-dataset style, built by
:func:`pipeline.sources.ham10000.ham_caption` ("This is a dermoscopic image of a lesion on the
back of a 45-year-old man. The final diagnosis is melanocytic nevus, confirmed by
histopathology."; clinical photographs say "clinical image"). The dataset's own label is kept as
``source_label``; patient or lesion ids become ``group_key`` where the dataset has them.

Expected layouts (paths relative to the source root):

``derm7pt``: ``meta.csv`` with ``diagnosis`` and ``derm`` (dermoscopic image path under
    ``images/``), optionally the published ``case_num, seven_point_score, pigment_network,
    streaks, pigmentation, regression_structures, dots_and_globules, blue_whitish_veil,
    vascular_structures, level_of_diagnostic_difficulty, elevation, location, sex, management,
    clinic, notes``. A ``clinic`` image is a second record (clinical image) of the same case;
    ``case_num`` is the group key. Present seven-point structures are appended ("Dermoscopic
    structures: irregular streaks, blue whitish veil.").
``fitzpatrick17k``: ``fitzpatrick17k.csv`` (``md5hash, fitzpatrick_scale, fitzpatrick_centaur,
    label, nine_partition_label, three_partition_label, qc, url, url_alphanum``); images
    ``images/<md5hash>.jpg``; ``label`` is the source label; no patient ids.
``ddi``: ``ddi_metadata.csv`` (``DDI_ID, DDI_file, skin_tone, malignant, disease``); images
    ``images/<DDI_file>``; every DDI diagnosis is biopsy-proven; ``skin_tone`` 12/34/56 means
    Fitzpatrick I-II / III-IV / V-VI.
``pad_ufes_20``: ``metadata.csv`` (``patient_id, lesion_id, smoke, drink, background_father,
    background_mother, age, pesticide, gender, skin_cancer_history, cancer_history,
    has_piped_water, has_sewage_system, fitspatrick, region, diameter_1, diameter_2,
    diagnostic, itch, grew, hurt, changed, bleed, elevation, img_id, biopsed``); images
    ``images/<img_id>``; ``diagnostic`` codes ACK/BCC/MEL/NEV/SCC/SEK; ``patient_id`` is the
    group key (a patient's lesions never span two splits).
``ham10000``: as the ``ham10000`` adapter (delegated to it).

Image paths whose only difference from a file on disk is letter case (Derm7pt's
``FCl/Fcl068.jpg`` for ``FCL/Fcl068.jpg``, a dataset made on a case-insensitive file system)
are rejected as ``image_path_case_mismatch`` with the file's real name in the detail, unless
``case_insensitive_paths: true``, which then uses the file on disk when exactly one matches.

An age that is not a number of years from 0 to :data:`MAX_AGE` (PAD-UFES-20's ``age``: "300",
"-5", "forty") is a ``metadata_invalid`` reject naming the value: the caption would state it
as a fact ("a 300-year-old man") and the annotate stage would file the pair under a wrong age
group. An empty age is not an error (the caption leaves the age out).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from pipeline.errors import ConfigError
from pipeline.rejects import Reject
from pipeline.sources.base import SourceAdapter, SourceRecord
from pipeline.sources.common import csv_rows
from pipeline.sources.ham10000 import HAM10000Adapter, ham_caption

LAYOUTS = {  # layout -> (default metadata CSV, required columns)
    "derm7pt": ("meta.csv", ["diagnosis", "derm"]),
    "fitzpatrick17k": ("fitzpatrick17k.csv", ["md5hash", "label", "fitzpatrick_scale"]),
    "ddi": ("ddi_metadata.csv", ["DDI_file", "disease", "skin_tone"]),
    "pad_ufes_20": ("metadata.csv", ["patient_id", "img_id", "diagnostic"]),
    "ham10000": ("HAM10000_metadata.csv", []),
}
PAD_UFES_NAMES = {"ACK": "actinic keratosis", "BCC": "basal cell carcinoma", "MEL": "melanoma",
                  "NEV": "melanocytic nevus", "SCC": "squamous cell carcinoma", "SEK": "seborrheic keratosis"}
DDI_SKIN_TONE = {"12": "I-II", "34": "III-IV", "56": "V-VI"}
ROMAN = {"1": "I", "2": "II", "3": "III", "4": "IV", "5": "V", "6": "VI"}
MAX_AGE = 120
NULL_MARKERS = {"", "nan", "none", "null", "n/a", "na", "-", "unknown"}
SEVEN_POINT = ["pigment_network", "streaks", "pigmentation", "regression_structures", "dots_and_globules",
               "blue_whitish_veil", "vascular_structures"]


def clinical(caption: str) -> str:
    """``ham_caption``'s template for a clinical photograph instead of a dermoscopic image."""
    return caption.replace("This is a dermoscopic image", "This is a clinical image", 1)


def age_problem(value: str) -> str | None:
    """Why ``value`` is not a plausible age in years, or None (empty or a null marker: no age stated)."""
    if value.strip().lower() in NULL_MARKERS:
        return None
    try:
        years = float(value)
    except ValueError:
        return f"age {value!r} is not a number"
    if not 0 <= years <= MAX_AGE:
        return f"age {value!r} is outside 0..{MAX_AGE} years"
    return None


def seven_point_text(row: dict[str, str]) -> str:
    """" Dermoscopic structures: irregular streaks, blue whitish veil." for the present ones."""
    found = []
    for col in SEVEN_POINT:
        value = row.get(col, "").strip().lower()
        if not value or value in ("absent", "nan"):
            continue
        name = col.replace("_", " ")
        found.append(name if value == "present" else f"{value} {name}")
    return f" Dermoscopic structures: {', '.join(found)}." if found else ""


def skin_type_text(roman: str | None) -> str:
    return f" Fitzpatrick skin type {roman}." if roman else ""


class PublicDatasetAdapter(SourceAdapter):
    kind = "public_dataset"
    path_options = ("metadata_csv", "image_dir")
    options_spec = {
        "layout": (str, None),
        "metadata_csv": (str, ""),
        "image_dir": (str, "images"),
        "licence": (str, ""),
        "case_insensitive_paths": (bool, False),
    }

    def __init__(self, name, root, options=None) -> None:
        super().__init__(name, root, options)
        if self.options["layout"] not in LAYOUTS:
            raise ConfigError(f"params.yaml: ingest source {name!r} (public_dataset): layout "
                              f"{self.options['layout']!r} unknown; one of {sorted(LAYOUTS)}")
        self._lower: dict[str, list[str]] | None = None

    # -- image paths --------------------------------------------------------------------------
    def _image(self, rid: str, relpath: str) -> str | Reject:
        """``relpath`` under the image dir, case-checked against the files on disk."""
        path = f"{self.options['image_dir']}/{relpath}".lstrip("/") if self.options["image_dir"] else relpath
        if os.path.exists(self.root / path):   # never raises (a name too long is just absent)
            return path
        if self._lower is None:
            self._lower = {}
            for p in sorted(self.root.rglob("*")):
                if p.is_file():
                    self._lower.setdefault(p.relative_to(self.root).as_posix().lower(), []).append(
                        p.relative_to(self.root).as_posix())
        found = self._lower.get(path.lower(), [])
        if len(found) == 1:
            if self.options["case_insensitive_paths"]:
                return found[0]
            return self.reject(rid, "image_path_case_mismatch",
                               f"{path!r} is {found[0]!r} on disk (set case_insensitive_paths: true to use it)", path)
        return path  # missing (or ambiguous): the ingest stage rejects it as image_missing

    def _record(self, rid, image, caption, label, group, source_type="knowledge", index=0) -> SourceRecord | Reject:
        resolved = self._image(rid, image)
        if isinstance(resolved, Reject):
            return resolved
        return SourceRecord(source=self.name, source_type=source_type, record_id=rid, image_relpath=resolved,
                            caption=caption, caption_index=index, licence=self.options["licence"], context="",
                            source_label=label or None, group_key=group or None)

    # -- layouts ------------------------------------------------------------------------------
    def records(self) -> Iterator[SourceRecord | Reject]:
        layout = self.options["layout"]
        if layout == "ham10000":
            opts = {"image_dir": self.options["image_dir"]}
            if self.options["metadata_csv"]:
                opts["metadata_csv"] = self.options["metadata_csv"]
            if self.options["licence"]:
                opts["licence"] = self.options["licence"]
            yield from HAM10000Adapter(self.name, self.root, opts).records()
            return
        default_csv, required = LAYOUTS[layout]
        csv_path = self.root / (self.options["metadata_csv"] or default_csv)
        row_fn = getattr(self, f"_{layout}")
        for item in csv_rows(self, csv_path, required):
            if isinstance(item, Reject):
                yield item
                continue
            line, row = item
            yield from row_fn(line, row)

    def _derm7pt(self, line: int, row: dict[str, str]) -> Iterator[SourceRecord | Reject]:
        dx, derm = row["diagnosis"], row["derm"]
        rid = derm or f"line-{line}"
        if not dx or not derm:
            yield self.reject(rid, "record_malformed", f"line {line}: empty diagnosis or derm image")
            return
        case = row.get("case_num", "")
        base = ham_caption(dx, "", "", row.get("sex", ""), row.get("location", ""))
        yield self._record(rid, derm, base + seven_point_text(row), dx, case)
        clinic = row.get("clinic", "")
        if clinic:
            yield self._record(clinic, clinic, clinical(base), dx, case)

    def _fitzpatrick17k(self, line: int, row: dict[str, str]) -> Iterator[SourceRecord | Reject]:
        md5, label = row["md5hash"], row["label"]
        if not md5 or not label:
            yield self.reject(md5 or f"line-{line}", "record_malformed", f"line {line}: empty md5hash or label")
            return
        caption = clinical(ham_caption(label, "", "", "", "")) + skin_type_text(ROMAN.get(row["fitzpatrick_scale"]))
        yield self._record(md5, f"{md5}.jpg", caption, label, None)

    def _ddi(self, line: int, row: dict[str, str]) -> Iterator[SourceRecord | Reject]:
        file, disease = row["DDI_file"], row["disease"]
        if not file or not disease:
            yield self.reject(file or f"line-{line}", "record_malformed", f"line {line}: empty DDI_file or disease")
            return
        caption = clinical(ham_caption(disease.replace("-", " "), "histo", "", "", ""))
        tone = DDI_SKIN_TONE.get(row["skin_tone"])
        yield self._record(row.get("DDI_ID") or file, file, caption + skin_type_text(tone), disease, None)

    def _pad_ufes_20(self, line: int, row: dict[str, str]) -> Iterator[SourceRecord | Reject]:
        img, code, patient = row["img_id"], row["diagnostic"], row["patient_id"]
        if not img or not code:
            yield self.reject(img or f"line-{line}", "record_malformed", f"line {line}: empty img_id or diagnostic")
            return
        bad_age = age_problem(row.get("age", ""))
        if bad_age:
            yield self.reject(img, "metadata_invalid", f"line {line}: {bad_age}", f"{self.options['image_dir']}/{img}")
            return
        sex = {"MALE": "male", "FEMALE": "female"}.get(row.get("gender", "").upper(), "")
        how = "histo" if row.get("biopsed", "").lower() == "true" else ""
        site = row.get("region", "").lower()
        caption = clinical(ham_caption(PAD_UFES_NAMES.get(code.upper(), code), how, row.get("age", ""), sex, site))
        try:
            roman = ROMAN.get(str(int(float(row.get("fitspatrick", "")))))
        except (ValueError, OverflowError):   # "", "n/a", "1e999" (infinite), "nan"
            roman = None
        yield self._record(img, img, caption + skin_type_text(roman), code, patient)


__all__ = ["PublicDatasetAdapter"]

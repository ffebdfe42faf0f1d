"""Caption cleaning and filters (pipeline/text/filters.py) and their place in the ingest stage.

Each filter on its own, with what it must remove or reject AND the medical text it must leave
alone; then the chain through the real ingest stage on a small textbook + forum source written
here (real JPEGs, real CSV/JSON), with rejects, the language column, accounting and
determinism; then the false-reject rate on real captions from ../shared.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from pipeline.errors import ConfigError
from pipeline.rejects import REASONS
from pipeline.stages import ingest
from pipeline.tables import read_table
from pipeline.text.filters import (
    BoilerplateCleaner,
    Caption,
    CaptionFilterChain,
    ControlCharCleaner,
    DisfluencyCleaner,
    HtmlCleaner,
    RepeatedWordCleaner,
    dermatology_vocabulary,
    detect_language,
)


def _clean(cleaner, text: str) -> str:
    doc = Caption(text)
    assert cleaner(doc) is None, "a cleaner never rejects"
    return doc.text


@pytest.fixture(scope="module")
def chain() -> CaptionFilterChain:
    return CaptionFilterChain.from_params({})


def _reason(chain: CaptionFilterChain, text: str | None) -> str | None:
    rejection = chain(text).rejection
    return rejection.reason if rejection else None


# -- cleaners, one by one ------------------------------------------------------------------------

def test_html_cleaner_strips_tags_and_entities_but_not_comparisons():
    html = HtmlCleaner()
    assert _clean(html, "<p>Tinea <i>corporis</i> on the trunk&nbsp;&amp; legs</p>") == " Tinea corporis on the trunk\xa0& legs "
    assert _clean(html, "Plaque<br/>with scale<script>alert(1)</script>") == "Plaque with scale "
    assert _clean(html, "&lt;b&gt;Psoriasis&lt;/b&gt; &#8211; elbow") == "Psoriasis \u2013 elbow"
    for kept in ("lesions <5 mm and >2 mm", "H&E stain, 40x", "if a<b and c>d", "AT&T and Q&A", "R&D"):
        assert _clean(html, kept) == kept


def test_control_char_cleaner_removes_invisible_characters_keeps_units():
    cc = ControlCharCleaner()
    assert _clean(cc, "  A\x00red\u200bpatch\n\non the\x7f arm\u00ad \x0b") == "A red patch on the arm"
    assert _clean(cc, "cafe\u0301 au lait") == "caf\u00e9 au lait"          # NFC
    for kept in ("50 \u00b5m spongiosis", "2 cm\u00b2 plaque", "10\u00d7 magnification"):
        assert _clean(cc, kept) == kept


@pytest.mark.parametrize(("raw", "clean"), [
    ("Figure 3. Clinical photograph of psoriasis on the elbow.", "Clinical photograph of psoriasis on the elbow."),
    ("Fig. 2a: Dermoscopy of a melanoma showing streaks.", "Dermoscopy of a melanoma showing streaks."),
    ("FIGURE 1 - Nodular BCC on the nose", "Nodular BCC on the nose"),
    ("Supplementary Figure S2. Tinea pedis.", "Tinea pedis."),
    ("Psoriatic plaque. Click to enlarge. Image courtesy of Dr. A. Smith.", "Psoriatic plaque."),
    ("Psoriasis plaque (Courtesy of J. Doe, MD).", "Psoriasis plaque."),
    ("Eczema on the hand. \u00a9 2019 American Academy of Dermatology (AAD). Published by Elsevier Inc. "
     "All rights reserved.", "Eczema on the hand."),
    ("Acne on the face. Source: https://dermnetnz.org/topics/acne.", "Acne on the face."),
    ("Lupus pernio (see www.example.org/x).", "Lupus pernio."),
    ("Reprinted with permission from Smith et al. Psoriasis of the nail.", "Psoriasis of the nail."),
    ("Copyright (c) 2020 Wiley Periodicals, Inc. Urticaria on the back.", "Urticaria on the back."),
    ("Scabies burrows, doi:10.1016/j.jaad.2019.01.001.", "Scabies burrows."),
])
def test_boilerplate_cleaner_removes_publishing_furniture(raw: str, clean: str):
    assert _clean(BoilerplateCleaner(), raw) == clean


@pytest.mark.parametrize("kept", [
    "As shown in Fig. 2, the plaque is scaly.",
    "Figure-of-eight suture after excision of a BCC.",
    "The image shows SCC vs BCC on the face; see the border.",
    "Photographs of a 3.5 cm plaque, 2 weeks apart.",
    "Copy of the biopsy report: lichen planus.",
    "Tap water iontophoresis for hyperhidrosis of the palms.",
])
def test_boilerplate_cleaner_keeps_medical_text(kept: str):
    assert _clean(BoilerplateCleaner(), kept) == kept


def test_disfluency_cleaner_removes_fillers_not_units_or_abbreviations():
    dis = DisfluencyCleaner()
    assert _clean(dis, "So, um, here we see, uh, a plaque") == "So, here we see, a plaque"
    assert _clean(dis, "Um, this is psoriasis. Erm, hmm, note the scale.") == "this is psoriasis. note the scale."
    assert _clean(dis, "A papule, uh.") == "A papule."
    for kept in ("Scale bar 50 um. Spongiosis.", "5um sections", "UM and UV exposure", "serum, album, umbilicated papules",
                 "a 3 mm papule", "ER positive", "the Hum of the machine", "uhlan"):
        assert _clean(dis, kept) == kept


def test_repeated_word_cleaner_collapses_stutter_only():
    rep = RepeatedWordCleaner()
    assert _clean(rep, "on the the arm") == "on the arm"
    assert _clean(rep, "The the lesion is is red") == "The lesion is is red"     # "is is": "what it is is"
    assert _clean(rep, "a very very very itchy rash") == "a very itchy rash"
    for kept in ("I know that that rash is eczema", "she had had it before", "grade 2 2 cm", "beri beri",
                 "thethe", "BCC, BCC and SCC"):
        assert _clean(rep, kept) == kept


def test_untouched_captions_come_back_exactly(chain):
    for text in ("SCC vs BCC: a 1.5 cm ulcerated nodule on the scalp (H&E, x40), as in Fig. 2.",
                 "Erythema multiforme -- target lesions; UV-induced? Rule out SJS/TEN!",
                 "Café-au-lait macules (>6) in NF1; 5 um sections."):
        result = chain(text)
        assert result.rejection is None and result.caption == text


# -- checks --------------------------------------------------------------------------------------

def test_null_markers_are_missing_and_empty_is_empty(chain):
    for marker in ("NaN", "None", "null", "N/A", "-", " n/a ", "[deleted]"):
        assert _reason(chain, marker) == "caption_missing", marker
    assert _reason(chain, None) == "caption_missing"
    for empty in ("", "   ", "\n\x00", "<p></p>"):
        assert _reason(chain, empty) == "caption_empty", repr(empty)
    only_boilerplate = chain("Copyright 2020 Wiley. All rights reserved.")
    assert only_boilerplate.rejection.reason == "caption_empty"
    assert "boilerplate" in only_boilerplate.rejection.detail
    assert _reason(chain, "None of the lesions were painful; psoriasis of the scalp.") is None


def test_too_long_and_too_short(chain):
    long_caption = "Psoriasis plaque on the elbow. " * 700
    assert len(long_caption) > 20000 and _reason(chain, long_caption) == "caption_too_long"
    for short in ("Front view.", "Close-up.", "Figure 2. Dermoscopy.", "Clinical image.", "Left arm"):
        assert _reason(chain, short) == "caption_too_short", short
    # A condition or concept named is the information: Derm1M keeps such captions.
    for kept in ("Impetigo", "Lichen planus.", "Flaccid bullae.", "BCC", "Genital herpes", "Herpes vesicles."):
        assert _reason(chain, kept) is None, kept


def test_dermatology_check(chain):
    for off_topic in ("Thanks for watching and please subscribe to my channel!",
                      "The own method of taping",
                      "Bar chart of the number of patients per year in the study cohort."):
        assert _reason(chain, off_topic) == "caption_not_dermatology", off_topic
    for derm in ("SCC vs BCC in a renal transplant recipient.",
                 "Dermatoscopic view with a blue-whitish veil and irregular streaks.",
                 "Multiple seborrheic keratoses over the trunk of an older man.",     # plural of a synonym
                 "Right first digit, after 60 days, following 2 infiltrations.",
                 "Close-up of the active border of the ring."):
        assert _reason(chain, derm) is None, derm
    vocab = dermatology_vocabulary()
    assert vocab.find("Multiple seborrheic keratoses on the back") == "seborrheic keratoses"
    assert vocab.find("a report on sales figures") is None


def test_language_detection_rules():
    assert detect_language("Psoriasis.") == "und"                                   # under 20 letters
    assert detect_language("This is a dermoscopic image of a lesion on the back of a man.") == "en"
    for english in ("Psoriasis, chronic plaque", "Pemphigus mucosal lesions", "Flaccid bullae on both forearms.",
                    "Stevens-Johnson syndrome, erosions on the glans penis."):
        assert detect_language(english) == "en", english      # langdetect alone calls some of these ca/sv
    assert detect_language("Seit einer Woche habe ich einen juckenden roten Ausschlag am Bein, was kann das sein?") == "de"
    assert detect_language("Eritema nodoso sulle gambe di una donna giovane con dolore") == "it"
    assert detect_language("\u60a3\u8005\u624b\u80cc\u51fa\u73b0\u7ea2\u8272\u4e18\u75b9\uff0c\u4f34\u7619\u75d2\uff0c"
                           "\u6301\u7eed\u4e24\u5468\u4e86\uff0c\u8bf7\u95ee\u8fd9\u662f\u4ec0\u4e48\u75c5") == "zh"


def test_non_english_captions_are_kept_and_flagged_or_rejected():
    german = "Seit einer Woche habe ich einen juckenden roten Ausschlag am Bein, was kann das sein?"
    keep = CaptionFilterChain.from_params({})(german)
    assert keep.rejection is None and keep.language == "de" and keep.caption == german   # no English word checks
    reject = CaptionFilterChain.from_params({"non_english": "reject"})(german)
    assert reject.rejection.reason == "caption_not_english"
    # a language the adapter knows wins; und is never rejected for its language
    assert CaptionFilterChain.from_params({"non_english": "reject"})("Psoriasis of the elbow.", language="en").language == "en"
    assert CaptionFilterChain.from_params({"non_english": "reject"})("Ekzem am Arm").rejection is None


def test_params_switch_filters_off_and_are_checked():
    everything_off = {"html": False, "control_chars": False, "boilerplate": False, "disfluencies": False,
                      "repeated_words": False, "null_markers": False, "max_chars": 0, "language": False,
                      "min_words": 0, "dermatology": False}
    off = CaptionFilterChain.from_params(everything_off)
    assert [f.name for f in off.filters] == ["empty"]
    raw = "Figure 1. um <b>the the</b> N/A"
    assert off(raw).caption == raw and off(raw).language == "und"
    assert off("N/A").rejection is None
    full = CaptionFilterChain.from_params({})
    assert [f.name for f in full.filters] == ["html", "control_chars", "boilerplate", "disfluencies", "repeated_words",
                                              "null_markers", "empty", "max_chars", "language", "min_words",
                                              "dermatology"]
    # No section at all: cleanup, null markers, empty and language only (ingest before the filters).
    legacy = CaptionFilterChain.from_params(None)
    assert [f.name for f in legacy.filters] == ["html", "control_chars", "null_markers", "empty", "language"]
    assert legacy("Figure 2. Dermoscopy.").caption == "Figure 2. Dermoscopy."
    for bad, match in (({"min_word": 3}, "ingest.filters.min_word"), ({"min_words": "3"}, "min_words"),
                       ({"html": "yes"}, "html must be true or false"), ({"non_english": "drop"}, "keep or reject"),
                       ({"languages": "en"}, "languages"), ({"max_chars": -1}, "max_chars")):
        with pytest.raises(ConfigError, match=match):
            CaptionFilterChain.from_params(bad)


# -- through the real ingest stage ---------------------------------------------------------------

def _jpeg(path: Path, colour: tuple[int, int, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (48, 40), colour).save(path, "JPEG")


_TEXTBOOK = [
    ("a.jpg", "<p>Figure 1. Annular plaque of <i>tinea corporis</i> with an active border.</p>", "pair"),
    ("b.jpg", "So, um, here we see, uh, the the typical silvery scale of psoriasis.", "pair"),
    ("c.jpg", "N/A", "caption_missing"),
    ("d.jpg", "Click to enlarge. \u00a9 2019 Elsevier Inc. All rights reserved.", "caption_empty"),
    ("e.jpg", "Front view.", "caption_too_short"),
    ("f.jpg", "Thanks for watching, and do not forget to subscribe to the channel.", "caption_not_dermatology"),
    ("g.jpg", "Lichen planus.", "pair"),
    ("h.jpg", "Seit einer Woche habe ich einen juckenden roten Ausschlag am Bein, was kann das sein?", "pair"),
    ("missing.jpg", "Nodular basal cell carcinoma on the nose of an older man.", "image_missing"),
]


def _textbook_source(root: Path) -> dict:
    rows = []
    for i, (name, caption, _) in enumerate(_TEXTBOOK):
        if name != "missing.jpg":
            _jpeg(root / "figs" / name, (40 + 20 * i, 90, 120))
        rows.append({"image_path": f"figs/{name}", "caption": caption, "book": "Atlas", "chapter": "Ch. 1"})
    with open(root / "captions.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=["image_path", "caption", "book", "chapter"])
        writer.writeheader()
        writer.writerows(rows)
    return {"name": "atlas", "adapter": "textbook", "path": str(root)}


def _file(record_id: str) -> str:
    """The image file name in a textbook ("figs/a.jpg#0") or forum ("t1/p1/img/p1.jpg") record id."""
    return record_id.split("#")[0].rsplit("/", 1)[-1]


GERMAN = "Seit einer Woche habe ich einen juckenden roten Ausschlag am Bein, was kann das sein?"


def _forum_source(root: Path) -> dict:
    _jpeg(root / "img/p1.jpg", (200, 150, 120))
    _jpeg(root / "img/p2.jpg", (100, 50, 20))
    thread = {"thread_id": "t1", "title": "Ausschlag <b>am</b> Bein", "posts": [
        {"post_id": "p1", "body": GERMAN, "images": ["img/p1.jpg"]},
        {"post_id": "p2", "body": "My son has had this itchy rash on his arm for three weeks.", "images": ["img/p2.jpg"]}]}
    (root / "t1.json").write_text(json.dumps(thread), encoding="utf-8")
    return {"name": "forum", "adapter": "forum", "path": str(root)}


def _run_ingest(tmp: Path, sources: list[dict], filters: dict | None) -> tuple:
    cfg = {"out": str(tmp / "out"), "workers": 1, "max_image_pixels": 89478485, "min_side": 16, "sources": sources}
    if filters is not None:
        cfg["filters"] = filters
    result = ingest.run({"ingest": cfg})
    pairs = read_table("pairs", tmp / "out/pairs.parquet")
    rejects = read_table("rejects", tmp / "out/rejects.parquet")
    assert result.rows_in == result.rows_out + result.rejected == len(pairs) + len(rejects)
    assert set(rejects["reason"]) <= set(REASONS)
    return result, pairs, rejects


def test_ingest_applies_the_chain_writes_rejects_and_language(tmp_path):
    sources = [_textbook_source(tmp_path / "book"), _forum_source(tmp_path / "forum")]
    _, pairs, rejects = _run_ingest(tmp_path / "run", sources, {})
    expected = Counter(outcome for _, _, outcome in _TEXTBOOK if outcome != "pair")
    assert Counter(rejects["reason"]) == expected
    by_reason = rejects.set_index("reason")
    assert "null marker" in by_reason.loc["caption_missing", "detail"]
    assert by_reason.loc["caption_too_short", "path"].endswith("figs/e.jpg")
    caption = dict(zip(pairs["source_record_id"].map(_file), pairs["caption"], strict=True))
    language = dict(zip(pairs["source_record_id"].map(_file), pairs["language"], strict=True))
    assert caption["a.jpg"] == "Annular plaque of tinea corporis with an active border."
    assert caption["b.jpg"] == "So, here we see, the typical silvery scale of psoriasis."
    assert language["p1.jpg"] == "de" and language["h.jpg"] == "de"      # kept, flagged, text as written
    assert caption["p1.jpg"] == GERMAN
    assert language["p2.jpg"] == "en" and language["g.jpg"] == "und"
    context = dict(zip(pairs["source_record_id"].map(_file), pairs["context"], strict=True))
    assert context["p1.jpg"] == "Ausschlag am Bein"                          # context gets the cleaners
    # non_english: reject turns the flag into a reject, for the adapter's language and the detected one
    _, pairs2, rejects2 = _run_ingest(tmp_path / "strict", sources, {"non_english": "reject"})
    assert Counter(rejects2["reason"])["caption_not_english"] == 2 and set(pairs2["language"]) == {"en", "und"}


def test_ingest_with_filters_is_deterministic(tmp_path):
    sources = [_textbook_source(tmp_path / "book"), _forum_source(tmp_path / "forum")]
    _run_ingest(tmp_path / "a", sources, {})
    _run_ingest(tmp_path / "b", sources, {})
    for name in ("pairs.parquet", "images.parquet", "rejects.parquet"):
        assert (tmp_path / "a/out" / name).read_bytes() == (tmp_path / "b/out" / name).read_bytes(), name


def test_ingest_without_a_filters_section_only_cleans(tmp_path):
    _, pairs, rejects = _run_ingest(tmp_path / "run", [_textbook_source(tmp_path / "book")], None)
    assert Counter(rejects["reason"]) == {"caption_missing": 1, "image_missing": 1}
    assert any(c.startswith("Figure 1. Annular plaque") for c in pairs["caption"])     # HTML gone, label kept


# -- real captions -------------------------------------------------------------------------------

def test_real_dermatology_captions_pass(shared, chain):
    """SkinCAP and Derm1M dev captions are real dermatology captions: nearly all must pass.

    The few rejects are captions that say nothing about skin (SkinCAP's "This image does not
    provide enough information for an accurate diagnosis ..."; Derm1M's "Front view.", "The own
    method of taping"); `python bench/caption_filters.py` lists them.
    """
    with open(shared / "reference/skincap/skin_cap_meta_100.csv", encoding="utf-8", newline="") as fh:
        skincap = [r[next(k for k in r if k.startswith("caption"))] for r in csv.DictReader(fh)]
    with open(shared / "reference/derm1m/dev_rows.csv", encoding="utf-8", newline="") as fh:
        derm1m = [r["caption"] for r in csv.DictReader(fh)]
    for captions, allowed in ((skincap, 3), (derm1m, 2)):
        results = [chain(c) for c in captions]
        rejected = [(c, r.rejection.reason) for c, r in zip(captions, results, strict=True) if r.rejection]
        assert len(rejected) <= allowed, rejected
        assert all(reason in ("caption_not_dermatology", "caption_too_short") for _, reason in rejected)
        assert {r.language for r in results} <= {"en", "und"}
        non_info = [c for c, _ in rejected if "not provide enough information" not in c]
        assert all(len(c.split()) <= 5 for c in non_info), non_info

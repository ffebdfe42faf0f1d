"""Adapters for Derm1M's source kinds (video, article figures, forum, textbook, public datasets).

Each test writes a tiny real input (JPEGs via Pillow, real VTT/SRT/JSON/CSV text), malformed
parts included, and runs it through the real ingest stage: every record ends as a pair or a
reject with a documented reason.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from pipeline.errors import ConfigError
from pipeline.rejects import REASONS
from pipeline.stages import ingest
from pipeline.tables import read_table


def _params(tmp: Path, sources: list[dict]) -> dict:
    return {"ingest": {"out": str(tmp / "ingest"), "workers": 1, "max_image_pixels": 89478485, "min_side": 16,
                       "sources": sources}}


def _jpeg(path: Path, colour=(180, 120, 100), size=(48, 40)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, "JPEG")


def _ingest(tmp: Path, sources: list[dict]):
    result = ingest.run(_params(tmp, sources))
    pairs = read_table("pairs", tmp / "ingest/pairs.parquet")
    rejects = read_table("rejects", tmp / "ingest/rejects.parquet")
    assert result.rows_in == result.rows_out + result.rejected == len(pairs) + len(rejects)
    assert set(rejects["reason"]) <= set(REASONS)
    return result, pairs, rejects


# -- public_dataset ------------------------------------------------------------------------------

def test_public_dataset_derm7pt_layout_and_case_mismatch(tmp_path):
    root = tmp_path / "d7"
    _jpeg(root / "images/NEL/Nel026.jpg")
    _jpeg(root / "images/NEL/Nel026c.jpg", (90, 60, 50))
    _jpeg(root / "images/FCL/Fcl068.jpg", (10, 60, 50))
    (root / "meta.csv").write_text(
        "case_num,diagnosis,streaks,blue_whitish_veil,vascular_structures,location,sex,clinic,derm\n"
        "1,basal cell carcinoma,absent,absent,arborizing,back,male,NEL/Nel026c.jpg,NEL/Nel026.jpg\n"
        "2,melanoma (in situ),irregular,present,absent,lower limbs,female,,FCl/Fcl068.jpg\n"
        "3,,absent,absent,absent,back,male,,NEL/x.jpg\n"
        "4,clark nevus,absent,absent,absent,back,male,,NEL/ghost.jpg\n", encoding="utf-8")
    src = {"name": "d7", "adapter": "public_dataset", "path": str(root), "layout": "derm7pt"}
    _, pairs, rejects = _ingest(tmp_path / "a", [src])
    assert Counter(rejects["reason"]) == {"image_path_case_mismatch": 1, "record_malformed": 1, "image_missing": 1}
    assert "FCL/Fcl068.jpg" in rejects.set_index("reason").loc["image_path_case_mismatch", "detail"]
    derm = pairs.set_index("source_record_id").loc["NEL/Nel026.jpg"]
    assert derm["caption"] == ("This is a dermoscopic image of a lesion on the back of a man. The final diagnosis is "
                               "basal cell carcinoma. Dermoscopic structures: arborizing vascular structures.")
    assert derm["source_label"] == "basal cell carcinoma" and derm["group_key"] == "1"
    clinic = pairs.set_index("source_record_id").loc["NEL/Nel026c.jpg"]
    assert clinic["caption"].startswith("This is a clinical image") and clinic["group_key"] == "1"
    # resolved case-insensitively when asked to
    _, pairs, rejects = _ingest(tmp_path / "b", [{**src, "case_insensitive_paths": True}])
    assert "image_path_case_mismatch" not in set(rejects["reason"])
    mel = pairs.set_index("source_record_id").loc["FCl/Fcl068.jpg"]
    assert mel["caption"].endswith("Dermoscopic structures: irregular streaks, blue whitish veil.")


def test_public_dataset_fitzpatrick_ddi_pad_ufes_layouts(tmp_path):
    fitz, ddi, pad = tmp_path / "fitz", tmp_path / "ddi", tmp_path / "pad"
    _jpeg(fitz / "images/abc123.jpg")
    (fitz / "fitzpatrick17k.csv").write_text(
        "md5hash,fitzpatrick_scale,fitzpatrick_centaur,label,nine_partition_label,three_partition_label,qc,url,url_alphanum\n"
        "abc123,3,3,psoriasis,inflammatory,non-neoplastic,,http://x,x\n"
        "def456,-1,-1,,inflammatory,non-neoplastic,,http://y,y\n", encoding="utf-8")
    (ddi / "images").mkdir(parents=True)
    Image.new("RGB", (48, 40), (1, 2, 3)).save(ddi / "images/000001.png")
    (ddi / "ddi_metadata.csv").write_text(",DDI_ID,DDI_file,skin_tone,malignant,disease\n"
                                         "0,1,000001.png,56,True,melanoma-in-situ\n", encoding="utf-8")
    (pad / "images").mkdir(parents=True)
    Image.new("RGB", (48, 40), (3, 2, 1)).save(pad / "images/PAT_1_1_1.png")
    (pad / "metadata.csv").write_text("patient_id,lesion_id,age,gender,fitspatrick,region,diagnostic,img_id,biopsed\n"
                                      "PAT_1,1,55,FEMALE,2.0,FOREARM,BCC,PAT_1_1_1.png,True\n", encoding="utf-8")
    _, pairs, rejects = _ingest(tmp_path, [
        {"name": "fitz", "adapter": "public_dataset", "path": str(fitz), "layout": "fitzpatrick17k"},
        {"name": "ddi", "adapter": "public_dataset", "path": str(ddi), "layout": "ddi"},
        {"name": "pad", "adapter": "public_dataset", "path": str(pad), "layout": "pad_ufes_20"},
    ])
    assert list(rejects["reason"]) == ["record_malformed"]
    by = pairs.set_index("source")
    assert by.loc["fitz", "caption"] == ("This is a clinical image of a lesion. The final diagnosis is psoriasis. "
                                         "Fitzpatrick skin type III.")
    assert by.loc["fitz", "source_label"] == "psoriasis"
    assert by.loc["ddi", "caption"].endswith("melanoma in situ, confirmed by histopathology. Fitzpatrick skin type V-VI.")
    assert by.loc["pad", "caption"] == ("This is a clinical image of a lesion on the forearm of a 55-year-old woman. "
                                        "The final diagnosis is basal cell carcinoma, confirmed by histopathology. "
                                        "Fitzpatrick skin type II.")
    assert (by.loc["pad", "source_label"], by.loc["pad", "group_key"]) == ("BCC", "PAT_1")


def test_public_dataset_ham10000_layout_is_the_ham_adapter(tmp_path):
    root = tmp_path / "ham"
    _jpeg(root / "images/ISIC_1.jpg")
    (root / "HAM10000_metadata.csv").write_text("lesion_id,image_id,dx,dx_type,age,sex,localization\n"
                                                "HAM_1,ISIC_1,nv,histo,45.0,male,back\n", encoding="utf-8")
    _, pairs, _ = _ingest(tmp_path, [{"name": "ham", "adapter": "public_dataset", "path": str(root), "layout": "ham10000"}])
    assert pairs["caption"].tolist() == ["This is a dermoscopic image of a lesion on the back of a 45-year-old man. "
                                         "The final diagnosis is melanocytic nevus, confirmed by histopathology."]
    assert (pairs["source_label"][0], pairs["group_key"][0]) == ("nv", "HAM_1")


def test_public_dataset_malformed_metadata_are_rejects(tmp_path):
    root = tmp_path / "bad"
    root.mkdir()
    (root / "meta.csv").write_text("diagnosis,clinic\nmelanoma,a.jpg\n", encoding="utf-8")
    _, pairs, rejects = _ingest(tmp_path, [
        {"name": "nocol", "adapter": "public_dataset", "path": str(root), "layout": "derm7pt"},
        {"name": "nofile", "adapter": "public_dataset", "path": str(root), "layout": "ddi"},
    ])
    assert pairs.empty and sorted(rejects["reason"]) == ["column_missing", "source_file_unreadable"]
    with pytest.raises(ConfigError, match="layout"):
        ingest.build_adapters(_params(tmp_path, [{"name": "x", "adapter": "public_dataset", "path": str(root),
                                                  "layout": "isic"}]))


def test_public_dataset_ingests_all_of_derm7pt(shared, tmp_path, capsys):
    root = shared / "corpus/derm7pt"
    rows = len((root / "meta.csv").read_text(encoding="utf-8").splitlines()) - 1
    result, pairs, rejects = _ingest(tmp_path, [{"name": "derm7pt", "adapter": "public_dataset", "path": str(root),
                                                 "layout": "derm7pt"}])
    assert result.rows_in == rows
    assert Counter(rejects["reason"]) == {"image_path_case_mismatch": 1}
    assert rejects["record_id"].tolist() == ["FCl/Fcl068.jpg"]
    assert pairs["caption"].str.startswith("This is a dermoscopic image of a lesion").all()
    assert pairs["source_label"].notna().all()
    with capsys.disabled():
        print(f"\nderm7pt via public_dataset: {result.rows_in} rows, {len(pairs)} pairs, {len(rejects)} rejects, "
              f"{pairs['source_label'].nunique()} labels")


# -- textbook ------------------------------------------------------------------------------------

def test_textbook_captions_with_book_and_chapter_context(tmp_path):
    root = tmp_path / "book"
    _jpeg(root / "figs/1.jpg")
    _jpeg(root / "figs/2.jpg", (20, 30, 40))
    (root / "captions.csv").write_text(
        "image_path,caption,book,chapter\n"
        "figs/1.jpg,Annular plaque of tinea corporis.,Atlas of Dermatology,Fungal infections\n"
        "figs/1.jpg,Close-up of the active border.,Atlas of Dermatology,Fungal infections\n"
        "figs/2.jpg,,Atlas of Dermatology,Eczema\n"
        "figs/ghost.jpg,Missing file.,Atlas,Eczema\n"
        "../outside.jpg,Escapes.,Atlas,Eczema\n", encoding="utf-8")
    _, pairs, rejects = _ingest(tmp_path, [{"name": "atlas", "adapter": "textbook", "path": str(root)}])
    assert Counter(rejects["reason"]) == {"caption_missing": 1, "image_missing": 1, "path_outside_root": 1}
    assert pairs["caption_index"].tolist() == [0, 1]
    assert set(pairs["context"]) == {"Atlas of Dermatology — Fungal infections"}
    assert set(pairs["source_type"]) == {"edu"}
    other = tmp_path / "nocol"
    other.mkdir()
    (other / "captions.csv").write_text("image,text\na.jpg,b\n", encoding="utf-8")
    _, pairs, rejects = _ingest(tmp_path / "x", [{"name": "bad", "adapter": "textbook", "path": str(other)}])
    assert pairs.empty and rejects["reason"].tolist() == ["column_missing"]


# -- video ---------------------------------------------------------------------------------------

VTT = """WEBVTT

00:00:00.000 --> 00:00:04.000
Today we look at a patient with psoriasis.

00:00:04.000 --> 00:00:09.000
Note the silvery scale on the elbow.

00:00:30.000 --> 00:00:35.000
Here is the nail pitting.
"""

SRT = """1
00:00:01,000 --> 00:00:03,000
This is lichen planus on the wrist.

2
00:00:20,000 --> 00:00:22,000
Wickham striae are visible.
"""


def test_video_frames_paired_with_transcript_window(tmp_path):
    root = tmp_path / "videos"
    v1 = root / "vid1"
    _jpeg(v1 / "frame_000002.0.jpg")
    _jpeg(v1 / "frame_000032.5.jpg", (50, 60, 70))
    _jpeg(v1 / "frame_000060.jpg", (70, 60, 50))       # nothing said within the window
    _jpeg(v1 / "frame_abc.jpg", (10, 10, 10))          # not a timestamp
    (v1 / "transcript.vtt").write_text(VTT, encoding="utf-8")
    (v1 / "video.json").write_text(json.dumps({"title": "Psoriasis basics", "description": "Plaques and nails"}),
                                   encoding="utf-8")
    v2 = root / "vid2"                                  # SRT + frames.csv with HH:MM:SS timestamps
    _jpeg(v2 / "kf/a.jpg", (90, 10, 10))
    _jpeg(v2 / "kf/b.jpg", (10, 90, 10))
    (v2 / "transcript.srt").write_text(SRT, encoding="utf-8")
    (v2 / "frames.csv").write_text("file,timestamp\nkf/a.jpg,00:00:02\nkf/b.jpg,soon\n", encoding="utf-8")
    v3 = root / "vid3"                                  # JSON segments
    _jpeg(v3 / "frame_5.png", (1, 2, 3))
    (v3 / "transcript.json").write_text(json.dumps({"segments": [{"start": 4, "end": 6, "text": "A bulla on the shin."}]}),
                                        encoding="utf-8")
    v4 = root / "vid4"                                  # malformed transcript
    _jpeg(v4 / "frame_1.jpg")
    (v4 / "transcript.vtt").write_text("not a webvtt file\n00:00 nonsense", encoding="utf-8")
    v5 = root / "vid5"                                  # no transcript at all
    _jpeg(v5 / "frame_1.jpg")
    v6 = root / "vid6"                                  # unreadable JSON segments
    _jpeg(v6 / "frame_1.jpg")
    (v6 / "transcript.json").write_text("{oops", encoding="utf-8")
    src = {"name": "yt", "adapter": "video", "path": str(root), "window_s": 3}
    _, pairs, rejects = _ingest(tmp_path, [src])
    assert Counter(rejects["reason"]) == {"caption_missing": 1, "timestamp_invalid": 2, "source_file_unreadable": 3}
    by = pairs.set_index("source_record_id")
    assert by.loc["vid1/frame_000002.0.jpg", "caption"] == ("Today we look at a patient with psoriasis. "
                                                             "Note the silvery scale on the elbow.")
    assert by.loc["vid1/frame_000032.5.jpg", "caption"] == "Here is the nail pitting."
    assert by.loc["vid1/frame_000002.0.jpg", "context"] == "Psoriasis basics — Plaques and nails"
    assert by.loc["vid1/frame_000002.0.jpg", "group_key"] == "vid1"
    assert by.loc["vid2/kf/a.jpg", "caption"] == "This is lichen planus on the wrist."
    assert by.loc["vid3/frame_5.png", "caption"] == "A bulla on the shin."
    # a narrower window drops the second cue
    _, pairs, _ = _ingest(tmp_path / "narrow", [{**src, "window_s": 0}])
    assert pairs.set_index("source_record_id").loc["vid1/frame_000002.0.jpg", "caption"] == (
        "Today we look at a patient with psoriasis.")


def test_video_cue_times_keep_their_milliseconds(tmp_path):
    """A cue ending at 9.900 s is outside the window of a frame at 15.0 s with window_s 5 (webvtt-py's
    start_in_seconds would read it as 9 s, and a cue starting at 20.100 s as 20 s, inside)."""
    from pipeline.sources.video import read_transcript

    v = tmp_path / "videos/v1"
    _jpeg(v / "frame_000015.0.jpg")
    (v / "transcript.vtt").write_text("WEBVTT\n\n00:00:05.500 --> 00:00:09.900\nBefore the frame.\n\n"
                                     "00:00:12.250 --> 00:00:17.750\nPsoriasis on the elbow.\n\n"
                                     "00:00:20.100 --> 00:00:24.000\nAfter the frame.\n", encoding="utf-8")
    assert read_transcript(v / "transcript.vtt")[0][:2] == (5.5, 9.9)
    _, pairs, _ = _ingest(tmp_path, [{"name": "yt", "adapter": "video", "path": str(tmp_path / "videos"),
                                      "window_s": 5}])
    assert pairs["caption"].tolist() == ["Psoriasis on the elbow."]


def test_video_window_option_is_checked(tmp_path):
    (tmp_path / "v").mkdir()
    with pytest.raises(ConfigError):
        ingest.build_adapters(_params(tmp_path, [{"name": "yt", "adapter": "video", "path": str(tmp_path / "v"),
                                                  "window_s": "wide"}]))


# -- article_figures -----------------------------------------------------------------------------

def test_article_figures_compound_captions_split_per_panel(tmp_path):
    root = tmp_path / "pmc"
    for name in ("f1a.jpg", "f1b.jpg", "f2.jpg", "f3a.jpg", "f3c.jpg"):
        _jpeg(root / "img" / name, (sum(map(ord, name)) % 200, 80, 80))
    compound = "Bullous pemphigoid of the trunk. (A) Tense bullae on the abdomen. (B) Subepidermal split on histology."
    rows = [
        {"article_id": "PMC1", "figure_id": "F1", "image_path": "img/f1a.jpg", "caption": compound,
         "article_title": "Bullous pemphigoid in the elderly", "panel": "A"},
        {"article_id": "PMC1", "figure_id": "F1", "image_path": "img/f1b.jpg", "caption": compound,
         "article_title": "Bullous pemphigoid in the elderly", "panel": "b"},
        {"article_id": "PMC1", "figure_id": "F2", "image_path": "img/f2.jpg", "caption": "Figure 2. Dermoscopy.",
         "article_title": "Bullous pemphigoid in the elderly"},
        {"article_id": "PMC2", "figure_id": "F3", "image_path": "img/f3a.jpg",
         "caption": "Clinical images. A, Plaque on the back. B, Close-up.", "article_title": "Psoriasis", "panel": "A"},
        {"article_id": "PMC2", "figure_id": "F3", "image_path": "img/f3c.jpg",
         "caption": "Clinical images. A, Plaque on the back. B, Close-up.", "article_title": "Psoriasis", "panel": "C"},
        {"article_id": "PMC2", "figure_id": "", "image_path": "img/f3c.jpg", "caption": "x", "article_title": "P"},
        {"article_id": "PMC2", "figure_id": "F9", "image_path": "img/none.jpg", "caption": "", "article_title": "P"},
    ]
    lines = [json.dumps(r) for r in rows] + ["{not json", "[1, 2]"]
    (root / "figures.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    _, pairs, rejects = _ingest(tmp_path, [{"name": "pmc", "adapter": "article_figures", "path": str(root)}])
    assert Counter(rejects["reason"]) == {"record_malformed": 3, "caption_missing": 1, "subcaption_missing": 1}
    by = pairs.set_index("source_record_id")
    assert by.loc["PMC1/F1/A", "caption"] == "Bullous pemphigoid of the trunk. Tense bullae on the abdomen."
    assert by.loc["PMC1/F1/B", "caption"] == "Bullous pemphigoid of the trunk. Subepidermal split on histology."
    assert by.loc["PMC1/F2", "caption"] == "Figure 2. Dermoscopy."
    assert by.loc["PMC2/F3/A", "caption"] == "Clinical images. Plaque on the back."
    assert by.loc["PMC1/F1/A", "context"] == "Bullous pemphigoid in the elderly"
    assert by.loc["PMC1/F1/A", "group_key"] == "PMC1"


def test_article_figures_csv_and_caption_forms(tmp_path):
    from pipeline.sources.article_figures import split_compound

    assert split_compound("Figure 2. a) red papules b) blue nodule") == ("Figure 2.", {"A": "red papules",
                                                                                       "B": "blue nodule"})
    assert split_compound("Psoriasis (A) and eczema (B).") == ("", {"A": "Psoriasis", "B": "eczema"})
    assert split_compound("No panels here (see text).") == ("No panels here (see text).", {})
    root = tmp_path / "pmc"
    _jpeg(root / "a.jpg")
    (root / "figs.csv").write_text("article_id,figure_id,image_path,caption,article_title\n"
                                   "PMC9,F1,a.jpg,A red plaque.,Eczema\n", encoding="utf-8")
    (root / "bad.csv").write_text("article_id,image_path\nPMC9,a.jpg\n", encoding="utf-8")
    _, pairs, rejects = _ingest(tmp_path, [
        {"name": "ok", "adapter": "article_figures", "path": str(root), "figures": "figs.csv"},
        {"name": "bad", "adapter": "article_figures", "path": str(root), "figures": "bad.csv"},
        {"name": "gone", "adapter": "article_figures", "path": str(root)},
    ])
    assert pairs["caption"].tolist() == ["A red plaque."]
    assert sorted(rejects["reason"]) == ["column_missing", "source_file_unreadable"]


# -- forum ---------------------------------------------------------------------------------------

def test_forum_posts_share_text_and_flag_language(tmp_path):
    from pipeline.sources import ADAPTERS

    root = tmp_path / "forum"
    for name in ("p1a.jpg", "p1b.jpg", "p2.jpg", "p3.jpg", "p4.jpg"):
        _jpeg(root / "img" / name, (sum(map(ord, name)) % 200, 40, 90))
    thread = {"thread_id": "t1", "title": "Itchy rash on my arm", "posts": [
        {"post_id": "p1", "body": "I have had this itchy round rash on my forearm for three weeks.",
         "images": ["img/p1a.jpg", "img/p1b.jpg"],
         "replies": [{"post_id": "r1", "body": "Looks like nummular eczema to me."},
                     {"post_id": "p2", "body": "Mine looked like this before treatment with steroids.",
                      "images": ["img/p2.jpg"]}]},
        {"post_id": "p3", "body": "", "images": ["img/p3.jpg"]},
        "not a post",
    ]}
    german = {"thread_id": "t2", "title": "Ausschlag", "posts": [
        {"post_id": "p4", "body": "Seit einer Woche habe ich einen juckenden roten Ausschlag am Bein, was kann das sein?",
         "images": ["img/p4.jpg", "img/missing.jpg"]}]}
    (root / "threads.json").write_text(json.dumps([thread, {"title": "no posts"}]), encoding="utf-8")
    (root / "de.json").write_text(json.dumps(german, ensure_ascii=False), encoding="utf-8")
    (root / "broken.json").write_text("{\"thread_id\": ", encoding="utf-8")
    src = {"name": "forum", "adapter": "forum", "path": str(root)}
    _, pairs, rejects = _ingest(tmp_path, [src])
    assert Counter(rejects["reason"]) == {"record_malformed": 2, "caption_missing": 1, "source_file_unreadable": 1,
                                          "image_missing": 1}
    by = pairs.set_index("source_record_id")
    first = by.loc["t1/p1/img/p1a.jpg", "caption"]
    assert first == by.loc["t1/p1/img/p1b.jpg", "caption"]
    assert first.endswith("Reply: Looks like nummular eczema to me.") and "steroids" not in first
    assert by.loc["t1/p2/img/p2.jpg", "caption"].startswith("Mine looked like this")
    assert set(by["context"]) == {"Itchy rash on my arm", "Ausschlag"}
    assert by.loc["t2/p4/img/p4.jpg", "caption"].startswith("Seit einer Woche")     # original text kept
    assert by.loc["t2/p4/img/p4.jpg", "group_key"] == "t2"
    languages = ADAPTERS["forum"]("forum", root).languages()
    assert languages["t2/p4/img/p4.jpg"] == ("de", True)
    assert languages["t1/p1/img/p1a.jpg"] == ("en", False)


def test_odd_json_values_are_rejects_not_tracebacks(tmp_path):
    forum, pmc, notdir = tmp_path / "forum", tmp_path / "pmc", tmp_path / "file.txt"
    forum.mkdir()
    pmc.mkdir()
    notdir.write_text("x", encoding="utf-8")
    (forum / "t.json").write_text(json.dumps({"thread_id": "t", "posts": [
        {"post_id": "p", "body": "text", "images": [None, 3, {"x": 1}]}, {"post_id": "q", "images": "a.jpg"}]}),
        encoding="utf-8")
    (pmc / "figures.jsonl").write_text(json.dumps({"article_id": "A", "figure_id": "F", "image_path": ["x.jpg"],
                                                   "caption": {"text": "y"}}) + "\n", encoding="utf-8")
    _, pairs, rejects = _ingest(tmp_path, [
        {"name": "forum", "adapter": "forum", "path": str(forum)},
        {"name": "pmc", "adapter": "article_figures", "path": str(pmc)},
    ])
    assert pairs.empty
    assert Counter(rejects["reason"]) == {"record_malformed": 5}
    # A source path that is a file where a folder is expected is a configuration error, not 0 records.
    with pytest.raises(ConfigError, match="is a file"):
        _ingest(tmp_path, [{"name": "yt", "adapter": "video", "path": str(notdir)}])

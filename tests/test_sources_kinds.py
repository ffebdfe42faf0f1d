"""Adapters for Derm1M's source kinds (video, article figures, forum, textbook, public datasets).

Each test writes a tiny real input (JPEGs via Pillow, real VTT/SRT/JSON/CSV text), malformed
parts included, and runs it through the real ingest stage: every record ends as a pair or a
reject with a documented reason.
"""

from __future__ import annotations

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

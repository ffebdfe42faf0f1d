"""Source adapters on real layouts: HAM10000, DermNet folders, Derm1M release CSV, plain folders."""

from __future__ import annotations

import csv
import hashlib
import shutil
from collections import Counter
from pathlib import Path

import pandas as pd
from PIL import Image

from pipeline.params import load_params
from pipeline.stages import dedup, ingest
from pipeline.tables import read_table

REPO = Path(__file__).resolve().parents[1]


def _params(tmp: Path, sources: list[dict]) -> dict:
    return {"ingest": {"out": str(tmp / "ingest"), "workers": 2, "max_image_pixels": 89478485, "min_side": 16,
                       "sources": sources},
            "dedup": {**load_params(REPO / "params.yaml")["dedup"], "out": str(tmp / "dedup")},
            "decontaminate": {"radius": 12, "benchmarks": []}}


def test_ham10000_adapter_keeps_lesion_groups(shared, tmp_path):
    """A slice of HAM10000: templated captions, dx as source label, lesion_id as group key."""
    src = shared / "corpus/ham10000"
    meta = pd.read_csv(src / "HAM10000_metadata.csv")
    multi = meta[meta.duplicated("lesion_id", keep=False)].head(40)
    sample = pd.concat([multi, meta.drop(multi.index).head(60)])
    root = tmp_path / "ham"
    (root / "images").mkdir(parents=True)
    for image_id in sample["image_id"]:
        shutil.copy(src / "images" / f"{image_id}.jpg", root / "images" / f"{image_id}.jpg")
    sample.to_csv(root / "HAM10000_metadata.csv", index=False)
    params = _params(tmp_path, [{"name": "ham", "adapter": "ham10000", "path": str(root)}])
    result = ingest.run(params)
    assert (result.rows_in, result.rows_out, result.rejected) == (100, 100, 0)
    pairs = read_table("pairs", tmp_path / "ingest/pairs.parquet")
    assert set(pairs["source_label"]) <= {"akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"}
    assert pairs["group_key"].notna().all()
    assert pairs["caption"].str.startswith("This is a dermoscopic image of a lesion").all()
    assert pairs["caption"].str.contains("The final diagnosis is").all()


def test_dermnet_folders_and_their_byte_identical_copies(shared, tmp_path):
    """All of DermNet as a folder source: class-folder captions, and every cross-folder copy clustered."""
    root = shared / "corpus/dermnet"
    params = _params(tmp_path, [{"name": "dermnet", "adapter": "folder", "path": str(root)}])
    result = ingest.run(params)
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() == ".jpg")
    assert result.rows_in == len(files) and result.rejected == 0
    dedup.run(params)
    images = read_table("images", tmp_path / "ingest/images.parquet")
    clusters = read_table("clusters", tmp_path / "dedup/clusters.parquet").merge(images, on="image_id")
    by_sha: dict[str, set[str]] = {}
    for f in files:
        by_sha.setdefault(hashlib.sha256(f.read_bytes()).hexdigest(), set()).add(f.parent.name)
    copied = {sha for sha, folders in by_sha.items() if len(folders) > 1}
    assert copied, "DermNet has real cross-folder duplicates"
    for sha in copied:
        assert clusters[clusters["sha256"] == sha]["cluster_id"].nunique() == 1
    pairs = read_table("pairs", tmp_path / "ingest/pairs.parquet")
    assert pairs["caption"].str.startswith("A clinical photograph of ").all()


def test_derm1m_release_layout(shared, tmp_path):
    """Derm1M's CSV layout: rows without images are rejected as missing; present ones become pairs."""
    with open(shared / "reference/derm1m/dev_rows.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    root = tmp_path / "release"
    root.mkdir()
    with open(root / "Derm1M_v2_pretrain.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
        writer.writerow({**rows[0], "caption": "A second caption for the same image."})
    for r in rows[:10]:
        path = root / r["filename"]
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (64, 48), (200, 150, 120)).save(path)
    params = _params(tmp_path, [{"name": "derm1m", "adapter": "derm1m_release", "path": str(root)}])
    result = ingest.run(params)
    rejects = read_table("rejects", tmp_path / "ingest/rejects.parquet")
    assert result.rows_in == 321
    assert Counter(rejects["reason"]) == {"image_missing": 310}
    pairs = read_table("pairs", tmp_path / "ingest/pairs.parquet")
    assert len(pairs) == 11 and pairs["caption_index"].max() == 1
    assert set(pairs["source_label"].dropna()) <= {r["disease_label"] for r in rows}


def test_folder_adapter_with_captions_csv_and_escapes(tmp_path):
    """Plain folder + captions CSV: multi-caption rows, missing images and escaping paths are rejects."""
    root = tmp_path / "imgs"
    root.mkdir()
    Image.new("RGB", (40, 40), (10, 20, 30)).save(root / "a.jpg")
    Image.new("RGB", (40, 40), (200, 20, 30)).save(root / "b.png")
    (tmp_path / "outside.jpg").write_bytes((root / "a.jpg").read_bytes())
    (root / "link.jpg").symlink_to(tmp_path / "outside.jpg")
    captions = tmp_path / "captions.csv"
    captions.write_text("image_path,caption\na.jpg,first\na.jpg,second\nghost.jpg,nothing here\nlink.jpg,escapes\n", encoding="utf-8")
    params = _params(tmp_path, [{"name": "mine", "adapter": "folder", "path": str(root), "captions_csv": str(captions)}])
    result = ingest.run(params)
    rejects = read_table("rejects", tmp_path / "ingest/rejects.parquet")
    assert result.rows_in == result.rows_out + result.rejected
    reasons = Counter(rejects["reason"])
    assert reasons["image_missing"] == 1            # ghost.jpg
    assert reasons["caption_missing"] == 1          # b.png: no caption, not in a class folder
    assert reasons["path_outside_root"] == 1        # link.jpg points out of the root
    pairs = read_table("pairs", tmp_path / "ingest/pairs.parquet")
    assert sorted(pairs["caption"]) == ["first", "second"]

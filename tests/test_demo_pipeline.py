"""The demo corpus through every data stage: each planted case is found, every row accounted for.

The corpus is written in the raw layouts of Derm1M's five source kinds and read by the real
adapters (params.yaml: ingest.sources), so these tests also run every layout end to end.
"""

from __future__ import annotations

import csv
import filecmp
import hashlib
import json
import tarfile
from collections import Counter
from pathlib import Path

import pandas as pd
import webdataset as wds

from pipeline.demo.captions import FILLER_SENTENCES, LONG_NARRATION, VIDEO_INTRO
from pipeline.demo.generator import SOURCES, demo_sources, generate_demo_corpus
from pipeline.sources.forum import ForumAdapter
from pipeline.stages import shard
from pipeline.stages.ingest import build_adapters
from pipeline.tables import read_table
from pipeline.text.ontology import Ontology
from pipeline.text.truncate import CaptionTruncator


def _tables(corpus: dict) -> dict[str, pd.DataFrame]:
    root = corpus["root"]
    return {
        "pairs": read_table("pairs", root / "data/ingest/pairs.parquet"),
        "images": read_table("images", root / "data/ingest/images.parquet"),
        "rejects": read_table("rejects", root / "data/ingest/rejects.parquet"),
        "clusters": read_table("clusters", root / "data/dedup/clusters.parquet"),
        "splits": read_table("splits", root / "data/split/splits.parquet"),
        "annotations": read_table("annotations", root / "data/annotate/annotations.parquet"),
        "captions": read_table("captions", root / "data/truncate/captions.parquet"),
        "manifest": read_table("shard_index", root / "shards/manifest.parquet"),
        "metadata": read_table("metadata", root / "data/metadata/metadata.parquet"),
    }


def test_every_planted_bad_input_is_rejected_with_its_reason(corpus):
    t = _tables(corpus)
    truth = corpus["truth"]
    assert dict(Counter(t["rejects"]["reason"])) == truth["rejects"]
    by_record = dict(zip(t["rejects"]["record_id"], t["rejects"]["reason"], strict=True))
    assert by_record == truth["rejected_records"]


def test_ingest_accounts_for_every_record(corpus):
    t = _tables(corpus)
    truth = corpus["truth"]
    per_source = Counter({a.name: sum(1 for _ in a.records()) for a in build_adapters(corpus["params"])})
    assert per_source == {s["name"]: s["records"] for s in truth["sources"].values()}
    n_records = sum(per_source.values())
    assert n_records == truth["n_records"]
    assert n_records == len(t["pairs"]) + len(t["rejects"])
    assert len(t["pairs"]) == truth["n_pairs"]
    assert set(t["pairs"]["source_record_id"]) == set(truth["records"])
    assert t["pairs"]["pair_id"].is_unique


def test_params_read_the_demo_with_one_real_adapter_per_source_kind(corpus):
    from conftest import repo_params

    params = repo_params()
    assert params["ingest"]["sources"] == demo_sources(params["demo"]["out"])
    assert {s["adapter"] for s in params["ingest"]["sources"]} == {
        "video", "article_figures", "forum", "textbook", "public_dataset"}
    pairs = _tables(corpus)["pairs"]
    assert set(pairs["source"]) == {s["name"] for s in SOURCES.values()}
    demo = Path(corpus["params"]["demo"]["out"])
    assert not (demo / "records.csv").exists()
    for kind in SOURCES.values():
        assert (demo / kind["folder"]).is_dir(), kind


def test_video_frames_get_exactly_their_own_narration(corpus):
    pairs = _tables(corpus)["pairs"]
    truth = corpus["truth"]["records"]
    video = pairs[pairs["source"] == SOURCES["video"]["name"]]
    assert len(video) > 0 and video["group_key"].notna().all()
    for rid, text in zip(video["source_record_id"], video["caption"], strict=True):
        facts = truth[rid]
        assert text.startswith(("So here", "Now in this one", "Okay, look at")), text
        assert f"typical of {facts['condition_text']}." in text and text.count("typical of") == 1, text
        assert not any(f in text for f in [*FILLER_SENTENCES, VIDEO_INTRO]), text
    assert video["caption"].str.endswith(LONG_NARRATION[-1]).any()


def test_compound_figures_forum_languages_and_cross_source_copies(corpus):
    pairs = _tables(corpus)["pairs"]
    truth = corpus["truth"]
    pmc = pairs[pairs["source"] == SOURCES["pmc"]["name"]]
    panels = pmc[pmc["source_record_id"].str.count("/") == 2]
    assert len(panels) >= 2
    for rid, text in zip(panels["source_record_id"], panels["caption"], strict=True):
        assert "(A)" not in text and "(B)" not in text and truth["records"][rid]["condition_text"] in text
    forum = [a for a in build_adapters(corpus["params"]) if isinstance(a, ForumAdapter)][0]
    flagged = {rid: lang for rid, (lang, non_english) in forum.languages().items() if non_english}
    expected = {rid: f["language"] for rid, f in truth["records"].items() if f["language"] != "en"}
    assert expected and flagged == expected
    forum_pairs = pairs[pairs["source"] == SOURCES["forum"]["name"]]
    assert (forum_pairs.groupby("source_record_id").size() == 1).all()
    assert forum_pairs.groupby(forum_pairs["source_record_id"].str.rsplit("/", n=1).str[0]).size().max() > 1
    cross = [c for c in truth["copies"] if c["cross_source"]]
    assert any(c["kind"] == "exact" for c in cross)
    assert all(c["path"].split("/")[0] != c["original"].split("/")[0] for c in cross)


def test_public_patients_are_group_keys_kept_in_one_split(corpus):
    t = _tables(corpus)
    patients = corpus["truth"]["public_patients"]
    assert any(len(rids) > 1 for rids in patients.values())
    public = t["pairs"][t["pairs"]["source"] == SOURCES["public"]["name"]].set_index("source_record_id")
    for patient, rids in patients.items():
        assert set(public.loc[rids, "group_key"]) == {patient}
    grouped = t["metadata"].dropna(subset=["group_key"]).groupby(["source", "group_key"])["split"].nunique()
    assert (grouped == 1).all()


def test_generator_is_byte_identical_from_the_seed(tmp_path):
    from conftest import small_params

    params = small_params(tmp_path)
    params["demo"].update(n_unique_images=30, n_exact_copies=3, n_reencoded=2, n_resized=2, n_cropped=2,
                          n_multi_caption=4)
    digests = []
    for run in ("a", "b"):
        out = tmp_path / run
        generate_demo_corpus(params, out)
        digests.append({p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
                        for p in sorted(out.rglob("*")) if p.is_file()})
    assert digests[0] == digests[1] and len(digests[0]) > 40


def test_every_planted_duplicate_is_clustered_and_nothing_else(corpus):
    t = _tables(corpus)
    truth = corpus["truth"]
    joined = t["images"].merge(t["clusters"], on="image_id")
    demo_root = corpus["params"]["demo"]["out"]
    cluster_of = {Path(p).relative_to(demo_root).as_posix(): c for p, c in zip(joined["path"], joined["cluster_id"], strict=True)}
    assert joined["cluster_id"].nunique() == truth["n_clusters"]
    for copy in truth["copies"]:
        assert cluster_of[copy["path"]] == cluster_of[copy["original"]], copy
    assert (t["clusters"].groupby("cluster_id").size() > 1).sum() == truth["n_clusters_with_copies"]
    kinds = Counter(t["clusters"]["match_kind"])
    assert kinds["exact"] == sum(c["kind"] == "exact" for c in truth["copies"])
    assert kinds["canonical"] == truth["n_clusters"]
    # The canonical image is the largest of its cluster.
    sizes = joined.assign(px=joined["width"] * joined["height"])
    canon_px = sizes[sizes["is_canonical"]].set_index("cluster_id")["px"]
    assert (sizes.groupby("cluster_id")["px"].max() == canon_px.loc[sizes.groupby("cluster_id")["px"].max().index]).all()


def test_exif_rotation_and_multi_caption_images(corpus):
    t = _tables(corpus)
    demo_root = Path(corpus["params"]["demo"]["out"])
    images = t["images"].assign(rel=[Path(p).relative_to(demo_root).as_posix() for p in t["images"]["path"]])
    for rotated in corpus["truth"]["exif_rotated"]:
        row = images[images["rel"] == rotated["path"]].iloc[0]
        assert (row["width"], row["height"]) == (rotated["width"], rotated["height"])
        assert row["exif_orientation"] == 6
    per_image = t["pairs"].merge(images[["image_id", "rel"]], on="image_id").groupby("rel").size()
    for multi in corpus["truth"]["multi_caption_images"]:
        assert per_image[multi["path"]] == multi["n_captions"]


def test_no_cluster_spans_two_splits(corpus):
    t = _tables(corpus)
    per_cluster = t["metadata"].groupby("cluster_id")["split"].nunique()
    assert (per_cluster == 1).all()
    assert set(t["splits"]["split"]) == {"train", "validation", "holdout"}
    assert len(t["splits"]) == t["clusters"]["cluster_id"].nunique()


def test_shards_hold_every_pair_once_and_match_sizes(corpus):
    t = _tables(corpus)
    root = corpus["root"] / "shards"
    assert len(t["manifest"]) == len(t["pairs"])
    assert t["manifest"]["key"].is_unique and not t["manifest"]["key"].str.contains(r"\.").any()
    for split in ("train", "validation", "holdout"):
        sizes = json.loads((root / split / "sizes.json").read_text())
        for tar_name, n in sizes.items():
            with tarfile.open(root / split / tar_name) as tar:
                names = tar.getnames()
                # jpg, txt, json + one member per enriched caption kind (shard.text_variants)
                assert len(names) == (3 + len(corpus["params"]["shard"]["text_variants"])) * n
                assert all(m.mtime == 0 for m in tar.getmembers())
        samples = list(wds.WebDataset(sorted(str(p) for p in (root / split).glob("*.tar")), shardshuffle=False).decode("pil"))
        assert len(samples) == sum(sizes.values())
        first = samples[0]
        meta = json.loads(first["json"]) if isinstance(first["json"], (bytes, str)) else first["json"]
        assert meta["split"] == split and first["jpg"].mode == "RGB"
        assert max(first["jpg"].size) <= corpus["params"]["shard"]["max_side"]


def test_shards_rebuild_byte_identical(corpus, tmp_path):
    params = json.loads(json.dumps(corpus["params"]))
    params["shard"]["out"] = str(tmp_path / "shards")
    shard.run(params)
    first, second = corpus["root"] / "shards", tmp_path / "shards"
    tars = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert tars and tars == sorted(p.relative_to(second) for p in second.rglob("*") if p.is_file())
    for rel in tars:
        assert filecmp.cmp(first / rel, second / rel, shallow=False), rel


def test_metadata_joins_everything_and_exports_release_layout(corpus):
    t = _tables(corpus)
    assert len(t["metadata"]) == len(t["manifest"])
    assert t["metadata"]["disease_label"].notna().all()
    with open(corpus["root"] / "data/metadata/derm1m_release.csv", newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        rows = list(reader)
    assert reader.fieldnames == ["filename", "caption", "truncated_caption", "source", "source_type", "disease_label",
                                 "hierarchical_disease_label", "skin_concept", "body_location", "symptoms", "age", "gender"]
    assert len(rows) == len(t["metadata"])


def test_annotations_recover_what_the_captions_state(corpus):
    t = _tables(corpus)
    truth = corpus["truth"]["records"]
    frame = t["pairs"].merge(t["annotations"], on="pair_id")
    english = {rid for rid, facts in truth.items() if facts["language"] == "en"}
    frame = frame[frame["source_record_id"].isin(english)]
    expected = frame["source_record_id"].map(lambda r: truth[r]["condition"])
    onto = Ontology.load(corpus["params"]["annotate"]["ontology"])
    # The planted condition, or a subtype the caption names ("plaque psoriasis" for psoriasis).
    hit = [any(e in onto.path(label) for label in labels) for e, labels in zip(expected, frame["disease_labels"], strict=True)]
    assert sum(hit) / len(hit) >= 0.95
    for rid, concepts, sites, age, sex in zip(frame["source_record_id"], frame["skin_concepts"], frame["body_locations"],
                                              frame["age_years"], frame["sex"], strict=True):
        facts = truth[rid]
        if facts["negated"] is not None:
            assert facts["negated"] not in list(concepts), (rid, facts)
        if facts["age"] is not None:
            assert age == facts["age"], (rid, facts)
        if facts["sex"] is not None:
            assert sex == facts["sex"], (rid, facts)
        assert facts["site"] in list(sites), (rid, facts, list(sites))


def test_truncated_captions_fit_the_tokenizer(corpus):
    t = _tables(corpus)
    truncator = CaptionTruncator()
    assert (t["captions"]["n_tokens_kept"] <= 77).all()
    assert (t["captions"]["cut"] != "none").sum() > 0, "the demo plants long narrations"
    assert ((t["captions"]["n_tokens"] > 77) == (t["captions"]["cut"] != "none")).all()
    for text in t["captions"]["truncated_caption"].head(50):
        assert truncator.count(text) <= 77

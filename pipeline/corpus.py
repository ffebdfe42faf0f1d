"""Join the stage tables into one frame per pair: what the shards carry and the metadata holds.

One function used by both the shard and metadata stages, so the JSON inside a tar and the
final metadata table can never disagree.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from pipeline.params import section
from pipeline.tables import read_table


def table_paths(params: dict) -> dict[str, Path]:
    out = {name: Path(section(params, name, {"out": str})["out"]) for name in ("ingest", "dedup", "annotate", "truncate", "split")}
    paths = {
        "pairs": out["ingest"] / "pairs.parquet",
        "images": out["ingest"] / "images.parquet",
        "clusters": out["dedup"] / "clusters.parquet",
        "annotations": out["annotate"] / "annotations.parquet",
        "captions": out["truncate"] / "captions.parquet",
        "splits": out["split"] / "splits.parquet",
    }
    if "enrich" in params:  # a corpus built before the enrich stage existed has no such section
        paths["enriched_captions"] = Path(section(params, "enrich", {"out": str})["out"]) / "enriched_captions.parquet"
    return paths


ENRICHED_COLUMNS = ["ontology_caption", "concept_caption", "llm_caption"]


def join_corpus(params: dict) -> pd.DataFrame:
    """Every pair whose image survived dedup, with its cluster, canonical image, labels, enriched
    captions and split.

    Pairs whose image was rejected by dedup are not in the result; callers account for them.
    """
    paths = table_paths(params)
    pairs = read_table("pairs", paths["pairs"])
    images = read_table("images", paths["images"])
    clusters = read_table("clusters", paths["clusters"])
    annotations = read_table("annotations", paths["annotations"])
    captions = read_table("captions", paths["captions"])
    splits = read_table("splits", paths["splits"])
    if "enriched_captions" in paths:
        enriched = read_table("enriched_captions", paths["enriched_captions"])[["pair_id", *ENRICHED_COLUMNS]]
    else:
        enriched = pairs[["pair_id"]].assign(**{c: None for c in ENRICHED_COLUMNS})
    canon = images[["image_id", "path", "width", "height"]].rename(columns={
        "image_id": "canonical_image_id", "path": "canonical_path", "width": "canonical_width", "height": "canonical_height"})
    frame = (pairs.merge(clusters[["image_id", "cluster_id", "canonical_image_id", "match_kind", "distance_to_canonical", "cluster_size"]],
                         on="image_id", how="inner")
             .merge(canon, on="canonical_image_id", how="left")
             .merge(images[["image_id", "path", "sha256"]], on="image_id", how="left")
             .merge(captions, on="pair_id", how="left")
             .merge(annotations, on="pair_id", how="left")
             .merge(enriched, on="pair_id", how="left")
             .merge(splits, on="cluster_id", how="left"))
    return frame.sort_values("pair_id", ignore_index=True)

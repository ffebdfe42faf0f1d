"""Stage ``dedup``: exact duplicates by SHA-256, near duplicates by pHash radius, then clusters.

Every image ends in exactly one cluster (singletons too) or in the rejects table. Exact links
join all files of one SHA-256; near links join distinct contents whose hashes are within
``dedup.radius``. All captions of a cluster follow its canonical image downstream.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pipeline import ids
from pipeline.executor import map_ordered
from pipeline.images.clusters import choose_canonical, components
from pipeline.images.hashing import HASH_METHOD, phash_file, popcount64, to_hex, to_signed
from pipeline.images.neardup import pairs_within
from pipeline.params import section
from pipeline.rejects import Reject
from pipeline.stages import StageResult, Timer
from pipeline.tables import read_table, write_table


def run(params: dict) -> StageResult:
    cfg = section(params, "dedup", {"out": str, "radius": int, "workers": int})
    ingest_out = Path(section(params, "ingest", {"out": str})["out"])
    out = Path(cfg["out"])
    with Timer(StageResult("dedup")) as result:
        images = read_table("images", ingest_out / "images.parquet").sort_values("image_id", ignore_index=True)
        result.rows_in = len(images)
        # Hash each distinct content once: byte-identical files share their hash.
        by_sha = images.drop_duplicates("sha256").sort_values("sha256")
        hashed = map_ordered(phash_file, by_sha["path"].tolist(), cfg["workers"], "phash", "img")
        sha_hash = {s: h for s, h in zip(by_sha["sha256"], hashed, strict=True)}
        rejects = [Reject("dedup", r.source, r.image_id, "hash_failed", "could not decode for hashing", r.path)
                   for r in images.itertuples() if sha_hash[r.sha256] is None]
        images = images[images["sha256"].map(lambda s: sha_hash[s] is not None)].reset_index(drop=True)
        clusters, edges = cluster_images(images, [sha_hash[s] for s in images["sha256"]], cfg["radius"])
        write_table(clusters, "clusters", out / "clusters.parquet")
        write_table(edges, "duplicate_edges", out / "duplicate_edges.parquet")
        write_table([r.row() for r in rejects], "rejects", out / "rejects.parquet")
        result.rows_out, result.rejected = len(clusters), len(rejects)
        result.extra = {"clusters": int(clusters["cluster_id"].nunique()) if len(clusters) else 0,
                        "exact links": int((edges["kind"] == "exact").sum()) if len(edges) else 0,
                        "near links": int((edges["kind"] == "near").sum()) if len(edges) else 0}
    return result


def cluster_images(images: pd.DataFrame, hashes: list[int], radius: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Cluster images (columns image_id, sha256, width, height, source_rank) given their pHashes."""
    n = len(images)
    h = to_signed(hashes)
    # Exact links: every file to the first file of its SHA-256 group.
    codes = pd.factorize(images["sha256"])[0]
    first_of = pd.Series(np.arange(n)).groupby(codes).transform("first").to_numpy()
    ex_i, ex_j = np.arange(n)[first_of != np.arange(n)], first_of[first_of != np.arange(n)]
    # Near links between distinct contents (one representative row per SHA-256).
    reps = np.flatnonzero(first_of == np.arange(n))
    ni, nj, nd = pairs_within(h[reps], radius)
    ni, nj = reps[ni], reps[nj]
    labels = components(n, np.r_[ex_i, ni], np.r_[ex_j, nj])
    canon = choose_canonical(images, labels)
    dist = popcount64(h.view(np.uint64) ^ h.view(np.uint64)[canon])
    size = np.bincount(labels)[labels]
    image_ids = images["image_id"].to_numpy()
    same_bytes = images["sha256"].to_numpy() == images["sha256"].to_numpy()[canon]
    is_canon = canon == np.arange(n)
    clusters = pd.DataFrame({
        "image_id": image_ids,
        "cluster_id": [ids.cluster_id(c) for c in image_ids[canon]],
        "canonical_image_id": image_ids[canon],
        "is_canonical": is_canon,
        "match_kind": np.where(is_canon, "canonical", np.where(same_bytes, "exact", "near")),
        "distance_to_canonical": dist,
        "cluster_size": size.astype(np.int32),
        "phash": [to_hex(x) for x in hashes],
        "hash_method": HASH_METHOD,
    })
    a = np.r_[ex_i, ni]
    b = np.r_[ex_j, nj]
    ida, idb = image_ids[a], image_ids[b]
    edges = pd.DataFrame({
        "image_id_a": np.minimum(ida, idb) if len(a) else [],
        "image_id_b": np.maximum(ida, idb) if len(a) else [],
        "kind": ["exact"] * len(ex_i) + ["near"] * len(ni),
        "distance": np.r_[np.zeros(len(ex_i), dtype=np.int8), nd].astype(np.int8),
    })
    return clusters, edges

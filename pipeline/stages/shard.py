"""Stage ``shard``: per split, WebDataset tars of (canonical image, truncated caption, metadata).

One sample per pair: every caption of a duplicate cluster is paired with the cluster's
canonical image, re-encoded once per shard. Accounting: pairs in = samples + rejects (pairs
whose image failed dedup hashing or re-encoding).
"""

from __future__ import annotations

import functools
from pathlib import Path

import pandas as pd

from pipeline.corpus import join_corpus, table_paths
from pipeline.executor import map_ordered
from pipeline.params import section
from pipeline.rejects import Reject
from pipeline.shards.writer import Sample, encode_jpeg, write_split
from pipeline.stages import StageResult, Timer
from pipeline.stages.split import SPLITS
from pipeline.tables import atomic_dir, read_table, write_table

# The metadata each sample's .json carries (the release columns plus ids and provenance).
META_COLUMNS = [
    "pair_id", "image_id", "canonical_image_id", "cluster_id", "split", "source", "source_type",
    "source_record_id", "licence", "caption", "truncated_caption", "disease_label",
    "hierarchical_disease_label", "skin_concept", "body_location", "symptoms", "age", "gender",
]


def run(params: dict) -> StageResult:
    cfg = section(params, "shard", {"out": str, "max_samples_per_shard": int, "max_side": int, "jpeg_quality": int})
    workers = section(params, "ingest", {"workers": int})["workers"]
    out = Path(cfg["out"])
    with Timer(StageResult("shard")) as result:
        pairs = read_table("pairs", table_paths(params)["pairs"])
        frame = join_corpus(params)
        result.rows_in = len(pairs)
        rejects = [Reject("shard", r.source, r.pair_id, "hash_failed", "image was rejected by dedup", None)
                   for r in pairs[~pairs["pair_id"].isin(frame["pair_id"])].itertuples()]
        encode = functools.partial(encode_jpeg, max_side=cfg["max_side"], quality=cfg["jpeg_quality"])
        paths = dict(zip(frame["pair_id"], frame["canonical_path"], strict=True))

        def jpeg_of(chunk: list[Sample]) -> list[bytes | None]:
            unique = sorted({paths[s.pair_id] for s in chunk})
            encoded = dict(zip(unique, map_ordered(encode, unique, workers, "encode", "img"), strict=True))
            return [encoded[paths[s.pair_id]] for s in chunk]

        index_rows: list[dict] = []
        for split in SPLITS:
            rows = frame[frame["split"] == split]
            with atomic_dir(out / split) as tmp:
                written, _, failed = write_split(split, _samples(rows), tmp, cfg["max_samples_per_shard"], jpeg_of)
            rejects += [Reject("shard", s.meta["source"], s.pair_id, "shard_image_failed",
                               "canonical image could not be re-encoded", paths[s.pair_id]) for s in failed]
            index_rows += written
        write_table(index_rows, "shard_index", out / "manifest.parquet")
        write_table([r.row() for r in rejects], "rejects", out / "rejects.parquet")
        result.rows_out, result.rejected = len(index_rows), len(rejects)
        result.extra = {s: sum(r["split"] == s for r in index_rows) for s in SPLITS}
    return result


def _samples(rows: pd.DataFrame) -> list[Sample]:
    meta = rows[META_COLUMNS].astype(object).where(rows[META_COLUMNS].notna(), None).to_dict("records")
    return [Sample(key=m["pair_id"], pair_id=m["pair_id"], image_id=m["canonical_image_id"],
                   text=m["truncated_caption"], meta=m) for m in meta]

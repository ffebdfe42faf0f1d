"""Stage ``metadata``: the final joined table and an export in Derm1M's release CSV layout.

Rows are exactly the samples in the shards (joined with the shard manifest), so a DuckDB query
over ``metadata`` describes what a model trains on.
"""

from __future__ import annotations

import csv
from pathlib import Path

from pipeline.corpus import join_corpus
from pipeline.csvsafe import neutralise_frame
from pipeline.params import section
from pipeline.stages import StageResult, Timer
from pipeline.tables import atomic_dir, load_schema, read_table, write_table

RELEASE_CSV_COLUMNS = ["filename", "caption", "truncated_caption", "source", "source_type", "disease_label",
                       "hierarchical_disease_label", "skin_concept", "body_location", "symptoms", "age", "gender"]


def run(params: dict) -> StageResult:
    cfg = section(params, "metadata", {"out": str})
    shard_out = Path(section(params, "shard", {"out": str})["out"])
    out = Path(cfg["out"])
    with Timer(StageResult("metadata")) as result:
        frame = join_corpus(params)
        manifest = read_table("shard_index", shard_out / "manifest.parquet")
        result.rows_in = len(frame)
        frame = frame.merge(manifest[["pair_id", "shard", "index_in_shard"]], on="pair_id", how="inner")
        frame = frame.rename(columns={"canonical_path": "filename"})
        frame["width"], frame["height"] = frame["canonical_width"], frame["canonical_height"]
        table = frame[load_schema("metadata").names]
        with atomic_dir(out) as tmp:   # the table and its CSV export appear together or not at all
            write_table(table, "metadata", tmp / "metadata.parquet")
            release = neutralise_frame(table.sort_values("pair_id")[RELEASE_CSV_COLUMNS])   # no formula cells
            release.to_csv(tmp / "derm1m_release.csv", index=False, quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
        result.rows_out = len(table)
    return result

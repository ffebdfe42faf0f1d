"""Stage ``metadata``: the final joined table and an export in Derm1M's release CSV layout.

Rows are exactly the samples in the shards (the corpus join, :func:`pipeline.corpus.join_sql`,
joined with the shard manifest), so a DuckDB query over ``metadata`` describes what a model
trains on. The join runs in DuckDB and streams, in pair id order, into the table writer and the
CSV batch by batch, so memory stays flat in the corpus size.
"""

from __future__ import annotations

import csv
from pathlib import Path

from pipeline.corpus import (
    BATCH_ROWS,
    CHUNK_PAIRS,
    duckdb_scratch,
    join_corpus,
    skeleton_sql,
    table_source,
)
from pipeline.csvsafe import neutralise_frame
from pipeline.executor import resolve_workers
from pipeline.params import section
from pipeline.stages import StageResult, Timer
from pipeline.tables import TableWriter, atomic_dir, load_schema

#: Rows per parquet row group: the writer holds one group (a metadata row is ~1.5 KB), so this
#: bounds the stage's memory; a table of up to this many rows is one group, as before.
ROW_GROUP_ROWS = 65_536
RELEASE_CSV_COLUMNS = ["filename", "caption", "truncated_caption", "source", "source_type", "disease_label",
                       "hierarchical_disease_label", "skin_concept", "body_location", "symptoms", "age", "gender"]
# metadata columns the corpus join names differently
_RENAMED = {"filename": "canonical_path", "width": "canonical_width", "height": "canonical_height"}


def run(params: dict, batch_rows: int = BATCH_ROWS, chunk_pairs: int = CHUNK_PAIRS) -> StageResult:
    """Write metadata.parquet and derm1m_release.csv; ``batch_rows`` and ``chunk_pairs`` (how the
    join is read, see :func:`pipeline.corpus.join_corpus`) change no byte."""
    cfg = section(params, "metadata", {"out": str})
    manifest = table_source("shard_index", Path(section(params, "shard", {"out": str})["out"]) / "manifest.parquet")
    workers = section(params, "ingest", {"workers": int})["workers"]
    out = Path(cfg["out"])
    joined = {"shard": "m.shard", "index_in_shard": "m.index_in_shard"}
    columns = [f"{joined.get(c, 'j.' + _RENAMED.get(c, c))} as {c}" for c in load_schema("metadata").names]
    with Timer(StageResult("metadata")) as result, duckdb_scratch(out.parent, resolve_workers(workers)) as con:
        result.rows_in = int(con.execute(f"select count(*) from ({skeleton_sql(params)})").fetchall()[0][0])
        # The manifest is read a chunk at a time too (chunk_pairs: see join_corpus).
        batches = join_corpus(con, params, order_by=("j.pair_id",), columns=columns, batch_rows=batch_rows,
                              join=f"join (select pair_id, shard, index_in_shard from {manifest} where pair_id in "
                                   "(select pair_id from chunk_pairs)) m on m.pair_id = j.pair_id",
                              chunk_pairs=chunk_pairs)
        with atomic_dir(out) as tmp:   # the table and its CSV export appear together or not at all
            with TableWriter("metadata", tmp / "metadata.parquet", ROW_GROUP_ROWS) as table, \
                    open(tmp / "derm1m_release.csv", "w", encoding="utf-8", newline="") as fh:
                for n, batch in enumerate(batches):
                    table.write(batch)
                    release = neutralise_frame(batch.select(RELEASE_CSV_COLUMNS).to_pandas())  # no formula cells
                    release.to_csv(fh, index=False, header=n == 0, quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
                if table.rows == 0:
                    fh.write(",".join(RELEASE_CSV_COLUMNS) + "\n")
            result.rows_out = table.rows
    return result

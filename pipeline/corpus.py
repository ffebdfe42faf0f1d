"""Join the stage tables into one row per pair: what the shards carry and the metadata holds.

One query (:func:`join_sql`) used by both the shard and metadata stages, so the JSON inside a
tar and the final metadata table can never disagree. It runs in DuckDB over the parquet files
in place, and its rows are streamed out in Arrow record batches (:func:`join_corpus`): the join
and the sort run out of core (``memory_limit`` with a ``temp_directory`` to spill to), so
memory stays flat whether the corpus has 500 pairs or Derm1M's million, where the seven
whole-table pandas merges this replaced needed ~8 GB.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pyarrow as pa

from pipeline.params import section
from pipeline.tables import read_table_schema

#: Arrow rows per batch handed to Python: big enough that per-batch costs vanish, small enough
#: that a batch of wide rows (captions, label lists) is a few MB.
BATCH_ROWS = 4096
#: DuckDB's memory ceiling for the join and sort; beyond it they spill to the scratch folder.
MEMORY_LIMIT = "1GB"
#: Pairs joined at a time (see :func:`join_corpus`): ~300 MB of DuckDB memory with Derm1M-length
#: captions; the chunk's per-pair tables are all DuckDB holds, so memory does not grow past it.
CHUNK_PAIRS = 50_000

ENRICHED_COLUMNS = ["ontology_caption", "concept_caption", "llm_caption"]

# The joined columns besides the seven tables' own: the canonical image's file and size (the
# pixels a sample carries), its SHA-256 (the shard fingerprint's "source bytes") and how ingest
# decoded it (whether the shard may copy it as it is).
_CANONICAL = ("c.path as canonical_path, c.width as canonical_width, c.height as canonical_height, "
              "c.sha256 as canonical_sha256, c.format as canonical_format, c.mode as canonical_mode, "
              "c.exif_orientation as canonical_exif_orientation")


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


def _literal(path: Path | str) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def table_source(name: str, path: Path) -> str:
    """``read_parquet(path)`` after checking the file exists and still matches its schema."""
    read_table_schema(name, path)
    return f"read_parquet({_literal(path)})"


def join_sql(params: dict, where: str = "", order_by: Sequence[str] = ("pair_id",),
             columns: Sequence[str] | None = None, join: str = "", pairs: str = "") -> str:
    """The corpus join: every pair whose image survived dedup (inner join on clusters) with its
    cluster, canonical image, own image's path and SHA-256, truncated caption, labels, enriched
    captions and split (left joins: a missing row is nulls, as the pandas merges gave).

    Pairs whose image was rejected by dedup are not in the result; callers account for them.
    ``where`` filters the joined rows (``split = 'train'``), ``order_by`` sorts them and
    ``columns`` picks output columns (all when None); all three name the joined columns, whose
    relation is ``j``. ``join`` joins more to it (``join manifest m on m.pair_id = j.pair_id``).
    ``pairs`` is a condition on ``pair_id`` applied to every per-pair table as it is read (a
    chunk of the corpus, see :func:`join_corpus`), so their hash tables hold that chunk only.
    """
    paths = table_paths(params)

    def per_pair(name: str, cols: str = "*") -> str:
        return f"(select {cols} from {table_source(name, paths[name])}{f' where {pairs}' if pairs else ''})"

    if "enriched_captions" in paths:
        enriched = f"left join {per_pair('enriched_captions', ', '.join(['pair_id', *ENRICHED_COLUMNS]))} e using (pair_id)"
        enriched_cols = ", ".join(f"e.{c}" for c in ENRICHED_COLUMNS)
    else:
        enriched, enriched_cols = "", ", ".join(f"cast(null as varchar) as {c}" for c in ENRICHED_COLUMNS)
    images = table_source("images", paths["images"])
    body = (
        f"select p.*, k.cluster_id, k.canonical_image_id, k.match_kind, k.distance_to_canonical, k.cluster_size, "
        f"{_CANONICAL}, i.path, i.sha256, t.* exclude (pair_id), a.* exclude (pair_id), {enriched_cols}, "
        f"s.split_group, s.split "
        f"from {per_pair('pairs')} p "
        f"join {table_source('clusters', paths['clusters'])} k using (image_id) "
        f"left join {images} c on c.image_id = k.canonical_image_id "
        f"left join {images} i on i.image_id = p.image_id "
        f"left join {per_pair('captions')} t using (pair_id) "
        f"left join {per_pair('annotations')} a using (pair_id) "
        f"{enriched} "
        f"left join {table_source('splits', paths['splits'])} s using (cluster_id)"
    )
    order = ", ".join(order_by)
    return (f"select {', '.join(columns) if columns else '*'} from ({body}) j {join} "
            f"{f'where {where}' if where else ''} {f'order by {order}' if order else ''}")


def skeleton_sql(params: dict) -> str:
    """The join's narrow part, one row per pair whose image survived dedup: ``pair_id, source,
    image_id, path, cluster_id, canonical_image_id, canonical_path, split`` (null when the
    cluster has no split). For counts, rejects and chunk bounds: no hash table of captions."""
    paths = table_paths(params)
    images = table_source("images", paths["images"])
    return (f"select p.pair_id, p.source, p.image_id, i.path, k.cluster_id, k.canonical_image_id, "
            f"c.path as canonical_path, s.split "
            f"from (select pair_id, source, image_id from {table_source('pairs', paths['pairs'])}) p "
            f"join {table_source('clusters', paths['clusters'])} k using (image_id) "
            f"left join {images} c on c.image_id = k.canonical_image_id "
            f"left join {images} i on i.image_id = p.image_id "
            f"left join {table_source('splits', paths['splits'])} s using (cluster_id)")


@contextmanager
def duckdb_scratch(folder: Path, threads: int | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
    """An in-memory DuckDB connection that spills to a scratch folder made inside ``folder``.

    The scratch is named like every temporary of this project (``.duckdb.<pid>.<random>.tmp``)
    and removed on the way out; one left by a killed run is swept by the next run's output write
    into the same folder (:func:`pipeline.tables.clean_stale_temps`), so give the folder the
    stage writes its outputs in. It is on the disk that has room for the outputs, not in /tmp.
    ``threads`` defaults to the cores; the ceiling is :data:`MEMORY_LIMIT`.
    """
    folder.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".duckdb.{os.getpid()}.", suffix=".tmp", dir=folder))
    con = duckdb.connect(":memory:")
    try:
        con.execute(f"set temp_directory = {_literal(scratch)}")
        con.execute(f"set memory_limit = '{MEMORY_LIMIT}'")
        con.execute(f"set threads = {max(1, int(threads or os.cpu_count() or 1))}")
        yield con
    finally:
        con.close()
        shutil.rmtree(scratch, ignore_errors=True)


def join_corpus(con: duckdb.DuckDBPyConnection, params: dict, where: str = "",
                order_by: Sequence[str] = ("pair_id",), columns: Sequence[str] | None = None,
                batch_rows: int = BATCH_ROWS, join: str = "", chunk_pairs: int = CHUNK_PAIRS) -> Iterator[pa.RecordBatch]:
    """Stream the corpus join (:func:`join_sql`) as Arrow record batches of ``batch_rows`` rows.

    The join runs on chunks of about ``chunk_pairs`` pairs, consecutive in ``order_by[0]``
    (``pair_id`` or ``canonical_image_id``, which must lead the order): the chunk's pair ids go
    to a temporary table ``chunk_pairs`` (``join`` may use it too) that every per-pair table is
    filtered by as it is read. So DuckDB's hash tables and sort hold one chunk, whatever the
    corpus size: memory is flat. The rows, and so the caller's output, are the same whatever
    ``batch_rows`` and ``chunk_pairs``.
    """
    if batch_rows < 1 or chunk_pairs < 1:
        raise ValueError(f"batch_rows and chunk_pairs must be >= 1, got {batch_rows}, {chunk_pairs}")
    key = order_by[0] if order_by else ""
    if key not in ("pair_id", "canonical_image_id", "j.pair_id", "j.canonical_image_id"):
        raise ValueError(f"join_corpus: order_by must start with pair_id or canonical_image_id, got {order_by!r}")
    key = key.removeprefix("j.")
    paths = table_paths(params)
    keys = (f"(select p.pair_id, k.canonical_image_id from (select pair_id, image_id from "
            f"{table_source('pairs', paths['pairs'])}) p join (select image_id, canonical_image_id from "
            f"{table_source('clusters', paths['clusters'])}) k using (image_id))")
    # Chunk bounds: every chunk_pairs-th pair in key order (a key's pairs stay in one chunk).
    bounds = [b for (b,) in con.execute(
        f"select distinct {key} from (select {key}, row_number() over (order by {key}, pair_id) - 1 as r "
        f"from {keys}) where r > 0 and r % {int(chunk_pairs)} = 0 order by 1").fetchall()]
    edges: list[str | None] = [None, *bounds, None]
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        cond = " and ".join([*([f"{key} >= {_literal(lo)}"] if lo is not None else []),
                             *([f"{key} < {_literal(hi)}"] if hi is not None else [])]) or "true"
        con.execute(f"create or replace temp table chunk_pairs as select pair_id from {keys} where {cond}")
        pairs = "pair_id in (select pair_id from chunk_pairs)"
        if key == "pair_id":   # a range the parquet readers can also skip row groups by
            pairs = f"{cond} and {pairs}"
        reader = con.sql(join_sql(params, where, order_by, columns, join, pairs)).to_arrow_reader(batch_rows)
        for batch in reader:
            if batch.num_rows:
                yield batch
    con.execute("drop table if exists chunk_pairs")


def rows_of(batches: Iterator[pa.RecordBatch]) -> Iterator[dict]:
    """The rows of record batches as dicts (column -> Python value), one batch converted at a time."""
    for batch in batches:
        yield from batch.to_pylist()

"""Stage ``shard``: per split, WebDataset tars of (canonical image, truncated caption(s), metadata).

``shard.captions: pair`` (default) writes one sample per pair: every caption of a duplicate
cluster is paired with the cluster's canonical image, as Derm1M's pretraining CSV does.
``cluster`` writes one sample per canonical image carrying all its captions as ``txt``,
``txt.1``, ... so a loader can pick one per epoch (``pipeline.shards.reader.pick_caption``)
instead of seeing the same pixels several times an epoch. ``shard.text_variants`` adds the
enrich stage's captions as ``<key>.ontology.txt``, ``<key>.concept.txt`` (``.llm.txt``),
aligned per caption (``ontology.txt.1`` goes with ``txt.1``). Accounting either way: pairs in =
index rows + rejects (pairs whose image failed dedup hashing or re-encoding).

Unchanged tars are not rewritten (see ``pipeline.shards.writer``); DVC keeps the previous
build in place because the split folders are ``persist: true`` outs.

Kill-safe and resumable: each split is built in ``shards/.<split>.partial`` and the three
folders and two tables are published together (:class:`pipeline.tables.Publication`), so a
killed run leaves the previous shards intact. The next run moves a killed run's partial folder
to ``shards/.<split>.resume`` and reuses the tars it had completed (same fingerprint test as for
the previous build), then deletes it.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import duckdb

from pipeline.corpus import (
    BATCH_ROWS,
    CHUNK_PAIRS,
    duckdb_scratch,
    join_corpus,
    rows_of,
    skeleton_sql,
    table_paths,
    table_source,
)
from pipeline.errors import ConfigError
from pipeline.executor import make_executor, resolve_workers
from pipeline.faults import kill_point
from pipeline.params import section
from pipeline.rejects import Reject
from pipeline.shards.writer import Sample, ShardOptions, encode_samples, merge_progress, write_split
from pipeline.stages import StageResult, Timer
from pipeline.stages.split import SPLITS
from pipeline.tables import Publication, TableWriter, partial_dir, write_table

log = logging.getLogger(__name__)

# The metadata each sample's .json carries (the release columns plus ids and provenance).
META_COLUMNS = [
    "pair_id", "image_id", "canonical_image_id", "cluster_id", "split", "source", "source_type",
    "source_record_id", "licence", "caption", "truncated_caption", "disease_label",
    "hierarchical_disease_label", "skin_concept", "body_location", "symptoms", "age", "gender",
]
CAPTION_MODES = ("pair", "cluster")
# shard.text_variants name -> the enriched_captions column written as <key>.<name>.txt
TEXT_VARIANTS = {"ontology": "ontology_caption", "concept": "concept_caption", "llm": "llm_caption"}
_CONFIG = {"out": str, "max_samples_per_shard": int, "max_shard_bytes": int, "max_side": int,
           "jpeg_quality": int, "skip_reencode": bool, "captions": str, "min_train_shards": int,
           "text_variants": list}


def run(params: dict, batch_rows: int = BATCH_ROWS, chunk_pairs: int = CHUNK_PAIRS) -> StageResult:
    """Write the shards; ``batch_rows`` and ``chunk_pairs`` (how the join is read, see
    :func:`pipeline.corpus.join_corpus`) change no byte."""
    cfg = section(params, "shard", _CONFIG)
    if cfg["captions"] not in CAPTION_MODES:
        raise ConfigError(f"params.yaml: shard.captions {cfg['captions']!r} is not one of {list(CAPTION_MODES)}")
    if not 1 <= cfg["jpeg_quality"] <= 95 or cfg["max_side"] < 16:
        raise ConfigError("params.yaml: shard.jpeg_quality must be 1..95 and shard.max_side >= 16")
    variants = cfg["text_variants"]
    bad = [v for v in variants if not isinstance(v, str) or v not in TEXT_VARIANTS]
    if bad or len(set(variants)) != len(variants):
        raise ConfigError(f"params.yaml: shard.text_variants {variants!r}: each must be one of {list(TEXT_VARIANTS)}, "
                          f"listed once ([] = no variants)")
    workers = section(params, "ingest", {"workers": int})["workers"]
    out = Path(cfg["out"])
    options = ShardOptions(cfg["max_samples_per_shard"], cfg["max_shard_bytes"],
                           f"max_side={cfg['max_side']},quality={cfg['jpeg_quality']},"
                           f"skip_reencode={cfg['skip_reencode']},captions={cfg['captions']}")
    encode = functools.partial(encode_samples, max_side=cfg["max_side"], quality=cfg["jpeg_quality"],
                               skip_reencode=cfg["skip_reencode"])
    # The pool forks first (small parent); DuckDB's threads start after, in this process only.
    with Timer(StageResult("shard")) as result, make_executor(params, workers) as ex, \
            duckdb_scratch(out, resolve_workers(workers)) as con:
        pairs = table_source("pairs", table_paths(params)["pairs"])
        result.rows_in = int(con.execute(f"select count(*) from {pairs}").fetchall()[0][0])
        rejects = _rejects(con, params, pairs)
        # Workers read the images and write the tars: on a cluster both must be on shared storage.
        ex.check_inputs([str(out), *(p or "." for (p,) in con.sql(
            f"select distinct parse_dirpath(canonical_path) from ({skeleton_sql(params)}) where {_IN_SPLITS}"
        ).fetchall())])
        order = ["pair_id"] if cfg["captions"] == "pair" else ["canonical_image_id", "pair_id"]
        columns = sorted({*META_COLUMNS, *_CANONICAL_COLUMNS, *(TEXT_VARIANTS[v] for v in variants)})
        result.extra = {}
        index_rows = 0   # one per caption: pairs in = index rows + rejects
        with Publication(out / ".shard.commit.json") as pub:
            folders = {}
            for split in SPLITS:
                fits = functools.partial(_fits, max_side=cfg["max_side"]) if cfg["skip_reencode"] else None
                rows = rows_of(join_corpus(con, params, f"split = '{split}'", order, columns, batch_rows,
                                           chunk_pairs=chunk_pairs))
                samples = _samples(rows, cfg["captions"], variants, fits)
                previous = out / split if (out / split).is_dir() else None
                resume_from = _take_partial(out / split)
                tmp = pub.directory(out / split, partial=True)
                written = write_split(split, samples, tmp, options, encode, previous, resume_from, ex)
                folders[split] = written
                if resume_from is not None:
                    log.warning("shard: resumed %d of %d %s tars from an interrupted run", written.resumed,
                                len(written.sizes), split)
                for s in written.failed:
                    rejects += [Reject("shard", s.meta["source"], pair_id, "shard_image_failed",
                                       "canonical image could not be re-encoded", s.image_path)
                                for pair_id, _ in s.captions]
                index_rows += written.rows
                result.extra[split] = sum(written.sizes.values())
                result.extra[f"{split}_tars"] = len(written.sizes)
                result.extra[f"{split}_bytes"] = sum((tmp / name).stat().st_size for name in written.sizes)
                result.extra.setdefault("tars_reused", 0)
                result.extra["tars_reused"] += written.reused
                if resume_from is not None:
                    result.extra["tars_resumed"] = result.extra.get("tars_resumed", 0) + written.resumed
                if split == "train" and 0 < len(written.sizes) < cfg["min_train_shards"]:
                    log.warning("shard: %d train tar(s) < shard.min_train_shards=%d (dataloader workers x GPUs): "
                                "open_clip will run fewer workers; lower shard.max_samples_per_shard",
                                len(written.sizes), cfg["min_train_shards"])
                    result.extra["warning"] = "fewer train tars than workers x GPUs"
            # The manifest is the tars' own index tables, in key order (split, tar, position).
            with TableWriter("shard_index", pub.file(out / "manifest.parquet")) as manifest:
                for split in sorted(SPLITS):
                    for table in folders[split].index_tables():
                        manifest.write(table)
            write_table([r.row() for r in rejects], "rejects", pub.file(out / "rejects.parquet"))
            kill_point("shard_before_publish")
        for split in SPLITS:
            shutil.rmtree(_resume_dir(out / split), ignore_errors=True)
        result.rows_out, result.rejected = index_rows, len(rejects)
    return result


_CANONICAL_COLUMNS = ("canonical_path", "canonical_sha256", "canonical_format", "canonical_mode",
                      "canonical_exif_orientation", "canonical_width", "canonical_height")


def _fits(row: dict, max_side: int) -> bool:
    """Whether the canonical image may pass through as it is (``shard.skip_reencode``): an RGB
    JPEG, upright, within ``max_side``, as ingest decoded it (the file's SHA-256 is in the
    fingerprint, so the answer cannot go stale behind a reused tar)."""
    return (row["canonical_format"] == "JPEG" and row["canonical_mode"] == "RGB"
            and row["canonical_exif_orientation"] in (0, 1)
            and max(row["canonical_width"] or 0, row["canonical_height"] or 0) <= max_side)


# Joined rows in a split of the shards; the rest were removed by decontamination.
_IN_SPLITS = "split in (" + ", ".join(f"'{s}'" for s in SPLITS) + ")"
def _rejects(con: duckdb.DuckDBPyConnection, params: dict, pairs: str) -> list[Reject]:
    """Pairs with no sample: their image failed dedup hashing (no cluster), or its cluster was
    split off by decontamination; accounted for here, so pairs = samples + rejects."""
    clusters = table_source("clusters", table_paths(params)["clusters"])
    hash_failed = con.execute(f"select source, pair_id from {pairs} where image_id not in "
                              f"(select image_id from {clusters}) order by pair_id").fetchall()
    removed = con.execute(f"select source, pair_id, path from ({skeleton_sql(params)}) "
                          f"where not coalesce({_IN_SPLITS}, false) order by pair_id").fetchall()
    return ([Reject("shard", source, pair_id, "hash_failed", "image was rejected by dedup", None)
             for source, pair_id in hash_failed]
            + [Reject("shard", source, pair_id, "decontaminated", "image matches a benchmark image", path)
               for source, pair_id, path in removed])


def _resume_dir(dest: Path) -> Path:
    return dest.parent / f".{dest.name}.resume"


def _take_partial(dest: Path) -> Path | None:
    """Move a killed run's partial folder of ``dest`` aside to resume from; None if none.

    A run killed while resuming leaves both: its partial folder's completed tars are merged
    into the resume folder (which may hold more), so no completed tar is lost to a second kill.
    """
    partial, resume = partial_dir(dest), _resume_dir(dest)
    if partial.is_dir():
        if resume.is_dir():
            merge_progress(partial, resume)
            shutil.rmtree(partial)
        else:
            os.replace(partial, resume)
    return resume if resume.is_dir() else None


def _samples(rows: Iterable[dict], mode: str, variants: Sequence[str] = (),
             fits: Callable[[dict], bool] | None = None) -> Iterator[Sample]:
    """Samples of one split in key order: one per pair, or one per canonical image (cluster).

    ``rows`` come ordered by pair id (``pair``) or by canonical image then pair id (``cluster``),
    so a cluster's captions arrive together. ``variants`` (shard.text_variants) add each pair's
    enriched captions, aligned with its caption's position in the sample, so
    ``ontology.txt.1`` belongs to ``txt.1``. ``fits`` tells from a row whether its canonical
    image passes through without re-encoding (None: the encoder reads the header).
    """
    def sample(key: str, group: list[dict]) -> Sample:
        meta = [{c: r[c] for c in META_COLUMNS} for r in group]
        return Sample(key=key, image_id=group[0]["canonical_image_id"], image_path=group[0]["canonical_path"],
                      image_sha256=group[0]["canonical_sha256"] or "",
                      captions=tuple((m["pair_id"], m["truncated_caption"]) for m in meta),
                      meta=meta[0] if mode == "pair" else {**meta[0], "pairs": meta},
                      variants=tuple((name, tuple(r[TEXT_VARIANTS[name]] for r in group)) for name in variants),
                      passthrough=fits(group[0]) if fits is not None else None)

    if mode == "pair":
        for row in rows:
            yield sample(row["pair_id"], [row])
        return
    group: list[dict] = []
    for row in rows:
        if group and row["canonical_image_id"] != group[0]["canonical_image_id"]:
            yield sample(group[0]["canonical_image_id"], group)
            group = []
        group.append(row)
    if group:
        yield sample(group[0]["canonical_image_id"], group)

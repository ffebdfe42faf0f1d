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
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from pipeline.corpus import join_corpus, table_paths
from pipeline.errors import ConfigError
from pipeline.executor import make_executor
from pipeline.faults import kill_point
from pipeline.params import section
from pipeline.rejects import Reject
from pipeline.shards.writer import Sample, ShardOptions, encode_jpeg, merge_progress, write_split
from pipeline.stages import StageResult, Timer
from pipeline.stages.split import SPLITS
from pipeline.tables import Publication, partial_dir, read_table, write_table

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


def run(params: dict) -> StageResult:
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
    with Timer(StageResult("shard")) as result, make_executor(params, workers) as ex:
        paths_ = table_paths(params)
        pairs = read_table("pairs", paths_["pairs"])
        images = read_table("images", paths_["images"])
        frame = join_corpus(params)
        result.rows_in = len(pairs)
        rejects = [Reject("shard", r.source, r.pair_id, "hash_failed", "image was rejected by dedup", None)
                   for r in pairs[~pairs["pair_id"].isin(frame["pair_id"])].itertuples()]
        # Pairs split off by decontamination: accounted for here, so pairs = samples + rejects.
        rejects += [Reject("shard", r.source, r.pair_id, "decontaminated", "image matches a benchmark image", r.path)
                    for r in frame[~frame["split"].isin(SPLITS)].itertuples()]
        encode = functools.partial(encode_jpeg, max_side=cfg["max_side"], quality=cfg["jpeg_quality"],
                                   skip_reencode=cfg["skip_reencode"])
        sha = dict(zip(images["image_id"], images["sha256"], strict=True))

        ex.check_inputs({str(Path(p).parent) for p in frame["canonical_path"].dropna()})

        def jpeg_of(chunk: list[Sample]) -> list[bytes | None]:
            unique = sorted({s.image_path for s in chunk})
            encoded = dict(zip(unique, ex.map(encode, unique, "encode", "img"), strict=True))
            return [encoded[s.image_path] for s in chunk]

        index_rows: list[dict] = []
        result.extra = {}
        with Publication(out / ".shard.commit.json") as pub:
            for split in SPLITS:
                rows = frame[frame["split"] == split]
                samples = _samples(rows, sha, cfg["captions"], variants)
                previous = out / split if (out / split).is_dir() else None
                resume_from = _take_partial(out / split)
                tmp = pub.directory(out / split, partial=True)
                written = write_split(split, samples, tmp, options, jpeg_of, previous, resume_from)
                if resume_from is not None:
                    log.warning("shard: resumed %d of %d %s tars from an interrupted run", written.resumed,
                                len(written.sizes), split)
                for s in written.failed:
                    rejects += [Reject("shard", s.meta["source"], pair_id, "shard_image_failed",
                                       "canonical image could not be re-encoded", s.image_path)
                                for pair_id, _ in s.captions]
                index_rows += written.index_rows
                result.extra[split] = sum(written.sizes.values())
                result.extra[f"{split}_tars"] = len(written.sizes)
                result.extra.setdefault("tars_reused", 0)
                result.extra["tars_reused"] += written.reused
                if resume_from is not None:
                    result.extra["tars_resumed"] = result.extra.get("tars_resumed", 0) + written.resumed
                if split == "train" and 0 < len(written.sizes) < cfg["min_train_shards"]:
                    log.warning("shard: %d train tar(s) < shard.min_train_shards=%d (dataloader workers x GPUs): "
                                "open_clip will run fewer workers; lower shard.max_samples_per_shard",
                                len(written.sizes), cfg["min_train_shards"])
                    result.extra["warning"] = "fewer train tars than workers x GPUs"
            write_table(index_rows, "shard_index", pub.file(out / "manifest.parquet"))
            write_table([r.row() for r in rejects], "rejects", pub.file(out / "rejects.parquet"))
            kill_point("shard_before_publish")
        for split in SPLITS:
            shutil.rmtree(_resume_dir(out / split), ignore_errors=True)
        result.rows_out, result.rejected = len(index_rows), len(rejects)
    return result


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


def _samples(rows: pd.DataFrame, sha: dict[str, str], mode: str, variants: Sequence[str] = ()) -> list[Sample]:
    """Samples of one split in key order: one per pair, or one per canonical image (cluster).

    ``variants`` (shard.text_variants) add each pair's enriched captions, aligned with its
    caption's position in the sample, so ``ontology.txt.1`` belongs to ``txt.1``.
    """
    meta = rows[META_COLUMNS].astype(object).where(rows[META_COLUMNS].notna(), None).to_dict("records")
    paths = dict(zip(rows["pair_id"], rows["canonical_path"], strict=True))
    texts = {name: dict(zip(rows["pair_id"], rows[TEXT_VARIANTS[name]].astype(object)
                            .where(rows[TEXT_VARIANTS[name]].notna(), None), strict=True)) for name in variants}

    def variants_of(pair_ids: list[str]) -> tuple[tuple[str, tuple[str | None, ...]], ...]:
        return tuple((name, tuple(texts[name][p] for p in pair_ids)) for name in variants)

    if mode == "pair":
        return [Sample(key=m["pair_id"], image_id=m["canonical_image_id"], image_path=paths[m["pair_id"]],
                       image_sha256=sha.get(m["canonical_image_id"], ""),
                       captions=((m["pair_id"], m["truncated_caption"]),), meta=m,
                       variants=variants_of([m["pair_id"]])) for m in meta]
    groups: dict[str, list[dict]] = {}
    for m in sorted(meta, key=lambda m: m["pair_id"]):
        groups.setdefault(m["canonical_image_id"], []).append(m)
    return [Sample(key=image_id, image_id=image_id, image_path=paths[group[0]["pair_id"]],
                   image_sha256=sha.get(image_id, ""),
                   captions=tuple((m["pair_id"], m["truncated_caption"]) for m in group),
                   meta={**group[0], "pairs": group}, variants=variants_of([m["pair_id"] for m in group]))
            for image_id, group in sorted(groups.items())]

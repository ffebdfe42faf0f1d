"""Stage ``dedup``: exact duplicates by SHA-256, verified near duplicates, chain-free clusters;
and every corpus image that is a verified copy of a benchmark image.

Every image ends in exactly one cluster (singletons too) or in the rejects table. Exact links
join all files of one SHA-256; near links join distinct contents that are pHash *candidates*
(whole image within ``dedup.radius``, or a crop: whole image within ``dedup.window_radius`` of
a window of the other) and pass *verification* (``dedup.verify``: aligned fine structure of the
thumbnails, :mod:`pipeline.images.verify`). Clusters are stars around their canonical image
(:func:`pipeline.images.clusters.leader_clusters`): every member is verified against the
canonical, never only against another member. All captions of a cluster follow its canonical
image downstream.

Modality policy: a pair with a dermoscopic image (its source is listed in
``dedup.dermoscopic_sources``, or one of its captions says dermoscopy) is verified without the
occlusion check, because a different lesion under the same dermatoscope differs from the
first image exactly in a few central cells.

Benchmark matches are found here, where the hashes are, but acted on by the split stage: only
training data must be free of benchmark images, and only the split stage knows what is train.
All hashes of one run (corpus and benchmarks) come from one ``dedup.hash_method``, recorded in
every table, because hashes of the fast and reference paths differ by a few bits.
"""

from __future__ import annotations

import base64
import functools
import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline import ids
from pipeline.errors import ConfigError
from pipeline.executor import Executor, LocalExecutor, make_executor
from pipeline.faults import kill_point
from pipeline.images.benchmarks import benchmark_files, parse_benchmarks
from pipeline.images.clusters import canonical_order, duplicate_clusters
from pipeline.images.decode import ImageProblem
from pipeline.images.hashing import (
    CHUNK,
    DEFAULT_METHOD,
    HASH_METHODS,
    HashedImage,
    check_method,
    hash_files,
    popcount64,
    to_hex,
    to_signed,
)
from pipeline.images.matching import WINDOW_NAMES, Descriptors, MatchConfig, verified_matches
from pipeline.images.verify import Policy
from pipeline.params import section
from pipeline.rejects import Reject
from pipeline.resume import ChunkStore, fingerprint, resume_area, resume_config
from pipeline.stages import StageResult, Timer
from pipeline.tables import atomic_dir, read_table, write_table

log = logging.getLogger(__name__)

# Bump when hashing code changes what a chunk's result is (it is part of every resume key).
HASH_CODE_VERSION = "3"   # 2: window pHashes and thumbnails (views) kept with every hash; 3: the halves too


DERMOSCOPY_WORDS = re.compile(r"(?i)\b(dermoscop|dermatoscop|epiluminescen|videodermoscop)")


def config(params: dict) -> tuple[dict, dict]:
    """The dedup and decontaminate sections, checked (radii, verification thresholds, hash
    method); ``cfg["match"]`` is the :class:`MatchConfig` every matching step uses."""
    cfg = section(params, "dedup", {"out": str, "radius": int, "window_radius": int, "workers": int,
                                    "hash_method": str, "mirror": bool, "verify": dict,
                                    "dermoscopic_sources": list})
    deco = section(params, "decontaminate", {"radius": int, "benchmarks": (list, type(None))})
    for name, radius in (("dedup.radius", cfg["radius"]), ("dedup.window_radius", cfg["window_radius"]),
                         ("decontaminate.radius", deco["radius"])):
        if not 0 <= radius <= 31:
            raise ConfigError(f"params.yaml: {name} must be between 0 and 31 (64-bit hashes), got {radius}")
    try:
        cfg["method_label"] = check_method(cfg["hash_method"])
    except ValueError as exc:
        raise ConfigError(f"params.yaml: dedup.hash_method: {exc}") from None
    ver = section({"verify": cfg["verify"]}, "verify", {"corr": (int, float), "cell_corr": (int, float),
                                                        "cells_ignored": int, "corr_floor": (int, float)},
                  "params.yaml: dedup")
    for key in ("corr", "cell_corr", "corr_floor"):
        if not -1.0 <= float(ver[key]) <= 1.0:
            raise ConfigError(f"params.yaml: dedup.verify.{key} is a correlation, between -1 and 1; got {ver[key]!r}")
    if not 0 <= ver["cells_ignored"] < 16:
        raise ConfigError(f"params.yaml: dedup.verify.cells_ignored must be 0..15 (of 16 cells), got {ver['cells_ignored']}")
    if not all(isinstance(x, str) for x in cfg["dermoscopic_sources"]):
        raise ConfigError("params.yaml: dedup.dermoscopic_sources must be a list of source names")
    clinical = Policy(float(ver["corr"]), True, float(ver["cell_corr"]), int(ver["cells_ignored"]),
                      float(ver["corr_floor"]))
    cfg["match"] = MatchConfig(cfg["radius"], cfg["window_radius"], cfg["mirror"], clinical,
                               Policy(float(ver["corr"]), False))
    deco["sets"] = parse_benchmarks(deco["benchmarks"])
    return cfg, deco


def run(params: dict) -> StageResult:
    cfg, deco = config(params)
    ingest_out = Path(section(params, "ingest", {"out": str})["out"])
    out = Path(cfg["out"])
    with Timer(StageResult("dedup")) as result, make_executor(params, cfg["workers"]) as ex:
        images = read_table("images", ingest_out / "images.parquet").sort_values("image_id", ignore_index=True)
        result.rows_in = len(images)
        # Hash each distinct content once: byte-identical files share their hash.
        by_sha = images.drop_duplicates("sha256").sort_values("sha256")
        store = ChunkStore(resume_area(params, "dedup", out))
        hashed, resumed, n_chunks = hash_resumable(ex, by_sha["path"].tolist(), by_sha["sha256"].tolist(),
                                                   cfg["hash_method"], cfg["mirror"], store,
                                                   resume_config(params)["hash_chunk"])
        sha_hash = dict(zip(by_sha["sha256"], hashed, strict=True))
        rejects = [Reject("dedup", r.source, r.image_id, "hash_failed",
                          f"could not decode for hashing ({p.reason}: {p.detail})", r.path)
                   for r in images.itertuples() if isinstance(p := sha_hash[r.sha256], ImageProblem)]
        images = images[images["sha256"].map(lambda s: isinstance(sha_hash[s], HashedImage))].reset_index(drop=True)
        per_image = [sha_hash[s] for s in images["sha256"]]
        dermoscopic = dermoscopic_images(images, ingest_out / "pairs.parquet", cfg["dermoscopic_sources"])
        clusters, edges, stats = cluster_images(images, per_image, cfg["match"], cfg["method_label"], dermoscopic)
        matches, bench_rejects, n_bench = match_benchmarks(images, per_image, deco, cfg, ex, dermoscopic)
        # One folder swapped in whole: a kill leaves the previous four tables, never a mixture.
        with atomic_dir(out) as tmp:
            write_table(clusters, "clusters", tmp / "clusters.parquet")
            write_table(edges, "duplicate_edges", tmp / "duplicate_edges.parquet")
            write_table(matches, "benchmark_matches", tmp / "benchmark_matches.parquet")
            write_table([r.row() for r in rejects + bench_rejects], "rejects", tmp / "rejects.parquet")
            kill_point("dedup_before_publish")
        store.clear()
        result.rows_out, result.rejected = len(clusters), len(rejects)
        result.extra = {"clusters": int(clusters["cluster_id"].nunique()) if len(clusters) else 0,
                        "largest cluster": int(clusters["cluster_size"].max()) if len(clusters) else 0,
                        "exact links": int((edges["kind"] == "exact").sum()) if len(edges) else 0,
                        "near candidates (pairs)": stats["candidate_pairs"],
                        "near links verified": int((edges["kind"] != "exact").sum()) if len(edges) else 0,
                        "dermoscopic images": int(dermoscopic.sum()),
                        "benchmark images": n_bench,
                        "images matching a benchmark": int(matches["image_id"].nunique()) if len(matches) else 0}
        if resumed:
            result.extra["hash chunks resumed"] = f"{resumed}/{n_chunks}"
    return result


def dermoscopic_images(images: pd.DataFrame, pairs_path: Path, sources: list[str]) -> np.ndarray:
    """Which images the dermoscopic policy judges: those of ``dedup.dermoscopic_sources`` and
    those with a caption that says dermoscopy. Reads two columns of the pairs table."""
    flag = images["source"].isin(sources).to_numpy().copy()
    if pairs_path.exists():
        table = pq.read_table(pairs_path, columns=["image_id", "caption"])
        said = pc.match_substring_regex(table["caption"], DERMOSCOPY_WORDS.pattern)
        ids_said = set(pc.filter(table["image_id"], pc.fill_null(said, False)).to_pylist())
        flag |= images["image_id"].isin(ids_said).to_numpy()
    return flag


def hash_resumable(ex: Executor, paths: list[str], shas: list[str], method: str, mirror: bool,
                   store: ChunkStore, chunk: int) -> tuple[list[HashedImage | ImageProblem], int, int]:
    """:func:`hash_on` in chunks of ``chunk`` files, each saved to ``store`` when done.

    A rerun after a kill loads the chunks the killed run completed and hashes only the rest.
    A chunk's key covers its files' paths and SHA-256s (from the images table), the hash method
    and options and :data:`HASH_CODE_VERSION`, so a result is reused only for the same inputs.
    Returns the results in input order, the number of chunks resumed and the number of chunks.
    """
    out: list[HashedImage | ImageProblem] = []
    spans = [(i, min(i + chunk, len(paths))) for i in range(0, len(paths), chunk)]
    resumed = 0
    for lo, hi in spans:
        key = fingerprint("dedup-hash", HASH_CODE_VERSION, HASH_METHODS[method], mirror,
                          list(zip(paths[lo:hi], shas[lo:hi], strict=True)))
        saved = store.load(key, hi - lo)
        if saved is not None:
            out += [_from_json(item) for item in saved]
            resumed += 1
            continue
        done = hash_on(ex, paths[lo:hi], method, f"phash {lo // chunk + 1}/{len(spans)}", mirror=mirror)
        if len(spans) > 1:   # a single chunk is the whole job: nothing to resume from
            store.save(key, [_to_json(h) for h in done])
            kill_point("dedup_hash_chunk_saved")
        out += done
    if resumed:
        log.warning("dedup: resumed %d of %d hash chunks from an interrupted run (%s)", resumed, len(spans),
                    store.root)
    return out, resumed, len(spans)


def _to_json(h: HashedImage | ImageProblem) -> dict:
    if isinstance(h, ImageProblem):
        return {"reason": h.reason, "detail": h.detail}
    return {"phash": h.phash, "width": h.width, "height": h.height, "sha256": h.sha256, "mirror": h.mirror,
            "windows": list(h.windows), "thumb": base64.b64encode(h.thumb).decode("ascii")}


def _from_json(item: dict) -> HashedImage | ImageProblem:
    if "reason" in item:
        return ImageProblem(item["reason"], item["detail"])
    return HashedImage(item["phash"], item["width"], item["height"], item["sha256"], item["mirror"],
                       tuple(item["windows"]), base64.b64decode(item["thumb"]))


def hash_on(ex: Executor, paths: list[str], method: str, desc: str,
            mirror: bool = False) -> list[HashedImage | ImageProblem]:
    """Hash files with their views (window pHashes, thumbnail) on the stage's executor, in input
    order; every worker must see the files' folders (checked first on a cluster).

    Files go in batches of :data:`CHUNK` (the batched DCT's unit) and the executor packs several
    batches into one task: a 64-file batch takes ~10 ms, about what a Dask task costs in
    scheduling, and single-batch tasks held a 2-worker cluster to ~0.65x the process pool."""
    tasks = [paths[i:i + CHUNK] for i in range(0, len(paths), CHUNK)]
    fn = functools.partial(hash_files, method=method, mirror=mirror, views=True)
    parents = {str(Path(p).parent) for p in paths}
    results = ex.map(fn, tasks, desc, f"x{CHUNK} img", inputs=parents)
    return [r for chunk in results for r in chunk]


def match_benchmarks(images: pd.DataFrame, hashed: list[HashedImage], deco: dict, cfg: dict,
                     ex: Executor | None = None,
                     dermoscopic: np.ndarray | None = None) -> tuple[pd.DataFrame, list[Reject], int]:
    """Every (corpus image, benchmark image) pair that is a verified copy, found and verified
    as duplicates are (:func:`pipeline.images.matching.verified_matches`), with candidates
    within ``decontaminate.radius``.

    Benchmark files that cannot be hashed become dedup rejects (source = the benchmark's name),
    so a broken benchmark file is visible instead of silently shrinking the check. Benchmark
    images take the dermoscopic policy when the corpus image does.
    """
    rows: list[dict] = []
    rejects: list[Reject] = []
    n_bench = 0
    match = cfg["match"]
    match = MatchConfig(deco["radius"], match.window_radius, match.mirror, match.clinical, match.dermoscopic)
    corpus = Descriptors.of(hashed, match.mirror)
    image_ids = images["image_id"].to_numpy()
    for bench in deco["sets"]:
        files = benchmark_files(bench)
        done = hash_on(ex or LocalExecutor(cfg["workers"]), files, cfg["hash_method"], f"phash {bench.name}",
                       mirror=match.mirror)
        ok = [(f, h) for f, h in zip(files, done, strict=True) if isinstance(h, HashedImage)]
        rejects += [Reject("dedup", f"benchmark:{bench.name}", f, h.reason, h.detail, f)
                    for f, h in zip(files, done, strict=True) if isinstance(h, ImageProblem)]
        n_bench += len(ok)
        if not ok or not len(corpus):
            continue
        edges = verified_matches(corpus, Descriptors.of([h for _, h in ok], match.mirror), match, dermoscopic)
        rows += [{"image_id": image_ids[q], "benchmark": bench.name, "benchmark_path": ok[b][0], "distance": int(d),
                  "hash_method": cfg["method_label"], "verified_by": c, "score": float(s)}
                 for q, b, d, c, s in zip(edges.a.tolist(), edges.b.tolist(), edges.distance.tolist(),
                                          edges.check.tolist(), edges.score.tolist(), strict=True)]
    frame = pd.DataFrame(rows, columns=["image_id", "benchmark", "benchmark_path", "distance", "hash_method",
                                        "verified_by", "score"])
    return frame.astype({"distance": np.int8, "score": np.float32}), rejects, n_bench


def cluster_images(images: pd.DataFrame, hashed: list[HashedImage], match: MatchConfig,
                   method_label: str = HASH_METHODS[DEFAULT_METHOD],
                   dermoscopic: np.ndarray | None = None) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Cluster images (columns image_id, sha256, width, height, source_rank) given their hashes
    with views (:func:`pipeline.images.clusters.duplicate_clusters`).

    Returns the clusters table, the edge list (every exact link and every verified near link,
    with the check that accepted it and its score, for audit) and candidate counts.
    """
    n = len(images)
    rank = canonical_order(images)
    dc = duplicate_clusters(images["sha256"].to_numpy(), rank, hashed, match, dermoscopic)
    canon = dc.canonical
    h = to_signed([x.phash for x in hashed]) if n else np.zeros(0, dtype=np.int64)
    dist = popcount64(h.view(np.uint64) ^ h.view(np.uint64)[canon])
    size = np.bincount(canon, minlength=n)[canon]
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
        "score_to_canonical": dc.score,
        "cluster_size": size.astype(np.int32),
        "phash": [to_hex(x.phash) for x in hashed],
        "hash_method": method_label,
    })
    e = dc.edges
    ne = len(dc.exact_i)
    a = np.r_[dc.exact_i, e.a].astype(np.int64)
    b = np.r_[dc.exact_j, e.b].astype(np.int64)
    ida, idb = image_ids[a], image_ids[b]
    edges = pd.DataFrame({
        "image_id_a": np.minimum(ida, idb) if len(a) else [],
        "image_id_b": np.maximum(ida, idb) if len(a) else [],
        "kind": ["exact"] * ne + ["mirror" if m else "near" for m in e.mirror.tolist()],
        "distance": np.r_[np.zeros(ne, dtype=np.int8), e.distance].astype(np.int8),
        "matched_window": ["full"] * ne + [WINDOW_NAMES[w] for w in e.window.tolist()],
        "verified_by": ["sha256"] * ne + e.check.tolist(),
        "score": np.r_[np.ones(ne, dtype=np.float32), e.score].astype(np.float32),
    })
    edges = edges.sort_values(["image_id_a", "image_id_b"], ignore_index=True)
    return clusters, edges, {"candidates": e.candidates, "candidate_pairs": e.candidate_pairs}

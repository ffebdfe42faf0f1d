"""Stage ``dedup``: exact duplicates by SHA-256, near duplicates by pHash radius, then clusters;
and every corpus image within ``decontaminate.radius`` of a benchmark image.

Every image ends in exactly one cluster (singletons too) or in the rejects table. Exact links
join all files of one SHA-256; near links join distinct contents whose hashes are within
``dedup.radius``. All captions of a cluster follow its canonical image downstream.

Benchmark matches are found here, where the hashes are, but acted on by the split stage: only
training data must be free of benchmark images, and only the split stage knows what is train.
All hashes of one run (corpus and benchmarks) come from one ``dedup.hash_method``, recorded in
every table, because hashes of the fast and reference paths differ by a few bits.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline import ids
from pipeline.errors import ConfigError
from pipeline.executor import Executor, LocalExecutor, make_executor
from pipeline.faults import kill_point
from pipeline.images.benchmarks import benchmark_files, parse_benchmarks
from pipeline.images.clusters import choose_canonical, components
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
from pipeline.images.neardup import pairs_between, pairs_within
from pipeline.params import section
from pipeline.rejects import Reject
from pipeline.resume import ChunkStore, fingerprint, resume_area, resume_config
from pipeline.stages import StageResult, Timer
from pipeline.tables import atomic_dir, read_table, write_table

log = logging.getLogger(__name__)

# Bump when hashing code changes what a chunk's result is (it is part of every resume key).
HASH_CODE_VERSION = "1"


def config(params: dict) -> tuple[dict, dict]:
    """The dedup and decontaminate sections, checked (radius range, known hash method).

    ``dedup.hash_method`` and the ``decontaminate`` section came later than the rest: a params
    file without them gets the fast path and no benchmark sets, as before they existed.
    """
    cfg = section(params, "dedup", {"out": str, "radius": int, "workers": int})
    cfg.setdefault("hash_method", DEFAULT_METHOD)
    cfg.setdefault("mirror", False)
    if not isinstance(cfg["mirror"], bool):
        raise ConfigError(f"params.yaml: dedup.mirror must be true or false, got {cfg['mirror']!r}")
    if not isinstance(cfg["hash_method"], str):
        raise ConfigError(f"params.yaml: dedup.hash_method must be a string, got {cfg['hash_method']!r}")
    if "decontaminate" in params:
        deco = section(params, "decontaminate", {"radius": int, "benchmarks": (list, type(None))})
    else:
        deco = {"radius": cfg["radius"], "benchmarks": []}
    for name, radius in (("dedup.radius", cfg["radius"]), ("decontaminate.radius", deco["radius"])):
        if not 0 <= radius <= 31:
            raise ConfigError(f"params.yaml: {name} must be between 0 and 31 (64-bit hashes), got {radius}")
    try:
        cfg["method_label"] = check_method(cfg["hash_method"])
    except ValueError as exc:
        raise ConfigError(f"params.yaml: dedup.hash_method: {exc}") from None
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
        sha_hash = {s: h.phash if isinstance(h, HashedImage) else h
                    for s, h in zip(by_sha["sha256"], hashed, strict=True)}
        sha_mirror = {s: h.mirror for s, h in zip(by_sha["sha256"], hashed, strict=True) if isinstance(h, HashedImage)}
        rejects = [Reject("dedup", r.source, r.image_id, "hash_failed",
                          f"could not decode for hashing ({p.reason}: {p.detail})", r.path)
                   for r in images.itertuples() if isinstance(p := sha_hash[r.sha256], ImageProblem)]
        images = images[images["sha256"].map(lambda s: isinstance(sha_hash[s], int))].reset_index(drop=True)
        hashes = [sha_hash[s] for s in images["sha256"]]
        mirrors = [sha_mirror[s] for s in images["sha256"]] if cfg["mirror"] else None
        clusters, edges = cluster_images(images, hashes, cfg["radius"], cfg["method_label"], mirrors)
        matches, bench_rejects, n_bench = match_benchmarks(images, hashes, deco, cfg, mirrors, ex)
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
                        "exact links": int((edges["kind"] == "exact").sum()) if len(edges) else 0,
                        "near links": int((edges["kind"] == "near").sum()) if len(edges) else 0,
                        "benchmark images": n_bench,
                        "images matching a benchmark": int(matches["image_id"].nunique()) if len(matches) else 0}
        if resumed:
            result.extra["hash chunks resumed"] = f"{resumed}/{n_chunks}"
    return result


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
    return {"phash": h.phash, "width": h.width, "height": h.height, "sha256": h.sha256, "mirror": h.mirror}


def _from_json(item: dict) -> HashedImage | ImageProblem:
    if "reason" in item:
        return ImageProblem(item["reason"], item["detail"])
    return HashedImage(item["phash"], item["width"], item["height"], item["sha256"], item["mirror"])


def hash_on(ex: Executor, paths: list[str], method: str, desc: str,
            mirror: bool = False) -> list[HashedImage | ImageProblem]:
    """Hash files on the stage's executor, in input order; every worker must see the files'
    folders (checked first on a cluster).

    Files go in batches of :data:`CHUNK` (the batched DCT's unit) and the executor packs several
    batches into one task: a 64-file batch takes ~10 ms, about what a Dask task costs in
    scheduling, and single-batch tasks held a 2-worker cluster to ~0.65x the process pool."""
    tasks = [paths[i:i + CHUNK] for i in range(0, len(paths), CHUNK)]
    fn = functools.partial(hash_files, method=method, mirror=mirror)
    parents = {str(Path(p).parent) for p in paths}
    results = ex.map(fn, tasks, desc, f"x{CHUNK} img", inputs=parents)
    return [r for chunk in results for r in chunk]


def match_benchmarks(images: pd.DataFrame, hashes: list[int], deco: dict, cfg: dict,
                     mirrors: list[int] | None = None,
                     ex: Executor | None = None) -> tuple[pd.DataFrame, list[Reject], int]:
    """Every (corpus image, benchmark image) pair within ``decontaminate.radius``.

    Benchmark files that cannot be hashed become dedup rejects (source = the benchmark's name),
    so a broken benchmark file is visible instead of silently shrinking the check. With
    ``mirrors`` (dedup.mirror), a corpus image whose mirror image matches counts too.
    """
    rows: list[dict] = []
    rejects: list[Reject] = []
    n_bench = 0
    corpus = to_signed(hashes)
    for bench in deco["sets"]:
        files = benchmark_files(bench)
        hashed = hash_on(ex or LocalExecutor(cfg["workers"]), files, cfg["hash_method"], f"phash {bench.name}")
        ok = [(f, h.phash) for f, h in zip(files, hashed, strict=True) if isinstance(h, HashedImage)]
        rejects += [Reject("dedup", f"benchmark:{bench.name}", f, h.reason, h.detail, f)
                    for f, h in zip(files, hashed, strict=True) if isinstance(h, ImageProblem)]
        n_bench += len(ok)
        if not ok or not len(corpus):
            continue
        bench_h = to_signed([h for _, h in ok])
        qi, bi, dist = pairs_between(corpus, bench_h, deco["radius"])
        if mirrors is not None:
            mq, mb, md = pairs_between(to_signed(mirrors), bench_h, deco["radius"])
            qi, bi, dist = _closest(np.r_[qi, mq], np.r_[bi, mb], np.r_[dist, md], len(ok))
        image_ids = images["image_id"].to_numpy()
        rows += [{"image_id": image_ids[q], "benchmark": bench.name, "benchmark_path": ok[b][0],
                  "distance": int(d), "hash_method": cfg["method_label"]}
                 for q, b, d in zip(qi.tolist(), bi.tolist(), dist.tolist(), strict=True)]
    frame = pd.DataFrame(rows, columns=["image_id", "benchmark", "benchmark_path", "distance", "hash_method"])
    return frame.astype({"distance": np.int8}), rejects, n_bench


def _closest(a: np.ndarray, b: np.ndarray, d: np.ndarray, nb: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One (a, b) pair each, with its smallest distance, sorted by (a, b)."""
    order = np.lexsort((d, a * np.int64(nb) + b))
    a, b, d = a[order], b[order], d[order]
    first = np.r_[True, (a[1:] != a[:-1]) | (b[1:] != b[:-1])] if len(a) else np.zeros(0, dtype=bool)
    return a[first], b[first], d[first]


def _mirror_links(reps: np.ndarray, h: np.ndarray, m: np.ndarray, radius: int, ni: np.ndarray, nj: np.ndarray,
                  n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs of distinct contents where one is within ``radius`` of the other's mirror image and
    that are not near links already (row indices, smaller first, and the distance)."""
    a, b, d = pairs_between(h[reps], m[reps], radius)
    keep = a != b   # a symmetric picture matches its own mirror image
    a, b, d = reps[a[keep]], reps[b[keep]], d[keep]
    a, b = np.minimum(a, b), np.maximum(a, b)
    a, b, d = _closest(a, b, d, n)
    fresh = ~np.isin(a * np.int64(n) + b, ni * np.int64(n) + nj)
    return a[fresh], b[fresh], d[fresh]


def cluster_images(images: pd.DataFrame, hashes: list[int], radius: int,
                   method_label: str = HASH_METHODS[DEFAULT_METHOD],
                   mirrors: list[int] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Cluster images (columns image_id, sha256, width, height, source_rank) given their pHashes.

    Union-find over exact links (same SHA-256) and near links (pHash within ``radius``) as
    connected components; the canonical image is the highest resolution, then the earliest
    source, then the smallest id. With ``mirrors`` (each image's mirror-image hash), an image
    within the radius of another's mirror image is linked too (kind ``mirror``). Returns the
    clusters table and the edge list (every link found, with its Hamming distance, for audit).
    """
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
    mi = mj = np.empty(0, dtype=np.int64)
    md = np.empty(0, dtype=np.int8)
    if mirrors is not None:
        mi, mj, md = _mirror_links(reps, h, to_signed(mirrors), radius, ni, nj, n)
    labels = components(n, np.r_[ex_i, ni, mi], np.r_[ex_j, nj, mj])
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
        "hash_method": method_label,
    })
    a = np.r_[ex_i, ni, mi]
    b = np.r_[ex_j, nj, mj]
    ida, idb = image_ids[a], image_ids[b]
    edges = pd.DataFrame({
        "image_id_a": np.minimum(ida, idb) if len(a) else [],
        "image_id_b": np.maximum(ida, idb) if len(a) else [],
        "kind": ["exact"] * len(ex_i) + ["near"] * len(ni) + ["mirror"] * len(mi),
        "distance": np.r_[np.zeros(len(ex_i), dtype=np.int8), nd, md].astype(np.int8),
    })
    return clusters, edges


"""``derm1m find-duplicates``: duplicate clusters (or benchmark matches) of any image folders.

The pipeline's dedup without the pipeline: people want to check their own folders before they
ever write a params.yaml. It hashes every image under the folders (recursively) with the same
fast pHash path and views, and finds verified, chain-free clusters with the very functions the
dedup stage uses (:func:`pipeline.images.clusters.duplicate_clusters`; candidates, verification
and leader clustering with the params.yaml defaults), so the two never disagree. It writes one
CSV row per image that has a duplicate, or, with ``--against``, per image that is a verified
copy of a benchmark image (the decontamination check for one's own data, as the dedup stage's
:func:`pipeline.images.matching.verified_matches`). Files that cannot be decoded go to a
rejects CSV beside the output with a reason code, never a traceback.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np

from pipeline import ids
from pipeline.errors import PipelineError
from pipeline.images.benchmarks import BenchmarkSet, benchmark_files, list_images
from pipeline.images.clusters import duplicate_clusters
from pipeline.images.decode import ImageProblem
from pipeline.images.hashing import HashedImage, check_method, hash_paths, popcount64, to_signed
from pipeline.images.matching import Descriptors, MatchConfig, verified_matches
from pipeline.tables import atomic_path

CLUSTER_COLUMNS = ["path", "cluster_id", "cluster_size", "match_kind", "distance_to_canonical", "canonical_path",
                   "hash_method", "score_to_canonical"]
AGAINST_COLUMNS = ["path", "benchmark_path", "distance", "n_benchmark_matches", "hash_method", "score"]


def _scan(dirs: list[Path]) -> list[tuple[str, int]]:
    """(path, folder rank) of every image under the folders, in folder order then path order."""
    files, seen = [], set()
    for rank, d in enumerate(dirs):
        if not d.is_dir():
            raise PipelineError(f"{d} is not a folder")
        for p in list_images(d):
            key = str(p.resolve())
            if key not in seen:  # a folder given twice (or nested) counts once, at its first rank
                seen.add(key)
                files.append((p.as_posix(), rank))
    return files


def _hash(paths: list[str], method: str, workers: int, rejects: list[tuple[str, str, str]],
          desc: str, mirror: bool = False) -> tuple[list[str], list[HashedImage]]:
    ok_paths, ok = [], []
    hashed = hash_paths(paths, method, workers, desc, mirror=mirror, sha256=True, views=True)
    for path, h in zip(paths, hashed, strict=True):
        if isinstance(h, ImageProblem):
            rejects.append((path, h.reason, h.detail))
        else:
            ok_paths.append(path)
            ok.append(h)
    return ok_paths, ok


def cluster_rows(paths: list[str], ranks: list[int], hashed: list[HashedImage], match: MatchConfig,
                 label: str, dermoscopic: bool = False) -> list[dict]:
    """Rows for every image in a cluster of two or more; canonical = largest, earliest folder, path."""
    n = len(paths)
    if not n:
        return []
    pixels = np.array([x.width * x.height for x in hashed], dtype=np.int64)
    order = np.lexsort((np.array(paths), np.array(ranks), -pixels))
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    dc = duplicate_clusters(np.array([x.sha256 for x in hashed]), rank, hashed, match,
                            np.full(n, dermoscopic, dtype=bool))
    canon = dc.canonical
    size = np.bincount(canon, minlength=n)[canon]
    h = to_signed([x.phash for x in hashed])
    dist = popcount64(h.view(np.uint64) ^ h.view(np.uint64)[canon])
    rows = []
    for k in np.flatnonzero(size > 1).tolist():
        c = int(canon[k])
        kind = "canonical" if c == k else ("exact" if hashed[k].sha256 == hashed[c].sha256 else "near")
        rows.append({"path": paths[k], "cluster_id": ids.cluster_id(paths[c]), "cluster_size": int(size[k]),
                     "match_kind": kind, "distance_to_canonical": int(dist[k]), "canonical_path": paths[c],
                     "hash_method": label, "score_to_canonical": round(float(dc.score[k]), 4)})
    rows.sort(key=lambda r: (r["canonical_path"], r["match_kind"] != "canonical", r["path"]))
    return rows


def against_rows(paths: list[str], hashed: list[HashedImage], bench_paths: list[str],
                 bench: list[HashedImage], match: MatchConfig, label: str, dermoscopic: bool = False) -> list[dict]:
    """One row per own image that is a verified copy of a benchmark image: its best match."""
    edges = verified_matches(Descriptors.of(hashed, match.mirror), Descriptors.of(bench, match.mirror), match,
                             np.full(len(hashed), dermoscopic), np.full(len(bench), dermoscopic))
    best: dict[int, tuple[float, int, str]] = {}
    count: dict[int, int] = {}
    for qi, ti, di, si in zip(edges.a.tolist(), edges.b.tolist(), edges.distance.tolist(), edges.score.tolist(),
                              strict=True):
        count[qi] = count.get(qi, 0) + 1
        cand = (-si, di, bench_paths[ti])
        if qi not in best or cand < best[qi]:
            best[qi] = cand
    return [{"path": paths[k], "benchmark_path": best[k][2], "distance": best[k][1],
             "n_benchmark_matches": count[k], "hash_method": label, "score": round(-best[k][0], 4)}
            for k in sorted(best, key=lambda k: paths[k])]


def _write_csv(path: Path, columns: list[str], rows: list[dict] | list[tuple]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(columns)
        for r in rows:
            w.writerow([r[c] for c in columns] if isinstance(r, dict) else r)


def find_duplicates(dirs: list[Path], radius: int, output: Path, against: Path | None = None,
                    method: str = "fast", workers: int = 0, window_radius: int = 6,
                    dermoscopic: bool = False, mirror: bool = False) -> dict:
    """Run the check and write ``output`` (and ``<output>.rejects.csv`` if files failed); a summary."""
    for name, r in (("--radius", radius), ("--window-radius", window_radius)):
        if not 0 <= r <= 31:
            raise PipelineError(f"{name} must be between 0 and 31 for 64-bit hashes, got {r}")
    match = MatchConfig(radius=radius, window_radius=window_radius, mirror=mirror)
    label = check_method(method)
    if against is not None and not against.exists():
        raise PipelineError(f"--against {against}: no such folder or CSV")
    files = _scan(dirs)
    rejects: list[tuple[str, str, str]] = []
    paths, hashed = _hash([p for p, _ in files], method, workers, rejects, "phash", mirror)
    rank_of = dict(files)
    summary = {"images": len(files), "hashed": len(paths), "rejected": 0, "rows": 0, "output": str(output)}
    if against is None:
        rows = cluster_rows(paths, [rank_of[p] for p in paths], hashed, match, label, dermoscopic)
        _write_csv(output, CLUSTER_COLUMNS, rows)
        summary["clusters"] = len({r["cluster_id"] for r in rows})
    else:
        bench = BenchmarkSet(against.name, against)
        try:
            bench_list = benchmark_files(bench)
        except PipelineError as exc:
            raise PipelineError(f"--against: {exc}") from None
        bench_paths, bench_hashed = _hash(bench_list, method, workers, rejects, "phash benchmark", mirror)
        rows = against_rows(paths, hashed, bench_paths, bench_hashed, match, label, dermoscopic)
        _write_csv(output, AGAINST_COLUMNS, rows)
        summary["benchmark_images"] = len(bench_paths)
    summary["rows"], summary["rejected"] = len(rows), len(rejects)
    if rejects:
        summary["rejects"] = str(rejects_path(output))
        _write_csv(rejects_path(output), ["path", "reason", "detail"], sorted(rejects))
    return summary


def rejects_path(output: Path) -> Path:
    return output.with_name(output.name + ".rejects.csv")


def main(args: argparse.Namespace) -> int:
    """CLI entry: run, print one summary line on stderr; user errors raise PipelineError (exit 2)."""
    s = find_duplicates([Path(d) for d in args.dirs], args.radius, Path(args.output),
                        Path(args.against) if args.against else None, args.hash_method, args.workers,
                        args.window_radius, args.dermoscopic, args.mirror)
    what = (f"{s['rows']} images in {s['clusters']} duplicate clusters" if args.against is None
            else f"{s['rows']} images that are verified copies of {s['benchmark_images']} benchmark images")
    bad = f"; {s['rejected']} files could not be read (reasons in {s['rejects']})" if s["rejected"] else ""
    print(f"derm1m find-duplicates: hashed {s['hashed']} of {s['images']} images: {what} -> {s['output']}{bad}",
          file=sys.stderr)
    return 0

"""``derm1m find-duplicates``: duplicate clusters (or benchmark matches) of any image folders.

The pipeline's dedup without the pipeline: people want to check their own folders before they
ever write a params.yaml. It hashes every image under the folders (recursively) with the same
fast pHash path, finds every pair within the radius exactly, and writes one CSV row per image
that has a duplicate, or, with ``--against``, per image that matches a benchmark image (the
decontamination check for one's own data). Files that cannot be decoded go to a rejects CSV
beside the output with a reason code, never a traceback.
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
from pipeline.images.clusters import components
from pipeline.images.decode import ImageProblem
from pipeline.images.hashing import HashedImage, check_method, hash_paths, popcount64, to_signed
from pipeline.images.neardup import pairs_between, pairs_within
from pipeline.tables import atomic_path

CLUSTER_COLUMNS = ["path", "cluster_id", "cluster_size", "match_kind", "distance_to_canonical", "canonical_path",
                   "hash_method"]
AGAINST_COLUMNS = ["path", "benchmark_path", "distance", "n_benchmark_matches", "hash_method"]


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
          desc: str) -> tuple[list[str], list[HashedImage]]:
    ok_paths, ok = [], []
    for path, h in zip(paths, hash_paths(paths, method, workers, desc, sha256=True), strict=True):
        if isinstance(h, ImageProblem):
            rejects.append((path, h.reason, h.detail))
        else:
            ok_paths.append(path)
            ok.append(h)
    return ok_paths, ok


def cluster_rows(paths: list[str], ranks: list[int], hashed: list[HashedImage], radius: int,
                 label: str) -> list[dict]:
    """Rows for every image in a cluster of two or more; canonical = largest, earliest folder, path."""
    n = len(paths)
    h = to_signed([x.phash for x in hashed])
    i, j, _ = pairs_within(h, radius)
    if not len(i):
        return []
    labels = components(n, i, j)
    pixels = np.array([x.width * x.height for x in hashed], dtype=np.int64)
    order = np.lexsort((np.array(paths), np.array(ranks), -pixels, labels))
    first = np.full(labels.max() + 1, -1, dtype=np.int64)
    for k in order[::-1]:      # the last write per label is the first in sorted order
        first[labels[k]] = k
    canon = first[labels]
    size = np.bincount(labels)[labels]
    dist = popcount64(h.view(np.uint64) ^ h.view(np.uint64)[canon])
    rows = []
    for k in np.flatnonzero(size > 1):
        c = canon[k]
        kind = "canonical" if c == k else ("exact" if hashed[k].sha256 == hashed[c].sha256 else "near")
        rows.append({"path": paths[k], "cluster_id": ids.cluster_id(paths[c]), "cluster_size": int(size[k]),
                     "match_kind": kind, "distance_to_canonical": int(dist[k]), "canonical_path": paths[c],
                     "hash_method": label})
    rows.sort(key=lambda r: (r["canonical_path"], r["match_kind"] != "canonical", r["path"]))
    return rows


def against_rows(paths: list[str], hashed: list[HashedImage], bench_paths: list[str],
                 bench: list[HashedImage], radius: int, label: str) -> list[dict]:
    """One row per own image within ``radius`` of a benchmark image: its closest match."""
    q, t, d = pairs_between(to_signed([x.phash for x in hashed]), to_signed([x.phash for x in bench]), radius)
    best: dict[int, tuple[int, str]] = {}
    count: dict[int, int] = {}
    for qi, ti, di in zip(q.tolist(), t.tolist(), d.tolist(), strict=True):
        count[qi] = count.get(qi, 0) + 1
        cand = (di, bench_paths[ti])
        if qi not in best or cand < best[qi]:
            best[qi] = cand
    return [{"path": paths[k], "benchmark_path": best[k][1], "distance": best[k][0],
             "n_benchmark_matches": count[k], "hash_method": label} for k in sorted(best, key=lambda k: paths[k])]


def _write_csv(path: Path, columns: list[str], rows: list[dict] | list[tuple]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(columns)
        for r in rows:
            w.writerow([r[c] for c in columns] if isinstance(r, dict) else r)


def find_duplicates(dirs: list[Path], radius: int, output: Path, against: Path | None = None,
                    method: str = "fast", workers: int = 0) -> dict:
    """Run the check and write ``output`` (and ``<output>.rejects.csv`` if files failed); a summary."""
    if not 0 <= radius <= 31:
        raise PipelineError(f"--radius must be between 0 and 31 for 64-bit hashes, got {radius}")
    label = check_method(method)
    if against is not None and not against.exists():
        raise PipelineError(f"--against {against}: no such folder or CSV")
    files = _scan(dirs)
    rejects: list[tuple[str, str, str]] = []
    paths, hashed = _hash([p for p, _ in files], method, workers, rejects, "phash")
    rank_of = dict(files)
    summary = {"images": len(files), "hashed": len(paths), "rejected": 0, "rows": 0, "output": str(output)}
    if against is None:
        rows = cluster_rows(paths, [rank_of[p] for p in paths], hashed, radius, label)
        _write_csv(output, CLUSTER_COLUMNS, rows)
        summary["clusters"] = len({r["cluster_id"] for r in rows})
    else:
        bench = BenchmarkSet(against.name, against)
        try:
            bench_list = benchmark_files(bench)
        except PipelineError as exc:
            raise PipelineError(f"--against: {exc}") from None
        bench_paths, bench_hashed = _hash(bench_list, method, workers, rejects, "phash benchmark")
        rows = against_rows(paths, hashed, bench_paths, bench_hashed, radius, label)
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
                        Path(args.against) if args.against else None, args.hash_method, args.workers)
    what = (f"{s['rows']} images in {s['clusters']} duplicate clusters" if args.against is None
            else f"{s['rows']} images within radius {args.radius} of {s['benchmark_images']} benchmark images")
    bad = f"; {s['rejected']} files could not be read (reasons in {s['rejects']})" if s["rejected"] else ""
    print(f"derm1m find-duplicates: hashed {s['hashed']} of {s['images']} images: {what} -> {s['output']}{bad}",
          file=sys.stderr)
    return 0

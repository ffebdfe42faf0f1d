"""Images/s of the dedup hashing stage's work on each executor, on the shared real images.

    python bench/executor_scaling.py [--shared ../shared] [--limit 3000] [--repeats 2]

Hashes the same real JPEGs (HAM10000, DermNet, Derm7pt under ``../shared/corpus``, evenly
sampled to ``--limit``) exactly as the dedup stage does (``pipeline.stages.dedup.hash_on``: batched
DCT over 64-file batches, several batches per task) with the serial executor, the local process pool (one process
per core) and a Dask LocalCluster of 1 and 2 single-threaded workers. The engine's start-up
(LocalCluster and worker processes, plus one warm-up task per worker so module imports are
not billed to the first chunk) is timed separately from the hashing; the process pool is
created inside each run, so its (fork) start-up is in its figure. Rates are wall-clock images
per second, best of ``--repeats`` interleaved rounds (a shared machine's other load moves them;
the ratio of one round's figures is steadier). Every executor's hashes must equal the serial
ones. The issue's target: dask with 2 workers >= 0.8x the local pool's images/s.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import machine, require_shared_corpus  # noqa: E402
from pipeline.executor import DaskExecutor, Executor, LocalExecutor, SerialExecutor  # noqa: E402
from pipeline.images.benchmarks import list_images  # noqa: E402
from pipeline.images.hashing import CHUNK, HashedImage  # noqa: E402
from pipeline.stages.dedup import hash_on  # noqa: E402

FOLDERS = ("corpus/ham10000/images", "corpus/dermnet", "corpus/derm7pt/images")


def sample_paths(shared: Path, limit: int) -> list[str]:
    """Up to ``limit`` images, evenly spread over the shared folders (deterministic)."""
    paths = sorted(p.as_posix() for rel in FOLDERS if (shared / rel).exists() for p in list_images(shared / rel))
    if limit and len(paths) > limit:
        paths = paths[:: len(paths) // limit][:limit]
    return paths


def run(ex: Executor, paths: list[str]) -> tuple[float, list[int | None]]:
    t0 = time.perf_counter()
    hashed = hash_on(ex, paths, "fast", "phash")
    seconds = time.perf_counter() - t0
    return seconds, [h.phash if isinstance(h, HashedImage) else None for h in hashed]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", type=Path, default=REPO.parent / "shared")
    ap.add_argument("--limit", type=int, default=3000, help="images (0 = all)")
    ap.add_argument("--repeats", type=int, default=2, help="interleaved timed rounds (best kept)")
    args = ap.parse_args()
    require_shared_corpus(args.shared)
    os.environ.setdefault("TQDM_DISABLE", "1")
    paths = sample_paths(args.shared, args.limit)
    for p in paths:  # warm page cache: every executor reads the same cached bytes
        Path(p).read_bytes()
    cores = os.cpu_count() or 1
    print(f"machine: {machine()}, "
          f"{platform.processor() or platform.machine()}; load average {os.getloadavg()[0]:.2f}")
    print(f"{len(paths)} real images from {', '.join(FOLDERS)}; fast pHash in {CHUNK}-file batches, several per task")

    engines: dict[str, Executor] = {"serial": SerialExecutor(), f"local ({cores} processes)": LocalExecutor(0)}
    startup: dict[str, float] = {}
    for n in (1, 2):
        ex = DaskExecutor("local", workers=n)
        t0 = time.perf_counter()
        ex.start()
        assert ex.client is not None
        ex.client.run(__import__, "pipeline.images.hashing")  # worker warm-up: imports
        startup[f"dask LocalCluster, {n} worker{'s' * (n > 1)}"] = time.perf_counter() - t0
        engines[f"dask LocalCluster, {n} worker{'s' * (n > 1)}"] = ex
    try:
        best: dict[str, float] = {}
        reference: list[int | None] | None = None
        for _ in range(args.repeats):
            for name, ex in engines.items():
                seconds, values = run(ex, paths)
                reference = reference if reference is not None else values
                assert values == reference, f"{name}: hashes differ from the serial executor's"
                best[name] = min(best.get(name, float("inf")), seconds)
        print(f"{'executor':<30} {'start-up s':>10} {'hash s':>8} {'images/s':>9} {'vs local':>9}")
        local = next(k for k in best if k.startswith("local"))
        for name, seconds in best.items():
            rate = len(paths) / seconds
            start = f"{startup[name]:.2f}" if name in startup else "-"
            print(f"{name:<30} {start:>10} {seconds:>8.2f} {rate:>9.0f} {best[local] / seconds:>8.2f}x")
        dask2 = best["dask LocalCluster, 2 workers"]
        print(f"target: dask 2 workers >= 0.8x local pool images/s -> {best[local] / dask2:.2f}x "
              f"({'met' if best[local] / dask2 >= 0.8 else 'missed'}); outputs identical: yes")
    finally:
        for ex in engines.values():
            ex.close()


if __name__ == "__main__":
    main()

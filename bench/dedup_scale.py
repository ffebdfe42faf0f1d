"""All-pairs near-duplicate search at a million hashes: wall time, peak memory, exactness, peer.

    python bench/dedup_scale.py [--n 1000000] [--radius 4 8] [--repeats 3] [--no-faiss]

Draws ``n`` uniform random 64-bit hashes with planted near-duplicate clusters (a seed and
copies 0..radius_max bits away), then for each radius, in a fresh child process (so peak
memory is that run's own):

* ``pairs_within`` wall time (best and median of ``--repeats``) and the child's peak RSS;
* recall of the planted pairs (every intra-cluster pair within the radius must be found);
* exactness against brute force on a subsample (identical pair lists);
* faiss ``IndexBinaryMultiHash`` (if ``faiss-cpu`` is installed: ``pip install -e .[peer]``),
  configured to be exact (3 tables of 21 bits, enough bit flips for the radius), on the same
  data in the same process: wall time, its pairs compared with ours, and the speed ratio.

Prints one row per radius and the machine (CPU count, platform).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.images.neardup import pairs_within, plan  # noqa: E402


def planted(n: int, seed: int, n_clusters: int, copies: int, max_flips: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` hashes: random ones plus clusters of a seed and ``copies`` copies 0..max_flips bits away.

    Returns the hashes (shuffled) and each hash's cluster label (-1 for unplanted).
    """
    rng = np.random.default_rng(seed)
    n_planted = n_clusters * (copies + 1)
    seeds = rng.integers(0, 2**64, n_clusters, dtype=np.uint64)
    values = [seeds]
    for _ in range(copies):
        flips = rng.integers(0, max_flips + 1, n_clusters)
        masks = np.zeros(n_clusters, dtype=np.uint64)
        for k in range(max_flips):   # set ``flips`` distinct random bits per copy
            bit = np.uint64(1) << rng.integers(0, 64, n_clusters).astype(np.uint64)
            take = (k < flips) & ((masks & bit) == 0)
            masks[take] |= bit[take]
        values.append(seeds ^ masks)
    hashes = np.concatenate(values + [rng.integers(0, 2**64, n - n_planted, dtype=np.uint64)])
    labels = np.concatenate([np.tile(np.arange(n_clusters), copies + 1), np.full(n - n_planted, -1)])
    perm = rng.permutation(n)
    return hashes[perm], labels[perm]


def planted_pairs(hashes: np.ndarray, labels: np.ndarray, radius: int) -> np.ndarray:
    """Keys i * n + j of every intra-cluster pair within ``radius`` (the pairs that must be found)."""
    n = len(hashes)
    idx = np.flatnonzero(labels >= 0)
    idx = idx[np.argsort(labels[idx], kind="stable")]
    size = np.bincount(labels[idx])[0]
    groups = idx.reshape(-1, size)
    keys = []
    for a in range(size):
        for b in range(a + 1, size):
            i, j = groups[:, a], groups[:, b]
            near = np.bitwise_count(hashes[i] ^ hashes[j]) <= radius
            lo, hi = np.minimum(i, j)[near], np.maximum(i, j)[near]
            keys.append(lo.astype(np.int64) * n + hi)
    return np.unique(np.concatenate(keys))


def brute_force(u: np.ndarray, radius: int, chunk: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """All pairs within ``radius`` by comparing every pair (the reference on a subsample)."""
    out_i, out_j = [], []
    for lo in range(0, len(u), chunk):
        block = np.bitwise_count(u[lo:lo + chunk, None] ^ u[None, :])
        i, j = np.nonzero(block <= radius)
        i = i + lo
        keep = i < j
        out_i.append(i[keep])
        out_j.append(j[keep])
    i, j = np.concatenate(out_i), np.concatenate(out_j)
    order = np.lexsort((j, i))
    return i[order], j[order]


def faiss_pairs(u: np.ndarray, radius: int) -> tuple[float, np.ndarray, str]:
    """faiss IndexBinaryMultiHash range search of every hash against all (exact config)."""
    import faiss

    nhash, bits = 3, 21
    nflip = -(-(radius + 1) // nhash) - 1      # some table's 21 bits differ by <= nflip
    index = faiss.IndexBinaryMultiHash(64, nhash, bits)
    index.nflip = nflip
    codes = np.ascontiguousarray(u).view(np.uint8).reshape(len(u), 8)
    t0 = time.perf_counter()
    index.add(codes)
    lims, _, ids = index.range_search(codes, radius + 1)   # faiss keeps distances < radius
    seconds = time.perf_counter() - t0
    q = np.repeat(np.arange(len(u), dtype=np.int64), np.diff(lims).astype(np.int64))
    keep = q < ids
    keys = np.unique(q[keep] * len(u) + ids[keep].astype(np.int64))
    return seconds, keys, f"IndexBinaryMultiHash(nhash={nhash}, b={bits}, nflip={nflip}), {faiss.omp_get_max_threads()} threads"


def child(args: argparse.Namespace) -> None:
    """One radius in this process: ours (timed, peak memory), checks, then the faiss peer."""
    r = args.radius[0]
    hashes, labels = planted(args.n, args.seed, args.clusters, args.copies, args.max_flips)
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        i, j, _ = pairs_within(hashes, r, workers=args.workers)
        times.append(time.perf_counter() - t0)
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9   # KiB on Linux
    keys = i * np.int64(args.n) + j
    must = planted_pairs(hashes, labels, r)
    recall = float(np.isin(must, keys).mean())
    rng = np.random.default_rng(args.seed + 1)
    sub = np.sort(rng.choice(args.n, min(args.n, args.subsample), replace=False))
    bi, bj = brute_force(hashes[sub], r)
    si, sj, _ = pairs_within(hashes[sub], r, workers=args.workers)
    out = {"radius": r, "n": args.n, "pairs": len(i), "best_s": min(times), "median_s": float(np.median(times)),
           "peak_gb": peak_gb, "planted_pairs": len(must), "planted_recall": recall,
           "subsample": len(sub), "subsample_pairs": len(bi),
           "subsample_exact": bool(np.array_equal(bi, si) and np.array_equal(bj, sj)),
           "plan": " ".join(f"{b.bits}b/t{b.threshold}" for b in plan(r, args.n))}
    if not args.no_faiss:
        try:
            fs, fkeys, config = faiss_pairs(hashes, r)
            out.update(faiss_s=fs, faiss_config=config, faiss_same_pairs=bool(np.array_equal(np.sort(keys), fkeys)),
                       faiss_recall=float(np.isin(must, fkeys).mean()), speedup=fs / min(times))
        except ImportError:
            out["faiss_s"] = None
    print(json.dumps(out))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--radius", type=int, nargs="+", default=[4, 8])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--clusters", type=int, default=20_000, help="planted clusters")
    ap.add_argument("--copies", type=int, default=4, help="near copies per planted cluster")
    ap.add_argument("--max-flips", type=int, default=10, help="copies differ from their seed by 0..this many bits")
    ap.add_argument("--subsample", type=int, default=20_000, help="hashes checked against brute force")
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--no-faiss", action="store_true", help="skip the faiss peer")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args)
        return
    rows = []
    for r in args.radius:
        cmd = [sys.executable, __file__, "--child", "--n", str(args.n), "--radius", str(r), "--repeats",
               str(args.repeats), "--workers", str(args.workers), "--clusters", str(args.clusters), "--copies",
               str(args.copies), "--max-flips", str(args.max_flips), "--subsample", str(args.subsample),
               "--seed", str(args.seed)] + (["--no-faiss"] if args.no_faiss else [])
        proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    print(f"machine: {os.cpu_count()} CPUs, Python {platform.python_version()}, numpy {np.__version__}, "
          f"{platform.platform()}, {platform.processor() or platform.machine()}")
    print(f"data: {args.n:,} uniform 64-bit hashes, {args.clusters:,} planted clusters of {args.copies + 1} "
          f"(copies 0..{args.max_flips} bits from their seed); ours with {args.workers} threads")
    print(f"{'radius':>6} {'plan':>16} {'pairs':>8} {'best s':>7} {'median s':>8} {'peak GB':>7} {'planted':>8} "
          f"{'recall':>6} {'brute-force check':>22} {'faiss s':>8} {'faiss=ours':>10} {'speedup':>7}")
    for o in rows:
        brute = f"{o['subsample_pairs']} pairs/{o['subsample']:,}: {'exact' if o['subsample_exact'] else 'DIFFERS'}"
        faiss_s = f"{o['faiss_s']:8.1f}" if o.get("faiss_s") else f"{'-':>8}"
        same = f"{str(o.get('faiss_same_pairs', '-')):>10}"
        speed = f"{o['speedup']:6.1f}x" if o.get("speedup") else f"{'-':>7}"
        print(f"{o['radius']:>6} {o['plan']:>16} {o['pairs']:>8} {o['best_s']:7.2f} {o['median_s']:8.2f} "
              f"{o['peak_gb']:7.2f} {o['planted_pairs']:>8} {o['planted_recall']:6.3f} {brute:>22} {faiss_s} {same} "
              f"{speed}")
    for o in rows:
        if o.get("faiss_config"):
            print(f"faiss at radius {o['radius']}: {o['faiss_config']}, searched with radius + 1 (its range search "
                  f"is strict); planted recall {o['faiss_recall']:.3f}")


if __name__ == "__main__":
    main()

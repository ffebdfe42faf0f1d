"""Candidates + verification + clustering at a million images: wall time and peak memory.

    python bench/dedup_verify_scale.py [--n 1000000] [--groups 100000] [--copies 2]

What the dedup stage does after hashing, at Derm1M size, on descriptors drawn in this process
(hashing is timed by ``bench/hash_speed.py``): ``n`` images with a uniform random whole-image
pHash, random window pHashes and a random-textured 48-px thumbnail; ``groups`` of them get
``copies`` near copies each (a whole-image pHash 0..6 bits away or, for every third copy, a
crop whose whole-image pHash sits 0..6 bits from a window of the original; a thumbnail that is
the original's plus noise). Then, in a fresh child process (so peak memory is that run's own):

* candidates (:func:`pipeline.images.candidates.find_candidates`, the default radii),
* verification (:func:`pipeline.images.verify.verify`) of every candidate,
* leader clustering (:func:`pipeline.images.clusters.leader_clusters`),

each timed, with the child's peak RSS, and the recall of the planted copies (every copy must
end in its original's cluster) and the number of clusters holding two unrelated images.
Prints the machine.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import machine  # noqa: E402
from pipeline.images.candidates import find_candidates  # noqa: E402
from pipeline.images.clusters import leader_clusters  # noqa: E402
from pipeline.images.matching import MatchConfig  # noqa: E402
from pipeline.images.verify import verify, whole_views  # noqa: E402
from pipeline.images.views import THUMB, WINDOWS, match_views  # noqa: E402


def flip_bits(rng: np.random.Generator, values: np.ndarray, max_flips: int) -> np.ndarray:
    out = values.copy()
    for k in range(len(out)):
        for bit in rng.choice(64, rng.integers(0, max_flips + 1), replace=False):
            out[k] ^= np.uint64(1) << np.uint64(bit)
    return out


def draw(n: int, groups: int, copies: int, seed: int) -> tuple[np.ndarray, ...]:
    """(full, windows, thumbs, origin): origin[k] is the planted original of copy k, else k."""
    rng = np.random.default_rng(seed)
    n_orig = n - groups * copies
    full = rng.integers(0, 2**63, n, dtype=np.int64).view(np.uint64)
    windows = rng.integers(0, 2**63, (n, len(WINDOWS)), dtype=np.int64).view(np.uint64)
    thumbs = np.empty((n, THUMB, THUMB), dtype=np.uint8)
    for lo in range(0, n, 8192):   # smooth-ish random texture: 12x12 noise upsampled x4, plus grain
        m = min(n, lo + 8192) - lo
        coarse = rng.integers(40, 216, (m, 12, 12), dtype=np.int16).repeat(4, 1).repeat(4, 2)
        thumbs[lo:lo + m] = np.clip(coarse + rng.integers(-20, 21, (m, THUMB, THUMB), dtype=np.int16), 0, 255)
    origin = np.arange(n)
    originals = rng.choice(n_orig, groups, replace=False)
    k = n_orig
    for c in range(copies):
        idx = np.arange(k, k + groups)
        origin[idx] = originals
        for lo in range(0, groups, 8192):   # in slices: the drawing must not set the peak it measures
            sl = slice(lo, min(groups, lo + 8192))
            noise = rng.integers(-6, 7, (sl.stop - sl.start, THUMB, THUMB), dtype=np.int16)
            thumbs[idx[sl]] = np.clip(thumbs[originals[sl]].astype(np.int16) + noise, 0, 255)
        if c % 3 == 2:   # a crop: its whole-image hash near a window of the original
            full[idx] = flip_bits(rng, windows[originals, 1], 6)
            thumbs[idx] = _crop_thumbs(thumbs[originals], WINDOWS[1])
        else:
            full[idx] = flip_bits(rng, full[originals], 6)
        k += groups
    return full.view(np.int64), windows.view(np.int64), thumbs, origin


def _crop_thumbs(thumbs: np.ndarray, window) -> np.ndarray:
    from PIL import Image
    x0, y0, x1, y1 = window.bounds()
    box = (x0 * THUMB, y0 * THUMB, x1 * THUMB, y1 * THUMB)
    return np.stack([np.asarray(Image.fromarray(t).resize((THUMB, THUMB), Image.Resampling.BOX, box=box))
                     for t in thumbs])


def child(args: argparse.Namespace) -> None:
    full, windows, thumbs, origin = draw(args.n, args.groups, args.copies, args.seed)
    cfg = MatchConfig()
    t0 = time.perf_counter()
    cand = find_candidates(full, windows, cfg.radius, cfg.window_radius)
    t1 = time.perf_counter()
    whole = whole_views(thumbs)
    all_windows = [w for _, w in match_views()]
    accepted, _, score = verify(thumbs, whole, cand.a, cand.b, [all_windows[w] for w in cand.window], cand.mirror,
                                [cfg.clinical], np.zeros(len(cand), dtype=np.int64))
    t2 = time.perf_counter()
    keep = np.flatnonzero(accepted)
    leader = leader_clusters(args.n, cand.a[keep], cand.b[keep], score[keep], np.arange(args.n))
    t3 = time.perf_counter()
    copies = np.flatnonzero(origin != np.arange(args.n))
    recall = float((leader[copies] == leader[origin[copies]]).mean())
    # clusters holding images of two planted groups (origin differs)
    bad = len({int(x) for x in leader[np.flatnonzero(origin[leader] != origin)]})
    print(json.dumps({"n": args.n, "candidates": len(cand), "candidate_pairs": cand.pairs(),
                      "accepted": int(accepted.sum()), "candidates_s": t1 - t0, "verify_s": t2 - t1,
                      "cluster_s": t3 - t2, "total_s": t3 - t0,
                      "peak_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9,
                      "recall": recall, "mixed_clusters": bad}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--groups", type=int, default=100_000, help="planted originals with copies")
    ap.add_argument("--copies", type=int, default=2, help="copies per planted original")
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args)
        return
    cmd = [sys.executable, __file__, "--child", "--n", str(args.n), "--groups", str(args.groups),
           "--copies", str(args.copies), "--seed", str(args.seed)]
    run = subprocess.run(cmd, capture_output=True, text=True)
    if run.returncode:
        sys.exit(f"the measuring child failed (exit {run.returncode}):\n{run.stderr[-3000:]}")
    o = json.loads(run.stdout.strip().splitlines()[-1])
    print(f"machine: {machine()}")
    print(f"data: {o['n']:,} images ({args.groups:,} planted originals x {args.copies} copies), default radii "
          f"(whole {MatchConfig().radius}, window {MatchConfig().window_radius})")
    print(f"candidates: {o['candidates']:,} rows / {o['candidate_pairs']:,} pairs in {o['candidates_s']:.1f} s; "
          f"verification: {o['accepted']:,} accepted in {o['verify_s']:.1f} s "
          f"({o['candidates'] / max(o['verify_s'], 1e-9):,.0f} rows/s); clustering {o['cluster_s']:.1f} s")
    print(f"total (hashing excluded): {o['total_s']:.1f} s, peak RSS {o['peak_gb']:.2f} GB (descriptors included); "
          f"planted copies in their original's cluster: {o['recall']:.4f}; clusters mixing planted groups: "
          f"{o['mixed_clusters']}")


if __name__ == "__main__":
    main()

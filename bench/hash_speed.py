"""pHash speed per core: imagehash (the reference path) vs the fast path, on real JPEGs.

    python bench/hash_speed.py [--shared ../shared] [--limit N]

For each folder of ``../shared/corpus`` (HAM10000 200x150, DermNet 640x480, Derm7pt), hashes
every image in one process with bare ``imagehash.phash(Image.open(path))``, with the reference
path as the dedup stage ran it before (EXIF transpose, RGB, imagehash), and with the fast path
as the dedup stage calls it now (read bytes, reduced decode, batched DCT). Rates are images per
CPU-second of this process (the per-core rate; other load on a shared machine does not move
it), best of ``--repeats``. Also prints the distribution of Hamming distances between the
reference and fast hashes of the same file. Files are read once first (warm page cache).
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import imagehash
import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import machine, require_shared_corpus  # noqa: E402
from pipeline.images.benchmarks import list_images  # noqa: E402
from pipeline.images.hashing import DRAFT_SIDE, HASH_METHODS, HashedImage, hash_files  # noqa: E402

FOLDERS = {"ham10000": "corpus/ham10000/images", "dermnet": "corpus/dermnet", "derm7pt": "corpus/derm7pt/images"}


def timed(paths: list[str], method: str) -> tuple[float, list[int]]:
    """CPU seconds of this process to hash ``paths`` ('bare': imagehash.phash(Image.open(p)) alone).

    CPU time, not wall time: images per CPU-second is the per-core rate, and it does not move
    when other work shares the machine (wall time is printed too, as a cross-check).
    """
    t0 = time.process_time()
    if method == "bare":
        values = []
        for p in paths:
            with Image.open(p) as img:
                values.append(int(str(imagehash.phash(img)), 16))
        return time.process_time() - t0, values
    hashed = hash_files(paths, "fast", views=True) if method == "views" else hash_files(paths, method)
    seconds = time.process_time() - t0
    assert all(isinstance(h, HashedImage) for h in hashed), "a real image failed to hash"
    return seconds, [h.phash for h in hashed]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", type=Path, default=REPO.parent / "shared")
    ap.add_argument("--limit", type=int, default=0, help="images per folder (0 = all)")
    ap.add_argument("--repeats", type=int, default=2, help="timed passes per path (the best is kept)")
    args = ap.parse_args()
    require_shared_corpus(args.shared)
    print(f"machine: {machine()}, "
          f"{platform.processor() or platform.machine()}; one process; rates are images per CPU-second "
          "(= per core, unaffected by other load)")
    print(f"fast = {HASH_METHODS['fast']} (JPEG decode at 1/2-1/8 scale to >= {DRAFT_SIDE} px via simplejpeg or "
          "Pillow draft, fused Lanczos+DCT per batch); "
          f"reference = {HASH_METHODS['imagehash']}")
    print("imagehash.phash = imagehash.phash(Image.open(path)) alone; reference path = what dedup ran before "
          "(EXIF transpose, RGB, imagehash.phash)")
    print("fast+views = the fast path plus what near-duplicate matching keeps (4 window pHashes and a 48-px "
          "thumbnail; what the dedup stage runs)")
    print(f"{'folder':<10} {'images':>7} {'imagehash.phash/s':>18} {'reference path/s':>17} {'fast/s':>7} "
          f"{'fast+views/s':>13} {'vs imagehash.phash':>19} {'vs reference':>13}")
    totals = {"n": 0, "bare": 0.0, "imagehash": 0.0, "fast": 0.0, "views": 0.0}
    wall0 = time.perf_counter()
    distances = []
    for name, rel in FOLDERS.items():
        paths = [p.as_posix() for p in list_images(args.shared / rel)]
        if args.limit:
            paths = paths[:: max(1, len(paths) // args.limit)][: args.limit]
        for p in paths:
            Path(p).read_bytes()
        secs = {}
        for method in ("bare", "imagehash", "fast", "views"):   # best of --repeats (shared machines)
            best = None
            for _ in range(args.repeats):
                s, values = timed(paths, method)
                best = s if best is None else min(best, s)
                if method == "imagehash":
                    ref = values
                elif method == "fast":
                    fast = values
            secs[method] = best
        distances.append(np.bitwise_count(np.array(ref, dtype=np.uint64) ^ np.array(fast, dtype=np.uint64)))
        totals["n"] += len(paths)
        for m in secs:
            totals[m] += secs[m]
        n = len(paths)
        print(f"{name:<10} {n:>7} {n / secs['bare']:>18.0f} {n / secs['imagehash']:>17.0f} {n / secs['fast']:>7.0f} "
              f"{n / secs['views']:>13.0f} {secs['bare'] / secs['fast']:>18.1f}x {secs['imagehash'] / secs['fast']:>12.1f}x")
    n = totals["n"]
    wall = time.perf_counter() - wall0
    print(f"{'all':<10} {n:>7} {n / totals['bare']:>18.0f} {n / totals['imagehash']:>17.0f} {n / totals['fast']:>7.0f} "
          f"{n / totals['views']:>13.0f} {totals['bare'] / totals['fast']:>18.1f}x "
          f"{totals['imagehash'] / totals['fast']:>12.1f}x")
    cpu = sum(totals[m] for m in ("bare", "imagehash", "fast", "views")) * args.repeats
    print(f"(wall {wall:.0f} s for {cpu:.0f} CPU-seconds of timed hashing: "
          f"{'the machine was busy' if wall > 1.3 * cpu else 'the machine was quiet'})")
    d = np.concatenate(distances)
    print(f"\nHamming distance between the two paths' hashes of the same file ({len(d)} files): "
          f"mean {d.mean():.2f}, median {np.median(d):.0f}, p95 {np.percentile(d, 95):.0f}, "
          f"p99 {np.percentile(d, 99):.0f}, max {d.max()}")
    counts = np.bincount(d)
    print("distance  " + " ".join(f"{k:>6}" for k in range(len(counts))))
    print("files     " + " ".join(f"{c:>6}" for c in counts))
    print("share     " + " ".join(f"{c / len(d):>6.3f}" for c in counts))


if __name__ == "__main__":
    main()

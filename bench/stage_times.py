"""Wall time of every data stage on the demo corpus (or a larger one), with the machine it ran on.

    python bench/stage_times.py [--images N] [--workers W]

Runs the real stage functions in a scratch directory; prints one row per stage (seconds,
rows in/out, rows per second) and the machine (CPU count, Python, platform).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import machine  # noqa: E402
from pipeline.params import load_params, relocate_outputs  # noqa: E402
from pipeline.stages.order import stage_functions  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=400, help="unique demo images (default 400)")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()
    os.environ.setdefault("TQDM_DISABLE", "1")
    with tempfile.TemporaryDirectory() as tmp:
        params = relocate_outputs(load_params(REPO / "params.yaml"), tmp)
        demo = params["demo"]
        scale = args.images / demo["n_unique_images"]
        for key in ("n_exact_copies", "n_reencoded", "n_resized", "n_cropped", "n_multi_caption"):
            demo[key] = max(1, round(demo[key] * scale))  # keep the planted shares
        demo["n_unique_images"] = args.images
        params["ingest"]["workers"] = params["dedup"]["workers"] = args.workers
        cwd = os.getcwd()
        os.chdir(tmp)
        try:
            rows = []
            for name, fn in stage_functions():
                t0 = time.perf_counter()
                result = fn(params)
                rows.append((name, time.perf_counter() - t0, result.rows_in, result.rows_out))
        finally:
            os.chdir(cwd)
    print(f"machine: {machine()}")
    print(f"demo: {args.images} unique images, workers {args.workers}")
    print(f"{'stage':<12} {'seconds':>8} {'rows in':>8} {'rows out':>8} {'rows/s':>9}")
    for name, secs, rin, rout in rows:
        rate = f"{max(rin, rout) / secs:9.0f}" if secs > 0 and max(rin, rout) else f"{'-':>9}"
        print(f"{name:<12} {secs:8.2f} {rin:8d} {rout:8d} {rate}")
    print(f"{'total':<12} {sum(r[1] for r in rows):8.2f}")


if __name__ == "__main__":
    main()

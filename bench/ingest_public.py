"""All of HAM10000 and Derm7pt through the real ingest stage with the ``public_dataset`` adapter.

    python bench/ingest_public.py [--shared ../shared] [--workers 2] [--only ham10000 derm7pt] [--json OUT]

Runs ``pipeline.stages.ingest.run`` on ``../shared/corpus/ham10000`` (layout ``ham10000``,
10,015 images) and ``../shared/corpus/derm7pt`` (layout ``derm7pt``, 1,011 rows), reading the
files in place, and prints per dataset: records read, pairs, distinct images, rejects by
reason, distinct group keys (HAM10000 lesion ids; Derm7pt has no case_num column, so none),
the distinct ids in the metadata they should equal, and the stage's wall time. The same
counts are asserted by tests/test_public_datasets.py.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import machine, require_shared_corpus  # noqa: E402
from pipeline.stages import ingest  # noqa: E402
from pipeline.tables import read_table  # noqa: E402

DATASETS = {  # name -> (folder under shared/corpus, layout, metadata CSV, its group-key column)
    "ham10000": ("ham10000", "ham10000", "HAM10000_metadata.csv", "lesion_id"),
    "derm7pt": ("derm7pt", "derm7pt", "meta.csv", "case_num"),
}


def ingest_public(shared: Path, name: str, out: Path, workers: int = 2) -> dict:
    """Ingest one shared dataset with the public_dataset adapter; its counts and wall time."""
    folder, layout, meta_csv, key = DATASETS[name]
    root = shared / "corpus" / folder
    params = {"ingest": {"out": str(out), "workers": workers, "max_image_pixels": 89478485, "min_side": 16,
                         "sources": [{"name": name, "adapter": "public_dataset", "path": str(root), "layout": layout}]},
              "executor": {"kind": "local", "workers": 0}}
    start = time.perf_counter()
    result = ingest.run(params)
    seconds = time.perf_counter() - start
    pairs = read_table("pairs", out / "pairs.parquet")
    images = read_table("images", out / "images.parquet")
    rejects = read_table("rejects", out / "rejects.parquet")
    with open(root / meta_csv, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    return {
        "dataset": name, "layout": layout, "metadata_rows": len(rows), "records": result.rows_in,
        "pairs": len(pairs), "images": len(images), "rejects": dict(sorted(Counter(rejects["reason"]).items())),
        "reject_records": sorted(rejects["record_id"]), "group_keys": int(pairs["group_key"].nunique()),
        "metadata_group_ids": len({r[key] for r in rows if r.get(key)}), "labels": int(pairs["source_label"].nunique()),
        "workers": workers, "seconds": round(seconds, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shared", type=Path, default=REPO.parent / "shared")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--only", nargs="+", choices=sorted(DATASETS), default=list(DATASETS))
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    require_shared_corpus(args.shared)
    print(f"machine: {machine()}")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.only:
            r = ingest_public(args.shared, name, Path(tmp) / name, args.workers)
            results.append(r)
            print(f"{name} ({r['layout']}): {r['metadata_rows']} metadata rows -> {r['records']} records, "
                  f"{r['pairs']} pairs, {r['images']} images, rejects {r['rejects']} {r['reject_records'][:3]}, "
                  f"{r['group_keys']} group keys (metadata: {r['metadata_group_ids']} distinct), "
                  f"{r['labels']} labels; {r['seconds']} s with {r['workers']} workers")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()

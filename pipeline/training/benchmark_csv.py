"""Build zero-shot benchmark CSVs (``image_path,label,split`` + class names) from labelled folders.

Why: Derm1M evaluates DermLIP on PAD, HAM10000, Fitzpatrick17k and Daffodil through CSVs of
``image_path,label`` with a class-name list; HAM10000 sits in ``../shared/corpus/ham10000``, so
the evaluate stage and its tests can run a real benchmark without shipping any of its images.
The ``split`` column (train/test, by lesion so no lesion is on both sides) serves the linear
probe; zero-shot ignores it.

    python -m pipeline.training.benchmark_csv ../shared/corpus/ham10000 bench/ham.csv --per-class 50
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import sys
from pathlib import Path

from pipeline.errors import PipelineError
from pipeline.sources.ham10000 import DX_NAMES
from pipeline.tables import atomic_path

# HAM10000 ``dx`` codes -> the long class names the prompts use (the same names the adapter's
# captions use).
HAM10000_CLASSES = DX_NAMES


def _bucket(key: str, salt: str) -> float:
    """A stable number in [0, 1) for ``key``: the same lesion always lands on the same side."""
    return int.from_bytes(hashlib.sha256(f"{salt}|{key}".encode()).digest()[:8], "big") / 2**64


def build_ham10000_csv(root: Path, out_csv: Path, per_class: int | None = None,
                       test_fraction: float = 0.3, salt: str = "ham10000-bench-v1") -> tuple[int, list[str]]:
    """Write ``out_csv`` (absolute image paths) and ``<stem>_classnames.txt`` beside it.

    ``per_class`` keeps the first N images of each class in image-id order (a small, fixed
    subset for tests); None keeps all 10,015. Rows whose image file is absent are left out and
    counted in the message, not fatal. Returns the row count and the class names in label order.
    """
    root = Path(root)
    meta = root / "HAM10000_metadata.csv"
    if not meta.is_file():
        raise PipelineError(f"{meta}: not found; point at the HAM10000 folder (metadata CSV + images/)")
    if not 0 < test_fraction < 1:
        raise PipelineError(f"test_fraction must be in (0, 1), got {test_fraction}")
    with open(meta, newline="", encoding="utf-8") as fh:
        rows = sorted(csv.DictReader(fh), key=lambda r: r.get("image_id", ""))
    if rows and not {"image_id", "dx", "lesion_id"} <= set(rows[0]):
        raise PipelineError(f"{meta}: needs image_id, dx and lesion_id columns")
    taken: dict[str, int] = {}
    out_rows, missing = [], 0
    for r in rows:
        name = HAM10000_CLASSES.get(r["dx"])
        if name is None or (per_class is not None and taken.get(name, 0) >= per_class):
            continue
        path = (root / "images" / f"{r['image_id']}.jpg").resolve()
        if not path.is_file():
            missing += 1
            continue
        taken[name] = taken.get(name, 0) + 1
        split = "test" if _bucket(r["lesion_id"], salt) < test_fraction else "train"
        out_rows.append((str(path), name, split))
    if not out_rows:
        raise PipelineError(f"{root}: no HAM10000 image found under images/")
    with atomic_path(out_csv) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["image_path", "label", "split"])
        writer.writerows(out_rows)
    classnames = sorted(HAM10000_CLASSES.values())
    with atomic_path(Path(out_csv).with_name(f"{Path(out_csv).stem}_classnames.txt")) as tmp:
        tmp.write_text("\n".join(classnames) + "\n", encoding="utf-8")
    if missing:
        print(f"benchmark_csv: {missing} metadata row(s) without an image file left out", file=sys.stderr)
    return len(out_rows), classnames


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.training.benchmark_csv", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", help="HAM10000 folder (HAM10000_metadata.csv + images/)")
    parser.add_argument("out_csv")
    parser.add_argument("--per-class", type=int, default=None, help="at most N images per class")
    args = parser.parse_args(argv)
    try:
        n, names = build_ham10000_csv(Path(args.root), Path(args.out_csv), args.per_class)
    except PipelineError as exc:
        print(f"benchmark_csv: error: {exc}", file=sys.stderr)
        return 2
    print(f"{args.out_csv}: {n} rows, {len(names)} classes")
    return 0


if __name__ == "__main__":
    sys.exit(main())

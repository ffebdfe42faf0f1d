"""Benchmark image sets for decontamination: which files a benchmark consists of.

Why a module of its own: the dedup stage (params.yaml ``decontaminate.benchmarks``) and the
standalone ``derm1m find-duplicates --against`` must read the same kinds of set the same way.
A set is a folder (every image under it, recursively) or a CSV listing image paths (one column;
relative paths resolve against the CSV's folder), as evaluation benchmarks are published.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import ConfigError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"}


@dataclass(frozen=True)
class BenchmarkSet:
    """A named benchmark: a folder of images or a CSV of image paths."""

    name: str
    path: Path
    column: str = "image_path"


def list_images(root: Path) -> list[Path]:
    """Image files under ``root`` (recursive, hidden files skipped), sorted by POSIX path."""
    found = [p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
             and not any(part.startswith(".") for part in p.relative_to(root).parts)]
    return sorted(found, key=lambda p: p.as_posix())


def parse_benchmarks(entries: object, source: str = "params.yaml decontaminate.benchmarks") -> list[BenchmarkSet]:
    """Check the params list (``{name, path[, column]}`` mappings) and return the sets."""
    if entries is None:
        return []
    if not isinstance(entries, list):
        raise ConfigError(f"{source} must be a list of {{name, path}} mappings, got {type(entries).__name__}")
    sets, names = [], set()
    for k, entry in enumerate(entries):
        if not isinstance(entry, dict) or not {"name", "path"} <= set(entry) or set(entry) - {"name", "path", "column"}:
            raise ConfigError(f"{source}[{k}] needs name and path (and optionally column), got {entry!r}")
        name, path = str(entry["name"]), Path(str(entry["path"]))
        if name in names:
            raise ConfigError(f"{source}: benchmark name {name!r} used twice")
        names.add(name)
        if not path.exists():
            raise ConfigError(f"{source}[{k}] ({name}): {path} does not exist; fix the path or remove the entry")
        if path.is_file() and path.suffix.lower() != ".csv":
            raise ConfigError(f"{source}[{k}] ({name}): {path} must be a folder of images or a .csv of image paths")
        sets.append(BenchmarkSet(name, path, str(entry.get("column", "image_path"))))
    return sets


def benchmark_files(bench: BenchmarkSet) -> list[str]:
    """Every image path of a benchmark set, sorted (so hashing and outputs are deterministic)."""
    if bench.path.is_dir():
        return [p.as_posix() for p in list_images(bench.path)]
    with open(bench.path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        if bench.column not in (reader.fieldnames or []):
            raise ConfigError(f"benchmark {bench.name!r}: {bench.path} has no column {bench.column!r} "
                              f"(columns: {reader.fieldnames}); set 'column' in its entry")
        rows = [row[bench.column].strip() for row in reader if (row.get(bench.column) or "").strip()]
    base = bench.path.parent
    return sorted({(Path(r) if Path(r).is_absolute() else base / r).as_posix() for r in rows})

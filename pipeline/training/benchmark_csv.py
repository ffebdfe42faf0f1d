"""Build Derm1M's benchmark CSVs from the datasets' published layouts.

Why: Derm1M evaluates DermLIP on zero-shot classification (PAD-UFES-20, HAM10000,
Fitzpatrick17k, Daffodil; Derm7pt and DDI too), few-shot linear probing, concept annotation
(SkinCon, Derm7pt) and retrieval (SkinCAP). The evaluate stage reads one CSV per benchmark; this
module writes them from each dataset's own files, so the datasets' images never enter the repo.

Layouts (``--layout``; ROOT is the dataset folder unless said otherwise):

- zero-shot (``image_path,label,split`` + ``<stem>_classnames.txt``): ``ham10000``,
  ``pad_ufes_20``, ``fitzpatrick17k``, ``ddi``, ``derm7pt`` (the public_dataset adapter's
  layouts), and ``folder`` (one sub-folder per class: Daffodil, DermNet). ``split`` (train/test)
  is drawn per lesion/patient/case so no group is on both sides; it serves the linear probe.
  An image whose bytes sit under two classes (DermNet's synonym folders) cannot be scored and is
  left out (counted).
- concepts (``image_path`` + 0/1 concept columns): ``skincon`` (ROOT is SkinCon's CSV;
  ``--images`` the folder holding its ``ImageID`` files), ``derm7pt_concepts`` (the seven-point
  criteria: a criterion is present unless ``absent``; ``irregular streaks``-style qualified
  concepts where ``ontology/concepts.yaml`` names them).
- retrieval (``image_path,caption``): ``skincap`` (ROOT is SkinCAP's meta CSV, ``filename`` and
  a caption column; ``--images`` the release root its file names are relative to).

Rows whose image file is absent are left out and counted in the message, never fatal.

    python -m pipeline.training.benchmark_csv ../shared/corpus/ham10000 bench/ham.csv --per-class 50
    python -m pipeline.training.benchmark_csv ../shared/corpus/derm7pt bench/d7.csv --layout derm7pt_concepts
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from pipeline.errors import PipelineError
from pipeline.sources.ham10000 import DX_NAMES
from pipeline.sources.public_dataset import PAD_UFES_NAMES, SEVEN_POINT
from pipeline.tables import atomic_path
from pipeline.text.vocab import load_concepts

# HAM10000 ``dx`` codes -> the long class names the prompts use (the same names the adapter's
# captions use).
HAM10000_CLASSES = DX_NAMES
CONCEPTS_YAML = Path(__file__).resolve().parents[2] / "ontology" / "concepts.yaml"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
Row = tuple[Path, str, str]  # image path, class name, split group key


def _bucket(key: str, salt: str) -> float:
    """A stable number in [0, 1) for ``key``: the same lesion always lands on the same side."""
    return int.from_bytes(hashlib.sha256(f"{salt}|{key}".encode()).digest()[:8], "big") / 2**64


def _read_csv(path: Path, required: set[str]) -> list[dict[str, str]]:
    if not path.is_file():
        raise PipelineError(f"{path}: not found; point at the dataset's folder or metadata CSV")
    with open(path, newline="", encoding="utf-8-sig") as fh:
        rows = list(csv.DictReader(fh))
    missing = required - set(rows[0] if rows else required)
    if missing:
        raise PipelineError(f"{path}: needs column(s) {sorted(missing)}")
    return rows


class _CaseFolder:
    """Find a file by its relative path, tolerating letter case (Derm7pt's ``FCl/Fcl068.jpg``)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._lower: dict[str, list[Path]] | None = None

    def __call__(self, rel: str) -> Path:
        path = self.root / rel
        if path.is_file():
            return path
        if self._lower is None:
            self._lower = {}
            for p in sorted(self.root.rglob("*")):
                if p.is_file():
                    self._lower.setdefault(p.relative_to(self.root).as_posix().lower(), []).append(p)
        found = self._lower.get(rel.lower(), [])
        return found[0] if len(found) == 1 else path


def _ham10000(root: Path) -> Iterator[Row]:
    for r in sorted(_read_csv(root / "HAM10000_metadata.csv", {"image_id", "dx", "lesion_id"}),
                    key=lambda r: r["image_id"]):
        if r["dx"] in HAM10000_CLASSES:
            yield root / "images" / f"{r['image_id']}.jpg", HAM10000_CLASSES[r["dx"]], r["lesion_id"]


def _pad_ufes_20(root: Path) -> Iterator[Row]:
    for r in sorted(_read_csv(root / "metadata.csv", {"patient_id", "img_id", "diagnostic"}),
                    key=lambda r: r["img_id"]):
        name = PAD_UFES_NAMES.get(r["diagnostic"].strip().upper())
        if name:
            yield root / "images" / r["img_id"], name, r["patient_id"]


def _fitzpatrick17k(root: Path) -> Iterator[Row]:
    for r in sorted(_read_csv(root / "fitzpatrick17k.csv", {"md5hash", "label"}), key=lambda r: r["md5hash"]):
        if r["label"].strip():
            yield root / "images" / f"{r['md5hash']}.jpg", r["label"].strip().lower(), r["md5hash"]


def _ddi(root: Path) -> Iterator[Row]:
    for r in sorted(_read_csv(root / "ddi_metadata.csv", {"DDI_file", "disease"}), key=lambda r: r["DDI_file"]):
        if r["disease"].strip():
            yield (root / "images" / r["DDI_file"], r["disease"].strip().replace("-", " ").lower(),
                   r.get("DDI_ID") or r["DDI_file"])


def _derm7pt(root: Path) -> Iterator[Row]:
    find = _CaseFolder(root / "images")
    for r in sorted(_read_csv(root / "meta.csv", {"diagnosis", "derm"}), key=lambda r: r["derm"]):
        if r["diagnosis"].strip() and r["derm"].strip():
            yield find(r["derm"].strip()), r["diagnosis"].strip().lower(), r.get("case_num") or r["derm"]


def _folder(root: Path) -> Iterator[Row]:
    """Class folders: the folder name is the class (underscores as spaces, lowercase)."""
    if not root.is_dir():
        raise PipelineError(f"{root}: not a folder of class folders")
    for cls in sorted(p for p in root.iterdir() if p.is_dir()):
        for path in sorted(p for p in cls.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()):
            yield path, cls.name.replace("_", " ").strip().lower(), path.relative_to(root).as_posix()


ZEROSHOT_LAYOUTS: dict[str, Callable[[Path], Iterator[Row]]] = {
    "ham10000": _ham10000, "pad_ufes_20": _pad_ufes_20, "fitzpatrick17k": _fitzpatrick17k, "ddi": _ddi,
    "derm7pt": _derm7pt, "folder": _folder,
}
FIXED_CLASSES = {"ham10000": sorted(HAM10000_CLASSES.values()), "pad_ufes_20": sorted(PAD_UFES_NAMES.values())}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build_zeroshot_csv(root: Path, out_csv: Path, layout: str = "ham10000", per_class: int | None = None,
                       test_fraction: float = 0.3, salt: str | None = None) -> tuple[int, list[str]]:
    """Write ``out_csv`` (absolute image paths, ``image_path,label,split``) and
    ``<stem>_classnames.txt`` beside it; return the row count and the class names.

    ``per_class`` keeps the first N images of each class in the layout's file order (a small,
    fixed subset for tests); None keeps all.
    """
    if layout not in ZEROSHOT_LAYOUTS:
        raise PipelineError(f"layout {layout!r} is not one of {sorted(ZEROSHOT_LAYOUTS)}")
    if not 0 < test_fraction < 1:
        raise PipelineError(f"test_fraction must be in (0, 1), got {test_fraction}")
    salt = salt or f"{layout}-bench-v1"
    root = Path(root)
    rows, missing = [], 0
    for path, name, group in ZEROSHOT_LAYOUTS[layout](root):
        if not path.is_file():
            missing += 1
            continue
        rows.append((path.resolve(), name, group))
    conflicting = 0
    if layout == "folder":  # the same bytes under two class names: no single right answer
        by_hash: dict[str, set[str]] = {}
        hashes = [_sha256(p) for p, _, _ in rows]
        for h, (_, name, _) in zip(hashes, rows, strict=True):
            by_hash.setdefault(h, set()).add(name)
        keep = [len(by_hash[h]) == 1 for h in hashes]
        conflicting = keep.count(False)
        rows = [r for r, k in zip(rows, keep, strict=True) if k]
    taken: dict[str, int] = {}
    out_rows = []
    for path, name, group in rows:
        if per_class is not None and taken.get(name, 0) >= per_class:
            continue
        taken[name] = taken.get(name, 0) + 1
        out_rows.append((str(path), name, "test" if _bucket(group, salt) < test_fraction else "train"))
    if not out_rows:
        raise PipelineError(f"{root}: no {layout} image found; check the folder and its images/")
    with atomic_path(out_csv) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["image_path", "label", "split"])
        writer.writerows(out_rows)
    classnames = FIXED_CLASSES.get(layout) or sorted(taken)
    with atomic_path(Path(out_csv).with_name(f"{Path(out_csv).stem}_classnames.txt")) as tmp:
        tmp.write_text("\n".join(classnames) + "\n", encoding="utf-8")
    if missing or conflicting:
        print(f"benchmark_csv: left out {missing} row(s) without an image file and {conflicting} image(s) "
              "filed under two classes", file=sys.stderr)
    return len(out_rows), classnames


def build_ham10000_csv(root: Path, out_csv: Path, per_class: int | None = None,
                       test_fraction: float = 0.3, salt: str = "ham10000-bench-v1") -> tuple[int, list[str]]:
    """HAM10000's zero-shot CSV (see :func:`build_zeroshot_csv`)."""
    return build_zeroshot_csv(root, out_csv, "ham10000", per_class, test_fraction, salt)


def _write_rows(out_csv: Path, header: list[str], rows: list[list[str]]) -> None:
    with atomic_path(out_csv) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def build_skincon_csv(labels_csv: Path, images: Path, out_csv: Path) -> tuple[int, list[str]]:
    """SkinCon's ``ImageID`` + 0/1 concept columns -> ``image_path`` + the same concept columns."""
    rows = _read_csv(Path(labels_csv), {"ImageID"})
    concepts = [c for c in rows[0] if c not in ("ImageID", "")] if rows else []
    out, missing = [], 0
    for r in rows:
        path = Path(images) / r["ImageID"]
        if not path.is_file():
            missing += 1
            continue
        out.append([str(path.resolve()), *("1" if r[c].strip() in ("1", "1.0") else "0" for c in concepts)])
    if not out:
        raise PipelineError(f"{images}: none of the {len(rows)} SkinCon images is there; pass --images DIR")
    _write_rows(out_csv, ["image_path", *concepts], out)
    if missing:
        print(f"benchmark_csv: left out {missing} SkinCon row(s) without an image file", file=sys.stderr)
    return len(out), concepts


def derm7pt_concepts(row: dict[str, str], known: set[str]) -> dict[str, int]:
    """A Derm7pt row's concept labels: each criterion present (value not ``absent``), and
    ``<value> <criterion>`` (``irregular streaks``) for every qualified concept ``known`` names."""
    out: dict[str, int] = {}
    for col in SEVEN_POINT:
        criterion = col.replace("_", " ")
        value = (row.get(col) or "").strip().lower()
        out[criterion] = int(bool(value) and value != "absent")
        for qualified in sorted(k for k in known if k.endswith(" " + criterion) and k != criterion):
            out[qualified] = int(qualified == f"{value} {criterion}")
    return out


def build_derm7pt_concepts_csv(root: Path, out_csv: Path) -> tuple[int, list[str]]:
    """Derm7pt's seven-point criteria as a concept CSV (see :func:`derm7pt_concepts`)."""
    root = Path(root)
    known = {e.name.lower() for e in load_concepts(CONCEPTS_YAML)}
    find = _CaseFolder(root / "images")
    meta = _read_csv(root / "meta.csv", {"derm", *SEVEN_POINT})
    out, missing, columns = [], 0, None
    for r in sorted(meta, key=lambda r: r["derm"]):
        path = find(r["derm"].strip())
        if not r["derm"].strip() or not path.is_file():
            missing += 1
            continue
        labels = derm7pt_concepts(r, known)
        columns = columns or list(labels)
        out.append([str(path.resolve()), *(str(labels[c]) for c in columns)])
    if not out:
        raise PipelineError(f"{root}: no Derm7pt image found under images/")
    _write_rows(out_csv, ["image_path", *columns], out)
    if missing:
        print(f"benchmark_csv: left out {missing} Derm7pt row(s) without an image file", file=sys.stderr)
    return len(out), list(columns)


def build_skincap_csv(meta_csv: Path, images: Path, out_csv: Path) -> tuple[int, list[str]]:
    """SkinCAP's ``filename`` + caption column -> ``image_path,caption`` (files under ``images``,
    by their path or, failing that, their base name)."""
    rows = _read_csv(Path(meta_csv), {"filename"})
    caption_col = next((c for c in ("caption", "caption_zh_polish_en") if rows and c in rows[0]), None)
    if caption_col is None:
        raise PipelineError(f"{meta_csv}: needs a caption column (caption or caption_zh_polish_en)")
    out, missing = [], 0
    for r in rows:
        path = Path(images) / r["filename"]
        path = path if path.is_file() else Path(images) / Path(r["filename"]).name
        if not path.is_file() or not r[caption_col].strip():
            missing += 1
            continue
        out.append([str(path.resolve()), " ".join(r[caption_col].split())])
    if not out:
        raise PipelineError(f"{images}: none of the {len(rows)} SkinCAP images is there; pass --images DIR")
    _write_rows(out_csv, ["image_path", "caption"], out)
    if missing:
        print(f"benchmark_csv: left out {missing} SkinCAP row(s) without an image file or caption", file=sys.stderr)
    return len(out), ["caption"]


LAYOUTS = (*ZEROSHOT_LAYOUTS, "skincon", "derm7pt_concepts", "skincap")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.training.benchmark_csv", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", help="the dataset folder (skincon/skincap: its CSV)")
    parser.add_argument("out_csv")
    parser.add_argument("--layout", default="ham10000", choices=LAYOUTS)
    parser.add_argument("--per-class", type=int, default=None, help="zero-shot: at most N images per class")
    parser.add_argument("--images", default=None, help="skincon/skincap: the folder their file names are under")
    args = parser.parse_args(argv)
    root, out = Path(args.root), Path(args.out_csv)
    images = Path(args.images) if args.images else root.parent
    try:
        if args.layout == "skincon":
            n, names = build_skincon_csv(root, images, out)
        elif args.layout == "skincap":
            n, names = build_skincap_csv(root, images, out)
        elif args.layout == "derm7pt_concepts":
            n, names = build_derm7pt_concepts_csv(root, out)
        else:
            n, names = build_zeroshot_csv(root, out, args.layout, args.per_class)
    except PipelineError as exc:
        print(f"benchmark_csv: error: {exc}", file=sys.stderr)
        return 2
    what = "captions" if args.layout == "skincap" else (
        "concepts" if args.layout in ("skincon", "derm7pt_concepts") else "classes")
    print(f"{out}: {n} rows, {len(names)} {what}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

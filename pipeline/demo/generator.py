"""Generate the demo corpus: images, a records CSV in the demo adapter's layout, and truth.json.

What it plants (counts from ``params.yaml: demo``), so the tests can check every later stage:
unique images; byte-identical copies under other names; re-encoded, resized and slightly
cropped copies; EXIF-rotated photos; images with two or three captions; and bad inputs
(truncated JPEG, zero-byte file, text named .jpg, a record pointing to a missing file, empty
captions). Fully deterministic from the seed: the same params give byte-identical files.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict
from pathlib import Path

import imagehash
import numpy as np
from PIL import Image
from tqdm import tqdm

from pipeline.demo.captions import CONDITIONS, STYLES, draw_facts, render_caption
from pipeline.demo.images import draw_skin_image
from pipeline.errors import ConfigError
from pipeline.tables import atomic_dir, write_json

RECORD_COLUMNS = ["record_id", "image_path", "caption", "source", "source_type", "licence", "context"]
LICENCE = "CC0-1.0 (synthetic demo data)"
# Derm1M's source shares: YouTube 45.6%, PubMed 19.4%, forums 15.1%, public 10.1%, textbooks 9.8%.
STYLE_WEIGHTS = {"youtube": 0.456, "pubmed": 0.194, "forum": 0.151, "public": 0.101, "textbook": 0.098}


def _encode(img: Image.Image, fmt: str, quality: int = 92, exif: bytes | None = None) -> bytes:
    buf = io.BytesIO()
    if fmt == "jpg":
        kwargs = {"quality": quality, "optimize": False}
        if exif is not None:
            kwargs["exif"] = exif
        img.save(buf, "JPEG", **kwargs)
    else:
        img.save(buf, "PNG", optimize=False, compress_level=6)
    return buf.getvalue()


def _phash(img: Image.Image) -> imagehash.ImageHash:
    return imagehash.phash(img.convert("RGB"))


class _Corpus:
    """Accumulates files and records in memory-light form, then writes them out."""

    def __init__(self, root: Path, rng: np.random.Generator) -> None:
        self.root = root
        self.rng = rng
        self.records: list[dict] = []
        self.truth_records: dict[str, dict] = {}
        (root / "images").mkdir(parents=True)

    def write_file(self, relpath: str, data: bytes) -> None:
        path = self.root / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    def add_record(self, image_path: str, condition: str | None, caption: str | None = None) -> str:
        record_id = f"demo-{len(self.records):05d}"
        style = self.rng.choice(list(STYLE_WEIGHTS), p=np.array(list(STYLE_WEIGHTS.values())) / sum(STYLE_WEIGHTS.values()))
        facts = draw_facts(self.rng, str(style), condition=condition)
        text, context = render_caption(str(style), facts, self.rng)
        source, source_type = STYLES[str(style)]
        self.records.append({
            "record_id": record_id, "image_path": image_path,
            "caption": text if caption is None else caption,
            "source": source, "source_type": source_type, "licence": LICENCE, "context": context,
        })
        self.truth_records[record_id] = {"style": str(style), **asdict(facts)}
        return record_id


def generate_demo_corpus(params: dict, out: Path | None = None) -> dict:
    """Write the demo corpus to ``out`` (default ``params['demo']['out']``) and return its truth."""
    p = params["demo"]
    out = Path(out or p["out"])
    rng = np.random.default_rng(int(p["seed"]))
    if p["n_unique_images"] < 20:
        raise ConfigError("params.yaml: demo.n_unique_images must be at least 20 (the planted copies need bases)")
    with atomic_dir(out) as tmp:
        truth = _generate(p, tmp, rng)
        write_json(truth, tmp / "truth.json")
        with open(tmp / "records.csv", "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=RECORD_COLUMNS, lineterminator="\n")
            writer.writeheader()
            writer.writerows(truth.pop("_records"))
    return json.loads((out / "truth.json").read_text(encoding="utf-8"))


def _generate(p: dict, root: Path, rng: np.random.Generator) -> dict:
    corpus = _Corpus(root, rng)
    bases: list[dict] = []
    hashes: list[imagehash.ImageHash] = []
    min_dist = int(p["min_phash_distance"])
    attempts = 0
    with tqdm(total=p["n_unique_images"], desc="demo images", unit="img", mininterval=1.0) as bar:
        while len(bases) < p["n_unique_images"]:
            attempts += 1
            if attempts > 50 * p["n_unique_images"]:
                raise ConfigError("params.yaml: demo.min_phash_distance too large; could not draw distinct images")
            w = int(rng.integers(p["min_side"], p["max_side"] + 1))
            h = int(rng.integers(p["min_side"], p["max_side"] + 1))
            img, desc = draw_skin_image(rng, w, h)
            ph = _phash(img)
            if any(ph - other < min_dist for other in hashes):
                continue
            idx = len(bases)
            fmt = "png" if rng.random() < p["png_share"] else "jpg"
            condition = CONDITIONS[int(rng.integers(0, len(CONDITIONS)))][0]
            rel = f"images/{idx:05d}.{fmt}"
            bases.append({"path": rel, "image": img, "fmt": fmt, "condition": condition, **desc})
            hashes.append(ph)
            bar.update(1)

    # EXIF-rotated photos: pixels stored sideways with Orientation=6, so a viewer shows them upright.
    exif_rotated = []
    jpg_bases = [b for b in bases if b["fmt"] == "jpg"]
    for b in jpg_bases[: p["n_exif_rotated"]]:
        b["exif_rotated"] = True
        exif = Image.Exif()
        exif[0x0112] = 6
        stored = b["image"].transpose(Image.Transpose.ROTATE_90)
        corpus.write_file(b["path"], _encode(stored, "jpg", exif=exif.tobytes()))
        exif_rotated.append({"path": b["path"], "width": b["image"].width, "height": b["image"].height})
    for b in bases:
        if not b.get("exif_rotated"):
            corpus.write_file(b["path"], _encode(b["image"], b["fmt"]))

    # Choose distinct bases for each planted copy kind (not the EXIF ones: keep cases separate).
    plain = [i for i, b in enumerate(bases) if not b.get("exif_rotated")]
    kinds = [("exact", p["n_exact_copies"]), ("reencoded", p["n_reencoded"]),
             ("resized", p["n_resized"]), ("cropped", p["n_cropped"])]
    needed = sum(n for _, n in kinds) + p["n_multi_caption"]
    if needed > len(plain):
        raise ConfigError(f"params.yaml: demo asks for {needed} planted variants but has only {len(plain)} bases")
    chosen = [int(i) for i in rng.permutation(plain)[:needed]]
    copies: list[dict] = []
    pos = 0
    for kind, n in kinds:
        for base_idx in chosen[pos: pos + n]:
            copies.append(_make_copy(corpus, bases[base_idx], kind, len(copies), rng, p))
        pos += n
    multi = chosen[pos: pos + p["n_multi_caption"]]

    # Records: one per image file, extra ones for multi-caption images, in a shuffled order.
    for b in bases:
        corpus.add_record(b["path"], b["condition"])
    for c in copies:
        corpus.add_record(c["path"], bases[c["base_index"]]["condition"])
    multi_caption = []
    for base_idx in multi:
        n_extra = int(rng.integers(1, 3))
        ids = [corpus.add_record(bases[base_idx]["path"], bases[base_idx]["condition"]) for _ in range(n_extra)]
        multi_caption.append({"path": bases[base_idx]["path"], "n_captions": n_extra + 1, "extra_records": ids})

    rejects = _plant_bad_inputs(corpus, bases, rng, p["bad"])
    order = rng.permutation(len(corpus.records))
    records = [corpus.records[int(i)] for i in order]

    images_with_copies = {c["base_index"] for c in copies}
    return {
        "_records": records,
        "seed": int(p["seed"]),
        "n_records": len(records),
        "n_unique_images": len(bases),
        "n_image_files": len(bases) + len(copies),
        "n_clusters": len(bases),
        "n_clusters_with_copies": len(images_with_copies),
        "copies": [{k: v for k, v in c.items() if k != "base_index"} for c in copies],
        "multi_caption_images": multi_caption,
        "exif_rotated": exif_rotated,
        "rejects": rejects["counts"],
        "rejected_records": rejects["records"],
        "n_pairs": len(records) - sum(rejects["counts"].values()),
        "records": corpus.truth_records,
    }


def _make_copy(corpus: _Corpus, base: dict, kind: str, n: int, rng: np.random.Generator, p: dict) -> dict:
    """Write one planted copy of ``base`` and return its description (with the pHash distance)."""
    img: Image.Image = base["image"]
    original = (corpus.root / base["path"]).read_bytes()
    base_hash = _phash(Image.open(io.BytesIO(original)))
    folder = ["reposts", "figures", "frames"][n % 3]
    ext = base["fmt"]
    if kind == "exact":
        data, detail = original, "byte-identical"
    else:
        for strength in (1.0, 0.5, 0.25):  # milder until the copy stays a near duplicate
            if kind == "reencoded":
                q = int(55 + (1 - strength) * 30)
                variant, detail = img, f"JPEG quality {q}"
                data, ext = _encode(variant, "jpg", quality=q), "jpg"
            elif kind == "resized":
                f = float(rng.choice([0.5, 0.75, 1.25])) if strength == 1.0 else 0.75
                variant = img.resize((max(1, round(img.width * f)), max(1, round(img.height * f))), Image.Resampling.LANCZOS)
                detail = f"resized x{f}"
                data = _encode(variant, ext)
            else:
                frac = 0.05 * strength
                dx, dy = round(img.width * frac), round(img.height * frac)
                variant = img.crop((dx, dy, img.width - dx, img.height - dy))
                detail = f"cropped {frac:.1%} per side"
                data = _encode(variant, ext)
            dist = _phash(Image.open(io.BytesIO(data))) - base_hash
            if dist <= p["max_variant_distance"]:
                break
    rel = f"{folder}/copy-{n:04d}.{ext}"
    corpus.write_file(rel, data)
    dist = int(_phash(Image.open(io.BytesIO(data))) - base_hash)
    return {"path": rel, "original": base["path"], "kind": kind, "detail": detail,
            "phash_distance": dist, "base_index": int(base["path"].split("/")[1].split(".")[0])}


def _plant_bad_inputs(corpus: _Corpus, bases: list[dict], rng: np.random.Generator, bad: dict) -> dict:
    counts: dict[str, int] = {}
    records: dict[str, str] = {}

    def plant(reason: str, path: str, caption: str | None = None, condition: str | None = None) -> None:
        rid = corpus.add_record(path, condition, caption=caption)
        records[rid] = reason
        counts[reason] = counts.get(reason, 0) + 1

    for i in range(bad["truncated"]):
        full = _encode(bases[i]["image"], "jpg")
        corpus.write_file(f"bad/truncated-{i}.jpg", full[: len(full) * 55 // 100])
        plant("image_truncated", f"bad/truncated-{i}.jpg")
    for i in range(bad["zero_byte"]):
        corpus.write_file(f"bad/empty-{i}.jpg", b"")
        plant("image_empty", f"bad/empty-{i}.jpg")
    for i in range(bad["not_an_image"]):
        corpus.write_file(f"bad/not-found-{i}.jpg", b"<!DOCTYPE html><html><body><h1>404 Not Found</h1></body></html>\n")
        plant("image_not_an_image", f"bad/not-found-{i}.jpg")
    for i in range(bad["missing_file"]):
        plant("image_missing", f"images/missing-{i}.jpg")
    for i in range(bad["empty_caption"]):
        base = bases[int(rng.integers(0, len(bases)))]
        plant("caption_empty", base["path"], caption=["", "   ", "\n"][i % 3], condition=base["condition"])
    return {"counts": dict(sorted(counts.items())), "records": records}

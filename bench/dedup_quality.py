"""Dedup quality on real images: exact copies, same-lesion pairs, and transformed copies.

    python bench/dedup_quality.py [--shared ../shared] [--radius 8] [--originals 450]
                                  [--png bench/dedup_quality.png] [--quick]

(a) DermNet: every byte-identical file pair across condition folders must land in one cluster
    (the ``find-duplicates`` clustering at ``--radius``).
(b) HAM10000: recall and precision of same-``lesion_id`` pairs among all pairs within radius
    0..16, for the fast path and the imagehash reference; the curve is saved as a PNG.
(c) Transformations of real images (JPEG re-encode q50-95, resize 50-200%, centre crop 5-15%,
    brightness +-20%, a text caption burnt in, horizontal mirror): recall per transformation
    per radius, and the false-positive rate over pairs of unrelated images (distinct files,
    not byte copies, not the same HAM10000 lesion). ``flip-aware`` also matches an image
    against the other's mirror-image hash (a second hash per image).

Both hash paths are measured on the same files, so their difference is the cost of the fast
path. Prints the machine (CPU count, platform).
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFont, ImageOps

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import machine, require_shared_corpus  # noqa: E402
from pipeline.images.benchmarks import list_images  # noqa: E402
from pipeline.images.find import cluster_rows  # noqa: E402
from pipeline.images.hashing import HashedImage, hash_paths  # noqa: E402
from pipeline.images.neardup import pairs_within  # noqa: E402

METHODS = ("fast", "imagehash")
RADII = range(17)


def hashes(paths: list[str], method: str, workers: int, mirror: bool = False) -> list[HashedImage]:
    out = hash_paths(paths, method, workers, f"{method}", mirror=mirror, sha256=True)
    bad = [p for p, h in zip(paths, out, strict=True) if not isinstance(h, HashedImage)]
    if bad:
        sys.exit(f"could not hash {len(bad)} real images, e.g. {bad[0]}")
    return out  # type: ignore[return-value]


def as_u64(hashed: list[HashedImage], mirror: bool = False) -> np.ndarray:
    return np.array([h.mirror if mirror else h.phash for h in hashed], dtype=np.uint64)


# -- (a) DermNet byte-identical copies -----------------------------------------------------------

def dermnet_copies(shared: Path, radius: int, workers: int) -> None:
    paths = [p.as_posix() for p in list_images(shared / "corpus/dermnet")]
    print(f"\n(a) DermNet: {len(paths)} images in {len({Path(p).parent for p in paths})} condition folders")
    for method in METHODS:
        hashed = hashes(paths, method, workers)
        by_sha: dict[str, list[int]] = {}
        for k, h in enumerate(hashed):
            by_sha.setdefault(h.sha256, []).append(k)
        truth = [(a, b) for group in by_sha.values() for x, a in enumerate(group) for b in group[x + 1:]]
        cross = sum(Path(paths[a]).parent != Path(paths[b]).parent for a, b in truth)
        rows = cluster_rows(paths, [0] * len(paths), hashed, radius, method)
        cluster_of = {r["path"]: r["cluster_id"] for r in rows}
        found = sum(paths[a] in cluster_of and cluster_of.get(paths[a]) == cluster_of.get(paths[b]) for a, b in truth)
        extra = len(rows) - len({paths[k] for g in by_sha.values() if len(g) > 1 for k in g})
        print(f"  {method:<9}: byte-identical pairs {len(truth)} ({cross} across folders), found in one cluster at "
              f"radius {radius}: {found}/{len(truth)} ({found / max(1, len(truth)):.1%}); "
              f"{len(rows)} images in {len(set(cluster_of.values()))} clusters ({extra} images joined only as near copies)")


# -- (b) HAM10000 same-lesion pairs ---------------------------------------------------------------

def ham_lesions(shared: Path, workers: int, png: Path | None) -> dict[str, np.ndarray]:
    root = shared / "corpus/ham10000"
    with open(root / "HAM10000_metadata.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    paths = [(root / "images" / f"{r['image_id']}.jpg").as_posix() for r in rows]
    lesion = np.unique([r["lesion_id"] for r in rows], return_inverse=True)[1]
    n = len(paths)
    sizes = np.bincount(lesion)
    positives = int((sizes * (sizes - 1) // 2).sum())
    print(f"\n(b) HAM10000: {n} images, {int((sizes > 1).sum())} lesions with 2+ images, {positives} same-lesion pairs")
    curves: dict[str, np.ndarray] = {}
    print(f"  {'radius':>6} " + " ".join(f"{m + ' recall':>17} {m + ' precision':>20}" for m in METHODS))
    table = {}
    for method in METHODS:
        h = as_u64(hashes(paths, method, workers))
        i, j, d = pairs_within(h, max(RADII))
        same = lesion[i] == lesion[j]
        rec, prec = [], []
        for r in RADII:
            within = d <= r
            tp = int((same & within).sum())
            rec.append(tp / positives)
            prec.append(tp / max(1, int(within.sum())))
        curves[method] = np.array([rec, prec])
        table[method] = (rec, prec)
    for r in RADII:
        cells = " ".join(f"{table[m][0][r]:>17.4f} {table[m][1][r]:>20.4f}" for m in METHODS)
        print(f"  {r:>6} {cells}")
    gap_r = max(abs(table["fast"][0][r] - table["imagehash"][0][r]) for r in RADII) * 100
    gap_p = max(abs(table["fast"][1][r] - table["imagehash"][1][r]) for r in RADII if r >= 2) * 100
    print(f"  largest fast-vs-imagehash gap over radius 0-16: recall {gap_r:.2f} points; precision {gap_p:.2f} "
          f"points (radius >= 2; below that there are only a handful of pairs)")
    if png:
        plot(curves, png)
        print(f"  curve saved to {png}")
    return curves


def plot(curves: dict[str, np.ndarray], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for method, style in zip(METHODS, ("-", "--"), strict=True):
        ax.plot(list(RADII), curves[method][0], style, marker="o", color="#b5651d", label=f"recall ({method})")
        ax.plot(list(RADII), curves[method][1], style, marker="s", color="#1f4e79", label=f"precision ({method})")
    ax.set_xlabel("Hamming radius (64-bit pHash)")
    ax.set_ylabel("same-lesion pairs")
    ax.set_title("HAM10000: same-lesion pairs found within each radius")
    ax.set_xticks(list(RADII))
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=100, metadata={"Software": None})
    plt.close(fig)


# -- (c) transformations ---------------------------------------------------------------------------

def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:   # Pillow without FreeType: the small bitmap font
        return ImageFont.load_default()


def transforms() -> dict[str, tuple[object, int]]:
    """name -> (function of an RGB image, JPEG quality the result is saved with)."""
    def crop(frac: float):
        def f(im: Image.Image) -> Image.Image:
            w, h = im.size
            dx, dy = round(w * frac / 2), round(h * frac / 2)
            return im.crop((dx, dy, w - dx, h - dy))
        return f

    def resize(scale: float):
        return lambda im: im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))),
                                    Image.Resampling.LANCZOS)

    def text(im: Image.Image) -> Image.Image:
        im = im.copy()
        draw = ImageDraw.Draw(im)
        size = max(10, im.height // 12)
        draw.text((im.width // 20, im.height - 2 * size), "Figure 3. Courtesy of the clinic", fill=(255, 255, 255),
                  font=_font(size), stroke_width=max(1, size // 10), stroke_fill=(0, 0, 0))
        return im

    same = lambda im: im  # noqa: E731
    return {
        "jpeg_q50": (same, 50), "jpeg_q75": (same, 75), "jpeg_q95": (same, 95),
        "resize_50": (resize(0.5), 90), "resize_75": (resize(0.75), 90), "resize_150": (resize(1.5), 90),
        "resize_200": (resize(2.0), 90),
        "crop_5": (crop(0.05), 90), "crop_10": (crop(0.10), 90), "crop_15": (crop(0.15), 90),
        "bright_-20": (lambda im: ImageEnhance.Brightness(im).enhance(0.8), 90),
        "bright_+20": (lambda im: ImageEnhance.Brightness(im).enhance(1.2), 90),
        "text": (text, 90),
        "hflip": (ImageOps.mirror, 90),
    }


def unrelated_mask(paths: list[str], hashed: list[HashedImage], lesion_of: dict[str, str]) -> np.ndarray:
    """Upper-triangle mask of pairs that are truly unrelated (not byte copies, not one lesion)."""
    n = len(paths)
    sha = np.unique([h.sha256 for h in hashed], return_inverse=True)[1]
    les = np.unique([lesion_of.get(Path(p).stem, p) for p in paths], return_inverse=True)[1]
    mask = np.triu(np.ones((n, n), dtype=bool), k=1)
    mask &= sha[:, None] != sha[None, :]
    mask &= les[:, None] != les[None, :]
    return mask


def transformations(shared: Path, radius: int, n_originals: int, n_unrelated: int, workers: int) -> None:
    with open(shared / "corpus/ham10000/HAM10000_metadata.csv", newline="", encoding="utf-8") as fh:
        lesion_of = {r["image_id"]: r["lesion_id"] for r in csv.DictReader(fh)}
    pools = [[p.as_posix() for p in list_images(shared / rel)]
             for rel in ("corpus/dermnet", "corpus/derm7pt/images", "corpus/ham10000/images")]
    rng = np.random.default_rng(11)
    per = n_unrelated // len(pools)
    unrelated = sorted(p for pool in pools for p in rng.choice(pool, min(per, len(pool)), replace=False).tolist())
    originals = sorted(rng.choice(unrelated, min(n_originals, len(unrelated)), replace=False).tolist())
    ops = transforms()
    print(f"\n(c) transformations: {len(originals)} originals (DermNet, Derm7pt, HAM10000) x {len(ops)} transformations; "
          f"false positives over pairs of {len(unrelated)} unrelated images")
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        variant_paths: dict[str, list[str]] = {name: [] for name in ops}
        for k, path in enumerate(originals):
            with Image.open(path) as im:
                rgb = ImageOps.exif_transpose(im).convert("RGB")
            for name, (fn, quality) in ops.items():
                out = Path(tmp) / f"{k:05d}_{name}.jpg"
                buf = io.BytesIO()
                fn(rgb).save(buf, format="JPEG", quality=quality)
                out.write_bytes(buf.getvalue())
                variant_paths[name].append(out.as_posix())
        print(f"  wrote {sum(len(v) for v in variant_paths.values())} variants in {time.perf_counter() - t0:.0f} s")
        results: dict[str, dict] = {}
        for method in METHODS:
            base = hashes(originals, method, workers, mirror=True)
            uh = hashes(unrelated, method, workers, mirror=True)
            mask = unrelated_mask(unrelated, uh, lesion_of)
            u, um = as_u64(uh), as_u64(uh, mirror=True)
            d_plain = np.bitwise_count(u[:, None] ^ u[None, :])[mask]
            d_flip = np.minimum(d_plain, np.bitwise_count(u[:, None] ^ um[None, :])[mask])
            res = {"fp": {r: float((d_plain <= r).mean()) for r in RADII},
                   "fp_flip": {r: float((d_flip <= r).mean()) for r in RADII}, "pairs": int(mask.sum()),
                   "recall": {}, "recall_flip": {}}
            b, bm = as_u64(base), as_u64(base, mirror=True)
            for name in ops:
                v = as_u64(hashes(variant_paths[name], method, workers))
                d = np.bitwise_count(b ^ v)
                df = np.minimum(d, np.bitwise_count(bm ^ v))
                res["recall"][name] = {r: float((d <= r).mean()) for r in RADII}
                res["recall_flip"][name] = {r: float((df <= r).mean()) for r in RADII}
            results[method] = res
    fast = results["fast"]
    names = list(ops)
    print(f"  recall per radius (fast path); FP = share of {fast['pairs']:,} unrelated pairs within the radius")
    print(f"  {'radius':>6} " + " ".join(f"{n:>10}" for n in names) + f" {'FP':>9} {'FP flip-aware':>13}")
    for r in RADII:
        print(f"  {r:>6} " + " ".join(f"{fast['recall'][n][r]:>10.3f}" for n in names)
              + f" {fast['fp'][r]:>9.5f} {fast['fp_flip'][r]:>13.5f}")
    print(f"\n  at radius {radius}: fast vs imagehash (recall; 'flip-aware' = also against the mirror hash)")
    print(f"  {'transformation':<15} {'fast':>7} {'imagehash':>10} {'fast flip-aware':>16} {'imagehash flip-aware':>21}")
    for n in names:
        print(f"  {n:<15} {results['fast']['recall'][n][radius]:>7.3f} {results['imagehash']['recall'][n][radius]:>10.3f} "
              f"{results['fast']['recall_flip'][n][radius]:>16.3f} {results['imagehash']['recall_flip'][n][radius]:>21.3f}")
    for key, label in (("fp", "FP rate"), ("fp_flip", "FP rate flip-aware")):
        print(f"  {label:<15} {results['fast'][key][radius]:>7.5f} {results['imagehash'][key][radius]:>10.5f}")
    gaps = [abs(results["fast"]["recall"][n][r] - results["imagehash"]["recall"][n][r]) * 100
            for n in names for r in RADII if r >= 4]
    print(f"  largest fast-vs-imagehash recall gap (one transformation, radius 4-16): {max(gaps):.2f} points; "
          f"mean {np.mean(gaps):.2f}")
    pooled = {m: {r: float(np.mean([results[m]["recall"][n][r] for n in names])) for r in RADII} for m in METHODS}
    fp_gap = max(abs(results["fast"]["fp"][r] - results["imagehash"]["fp"][r]) for r in RADII) * 100
    print("  recall over all transformed copies, fast vs imagehash: " + ", ".join(
        f"r{r} {pooled['fast'][r]:.3f}/{pooled['imagehash'][r]:.3f}" for r in RADII if r % 2 == 0))
    print(f"  largest gap over radius 0-16: recall {max(abs(pooled['fast'][r] - pooled['imagehash'][r]) for r in RADII) * 100:.2f} "
          f"points, false-positive rate {fp_gap:.4f} points")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", type=Path, default=REPO.parent / "shared")
    ap.add_argument("--radius", type=int, default=8, help="radius for (a) and the (c) summary (default 8)")
    ap.add_argument("--originals", type=int, default=450, help="images transformed in (c)")
    ap.add_argument("--unrelated", type=int, default=3000, help="images whose pairs give the FP rate in (c)")
    ap.add_argument("--png", type=Path, default=REPO / "bench/dedup_quality.png", help="where (b)'s curve goes")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--quick", action="store_true", help="smaller (c) sample")
    args = ap.parse_args()
    require_shared_corpus(args.shared)
    os.environ.setdefault("TQDM_DISABLE", "1")
    if args.quick:
        args.originals, args.unrelated = 90, 600
    print(f"machine: {machine()}; "
          f"hashing with {args.workers} processes")
    t0 = time.perf_counter()
    dermnet_copies(args.shared, args.radius, args.workers)
    ham_lesions(args.shared, args.workers, args.png)
    transformations(args.shared, args.radius, args.originals, args.unrelated, args.workers)
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()

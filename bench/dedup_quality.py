"""Dedup quality on real images: exact copies, same-lesion pairs, and transformed copies.

    python bench/dedup_quality.py [--shared ../shared] [--originals 450] [--unrelated 3000]
                                  [--png bench/dedup_quality.png] [--pairs-png PNG] [--quick]
                                  [--radius R] [--window-radius W] [--only a b c d]

(a) DermNet: every byte-identical file pair across condition folders must land in one cluster
    (the ``find-duplicates`` clustering at ``--radius``).
(b) HAM10000: recall and precision of same-``lesion_id`` pairs among all pairs within radius
    0..16, for the fast path and the imagehash reference; the curve is saved as a PNG.
(c) Transformations of real images (centre crop 5-20%, squash to square, downscale to 224 px,
    brightness/contrast/colour +-20%, JPEG q30, a text caption burnt in, mirror): recall of the
    pipeline's matching (candidates + verification at the params.yaml defaults; the mirror row
    with dedup.mirror on) next to the pHash-radius-8 recall of round 1, and the false pairs
    implied by the *clusters* (not edges) among unrelated real images (distinct files, not byte
    copies, not the same HAM10000 lesion), drawn side by side in ``--pairs-png`` so a reader can
    see whether they are the re-saved copies the datasets really hold.
(d) HAM10000 with the default params: largest cluster, clusters spanning two lesion_ids or two
    diagnoses, pairs of different lesions in one cluster, and the verification throughput.

Both hash paths are measured on the same files, so their difference is the cost of the fast
path. Prints the machine (CPU count, platform).
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFont, ImageOps

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import machine, require_shared_corpus  # noqa: E402
from pipeline.images.benchmarks import list_images  # noqa: E402
from pipeline.images.candidates import find_candidates  # noqa: E402
from pipeline.images.clusters import duplicate_clusters  # noqa: E402
from pipeline.images.find import cluster_rows  # noqa: E402
from pipeline.images.hashing import HashedImage, hash_paths  # noqa: E402
from pipeline.images.matching import Descriptors, MatchConfig, verified_edges  # noqa: E402
from pipeline.images.neardup import pairs_within  # noqa: E402

BASE = MatchConfig()   # the params every section matches with (--radius, --window-radius)

METHODS = ("fast", "imagehash")
RADII = range(17)


def hashes(paths: list[str], method: str, workers: int, mirror: bool = False) -> list[HashedImage]:
    out = hash_paths(paths, method, workers, f"{method}", mirror=mirror, sha256=True, views=True)
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
        rows = cluster_rows(paths, [0] * len(paths), hashed, BASE, method)
        cluster_of = {r["path"]: r["cluster_id"] for r in rows}
        found = sum(paths[a] in cluster_of and cluster_of.get(paths[a]) == cluster_of.get(paths[b]) for a, b in truth)
        extra = len(rows) - len({paths[k] for g in by_sha.values() if len(g) > 1 for k in g})
        print(f"  {method:<9}: byte-identical pairs {len(truth)} ({cross} across folders), found in one cluster: "
              f"{found}/{len(truth)} ({found / max(1, len(truth)):.1%}); "
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

    def text(im: Image.Image) -> Image.Image:
        im = im.copy()
        draw = ImageDraw.Draw(im)
        size = max(10, im.height // 12)
        draw.text((im.width // 20, im.height - 2 * size), "Figure 3. Courtesy of the clinic", fill=(255, 255, 255),
                  font=_font(size), stroke_width=max(1, size // 10), stroke_fill=(0, 0, 0))
        return im

    def down224(im: Image.Image) -> Image.Image:
        s = 224 / max(im.size)
        return im.resize((max(1, round(im.width * s)), max(1, round(im.height * s))), Image.Resampling.LANCZOS)

    same = lambda im: im  # noqa: E731
    return {
        "crop_5": (crop(0.05), 90), "crop_10": (crop(0.10), 90), "crop_15": (crop(0.15), 90),
        "crop_20": (crop(0.20), 90),
        "squash": (lambda im: im.resize((min(im.size), min(im.size)), Image.Resampling.LANCZOS), 90),
        "down_224": (down224, 90),
        "bright_-20": (lambda im: ImageEnhance.Brightness(im).enhance(0.8), 90),
        "bright_+20": (lambda im: ImageEnhance.Brightness(im).enhance(1.2), 90),
        "contrast_-20": (lambda im: ImageEnhance.Contrast(im).enhance(0.8), 90),
        "contrast_+20": (lambda im: ImageEnhance.Contrast(im).enhance(1.2), 90),
        "colour_-20": (lambda im: ImageEnhance.Color(im).enhance(0.8), 90),
        "colour_+20": (lambda im: ImageEnhance.Color(im).enhance(1.2), 90),
        "jpeg_q30": (same, 30),
        "text": (text, 90),
        "mirror": (ImageOps.mirror, 90),
    }


def group_of(paths: list[str], hashed: list[HashedImage], lesion_of: dict[str, str]) -> np.ndarray:
    """One group per truly distinct picture: byte copies and one HAM10000 lesion share a group."""
    keys = [lesion_of.get(Path(p).stem, h.sha256) for p, h in zip(paths, hashed, strict=True)]
    return np.unique(keys, return_inverse=True)[1]


def contact_sheet(pairs: list[tuple[str, str]], png: Path, limit: int = 40) -> None:
    """The first ``limit`` pairs side by side, two pairs a row, so a reader can judge them."""
    tiles = []
    for a, b in pairs[:limit]:
        tile = Image.new("RGB", (410, 150), "white")
        for x, path in ((0, a), (210, b)):
            with Image.open(path) as im:
                im = ImageOps.exif_transpose(im).convert("RGB")
                im.thumbnail((200, 150))
                tile.paste(im, (x, 0))
        tiles.append(tile)
    sheet = Image.new("RGB", (830, 155 * ((len(tiles) + 1) // 2)), "white")
    for k, tile in enumerate(tiles):
        sheet.paste(tile, ((k % 2) * 420, (k // 2) * 155))
    png.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(png)


def transformations(shared: Path, n_originals: int, n_unrelated: int, workers: int,
                    sheet: Path | None = None) -> None:
    with open(shared / "corpus/ham10000/HAM10000_metadata.csv", newline="", encoding="utf-8") as fh:
        lesion_of = {r["image_id"]: r["lesion_id"] for r in csv.DictReader(fh)}
    pools = [[p.as_posix() for p in list_images(shared / rel)]
             for rel in ("corpus/dermnet", "corpus/derm7pt/images", "corpus/ham10000/images")]
    rng = np.random.default_rng(11)
    per = n_unrelated // len(pools)
    unrelated = sorted(p for pool in pools for p in rng.choice(pool, min(per, len(pool)), replace=False).tolist())
    originals = sorted(rng.choice(unrelated, min(n_originals, len(unrelated)), replace=False).tolist())
    ops = transforms()
    print(f"\n(c) transformations: {len(originals)} originals (DermNet, Derm7pt, HAM10000) x {len(ops)} transformations, "
          f"matched among {len(unrelated)} unrelated real images; params {BASE}")
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        variant_paths: dict[str, list[str]] = {name: [] for name in ops}
        for k, path in enumerate(originals):
            with Image.open(path) as im:
                rgb = ImageOps.exif_transpose(im).convert("RGB")
            for name, (fn, quality) in ops.items():
                out = Path(tmp) / f"{k:05d}_{name}.jpg"
                fn(rgb).save(out, format="JPEG", quality=quality)
                variant_paths[name].append(out.as_posix())
        print(f"  wrote {sum(len(v) for v in variant_paths.values())} variants in {time.perf_counter() - t0:.0f} s")
        base = hashes(unrelated, "fast", workers, mirror=True)
        index = {p: k for k, p in enumerate(unrelated)}
        print(f"  {'transformation':<14} {'pHash r8 (round 1)':>19} {'candidates':>11} {'verified':>9}")
        for name in ops:
            mirror = name == "mirror"
            var = hashes(variant_paths[name], "fast", workers, mirror=True)
            hashed = base + var
            cfg = replace(BASE, mirror=mirror)
            edges = verified_edges(Descriptors.of(hashed, mirror), cfg)
            found = {tuple(sorted(x)) for x in zip(edges.a.tolist(), edges.b.tolist(), strict=True)}
            want = [(index[o], len(base) + k) for k, o in enumerate(originals)]
            verified = np.mean([tuple(sorted(w)) in found for w in want])
            d = Descriptors.of(hashed, mirror)
            cand = find_candidates(d.full, d.windows, cfg.radius, cfg.window_radius, d.mirror)
            cands = {tuple(sorted(x)) for x in zip(cand.a.tolist(), cand.b.tolist(), strict=True)}
            in_cand = np.mean([tuple(sorted(w)) in cands for w in want])
            ref = [(base[i].mirror if mirror else base[i].phash) for i, _ in want]
            r8 = np.mean([bin(x ^ var[k].phash).count("1") <= 8 for k, x in enumerate(ref)])
            print(f"  {name:<14} {r8:>19.3f} {in_cand:>11.3f} {verified:>9.3f}")
        # False pairs implied by the clusters of the unrelated images alone (stars: pairs = members x canonical
        # and members x members).
        groups = group_of(unrelated, base, lesion_of)
        for mirror in (False, True):
            dc = duplicate_clusters(np.array([h.sha256 for h in base]), np.arange(len(base)), base,
                                    replace(BASE, mirror=mirror))
            total = 0
            distinct: list[tuple[str, str]] = []
            for c in np.unique(dc.canonical):
                members = np.flatnonzero(dc.canonical == c)
                g = groups[members]
                total += len(members) * (len(members) - 1) // 2
                distinct += [(unrelated[members[i]], unrelated[members[j]]) for i in range(len(g))
                             for j in range(i + 1, len(g)) if g[i] != g[j]]
            n_pairs = len(base) * (len(base) - 1) // 2
            print(f"  unrelated images (mirror={mirror}): {len(base)} images, {n_pairs:,} pairs; cluster-implied pairs "
                  f"{total}, of different files (not byte copies, not one HAM10000 lesion) {len(distinct)} "
                  f"(rate {len(distinct) / n_pairs:.2e})")
            if sheet and not mirror and distinct:
                contact_sheet(distinct, sheet)
                print(f"  those pairs side by side: {sheet} (look: the datasets hold real re-saved copies)")


def ham_clusters(shared: Path, workers: int) -> None:
    root = shared / "corpus/ham10000"
    with open(root / "HAM10000_metadata.csv", newline="", encoding="utf-8") as fh:
        meta = {r["image_id"]: r for r in csv.DictReader(fh)}
    paths = sorted((root / "images" / f"{i}.jpg").as_posix() for i in meta)
    hashed = hashes(paths, "fast", workers)
    t0 = time.perf_counter()
    desc = Descriptors.of(hashed)
    cfg = BASE
    cand = find_candidates(desc.full, desc.windows, cfg.radius, cfg.window_radius)
    t1 = time.perf_counter()
    for label, derm in (("clinical policy (find-duplicates default)", False), ("dermoscopic policy", True)):
        t2 = time.perf_counter()
        dc = duplicate_clusters(np.array([h.sha256 for h in hashed]), np.arange(len(paths)), hashed, cfg,
                                np.full(len(paths), derm))
        t3 = time.perf_counter()
        lesion = np.array([meta[Path(p).stem]["lesion_id"] for p in paths])
        dx = np.array([meta[Path(p).stem]["dx"] for p in paths])
        sizes = np.bincount(dc.canonical, minlength=len(paths))
        two_les = two_dx = diff = 0
        for c in np.flatnonzero(sizes > 1):
            m = np.flatnonzero(dc.canonical == c)
            two_les += len(set(lesion[m])) > 1
            two_dx += len(set(dx[m])) > 1
            diff += sum(int(lesion[m][i] != lesion[m][j]) for i in range(len(m)) for j in range(i + 1, len(m)))
        print(f"\n(d) HAM10000, {label}: largest cluster {sizes.max()}, clusters spanning two lesion_ids {two_les}, "
              f"two diagnoses {two_dx}, pairs of different lesions in one cluster {diff}; "
              f"{len(cand):,} candidate rows ({cand.pairs():,} pairs) found in {t1 - t0:.1f} s, verified and "
              f"clustered in {t3 - t2:.1f} s ({len(cand) / max(t3 - t2, 1e-9):,.0f} rows/s)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", type=Path, default=REPO.parent / "shared")
    ap.add_argument("--originals", type=int, default=450, help="images transformed in (c)")
    ap.add_argument("--unrelated", type=int, default=3000, help="images whose pairs give the FP rate in (c)")
    ap.add_argument("--png", type=Path, default=REPO / "bench/dedup_quality.png", help="where (b)'s curve goes")
    ap.add_argument("--pairs-png", type=Path, default=REPO / "bench/dedup_unrelated_pairs.png",
                    help="where (c)'s pairs of different files that share a cluster are drawn")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--quick", action="store_true", help="smaller (c) sample")
    ap.add_argument("--radius", type=int, default=MatchConfig().radius, help="dedup.radius (default: params')")
    ap.add_argument("--window-radius", type=int, default=MatchConfig().window_radius, help="dedup.window_radius")
    ap.add_argument("--only", choices=["a", "b", "c", "d"], nargs="+", help="run only these sections")
    args = ap.parse_args()
    global BASE
    BASE = MatchConfig(radius=args.radius, window_radius=args.window_radius)
    require_shared_corpus(args.shared)
    os.environ.setdefault("TQDM_DISABLE", "1")
    if args.quick:
        args.originals, args.unrelated = 90, 600
    print(f"machine: {machine()}; "
          f"hashing with {args.workers} processes")
    t0 = time.perf_counter()
    only = set(args.only or "abcd")
    if "a" in only:
        dermnet_copies(args.shared, 8, args.workers)
    if "b" in only:
        ham_lesions(args.shared, args.workers, args.png)
    if "c" in only:
        transformations(args.shared, args.originals, args.unrelated, args.workers, args.pairs_png)
    if "d" in only:
        ham_clusters(args.shared, args.workers)
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()

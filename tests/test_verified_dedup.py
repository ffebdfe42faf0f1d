"""Near duplicates, round 2: candidates by pHash, verification by aligned fine structure, and
clusters that are stars around their canonical image (no chaining).

Images are real JPEGs written by the tests: smooth shapes plus a skin-like grain, so that two
different pictures share the coarse look that fools a pHash but not the fine structure.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageDraw, ImageEnhance, ImageOps
from scipy.ndimage import gaussian_filter

from pipeline import ids
from pipeline.images.benchmarks import parse_benchmarks
from pipeline.images.candidates import find_candidates
from pipeline.images.clusters import leader_clusters
from pipeline.images.hashing import HASH_METHODS, hash_files
from pipeline.images.matching import (
    WINDOW_NAMES,
    Descriptors,
    MatchConfig,
    verified_edges,
    verified_matches,
)
from pipeline.images.verify import Policy
from pipeline.stages import dedup
from pipeline.tables import write_table

FAST = HASH_METHODS["fast"]


def photo(seed: int, w: int = 320, h: int = 240) -> Image.Image:
    """A photograph-like picture: a few soft blobs on a gradient and a fine random grain."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / max(w, h)
    img = np.zeros((h, w, 3))
    for c in range(3):
        img[..., c] = rng.uniform(90, 170) + rng.uniform(-40, 40) * x + rng.uniform(-40, 40) * y
    for _ in range(5):
        cx, cy, r = rng.uniform(0, 1), rng.uniform(0, 0.75), rng.uniform(0.04, 0.2)
        img += np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * r * r))[..., None] * rng.uniform(-70, 70, 3)
    grain = gaussian_filter(rng.normal(0, 1, (h, w)), 2.5)
    img += (grain / grain.std() * 18)[..., None]
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def crop(im: Image.Image, frac: float) -> Image.Image:
    w, h = im.size
    dx, dy = round(w * frac / 2), round(h * frac / 2)
    return im.crop((dx, dy, w - dx, h - dy))


def caption_band(im: Image.Image) -> Image.Image:
    """Burnt-in text over the bottom of the picture, as figures and reposts carry."""
    im = im.copy()
    draw = ImageDraw.Draw(im)
    size = im.height // 12
    draw.text((im.width // 20, im.height - 2 * size), "Figure 3. Courtesy of the clinic", fill=(255, 255, 255),
              font=_font(size), stroke_width=max(1, size // 10), stroke_fill=(0, 0, 0))
    return im


def _font(size: int):
    from PIL import ImageFont
    try:
        return ImageFont.load_default(size=size)
    except TypeError:
        return ImageFont.load_default()


TRANSFORMS = {
    "crop_10": lambda im: crop(im, 0.10),
    "crop_15": lambda im: crop(im, 0.15),
    "crop_20": lambda im: crop(im, 0.20),
    "squash_to_square": lambda im: im.resize((im.height, im.height), Image.Resampling.LANCZOS),
    "downscale_112": lambda im: im.resize((112, 84), Image.Resampling.LANCZOS),
    "brighter_20": lambda im: ImageEnhance.Brightness(im).enhance(1.2),
    "less_contrast_20": lambda im: ImageEnhance.Contrast(im).enhance(0.8),
    "more_colour_20": lambda im: ImageEnhance.Color(im).enhance(1.2),
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[str], list]:
    """40 unrelated pictures, one original and its transformed copies (JPEG q30 among them)."""
    d = tmp_path_factory.mktemp("verified")
    paths = []
    for k in range(40):
        p = d / f"unrelated_{k:02d}.jpg"
        photo(k).save(p, quality=90)
        paths.append(str(p))
    original = photo(1000)
    original.save(d / "original.jpg", quality=90)
    paths.append(str(d / "original.jpg"))
    original.save(d / "jpeg_q30.jpg", quality=30)
    paths.append(str(d / "jpeg_q30.jpg"))
    for name, fn in TRANSFORMS.items():
        fn(original).save(d / f"{name}.jpg", quality=85)
        paths.append(str(d / f"{name}.jpg"))
    return paths, hash_files(paths, mirror=True, sha256=True, views=True)


def _pairs(paths: list[str], edges) -> set[tuple[str, str]]:
    return {tuple(sorted((Path(paths[a]).stem, Path(paths[b]).stem))) for a, b in zip(edges.a, edges.b, strict=True)}


def test_transformed_copies_are_verified_and_unrelated_pictures_are_not(corpus) -> None:
    """Every copy (crops up to 20%, squash, downscale, colour +-20%, JPEG q30) is verified against
    the original, and not one of 40 unrelated pictures joins anything."""
    paths, hashed = corpus
    edges = verified_edges(Descriptors.of(hashed), MatchConfig())
    pairs = _pairs(paths, edges)
    copies = ["jpeg_q30", *TRANSFORMS]
    for name in copies:
        assert tuple(sorted(("original", name))) in pairs, name
    assert not [p for p in pairs if any(x.startswith("unrelated") for x in p)]
    assert set(edges.check.tolist()) <= {"corr", "cells"}
    assert (edges.score[edges.check == "corr"] >= 0.85).all()


def test_crops_are_found_through_window_hashes(corpus) -> None:
    """A 15-20% crop is far from its original's whole-image pHash but close to a window's: the
    candidate row names that window (c85 / c80)."""
    paths, hashed = corpus
    desc = Descriptors.of(hashed)
    names = [Path(p).stem for p in paths]
    o, c = names.index("original"), names.index("crop_20")
    assert bin(hashed[o].phash ^ hashed[c].phash).count("1") > 8
    cand = find_candidates(desc.full, desc.windows, 8, 8)
    rows = [(int(w)) for a, b, w in zip(cand.a, cand.b, cand.window, strict=True) if (a, b) == (c, o)]
    assert 4 in rows   # WINDOWS[3] is c80


def test_burnt_in_text_passes_the_occlusion_check_only_for_clinical_pairs(tmp_path: Path) -> None:
    """A caption burnt into a copy spoils the whole-view correlation; the per-cell check accepts it
    (check 'cells') under the clinical policy and not under the dermoscopic one."""
    original = photo(7)
    original.save(tmp_path / "o.jpg", quality=90)
    caption_band(original).save(tmp_path / "t.jpg", quality=90)
    hashed = hash_files([str(tmp_path / "o.jpg"), str(tmp_path / "t.jpg")], views=True)
    clinical = verified_edges(Descriptors.of(hashed), MatchConfig(radius=16))
    assert len(clinical) == 1 and clinical.check[0] in ("corr", "cells")
    strict = MatchConfig(radius=16, clinical=Policy(corr=0.99, occlusion=True), dermoscopic=Policy(0.99, False))
    assert verified_edges(Descriptors.of(hashed), strict).check.tolist() == ["cells"]
    assert len(verified_edges(Descriptors.of(hashed), strict, np.array([True, False]))) == 0


def _banner(im: Image.Image, top: bool) -> Image.Image:
    """A thick burnt-in banner with text across one border (a logo strip or a figure caption):
    it moves the whole-image pHash far beyond the whole-image radius."""
    im = im.copy()
    draw = ImageDraw.Draw(im)
    band = im.height // 5
    y0 = 0 if top else im.height - band
    draw.rectangle((0, y0, im.width, y0 + band), fill=(250, 250, 250))
    draw.text((im.width // 20, y0 + band // 4), "Courtesy of the clinic", fill=(0, 0, 0), font=_font(band // 2))
    return im


@pytest.mark.parametrize("top", [False, True], ids=["banner_at_bottom", "banner_at_top"])
def test_a_banner_over_one_border_is_found_through_the_untouched_half(tmp_path: Path, top: bool) -> None:
    """A banner over one border puts the copy beyond the whole-image radius, but the opposite
    half's pHash is untouched: the candidate row says ``full/<half>`` (compared whole), the
    occlusion check verifies it, and no unrelated picture joins."""
    original = photo(17)
    paths = [tmp_path / "o.jpg", tmp_path / "banner.jpg", *(tmp_path / f"u{k}.jpg" for k in range(12))]
    original.save(paths[0], quality=90)
    _banner(original, top).save(paths[1], quality=90)
    for k, p in enumerate(paths[2:]):
        photo(300 + k).save(p, quality=90)
    hashed = hash_files([str(p) for p in paths], views=True)
    cfg = MatchConfig()
    assert bin(hashed[0].phash ^ hashed[1].phash).count("1") > cfg.radius
    edges = verified_edges(Descriptors.of(hashed), cfg)
    assert [(int(a), int(b)) for a, b in zip(edges.a, edges.b, strict=True)] == [(0, 1)]
    assert WINDOW_NAMES[int(edges.window[0])] == ("full/bottom" if top else "full/top")
    assert edges.check[0] == "cells"


def test_a_copy_cut_in_half_matches_the_half_window(tmp_path: Path) -> None:
    """The left half of a picture posted alone is, pixel for pixel, the original's ``left``
    window: found and verified through it."""
    original = photo(23, 480, 240)
    original.save(tmp_path / "o.jpg", quality=90)
    original.crop((0, 0, 240, 240)).save(tmp_path / "left.jpg", quality=90)
    hashed = hash_files([str(tmp_path / "o.jpg"), str(tmp_path / "left.jpg")], views=True)
    edges = verified_edges(Descriptors.of(hashed), MatchConfig())
    assert len(edges) == 1 and WINDOW_NAMES[int(edges.window[0])] == "left"
    assert (int(edges.a[0]), int(edges.b[0])) == (1, 0)   # the half's whole image against the original's window


def test_leader_clusters_never_chain() -> None:
    """A~B, B~C, C~D in a line: B joins A (the earlier leader); C, adjacent only to a member,
    leads its own cluster with D. Union-find would have made one cluster of four."""
    leader = leader_clusters(5, np.array([0, 1, 2]), np.array([1, 2, 3]), np.array([0.9, 0.9, 0.9]), np.arange(5))
    assert leader.tolist() == [0, 0, 2, 2, 4]


def test_leader_clusters_follower_takes_its_best_leader() -> None:
    """An image verified against two leaders joins the one it matches best; ties go to the
    earlier (canonical-order) leader."""
    assert leader_clusters(3, np.array([0, 1]), np.array([2, 2]), np.array([0.9, 0.95]), np.arange(3)).tolist() == [0, 1, 1]
    assert leader_clusters(3, np.array([0, 1]), np.array([2, 2]), np.array([0.9, 0.9]), np.arange(3)).tolist() == [0, 1, 0]
    # rank, not index, decides who leads
    assert leader_clusters(2, np.array([0]), np.array([1]), np.array([0.9]), np.array([1, 0])).tolist() == [1, 1]


def _frame(paths: list[str], hashed: list, sizes: dict[str, tuple[int, int, int]] | None = None) -> pd.DataFrame:
    return pd.DataFrame({"image_id": [f"img_{Path(p).stem}" for p in paths], "sha256": [h.sha256 for h in hashed],
                         "width": [h.width for h in hashed], "height": [h.height for h in hashed],
                         "source_rank": [0] * len(paths)})


@pytest.fixture(scope="module")
def family(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[str], list]:
    """An original, a larger copy from a later source, a byte copy, a crop, and one unrelated."""
    d = tmp_path_factory.mktemp("family")
    o = photo(31)
    o.save(d / "orig.jpg", quality=90)
    (d / "orig_bytes.jpg").write_bytes((d / "orig.jpg").read_bytes())
    o.resize((480, 360), Image.Resampling.LANCZOS).save(d / "large.jpg", quality=90)
    crop(o, 0.1).save(d / "crop.jpg", quality=90)
    photo(32).save(d / "other.jpg", quality=90)
    paths = [str(d / f"{n}.jpg") for n in ("orig", "orig_bytes", "large", "crop", "other")]
    return paths, hash_files(paths, sha256=True, views=True)


def test_cluster_images_canonical_kinds_and_star_edges(family) -> None:
    """Canonical = most pixels; byte copies are 'exact'; every near member has a verified edge to
    the canonical itself (stars, not chains); edges say which check accepted them."""
    paths, hashed = family
    frame = _frame(paths, hashed)
    clusters, edges, stats = dedup.cluster_images(frame, hashed, MatchConfig(), FAST)
    c = clusters.set_index("image_id")
    assert c["canonical_image_id"].to_dict() == {"img_orig": "img_large", "img_orig_bytes": "img_large",
                                                 "img_large": "img_large", "img_crop": "img_large",
                                                 "img_other": "img_other"}
    assert c["match_kind"].to_dict() == {"img_orig": "near", "img_orig_bytes": "near", "img_large": "canonical",
                                         "img_crop": "near", "img_other": "canonical"}
    assert c.loc["img_large", "cluster_size"] == 4 and c.loc["img_other", "cluster_size"] == 1
    assert (c["cluster_id"] == c["canonical_image_id"].map(ids.cluster_id)).all()
    assert c.loc["img_large", "score_to_canonical"] == 1.0 and c.loc["img_crop", "score_to_canonical"] >= 0.85
    linked = {tuple(sorted(x)) for x in edges[["image_id_a", "image_id_b"]].values.tolist()}
    for member in ("img_orig", "img_crop"):
        assert tuple(sorted((member, "img_large"))) in linked
    exact = edges[edges["kind"] == "exact"]
    assert exact[["image_id_a", "image_id_b", "verified_by", "score"]].values.tolist() == [
        ["img_orig", "img_orig_bytes", "sha256", 1.0]]
    assert set(edges.loc[edges["kind"] == "near", "verified_by"]) <= {"corr", "cells"}
    assert stats["candidate_pairs"] >= 3


def test_cluster_images_independent_of_row_order(family, tmp_path: Path) -> None:
    """Reversing the rows changes no cluster row or edge, and both tables fit their schemas."""
    paths, hashed = family
    c1, e1, _ = dedup.cluster_images(_frame(paths, hashed), hashed, MatchConfig(), FAST)
    c2, e2, _ = dedup.cluster_images(_frame(paths[::-1], hashed[::-1]), hashed[::-1], MatchConfig(), FAST)
    pd.testing.assert_frame_equal(c1.sort_values("image_id", ignore_index=True),
                                  c2.sort_values("image_id", ignore_index=True))
    pd.testing.assert_frame_equal(e1, e2)
    write_table(c1.sort_values("image_id", ignore_index=True), "clusters", tmp_path / "c.parquet")
    write_table(e1, "duplicate_edges", tmp_path / "e.parquet")


def test_mirror_links_join_flipped_copies(tmp_path: Path) -> None:
    """dedup.mirror: a left-right flipped copy joins its original (edge kind 'mirror'); without it,
    it does not; a symmetric picture never links to itself."""
    paths = []
    for k in range(4):
        photo(200 + k).save(tmp_path / f"o{k}.jpg", quality=90)
        paths.append(str(tmp_path / f"o{k}.jpg"))
    ImageOps.mirror(photo(201)).save(tmp_path / "flip.jpg", quality=85)
    sym = np.asarray(photo(300))
    Image.fromarray(np.concatenate([sym[:, :160], sym[:, :160][:, ::-1]], axis=1)).save(tmp_path / "sym.jpg")
    paths += [str(tmp_path / "flip.jpg"), str(tmp_path / "sym.jpg")]
    hashed = hash_files(paths, mirror=True, sha256=True, views=True)
    frame = _frame(paths, hashed)
    plain, _, _ = dedup.cluster_images(frame, hashed, MatchConfig(mirror=False), FAST)
    assert plain["cluster_size"].max() == 1
    clusters, edges, _ = dedup.cluster_images(frame, hashed, MatchConfig(mirror=True), FAST)
    c = clusters.set_index("image_id")["cluster_id"]
    assert c["img_flip"] == c["img_o1"] and clusters["cluster_size"].max() == 2
    assert edges[["image_id_a", "image_id_b", "kind"]].values.tolist() == [["img_flip", "img_o1", "mirror"]]


def test_benchmark_match_is_verified_and_sees_crops_and_mirrors(tmp_path: Path) -> None:
    """Decontamination uses the same candidates and verification: a benchmark image that is a
    crop of a corpus image matches; a flipped one only with mirror; a look-alike never."""
    bench = tmp_path / "bench"
    bench.mkdir()
    corpus = [tmp_path / "c0.jpg", tmp_path / "c1.jpg"]
    photo(77).save(corpus[0], quality=90)
    photo(78).save(corpus[1], quality=90)
    crop(photo(77), 0.15).save(bench / "cropped.jpg", quality=80)
    ImageOps.mirror(photo(78)).save(bench / "flipped.jpg", quality=80)
    photo(79).save(bench / "other.jpg", quality=80)
    hashed = hash_files([str(p) for p in corpus], mirror=True, views=True)
    images = pd.DataFrame({"image_id": ["img_c0", "img_c1"]})
    deco = {"radius": 12, "sets": parse_benchmarks([{"name": "b", "path": str(bench)}])}
    for mirror, expected in ((False, [["img_c0", "cropped.jpg"]]),
                             (True, [["img_c0", "cropped.jpg"], ["img_c1", "flipped.jpg"]])):
        cfg = {"hash_method": "fast", "workers": 1, "method_label": FAST, "match": MatchConfig(mirror=mirror)}
        found, rejects, n = dedup.match_benchmarks(images, hashed, deco, cfg)
        assert n == 3 and not rejects
        assert [[i, Path(p).name] for i, p in found[["image_id", "benchmark_path"]].values.tolist()] == expected
        assert (found["score"] >= 0.85).all() and set(found["verified_by"]) <= {"corr", "cells"}


def test_cross_matches_agree_with_edges_inside_one_set(corpus) -> None:
    """verified_matches (benchmarks, find-duplicates --against) finds the same pairs as
    verified_edges does when the two sets are put together."""
    paths, hashed = corpus
    names = [Path(p).stem for p in paths]
    split = names.index("original") + 1
    query, target = hashed[split:], hashed[:split]
    cross = verified_matches(Descriptors.of(query), Descriptors.of(target), MatchConfig())
    got = {(names[split + a], names[b]) for a, b in zip(cross.a, cross.b, strict=True)}
    assert got == {(n, "original") for n in names[split:]}


def test_find_duplicates_against_finds_verified_crops_and_mirrors(tmp_path: Path) -> None:
    """The standalone command runs the same matching: a benchmark crop matches, a mirrored copy
    only with --mirror, an unrelated look-alike never."""
    from pipeline.cli import main
    own, bench = tmp_path / "own", tmp_path / "bench"
    own.mkdir()
    bench.mkdir()
    photo(501).save(own / "a.jpg", quality=90)
    photo(502).save(own / "b.jpg", quality=90)
    crop(photo(501), 0.1).save(bench / "crop_of_a.jpg", quality=85)
    ImageOps.mirror(photo(502)).save(bench / "mirror_of_b.jpg", quality=85)
    photo(503).save(bench / "other.jpg", quality=85)
    for flags, expected in (([], {("a.jpg", "crop_of_a.jpg")}),
                            (["--mirror"], {("a.jpg", "crop_of_a.jpg"), ("b.jpg", "mirror_of_b.jpg")})):
        out = tmp_path / f"out{len(flags)}.csv"
        assert main(["find-duplicates", str(own), "--against", str(bench), "--output", str(out), *flags]) == 0
        rows = pd.read_csv(out)
        assert {(Path(p).name, Path(b).name) for p, b in zip(rows["path"], rows["benchmark_path"], strict=True)} == expected
        assert (rows["score"] >= 0.84).all()

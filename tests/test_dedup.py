"""Dedup at scale: the fast pHash path against the imagehash reference, exact cross search,
find-duplicates, decontamination, and leak-free splits on real HAM10000 lesions.

Images are real files (Pillow-written JPEG/PNG in ``tmp_path``, or ``../shared`` when present);
tables are real parquet written by the real stages.
"""

from __future__ import annotations

import copy
import csv
import hashlib
import math
from pathlib import Path

import imagehash
import numpy as np
import pandas as pd
import pytest
import scipy.fftpack
from PIL import Image

from pipeline.cli import main
from pipeline.errors import ConfigError, PipelineError
from pipeline.images.benchmarks import benchmark_files, parse_benchmarks
from pipeline.images.decode import ImageProblem, load_rgb
from pipeline.images.find import find_duplicates
from pipeline.images.hashing import (
    HASH_METHODS,
    HashedImage,
    bits_from_lowfreq,
    hash_files,
    hash_paths,
    lowfreq,
    mirrored_lowfreq,
    phash_pixels,
    single_method,
)
from pipeline.images.neardup import pairs_between, pairs_within, plan
from pipeline.params import load_params
from pipeline.stages import dedup, ingest, shard, split
from pipeline.tables import read_table, write_table

REPO = Path(__file__).resolve().parents[1]

FAST, REF = HASH_METHODS["fast"], HASH_METHODS["imagehash"]


def _scene(w: int, h: int, seed: int) -> Image.Image:
    """A smooth random picture (blobs on a gradient): pHash-distinct per seed, robust to JPEG."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / max(w, h)
    img = np.zeros((h, w, 3))
    for c in range(3):
        img[..., c] = rng.uniform(60, 200) + rng.uniform(-60, 60) * x + rng.uniform(-60, 60) * y
    for _ in range(6):
        cx, cy, r = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.05, 0.25)
        blob = np.exp(-((x - cx * w / max(w, h)) ** 2 + (y - cy * h / max(w, h)) ** 2) / (2 * r * r))
        img += blob[..., None] * rng.uniform(-90, 90, 3)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def _dist(a: int, b: int) -> int:
    return bin(a ^ b).count("1")


# -- hashing ---------------------------------------------------------------------------------------

def test_batched_dct_is_scipys_dct() -> None:
    """The 8x32 DCT matrix products equal scipy's 2-D DCT-II low frequencies, for a whole batch."""
    grey = np.random.default_rng(0).uniform(0, 255, (5, 32, 32))
    ref = np.stack([scipy.fftpack.dct(scipy.fftpack.dct(g, axis=0), axis=1)[:8, :8] for g in grey])
    np.testing.assert_allclose(2 * 2 * lowfreq(grey), ref, rtol=1e-9, atol=1e-7)


def test_same_pixels_give_imagehash_bits_exactly(tmp_path: Path) -> None:
    """Fed imagehash's own 32x32 grey pixels, the batched path reproduces imagehash.phash bit for bit."""
    grids, expected = [], []
    for seed in range(12):
        img = _scene(300, 200, seed)
        expected.append(int(str(imagehash.phash(img)), 16))
        grids.append(np.asarray(img.convert("L").resize((32, 32), Image.Resampling.LANCZOS), dtype=np.float64))
    assert phash_pixels(np.stack(grids)).tolist() == expected


def test_mirror_hash_is_the_hash_of_the_mirrored_pixels() -> None:
    """Negating odd DCT columns is exactly hashing the left-right mirrored grid."""
    grey = np.random.default_rng(1).uniform(0, 255, (6, 32, 32))
    assert np.array_equal(bits_from_lowfreq(mirrored_lowfreq(lowfreq(grey))), phash_pixels(grey[:, :, ::-1]))


def test_fast_and_reference_paths_on_written_images(tmp_path: Path) -> None:
    """JPEG, PNG, RGBA, CMYK and EXIF-rotated files: both paths agree within a few bits, report the
    displayed full-resolution size and the SHA-256; the reference path is imagehash itself."""
    files = []
    for k in range(6):
        p = tmp_path / f"s{k}.jpg"
        _scene(640, 480, k).save(p, quality=90)
        files.append(p)
    png = tmp_path / "s0.png"
    _scene(640, 480, 0).save(png)
    rgba = tmp_path / "rgba.png"
    _scene(200, 150, 7).convert("RGBA").save(rgba)
    cmyk = tmp_path / "cmyk.jpg"
    _scene(200, 150, 8).convert("CMYK").save(cmyk, quality=95)
    rotated = tmp_path / "rot.jpg"
    sideways = _scene(640, 480, 3).transpose(Image.Transpose.ROTATE_90)   # stored sideways ...
    exif = sideways.getexif()
    exif[0x0112] = 6                                                     # ... shown upright
    sideways.save(rotated, exif=exif, quality=90)
    paths = [str(p) for p in [*files, png, rgba, cmyk, rotated]]
    fast, ref = hash_files(paths, "fast", sha256=True), hash_files(paths, "imagehash", sha256=True)
    for p, f, r in zip(paths, fast, ref, strict=True):
        assert isinstance(f, HashedImage) and isinstance(r, HashedImage), p
        assert _dist(f.phash, r.phash) <= 4, p
        assert (f.width, f.height) == (r.width, r.height) == load_rgb(p).size
        assert f.sha256 == r.sha256 == hashlib.sha256(Path(p).read_bytes()).hexdigest()
        assert r.phash == int(str(imagehash.phash(load_rgb(p))), 16)
    assert (fast[-1].width, fast[-1].height) == (640, 480)
    assert _dist(fast[-1].phash, fast[3].phash) <= 2          # the rotated file is seen upright
    assert _dist(fast[0].phash, fast[6].phash) <= 2           # JPEG and PNG of one picture
    assert min(_dist(a.phash, b.phash) for x, a in enumerate(fast[:6]) for b in fast[x + 1:6]) > 10


def test_jpeg_decoder_does_not_change_hashes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """simplejpeg and Pillow's draft decode give the same pixels, so the same hashes (EXIF too)."""
    from pipeline.images import hashing

    paths = []
    for k, orientation in enumerate([1, 3, 6, 8, 1]):
        img = _scene(300 + 37 * k, 200 + 11 * k, 300 + k)
        exif = img.getexif()
        exif[0x0112] = orientation
        p = tmp_path / f"e{k}.jpg"
        img.save(p, exif=exif, quality=88, progressive=k == 4)
        paths.append(str(p))
    Image.new("CMYK", (90, 70), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg")
    paths.append(str(tmp_path / "cmyk.jpg"))
    assert hashing._simplejpeg is not None, "simplejpeg is a dependency of the fast path"
    with_turbo = hash_files(paths, "fast")
    monkeypatch.setattr(hashing, "_simplejpeg", None)
    assert hash_files(paths, "fast") == with_turbo
    assert [(h.width, h.height) for h in with_turbo[:4]] == [(300, 200), (337, 211), (222, 374), (233, 411)]


def test_hashing_bad_files_gives_reason_codes(tmp_path: Path) -> None:
    """Missing, empty, non-image and truncated files become reject reasons, never exceptions."""
    good = tmp_path / "good.jpg"
    _scene(120, 90, 1).save(good)
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "page.jpg").write_bytes(b"<!DOCTYPE html><html>404</html>")
    data = good.read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    names = ["good.jpg", "missing.jpg", "empty.jpg", "page.jpg", "cut.jpg"]
    for method in ("fast", "imagehash"):
        out = hash_files([str(tmp_path / n) for n in names], method)
        assert isinstance(out[0], HashedImage)
        assert [o.reason for o in out[1:]] == ["image_missing", "image_empty", "image_not_an_image",
                                               "image_truncated"], method
        assert all(isinstance(o, ImageProblem) for o in out[1:])
    with pytest.raises(ValueError, match="unknown hash method"):
        hash_files([str(good)], "md5")


def test_hash_paths_chunks_and_processes_keep_order(tmp_path: Path) -> None:
    """Many files over two processes come back in input order, equal to one in-process batch."""
    paths = []
    for k in range(70):
        p = tmp_path / f"{k:03d}.jpg"
        _scene(64, 48, k % 9).save(p, quality=80 + k % 10)
        paths.append(str(p))
    assert hash_paths(paths, "fast", workers=2) == hash_files(paths, "fast")


def test_single_method_refuses_mixed_tables() -> None:
    assert single_method([FAST, FAST], "clusters") == FAST
    assert single_method([], "clusters") is None
    with pytest.raises(ValueError, match="mixes hash methods"):
        single_method([FAST, REF], "clusters")


@pytest.mark.shared
def test_fast_path_tracks_imagehash_on_real_jpegs(shared: Path) -> None:
    """On real HAM10000, DermNet and Derm7pt JPEGs the fast hash stays within 4 bits of imagehash
    (mean under one bit): the reduced decode changes pixels, not the picture."""
    paths = []
    for rel in ("corpus/ham10000/images", "corpus/dermnet", "corpus/derm7pt/images"):
        found = sorted((shared / rel).rglob("*.jpg"))
        paths += [str(p) for p in found[:: max(1, len(found) // 40)][:40]]
    fast, ref = hash_files(paths, "fast"), hash_files(paths, "imagehash")
    d = np.array([_dist(f.phash, r.phash) for f, r in zip(fast, ref, strict=True)])
    assert d.max() <= 4 and d.mean() < 1.0, d


# -- exact search ----------------------------------------------------------------------------------

def _brute(u: np.ndarray, v: np.ndarray | None, radius: int) -> tuple[np.ndarray, np.ndarray]:
    d = np.bitwise_count(u[:, None] ^ (u if v is None else v)[None, :])
    ok = d <= radius
    if v is None:
        ok = np.triu(ok, k=1)
    return np.nonzero(ok)


def _clustered(n: int, seed: int) -> np.ndarray:
    """Random hashes plus copies 0..12 bits away and exact repeats (so every radius has pairs)."""
    rng = np.random.default_rng(seed)
    u = rng.integers(0, 2**64, n, dtype=np.uint64)
    flips = [np.uint64(sum(1 << int(b) for b in rng.choice(64, int(rng.integers(0, 13)), replace=False)))
             for _ in range(n // 3)]
    return np.concatenate([u, u[rng.integers(0, n, n // 3)] ^ np.array(flips, dtype=np.uint64), u[:5]])


@pytest.mark.parametrize("radius", [1, 2, 5, 12, 16, 31])
def test_pairs_within_exact_at_every_plan_shape(radius: int) -> None:
    """Every radius's block plan (thresholds up to 8 bits per block, skipped blocks at r < 2) is exact."""
    u = _clustered(600, radius)
    i, j, d = pairs_within(u, radius, batch=997)
    bi, bj = _brute(u, None, radius)
    assert np.array_equal(i, bi) and np.array_equal(j, bj)
    assert np.array_equal(d, np.bitwise_count(u[bi] ^ u[bj]).astype(np.int8))


def test_plans_satisfy_the_pigeonhole_bound() -> None:
    """sum(t_k + 1) over searched blocks exceeds r, blocks cover 64 bits, no block over 24 bits."""
    for radius in range(32):
        for n in (10, 10_000, 1_000_000):
            blocks = plan(radius, n)
            assert sum(b.bits for b in blocks) == 64 and max(b.bits for b in blocks) <= 24
            assert sum(b.threshold + 1 for b in blocks if b.threshold >= 0) > radius
            assert [b.shift for b in blocks] == list(np.cumsum([0] + [b.bits for b in blocks[:-1]]))


@pytest.mark.parametrize("radius", [0, 3, 8, 13])
def test_pairs_between_equals_brute_force(radius: int) -> None:
    """Cross search finds exactly the brute-force query/target pairs, whichever side is larger."""
    rng = np.random.default_rng(radius)
    a = _clustered(900, 40 + radius)
    b = np.concatenate([rng.integers(0, 2**64, 300, dtype=np.uint64), a[:120] ^ np.uint64(0b1011), a[200:230]])
    for q, t in ((a, b), (b, a)):
        for batch in (3, 1 << 20):
            qi, ti, d = pairs_between(q, t, radius, batch=batch)
            bq, bt = _brute(q, t, radius)
            assert np.array_equal(qi, bq) and np.array_equal(ti, bt)
            assert np.array_equal(d, np.bitwise_count(q[bq] ^ t[bt]).astype(np.int8))
    empty = np.empty(0, dtype=np.uint64)
    assert all(len(x) == 0 for x in pairs_between(empty, b, radius))
    with pytest.raises(ValueError, match="radius"):
        pairs_between(a, b, 32)


def test_pairs_within_threads_give_the_same_pairs() -> None:
    u = _clustered(3000, 9)
    one = pairs_within(u, 8, workers=1)
    two = pairs_within(u, 8, workers=2)
    assert all(np.array_equal(x, y) for x, y in zip(one, two, strict=True))


# -- find-duplicates -------------------------------------------------------------------------------

@pytest.fixture
def folders(tmp_path: Path) -> dict[str, Path]:
    """Two photo folders with exact, re-encoded and resized copies, a bad file, and a benchmark folder."""
    a, b, bench = tmp_path / "a", tmp_path / "b" / "sub", tmp_path / "bench"
    for d in (a, b, bench):
        d.mkdir(parents=True)
    for k in range(8):
        _scene(400, 300, 100 + k).save(a / f"p{k}.jpg", quality=92)
    (b / "copy_of_p0.jpg").write_bytes((a / "p0.jpg").read_bytes())                 # byte copy
    _scene(400, 300, 101).save(b / "p1_q60.jpg", quality=60)                          # re-encode
    _scene(400, 300, 102).resize((800, 600)).save(b / "p2_big.png")                   # bigger: canonical
    (a / "broken.jpg").write_bytes(b"not an image")
    _scene(400, 300, 103).resize((200, 150)).save(bench / "test_1.jpg", quality=85)  # benchmark has p3
    _scene(400, 300, 999).save(bench / "test_2.jpg")
    return {"a": a, "b": tmp_path / "b", "bench": bench, "out": tmp_path / "out.csv"}


def _read(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_find_duplicates_clusters_and_rejects(folders: dict[str, Path], capsys: pytest.CaptureFixture) -> None:
    """One row per image in a cluster; canonical = largest, then first folder; bad files in a rejects CSV."""
    code = main(["find-duplicates", str(folders["a"]), str(folders["b"]), "--radius", "8",
                 "--output", str(folders["out"])])
    assert code == 0
    rows = _read(folders["out"])
    by_path = {Path(r["path"]).name: r for r in rows}
    assert set(by_path) == {"p0.jpg", "copy_of_p0.jpg", "p1.jpg", "p1_q60.jpg", "p2.jpg", "p2_big.png"}
    assert by_path["p0.jpg"]["match_kind"] == "canonical" and by_path["copy_of_p0.jpg"]["match_kind"] == "exact"
    assert Path(by_path["p1_q60.jpg"]["canonical_path"]).name == "p1.jpg"
    assert by_path["p1_q60.jpg"]["match_kind"] == "near"
    assert Path(by_path["p2.jpg"]["canonical_path"]).name == "p2_big.png"   # highest resolution wins
    assert len({r["cluster_id"] for r in rows}) == 3 and all(r["cluster_size"] == "2" for r in rows)
    assert {r["hash_method"] for r in rows} == {FAST}
    rejects = _read(folders["out"].with_name("out.csv.rejects.csv"))
    assert [(Path(r["path"]).name, r["reason"]) for r in rejects] == [("broken.jpg", "image_not_an_image")]
    err = capsys.readouterr().err
    assert "6 images in 3 duplicate clusters" in err and "1 files could not be read" in err
    first = folders["out"].read_bytes()
    main(["find-duplicates", str(folders["a"]), str(folders["b"]), "--output", str(folders["out"])])
    assert folders["out"].read_bytes() == first   # deterministic


def test_find_duplicates_against_a_benchmark(folders: dict[str, Path]) -> None:
    """--against lists only own images matching a benchmark image, with the closest one."""
    summary = find_duplicates([folders["a"], folders["b"]], 8, folders["out"], against=folders["bench"])
    rows = _read(folders["out"])
    assert [(Path(r["path"]).name, Path(r["benchmark_path"]).name) for r in rows] == [("p3.jpg", "test_1.jpg")]
    assert int(rows[0]["distance"]) <= 8 and rows[0]["n_benchmark_matches"] == "1"
    assert summary["benchmark_images"] == 2


def test_find_duplicates_user_errors(folders: dict[str, Path], tmp_path: Path, capsys) -> None:
    """A missing folder, a bad radius or a missing benchmark: one line on stderr, exit 2, no output."""
    out = tmp_path / "never.csv"
    for args in ([str(tmp_path / "nope")], [str(folders["a"]), "--radius", "40"],
                 [str(folders["a"]), "--against", str(tmp_path / "nobench")]):
        assert main(["find-duplicates", *args, "--output", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("derm1m find-duplicates: error:") and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_benchmark_sets_folder_and_csv(tmp_path: Path, folders: dict[str, Path]) -> None:
    """A benchmark is a folder (recursive) or a CSV of paths relative to it; bad entries are ConfigErrors."""
    listing = tmp_path / "bench.csv"
    listing.write_text("image_path,label\nbench/test_2.jpg,x\nbench/test_1.jpg,y\n\n", encoding="utf-8")
    sets = parse_benchmarks([{"name": "dir", "path": str(folders["bench"])}, {"name": "csv", "path": str(listing)}])
    assert benchmark_files(sets[0]) == benchmark_files(sets[1]) == sorted(
        p.as_posix() for p in folders["bench"].glob("*.jpg"))
    assert parse_benchmarks(None) == []
    for bad, match in (([{"name": "x"}], "needs name and path"), ([{"name": "x", "path": str(tmp_path / "no")}],
                       "does not exist"), ({"name": "x"}, "must be a list"),
                       ([{"name": "x", "path": str(folders["bench"])}] * 2, "used twice")):
        with pytest.raises(ConfigError, match=match):
            parse_benchmarks(bad)
    wrong = parse_benchmarks([{"name": "c", "path": str(listing), "column": "file"}])[0]
    with pytest.raises(ConfigError, match="no column 'file'"):
        benchmark_files(wrong)


@pytest.mark.shared
def test_find_duplicates_dermnet_byte_copies(shared: Path, tmp_path: Path) -> None:
    """Every byte-identical DermNet file pair (real cross-folder copies) lands in one cluster."""
    root = shared / "corpus/dermnet"
    find_duplicates([root], 0, tmp_path / "d.csv")
    cluster = {r["path"]: r["cluster_id"] for r in _read(tmp_path / "d.csv")}
    by_sha: dict[str, list[str]] = {}
    for f in sorted(root.rglob("*.jpg")):
        by_sha.setdefault(hashlib.sha256(f.read_bytes()).hexdigest(), []).append(f.as_posix())
    groups = [g for g in by_sha.values() if len(g) > 1]
    assert len(groups) > 100
    for g in groups:
        assert len({cluster[p] for p in g}) == 1, g


# -- decontamination and splits --------------------------------------------------------------------

def test_decontamination_removes_train_groups(corpus: dict, tmp_path: Path) -> None:
    """Benchmark copies of train images take their whole cluster (and split group: the demo's
    videos, threads and patients are group keys) out of train, into the decontaminated table with
    the matching benchmark image; other splits keep theirs."""
    params = copy.deepcopy(corpus["params"])
    params["dedup"]["out"] = str(tmp_path / "dedup")
    params["split"]["out"] = str(tmp_path / "split")
    root = Path(corpus["root"])
    clusters = read_table("clusters", root / "data/dedup/clusters.parquet")
    images = read_table("images", root / "data/ingest/images.parquet")
    splits = read_table("splits", root / "data/split/splits.parquet")
    big = clusters[clusters["cluster_size"] > 1].merge(splits, on="cluster_id")
    train = big[(big["split"] == "train") & big["is_canonical"]].head(2)
    other = clusters.merge(splits, on="cluster_id")
    other = other[(other["split"] != "train") & other["is_canonical"]].head(1)
    bench = tmp_path / "bench"
    bench.mkdir()
    paths = images.set_index("image_id")["path"]
    for k, image_id in enumerate([*train["image_id"], *other["image_id"]]):
        img = load_rgb(paths[image_id])
        img.resize((img.width // 2, img.height // 2)).save(bench / f"b{k}.jpg", quality=80)
    params["decontaminate"]["benchmarks"] = [{"name": "toy", "path": str(bench)}]
    dedup.run(params)
    result = split.run(params)
    matches = read_table("benchmark_matches", tmp_path / "dedup/benchmark_matches.parquet")
    removed = read_table("decontaminated", tmp_path / "split/decontaminated.parquet")
    new = read_table("splits", tmp_path / "split/splits.parquet").set_index("cluster_id")["split"]
    assert set(matches["image_id"]) >= set(train["image_id"]) | set(other["image_id"])
    gone = set(splits.loc[splits["split_group"].isin(train["split_group"]), "cluster_id"])
    assert gone >= set(train["cluster_id"])
    assert set(removed["cluster_id"]) == gone and (new[list(gone)] == "decontaminated").all()
    assert new[other["cluster_id"].iloc[0]] != "decontaminated"
    expected_images = set(clusters[clusters["cluster_id"].isin(gone)]["image_id"])
    assert set(removed["image_id"]) == expected_images
    assert set(removed["via"]) <= {"match", "duplicate", "group"} and (removed["via"] == "match").any()
    assert set(removed.loc[removed["via"] == "group", "cluster_id"]) <= gone - set(train["cluster_id"])
    assert removed["benchmark_path"].str.startswith(str(bench)).all() and (removed["distance"] <= 8).all()
    assert (removed["hash_method"] == FAST).all()
    assert result.extra["decontaminated"] == len(gone)
    unchanged = splits.set_index("cluster_id")["split"].drop(list(gone))
    assert (new.drop(list(gone)) == unchanged).all()
    # The shard stage accounts for the removed pairs: every pair is a sample or a reject.
    params["shard"]["out"] = str(tmp_path / "shards")
    shard.run(params)
    manifest = read_table("shard_index", tmp_path / "shards/manifest.parquet")
    rejects = read_table("rejects", tmp_path / "shards/rejects.parquet")
    pairs = read_table("pairs", root / "data/ingest/pairs.parquet")
    assert len(manifest) + len(rejects) == len(pairs)
    gone_pairs = set(pairs.merge(clusters[clusters["cluster_id"].isin(gone)], on="image_id")["pair_id"])
    assert set(rejects.loc[rejects["reason"] == "decontaminated", "record_id"]) == gone_pairs


def test_decontamination_via_group_key() -> None:
    """A benchmark match in one photo of a lesion removes the lesion's other clusters too."""
    clusters = pd.DataFrame({"image_id": ["i1", "i2", "i3", "i4"], "cluster_id": ["c1", "c1", "c2", "c3"]})
    frame = pd.DataFrame({"cluster_id": ["c1", "c2", "c3"], "split_group": ["c1", "c1", "c3"],
                          "split": ["train", "train", "holdout"]})
    matches = pd.DataFrame({"image_id": ["i1", "i1", "i4"], "benchmark": ["b", "a", "b"],
                            "benchmark_path": ["x.jpg", "y.jpg", "z.jpg"], "distance": [3, 3, 0],
                            "hash_method": FAST})
    out, removed = split.decontaminate(frame, clusters, matches)
    assert out.set_index("cluster_id")["split"].to_dict() == {"c1": "decontaminated", "c2": "decontaminated",
                                                              "c3": "holdout"}
    got = removed.set_index("image_id")[["via", "matched_image_id", "benchmark", "benchmark_path"]]
    assert got.to_dict("index") == {
        "i1": {"via": "match", "matched_image_id": "i1", "benchmark": "a", "benchmark_path": "y.jpg"},
        "i2": {"via": "duplicate", "matched_image_id": "i1", "benchmark": "a", "benchmark_path": "y.jpg"},
        "i3": {"via": "group", "matched_image_id": "i1", "benchmark": "a", "benchmark_path": "y.jpg"}}


def test_dedup_config_errors(corpus: dict, tmp_path: Path) -> None:
    params = copy.deepcopy(corpus["params"])
    params["dedup"]["hash_method"] = "md5"
    with pytest.raises(ConfigError, match="dedup.hash_method"):
        dedup.run(params)
    params["dedup"]["hash_method"] = "fast"
    params["decontaminate"]["radius"] = 40
    with pytest.raises(ConfigError, match="decontaminate.radius"):
        dedup.run(params)


def test_split_refuses_mixed_hash_methods(corpus: dict, tmp_path: Path) -> None:
    params = copy.deepcopy(corpus["params"])
    params["dedup"]["out"] = str(tmp_path)
    params["split"]["out"] = str(tmp_path / "split")
    root = Path(corpus["root"])
    clusters = read_table("clusters", root / "data/dedup/clusters.parquet")
    clusters.loc[clusters.index[0], "hash_method"] = REF
    write_table(clusters, "clusters", tmp_path / "clusters.parquet")
    write_table([], "benchmark_matches", tmp_path / "benchmark_matches.parquet")
    with pytest.raises(PipelineError, match="mixes hash methods"):
        split.run(params)


@pytest.mark.shared
def test_ham10000_no_cluster_or_lesion_spans_splits(shared: Path, tmp_path: Path) -> None:
    """All of HAM10000 through ingest, dedup (default params) and split: dermoscopic look-alikes
    are not merged (largest cluster <= 10, <= 5 clusters span two lesion_ids, none two
    diagnoses, <= 50 pairs of different lesions share a cluster); every duplicate cluster and
    every lesion_id lies in exactly one split."""
    params = {"ingest": {"out": str(tmp_path / "ingest"), "workers": 2, "max_image_pixels": 89478485,
                         "min_side": 16, "sources": [{"name": "ham", "adapter": "ham10000",
                                                       "path": str(shared / "corpus/ham10000")}]},
              "dedup": {**load_params(REPO / "params.yaml")["dedup"], "out": str(tmp_path / "dedup")},
              "decontaminate": {"radius": 12, "benchmarks": []},
              "split": {"out": str(tmp_path / "split"), "salt": "derm1m-split-v1",
                        "ratios": {"train": 0.8, "validation": 0.1, "holdout": 0.1}}}
    ingest.run(params)
    dedup.run(params)
    split.run(params)
    pairs = read_table("pairs", tmp_path / "ingest/pairs.parquet")
    clusters = read_table("clusters", tmp_path / "dedup/clusters.parquet")
    splits = read_table("splits", tmp_path / "split/splits.parquet")
    frame = pairs.merge(clusters, on="image_id").merge(splits, on="cluster_id")
    assert len(frame) == len(pairs) == 10015
    assert clusters["cluster_size"].max() <= 10
    per_cluster = frame.groupby("cluster_id").agg(lesions=("group_key", "nunique"), dx=("source_label", "nunique"))
    assert (per_cluster["lesions"] > 1).sum() <= 5 and (per_cluster["dx"] > 1).sum() == 0
    lesion_pairs = frame.groupby(["cluster_id", "group_key"]).size().groupby("cluster_id").agg(
        lambda s: (s.sum() ** 2 - (s ** 2).sum()) // 2)
    assert lesion_pairs.sum() <= 50
    assert (frame.groupby("cluster_id")["split"].nunique() == 1).all()
    assert (frame.groupby("group_key")["split"].nunique() == 1).all()
    per_lesion_clusters = frame.groupby("group_key")["cluster_id"].nunique()
    assert (per_lesion_clusters > 1).sum() > 1000          # re-photographed lesions are not pixel duplicates
    assert (frame.groupby("split_group")["group_key"].nunique() > 1).any()   # clusters joining lesions
    shares = splits["split"].value_counts(normalize=True)
    assert math.isclose(shares["train"], 0.8, abs_tol=0.03)



"""Shard writer and readers on real JPEGs, tars and parquet: limits, index, incremental rebuilds.

Every test writes its own small corpus of real JPEG files into a temp folder and calls the real
writer; the readers are the real libraries (webdataset, open_clip_train's pipeline, Hugging Face
``datasets``), so a layout they cannot read fails here.
"""

from __future__ import annotations

import filecmp
import io
import json
import logging
import tarfile
from argparse import Namespace
from pathlib import Path

import pandas as pd
import pytest
import webdataset as wds
from PIL import Image

from pipeline.errors import PipelineError
from pipeline.shards.reader import caption_members, pick_caption, training_loader
from pipeline.shards.writer import (
    FINGERPRINTS_FILE,
    Sample,
    ShardOptions,
    _members,
    _write_tar,
    encode_jpeg,
    write_split,
)
from pipeline.tables import read_table, write_json


def _image(path: Path, size: tuple[int, int], seed: int, fmt: str = "JPEG", exif_orientation: int = 0) -> Path:
    img = Image.new("RGB", size, (seed * 37 % 256, seed * 91 % 256, 120))
    for x in range(0, size[0], 7):  # texture, so JPEG sizes differ per image
        img.putpixel((x, (x * seed) % size[1]), (255, 255, 255))
    kwargs = {"quality": 90} if fmt == "JPEG" else {}
    if exif_orientation:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        kwargs["exif"] = exif.tobytes()
    img.save(path, fmt, **kwargs)
    return path


def _corpus(root: Path, n: int, captions_per: int = 1) -> list[Sample]:
    root.mkdir(parents=True, exist_ok=True)
    samples = []
    for i in range(n):
        path = _image(root / f"img{i:03d}.jpg", (48 + i % 5, 40), i + 1)
        caps = tuple((f"pair{i:03d}{c}", f"caption {c} of image {i}") for c in range(captions_per))
        samples.append(Sample(key=f"img{i:03d}", image_id=f"img{i:03d}", image_path=str(path),
                              image_sha256=f"sha{i}", captions=caps,
                              meta={"pair_id": caps[0][0], "source": "test", "disease_label": "acne"}))
    return samples


def _encoder(calls: list[str] | None = None):
    def jpeg_of(chunk: list[Sample]) -> list[bytes | None]:
        if calls is not None:
            calls.extend(s.key for s in chunk)
        return [encode_jpeg(s.image_path, 64, 90, skip_reencode=True) for s in chunk]
    return jpeg_of


def test_count_and_byte_limits_index_offsets_and_sizes(tmp_path: Path) -> None:
    samples = _corpus(tmp_path / "img", 23)
    out = tmp_path / "train"
    by_count = write_split("train", samples, out, ShardOptions(max_samples=10), _encoder())
    assert by_count.sizes == {"train-000000.tar": 10, "train-000001.tar": 10, "train-000002.tar": 3}
    assert json.loads((out / "sizes.json").read_text()) == by_count.sizes
    for name, n in by_count.sizes.items():
        index = read_table("shard_index", out / name.replace(".tar", ".parquet"))
        assert len(index) == n and list(index["index_in_shard"]) == list(range(n))
        raw = (out / name).read_bytes()
        with tarfile.open(out / name) as tar:
            for row in index.itertuples():
                member = tarfile.TarInfo.frombuf(raw[row.offset:row.offset + 512], "utf-8", "surrogateescape")
                assert member.name == f"{row.key}.jpg" and member.size == row.jpg_bytes
                assert tar.extractfile(member.name).read()[:2] == b"\xff\xd8"
    limit = 20 * 1024
    by_bytes = write_split("train", samples, tmp_path / "bytes", ShardOptions(10, max_bytes=limit), _encoder())
    assert len(by_bytes.sizes) > 3 and sum(by_bytes.sizes.values()) == 23
    for name in by_bytes.sizes:
        assert (tmp_path / "bytes" / name).stat().st_size <= limit


def test_keys_must_be_unique_and_dot_free(tmp_path: Path) -> None:
    samples = _corpus(tmp_path / "img", 2)
    dotted = [Sample("a.b", "x", samples[0].image_path, "", (("p", "t"),), {})]
    with pytest.raises(PipelineError, match="not a valid WebDataset key"):
        write_split("train", dotted, tmp_path / "o1", ShardOptions(5), _encoder())
    twice = [samples[0], samples[0]]
    with pytest.raises(PipelineError, match="occurs twice"):
        write_split("train", twice, tmp_path / "o2", ShardOptions(5), _encoder())
    with pytest.raises(PipelineError, match="max_samples_per_shard"):
        ShardOptions(0)


def test_skip_reencode_passes_fitting_jpegs_through(tmp_path: Path) -> None:
    small = _image(tmp_path / "small.jpg", (60, 40), 3)
    assert encode_jpeg(str(small), 64, 90, skip_reencode=True) == small.read_bytes()
    assert encode_jpeg(str(small), 64, 90, skip_reencode=False) != small.read_bytes()
    big = _image(tmp_path / "big.jpg", (200, 100), 4)
    out = encode_jpeg(str(big), 64, 90, skip_reencode=True)
    assert out != big.read_bytes() and Image.open(io.BytesIO(out)).size == (64, 32)
    rotated = _image(tmp_path / "rot.jpg", (60, 40), 5, exif_orientation=6)
    upright = Image.open(io.BytesIO(encode_jpeg(str(rotated), 64, 90, skip_reencode=True)))
    assert upright.size == (40, 60)  # EXIF rotation applied, so not passed through
    png = _image(tmp_path / "p.png", (30, 30), 6, fmt="PNG")
    assert Image.open(io.BytesIO(encode_jpeg(str(png), 64, 90, skip_reencode=True))).format == "JPEG"
    (tmp_path / "bad.jpg").write_bytes(b"<html>")
    assert encode_jpeg(str(tmp_path / "bad.jpg"), 64, 90, skip_reencode=True) is None


def test_failed_images_are_returned_not_written(tmp_path: Path) -> None:
    samples = _corpus(tmp_path / "img", 6)
    Path(samples[2].image_path).write_bytes(b"not a jpeg")
    result = write_split("train", samples, tmp_path / "o", ShardOptions(4), _encoder())
    assert [s.key for s in result.failed] == ["img002"]
    assert sum(result.sizes.values()) == 5 and "img002" not in {r["key"] for r in result.index_rows}


def test_incremental_rebuild_rewrites_only_changed_tars(tmp_path: Path) -> None:
    samples = _corpus(tmp_path / "img", 25)
    opts = ShardOptions(10)
    first = tmp_path / "v1"
    write_split("train", samples, first, opts, _encoder())
    changed = samples[:-1] + [Sample(**{**samples[-1].__dict__, "captions": (("pair024", "new caption"),)})]
    calls: list[str] = []
    second = tmp_path / "v2"
    result = write_split("train", changed, second, opts, _encoder(calls), previous=first)
    assert result.reused == 2 and result.written == 1
    assert calls == [s.key for s in samples[20:]]  # no image work for the unchanged tars
    for name in ("train-000000.tar", "train-000001.tar"):
        a, b = (first / name).stat(), (second / name).stat()
        assert (a.st_ino, a.st_mtime_ns) == (b.st_ino, b.st_mtime_ns)
    assert (first / "train-000002.tar").stat().st_ino != (second / "train-000002.tar").stat().st_ino
    fresh = tmp_path / "fresh"
    write_split("train", changed, fresh, opts, _encoder())
    for f in sorted(p.name for p in fresh.iterdir()):
        assert filecmp.cmp(fresh / f, second / f, shallow=False), f
    # changed shard options invalidate every tar
    again = write_split("train", changed, tmp_path / "v3", ShardOptions(10, encoder="q=80"), _encoder(),
                        previous=second)
    assert again.reused == 0
    (second / FINGERPRINTS_FILE).write_text("{broken")
    assert write_split("train", changed, tmp_path / "v4", opts, _encoder(), previous=second).reused == 0


def test_cluster_captions_as_txt_members_and_pick_caption(tmp_path: Path) -> None:
    samples = _corpus(tmp_path / "img", 4, captions_per=3)
    result = write_split("train", samples, tmp_path / "o", ShardOptions(10), _encoder())
    assert len(result.index_rows) == 12 and result.sizes == {"train-000000.tar": 4}
    assert sorted({r["txt_member"] for r in result.index_rows}) == ["txt", "txt.1", "txt.2"]
    raw = list(wds.WebDataset(str(tmp_path / "o" / "train-000000.tar"), shardshuffle=False))
    assert caption_members(raw[0]) == ["txt", "txt.1", "txt.2"]
    assert raw[0]["txt.2"] == b"caption 2 of image 0"
    picks = {pick_caption(raw[0], epoch)["txt"] for epoch in range(12)}
    assert len(picks) > 1 and picks <= {raw[0][m] for m in caption_members(raw[0])}
    assert pick_caption(raw[0], 3) == pick_caption(raw[0], 3)


def test_tar_bytes_equal_webdataset_tarwriter(tmp_path: Path) -> None:
    """The writer frames members itself (speed); the bytes must be webdataset.TarWriter's,
    including a key long enough to need a PAX header and a non-ASCII caption."""
    samples = _corpus(tmp_path / "img", 3, captions_per=2)
    long_key = "k" * 140
    samples.append(Sample(long_key, "x", samples[0].image_path, "", (("p", "caption \u00e9\u00e8 \u4e2d"),), {"a": 1},
                          (("ontology", ("onto",)),)))
    chunk = [(s, _members(s, Path(s.image_path).read_bytes())) for s in samples]
    rows = _write_tar(tmp_path / "ours.tar", "train", chunk)
    with open(tmp_path / "theirs.tar", "wb") as fh:
        writer = wds.TarWriter(fh, user="derm1m", group="derm1m", mode=0o444, mtime=0, encoder=False)
        for _, members in chunk:
            writer.write(members)
        writer.close()
    assert (tmp_path / "ours.tar").read_bytes() == (tmp_path / "theirs.tar").read_bytes()
    raw = (tmp_path / "ours.tar").read_bytes()
    with tarfile.open(tmp_path / "ours.tar") as tar:
        offsets = {m.name: m.offset for m in tar.getmembers()}
    assert [r["offset"] for r in rows] == [offsets[f"{r['key']}.jpg"] for r in rows]
    assert raw[rows[-1]["offset"]:].startswith(b"././@PaxHeader")  # the long name needs a PAX header


def test_fingerprints_file_streamed_as_write_json_writes_it(tmp_path: Path) -> None:
    samples = _corpus(tmp_path / "img", 7)
    for n, out in ((7, tmp_path / "full"), (0, tmp_path / "empty")):
        write_split("train", samples[:n], out, ShardOptions(3), _encoder())
        doc = json.loads((out / FINGERPRINTS_FILE).read_text(encoding="utf-8"))
        write_json(doc, tmp_path / "again.json")
        assert (out / FINGERPRINTS_FILE).read_bytes() == (tmp_path / "again.json").read_bytes()
        assert len(doc["shards"]) == -(-n // 3)


def test_keys_must_come_in_ascending_order(tmp_path: Path) -> None:
    samples = _corpus(tmp_path / "img", 3)
    with pytest.raises(PipelineError, match="ascending key order"):
        write_split("train", [samples[1], samples[0]], tmp_path / "o", ShardOptions(5), _encoder())


def test_ranges_cut_by_bytes_and_failures_renamed_on_reuse(tmp_path: Path) -> None:
    """A range is one tar unless the byte limit cuts it; a range whose images all fail makes no
    tar and the names stay contiguous; a reused tar whose name moved gets its index rewritten."""
    samples = _corpus(tmp_path / "img", 12)
    good = {s.key: Path(s.image_path).read_bytes() for s in samples}
    for s in samples[:4]:
        Path(s.image_path).write_bytes(b"gone")
    first = write_split("train", samples, tmp_path / "v1", ShardOptions(4), _encoder())
    assert first.sizes == {"train-000000.tar": 4, "train-000001.tar": 4}
    assert [s.key for s in first.failed] == [s.key for s in samples[:4]]
    for s in samples[:4]:
        Path(s.image_path).write_bytes(good[s.key])
    calls: list[str] = []
    second = write_split("train", samples, tmp_path / "v2", ShardOptions(4), _encoder(calls), previous=tmp_path / "v1")
    assert calls == [s.key for s in samples[:4]] and second.reused == 2 and second.written == 1
    assert (tmp_path / "v1/train-000000.tar").stat().st_ino == (tmp_path / "v2/train-000001.tar").stat().st_ino
    assert set(read_table("shard_index", tmp_path / "v2/train-000002.parquet")["shard"]) == {"train-000002.tar"}
    fresh = write_split("train", samples, tmp_path / "fresh", ShardOptions(4), _encoder())
    assert fresh.sizes == second.sizes
    for f in sorted(p.name for p in (tmp_path / "fresh").iterdir()):
        assert filecmp.cmp(tmp_path / "fresh" / f, tmp_path / "v2" / f, shallow=False), f
    # A byte limit cuts a range into several tars; rebuilt from the previous build, all reused.
    limit = 12 * 1024
    cut = write_split("train", samples, tmp_path / "b1", ShardOptions(4, max_bytes=limit), _encoder())
    assert len(cut.sizes) > 3 and sum(cut.sizes.values()) == 12
    assert list(cut.sizes) == [f"train-{i:06d}.tar" for i in range(len(cut.sizes))]
    again = write_split("train", samples, tmp_path / "b2", ShardOptions(4, max_bytes=limit), _encoder(calls := []),
                        previous=tmp_path / "b1")
    assert calls == [] and again.reused == len(cut.sizes)


# --- readers --------------------------------------------------------------------------------


@pytest.fixture
def written(tmp_path: Path) -> Path:
    out = tmp_path / "train"
    write_split("train", _corpus(tmp_path / "img", 12), out, ShardOptions(4), _encoder())
    return out


def test_reader_webdataset(written: Path) -> None:
    urls = sorted(str(p) for p in written.glob("*.tar"))
    samples = list(wds.WebDataset(urls, shardshuffle=False).decode("pil").to_tuple("__key__", "jpg", "txt", "json"))
    assert [s[0] for s in samples] == [f"img{i:03d}" for i in range(12)]
    assert samples[0][1].mode == "RGB" and samples[0][2] == "caption 0 of image 0"
    assert samples[0][3]["pair_id"] == "pair0000"


def test_reader_training_loader_gives_224_tensors(written: Path) -> None:
    import open_clip

    transform = open_clip.image_transform(224, is_train=True)
    batches = list(training_loader(sorted(str(p) for p in written.glob("*.tar")), transform, 5, workers=0))
    assert [b[0].shape[0] for b in batches] == [5, 5, 2]
    assert tuple(batches[0][0].shape[1:]) == (3, 224, 224)


def test_reader_open_clip_webdataset_pipeline(written: Path) -> None:
    from open_clip import get_tokenizer
    from open_clip_train.data import get_wds_dataset

    from pipeline.training.shardset import shard_pattern

    pattern, n = shard_pattern(written)
    args = Namespace(train_data=pattern, val_data=None, train_num_samples=n, dataset_resampled=False,
                     train_data_upsampling_factors=None, seed=0, workers=1, world_size=1, batch_size=4)
    import open_clip

    info = get_wds_dataset(args, open_clip.image_transform(32, is_train=True), is_train=True,
                           tokenizer=get_tokenizer("ViT-B-16"))
    batches = list(info.dataloader)
    assert info.dataloader.num_samples == 12 and len(batches) == 3
    images, texts = batches[0]
    assert tuple(images.shape) == (4, 3, 32, 32) and tuple(texts.shape) == (4, 77)


def test_reader_hugging_face_datasets(written: Path, tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets", reason="Hugging Face datasets is not installed (dev extra)")
    files = sorted(str(p) for p in written.glob("*.tar"))
    ds = datasets.load_dataset("webdataset", data_files={"train": files}, split="train",
                               cache_dir=str(tmp_path / "hf"))
    assert len(ds) == 12 and {"__key__", "jpg", "txt", "json"} <= set(ds.column_names)
    assert ds[0]["__key__"] == "img000" and ds[0]["txt"] == "caption 0 of image 0"
    assert ds[0]["jpg"].mode == "RGB" and ds[0]["json"]["pair_id"] == "pair0000"


# --- the stage on the demo corpus -------------------------------------------------------------


def test_stage_cluster_mode_accounts_for_every_pair_and_warns(corpus: dict, tmp_path: Path,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    from pipeline.stages import shard

    params = json.loads(json.dumps(corpus["params"]))
    params["shard"].update(out=str(tmp_path / "shards"), captions="cluster", min_train_shards=1000)
    with caplog.at_level(logging.WARNING):
        result = shard.run(params)
    assert "min_train_shards=1000" in caplog.text and result.extra["warning"]
    manifest = read_table("shard_index", tmp_path / "shards/manifest.parquet")
    pairs = read_table("pairs", Path(params["ingest"]["out"]) / "pairs.parquet")
    rejects = pd.read_parquet(tmp_path / "shards/rejects.parquet")
    assert len(manifest) + len(rejects) == len(pairs) and manifest["pair_id"].is_unique
    per_key = manifest.groupby("key")["txt_member"].apply(sorted)
    assert (per_key.map(len) > 1).any()  # multi-caption images became one sample each
    assert manifest["key"].str.contains(r"\.").sum() == 0
    # an unchanged rebuild in place rewrites nothing
    before = {p: p.stat().st_ino for p in (tmp_path / "shards").rglob("*.tar")}
    again = shard.run(params)
    assert again.extra["tars_reused"] == len(before)
    assert {p: p.stat().st_ino for p in (tmp_path / "shards").rglob("*.tar")} == before
    params["shard"]["captions"] = "sometimes"
    with pytest.raises(PipelineError, match="shard.captions"):
        shard.run(params)


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("mode", ["pair", "cluster"])
def test_stage_bytes_do_not_depend_on_workers_or_batch_size(corpus: dict, tmp_path: Path, mode: str) -> None:
    """Shards, manifest, rejects and metadata: the same bytes in one process joining 11 pairs at
    a time and reading 7 rows a batch, as in a pool of two joining everything at once."""
    from pipeline.stages import metadata, shard

    trees = []
    for name, executor, batch, chunk in (("serial", {"kind": "serial", "workers": 1}, 7, 11),
                                         ("pool", {"kind": "local", "workers": 2}, 4096, 100_000)):
        params = json.loads(json.dumps(corpus["params"]))
        params["executor"].update(executor)
        params["shard"].update(out=str(tmp_path / name / "shards"), captions=mode, max_samples_per_shard=9)
        params["metadata"]["out"] = str(tmp_path / name / "metadata")
        result = shard.run(params, batch_rows=batch, chunk_pairs=chunk)
        assert result.rows_out + result.rejected == result.rows_in
        metadata.run(params, batch_rows=batch if name == "pool" else 3, chunk_pairs=chunk)
        trees.append(_tree(tmp_path / name))
    assert trees[0].keys() == trees[1].keys() and len(trees[0]) > 10
    assert [f for f in trees[0] if trees[0][f] != trees[1][f]] == []
    assert not [f for f in trees[0] if ".tmp" in f or "duckdb" in f]   # no scratch left behind


# --- the benchmarks still run -----------------------------------------------------------------


@pytest.mark.slow
def test_bench_scripts_run_on_a_few_ham10000_images(shared: Path, tmp_path: Path) -> None:
    """bench/loader_speed.py and bench/gpu_train_check.py (its CPU path) end to end, tiny sizes."""
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    env = {**__import__("os").environ, "TQDM_DISABLE": "1", "OUT": str(tmp_path)}
    speed = subprocess.run([sys.executable, "bench/loader_speed.py", "--images", "64", "--workers", "1",
                            "--repeats", "1", "--per-shard", "32"], cwd=repo, capture_output=True, text=True,
                           timeout=300, env=env)
    assert speed.returncode == 0, speed.stderr[-2000:]
    assert "2 tars" in speed.stdout and "machine:" in speed.stdout
    check = subprocess.run([sys.executable, "bench/gpu_train_check.py", "--device", "cpu", "--profile", "smoke",
                            "--images", "64", "--steps", "2", "--batch-size", "16", "--workers", "1",
                            "--per-shard", "32", "--skip", "0"], cwd=repo, capture_output=True, text=True,
                           timeout=300, env=env)
    assert check.returncode == 0, check.stderr[-2000:]
    summary = json.loads((tmp_path / "gpu_train_check.json").read_text())
    assert summary["steps_logged"] == 2 and summary["data_wait_share"] is not None

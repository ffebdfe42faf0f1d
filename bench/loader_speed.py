"""Samples/s of the WebDataset shard loader vs a plain folder of JPEGs, feeding 224x224 tensors.

    python bench/loader_speed.py [--images N] [--workers 1 2 8] [--batch-size 64] [--repeats 3] [--cold]

Builds shards (the project's writer, ``skip_reencode`` so the tars hold the very same JPEG
bytes) from ``../shared/corpus/ham10000`` in a scratch folder, then times both loaders with
open_clip's training transform (decode, random resized crop to 224, flip-free normalise) over
the same images, with 1, 2 and N DataLoader workers. The folder loader is the usual map-style
Dataset (one ``open()`` per image, random order not used so both read sequentially). Before
timing, every source file and tar is read once so both start from a warm page cache; ``--cold``
instead evicts each loader's files from the page cache before each of its passes. Prints
samples/s (wall), samples/s per worker, the shard/folder ratio, and samples per CPU-second (the
loader's own CPU cost, steady when other jobs share the machine), then the machine.
"""

from __future__ import annotations

import argparse
import csv
import gc
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import open_clip  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from pipeline.shards.reader import training_loader  # noqa: E402
from pipeline.shards.writer import Sample, ShardOptions, encode_jpeg, write_split  # noqa: E402
from pipeline.training.benchmark_csv import HAM10000_CLASSES  # noqa: E402

HAM = REPO.parent / "shared" / "corpus" / "ham10000"


class FolderDataset(torch.utils.data.Dataset):
    """(image tensor, caption) from JPEG files on disk: the baseline every trainer starts with."""

    def __init__(self, items: list[tuple[str, str]], transform) -> None:
        self.items, self.transform = items, transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, str]:
        path, caption = self.items[i]
        with Image.open(path) as im:
            return self.transform(im.convert("RGB")), caption


def ham_items(limit: int) -> list[tuple[str, str, str]]:
    """(image_id, path, caption) for the first ``limit`` HAM10000 images (0: all) in id order."""
    with open(HAM / "HAM10000_metadata.csv", newline="", encoding="utf-8") as fh:
        rows = sorted(csv.DictReader(fh), key=lambda r: r["image_id"])
    items = [(r["image_id"], str(HAM / "images" / f"{r['image_id']}.jpg"),
              f"dermoscopic image of {HAM10000_CLASSES[r['dx']]} on the {r['localization']}") for r in rows]
    items = [it for it in items if Path(it[1]).is_file()]
    return items[:limit] if limit else items


def build_shards(items: list[tuple[str, str, str]], out: Path, per_shard: int) -> list[str]:
    samples = [Sample(key=image_id, image_id=image_id, image_path=path, image_sha256="",
                      captions=((image_id, caption),), meta={"image_id": image_id}) for image_id, path, caption in items]
    write_split("train", samples, out, ShardOptions(per_shard),
                lambda chunk: [encode_jpeg(s.image_path, 512, 90, skip_reencode=True) for s in chunk])
    return sorted(str(p) for p in out.glob("*.tar"))


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children (the DataLoader's workers)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def one_pass(make, n_expected: int) -> tuple[float, float]:
    """Samples per wall second and per CPU second of one full pass over a fresh loader.

    A fresh loader each pass, so worker start-up counts and the workers have exited (and their
    CPU time is accounted) when the pass ends. CPU seconds barely move when other jobs share the
    machine, wall seconds do: both are reported.
    """
    start, cpu, n = time.perf_counter(), _cpu_seconds(), 0
    loader = make()
    for images, _ in loader:
        assert images.shape[1:] == (3, 224, 224)
        n += images.shape[0]
    del loader
    gc.collect()
    assert n == n_expected, (n, n_expected)
    return n / (time.perf_counter() - start), n / max(_cpu_seconds() - cpu, 1e-9)


def compare(makers: dict, n_expected: int, repeats: int,
            before: dict | None = None) -> dict[str, tuple[float, float]]:
    """Best (wall, CPU) samples/s of each loader over ``repeats`` rounds, loaders interleaved.

    Interleaving matters on a shared machine: a burst of someone else's load then hits both
    loaders of a round instead of one loader's every pass.
    """
    best = dict.fromkeys(makers, (0.0, 0.0))
    for _ in range(repeats):
        for name, make in makers.items():
            if before and name in before:
                before[name]()
            wall, cpu = one_pass(make, n_expected)
            best[name] = (max(best[name][0], wall), max(best[name][1], cpu))
    return best


def warm(paths: list[str]) -> None:
    for p in paths:
        Path(p).read_bytes()


def evict(paths: list[str]) -> None:
    """Drop the files from the page cache (``POSIX_FADV_DONTNEED``), so the next pass reads disk.

    Per file and without privileges: it touches only the files named, nobody else's cache.
    """
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            if os.access(p, os.W_OK):  # freshly written tars: dirty pages cannot be dropped
                os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def main() -> None:
    cores = os.cpu_count() or 1
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=2000, help="HAM10000 images to use (0: all 10,015; default 2000)")
    ap.add_argument("--workers", type=int, nargs="+", default=sorted({1, 2, cores}))
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--per-shard", type=int, default=250, help="samples per tar (default 250)")
    ap.add_argument("--cold", action="store_true",
                    help="evict each loader's files from the page cache before every pass (cold storage)")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved rounds per configuration; the best is kept")
    args = ap.parse_args()
    if not (HAM / "HAM10000_metadata.csv").is_file():
        sys.exit(f"loader_speed: {HAM} not found (the shared HAM10000 corpus is needed)")
    torch.set_num_threads(1)  # per process; workers parallelise, as in open_clip training
    transform = open_clip.image_transform(224, is_train=True)
    items = ham_items(args.images)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        urls = build_shards(items, Path(tmp) / "train", args.per_shard)
        print(f"shards: {len(items)} HAM10000 images -> {len(urls)} tars in {time.perf_counter() - t0:.1f} s")
        jpgs = [p for _, p, _ in items]
        warm(jpgs + urls)
        before = {"folder": lambda: evict(jpgs), "shards": lambda: evict(urls)} if args.cold else None
        print("page cache: " + ("cold (files evicted before every pass)" if args.cold else "warm"))
        folder = FolderDataset([(p, c) for _, p, c in items], transform)
        print(f"{'workers':>7} {'folder/s':>9} {'shards/s':>9} {'folder/s/w':>10} {'shards/s/w':>10} {'ratio':>6}"
              f" {'folder/cpu-s':>12} {'shards/cpu-s':>12} {'cpu ratio':>9}")
        for w in args.workers:
            if w > len(urls):
                print(f"{w:>7} skipped: only {len(urls)} tars (lower --per-shard)")
                continue
            best = compare({
                "folder": lambda w=w: torch.utils.data.DataLoader(folder, batch_size=args.batch_size, num_workers=w),
                "shards": lambda w=w: training_loader(urls, transform, args.batch_size, w),
            }, len(items), args.repeats, before)
            (f, fc), (s, sc) = best["folder"], best["shards"]
            print(f"{w:>7} {f:>9.0f} {s:>9.0f} {f / w:>10.0f} {s / w:>10.0f} {s / f:>6.2f}"
                  f" {fc:>12.0f} {sc:>12.0f} {sc / fc:>9.2f}")
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    print(f"machine: {cores} cores ({cpu}), Python {platform.python_version()}, torch {torch.__version__}, "
          f"{platform.platform()}")


if __name__ == "__main__":
    main()

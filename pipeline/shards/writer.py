"""Write one split's WebDataset tars: ``<split>-NNNNNN.tar`` + per-tar index parquet + sizes.json.

Reproducible bit for bit: samples in a fixed order, fixed tar metadata (mtime 0, fixed owner
and mode), JPEG bytes from a deterministic encoder, JSON with sorted keys. Each tar gets an
index parquet beside it (key, offset, ...) like img2dataset's status files, and the split gets
the ``sizes.json`` that open_clip reads to know the number of samples.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import webdataset as wds
from PIL import Image

from pipeline.images.decode import load_rgb
from pipeline.tables import write_json, write_table


@dataclass(frozen=True)
class Sample:
    key: str
    pair_id: str
    image_id: str
    text: str
    meta: dict


def encode_jpeg(path: str, max_side: int, quality: int) -> bytes | None:
    """Upright RGB JPEG no larger than ``max_side``; None if the file no longer decodes."""
    try:
        img = load_rgb(path)
    except (OSError, ValueError, SyntaxError):
        return None
    if max(img.size) > max_side:
        img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality, optimize=False, progressive=False, subsampling=0 if quality >= 90 else 2)
    return buf.getvalue()


def shard_name(split: str, index: int) -> str:
    return f"{split}-{index:06d}.tar"


def write_split(split: str, samples: Sequence[Sample], out_dir: Path, max_per_shard: int,
                jpeg_of: Callable[[list[Sample]], list[bytes | None]]) -> tuple[list[dict], dict[str, int], list[Sample]]:
    """Write the tars of one split into ``out_dir``; return index rows, sizes and failed samples.

    ``jpeg_of`` encodes the images of one shard's samples (in parallel, in order), so memory
    holds one shard's images at a time whatever the corpus size. A sample whose image fails to
    encode (``None``) is left out of its tar and returned, for the caller's rejects table.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    index_rows: list[dict] = []
    sizes: dict[str, int] = {}
    failed: list[Sample] = []
    for shard_no, start in enumerate(range(0, len(samples), max_per_shard)):
        chunk = list(samples[start:start + max_per_shard])
        encoded = jpeg_of(chunk)
        failed += [s for s, j in zip(chunk, encoded, strict=True) if j is None]
        kept = [(s, j) for s, j in zip(chunk, encoded, strict=True) if j is not None]
        chunk, jpegs = [s for s, _ in kept], [j for _, j in kept]
        name = shard_name(split, shard_no)
        with open(out_dir / name, "wb") as fh:
            writer = wds.TarWriter(fh, user="derm1m", group="derm1m", mode=0o444, mtime=0, encoder=False)
            for sample, jpg in zip(chunk, jpegs, strict=True):
                writer.write({
                    "__key__": sample.key,
                    "jpg": jpg,
                    "txt": sample.text.encode("utf-8"),
                    "json": json.dumps(sample.meta, sort_keys=True, ensure_ascii=False, default=str).encode("utf-8"),
                })
            writer.close()
        offsets = _member_offsets(out_dir / name)
        rows = [{"key": s.key, "pair_id": s.pair_id, "image_id": s.image_id, "split": split, "shard": name,
                 "index_in_shard": i, "offset": offsets[f"{s.key}.jpg"], "jpg_bytes": len(j)}
                for i, (s, j) in enumerate(zip(chunk, jpegs, strict=True))]
        write_table(rows, "shard_index", out_dir / name.replace(".tar", ".parquet"))
        index_rows.extend(rows)
        sizes[name] = len(chunk)
    write_json(sizes, out_dir / "sizes.json")
    return index_rows, sizes, failed


def _member_offsets(tar_path: Path) -> dict[str, int]:
    """Byte offset of each member's header in the tar (for random access by key)."""
    with tarfile.open(tar_path) as tar:
        return {m.name: m.offset for m in tar.getmembers()}

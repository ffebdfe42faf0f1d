"""Write one split's WebDataset tars: ``<split>-NNNNNN.tar`` + per-tar index parquet + sizes.json.

Reproducible bit for bit: samples in a fixed order, fixed tar metadata (mtime 0, fixed owner
and mode), JPEG bytes from a deterministic encoder (or the source bytes, passed through), JSON
with sorted keys. Each tar gets an index parquet beside it (key, offset, pair_id, image_id) like
img2dataset's status files, and the split gets the ``sizes.json`` open_clip reads to know the
number of samples.

Incremental: ``fingerprints.json`` records, per tar, the keys it consumed and a hash of every
input that shapes its bytes (captions, metadata, source image SHA-256, encoder options, shard
limits). When a rebuild finds the same keys with the same fingerprint at the same position, the
old tar and index are hard-linked into the new folder instead of re-encoded, so a change to
later rows leaves earlier shards untouched (same inode, same mtime) and costs no image work.

Resumable: as each tar (and its index) is complete, its record is appended to
``.progress.jsonl`` in the folder being written. A killed run's folder, given back as
``resume_from``, offers those tars by the same fingerprint test, so a rerun re-encodes only
what the killed run had not finished. The progress file is removed when the split is complete.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tarfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import webdataset as wds
from PIL import Image, UnidentifiedImageError

from pipeline.errors import PipelineError
from pipeline.faults import kill_point
from pipeline.images.decode import load_rgb
from pipeline.tables import write_json, write_table

# Bump when the tar layout changes, so old fingerprints stop matching.
# 3: text variant members (<key>.ontology.txt, ...) and the index's variant_members column.
WRITER_VERSION = "3"
FINGERPRINTS_FILE = "fingerprints.json"
SIZES_FILE = "sizes.json"
PROGRESS_FILE = ".progress.jsonl"
_TAR_BLOCK = 512
_TAR_RECORD = 20 * _TAR_BLOCK  # tarfile pads the archive (after two end blocks) to whole records
_EXIF_ORIENTATION = 0x0112


@dataclass(frozen=True)
class Sample:
    """One WebDataset sample: a key, the pixels of one image and one or more captions.

    ``captions`` are ``(pair_id, text)``; the first goes to ``txt``, the next to ``txt.1``,
    ``txt.2``, ... (``shard.captions: cluster``). ``variants`` are ``(name, texts)`` with one
    text (or None) per caption, aligned by index: ``ontology.txt``, ``ontology.txt.1``, ...
    (see :func:`variant_member`; a None is written as an empty member). ``image_sha256`` identifies the source bytes for the
    incremental fingerprint without reading the file.
    """

    key: str
    image_id: str
    image_path: str
    image_sha256: str
    captions: tuple[tuple[str, str], ...]
    meta: dict = field(hash=False)
    variants: tuple[tuple[str, tuple[str | None, ...]], ...] = ()

    @property
    def pair_id(self) -> str:
        return self.captions[0][0]

    @property
    def text(self) -> str:
        return self.captions[0][1]

    def fingerprint(self) -> str:
        parts = [self.key, self.image_id, self.image_sha256, self.captions, self.meta]
        blob = json.dumps(parts + [self.variants] if self.variants else parts,
                          sort_keys=True, ensure_ascii=False, default=str)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ShardOptions:
    """Shard limits and the encoder settings that decide a tar's bytes (all fingerprinted)."""

    max_samples: int
    max_bytes: int = 0  # 0: no byte limit
    encoder: str = ""  # e.g. "max_side=512,quality=90,skip_reencode=True"

    def __post_init__(self) -> None:
        if self.max_samples < 1:
            raise PipelineError(f"shard.max_samples_per_shard must be >= 1, got {self.max_samples}")
        if self.max_bytes < 0:
            raise PipelineError(f"shard.max_shard_bytes must be >= 0 (0 = no limit), got {self.max_bytes}")


@dataclass
class SplitResult:
    """What one split's write produced: index rows, per-tar counts, failures, reuse counts."""

    index_rows: list[dict]
    sizes: dict[str, int]
    failed: list[Sample]
    reused: int = 0
    written: int = 0
    resumed: int = 0  # of ``reused``: tars a killed run had completed


def encode_jpeg(path: str, max_side: int, quality: int, skip_reencode: bool = False) -> bytes | None:
    """Upright RGB JPEG no larger than ``max_side``; None if the file no longer decodes.

    With ``skip_reencode`` a source that is already an upright RGB baseline-or-progressive JPEG
    within ``max_side`` is passed through byte for byte: re-encoding it would only lose quality
    and cost CPU. Its own metadata (EXIF, ICC) then travels with it.
    """
    if skip_reencode and _fits_as_is(path, max_side):
        try:
            return Path(path).read_bytes()
        except OSError:
            return None
    try:
        img = load_rgb(path)
    except (OSError, ValueError, SyntaxError):
        return None
    if max(img.size) > max_side:
        img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality, optimize=False, progressive=False, subsampling=0 if quality >= 90 else 2)
    return buf.getvalue()


def _fits_as_is(path: str, max_side: int) -> bool:
    """True when the file is a JPEG a reader decodes to the same upright RGB pixels unchanged."""
    try:
        with Image.open(path) as img:
            orientation = img.getexif().get(_EXIF_ORIENTATION, 1)
            return (img.format == "JPEG" and img.mode == "RGB" and orientation in (0, 1)
                    and max(img.size) <= max_side)
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError):
        return False


def shard_name(split: str, index: int) -> str:
    return f"{split}-{index:06d}.tar"


def check_key(key: str) -> None:
    """WebDataset splits a member name at its first dot into key and extension: keys need none."""
    if not key or "." in key or "/" in key or key.startswith("_"):
        raise PipelineError(f"sample key {key!r} is not a valid WebDataset key (empty, '.', '/' or leading '_')")


def _member_bytes(size: int) -> int:
    """Bytes a tar member takes: one header block plus the data padded to whole blocks."""
    return _TAR_BLOCK + -(-size // _TAR_BLOCK) * _TAR_BLOCK


def variant_member(name: str, n: int) -> str:
    """Member extension of text variant ``name`` for caption ``n``: ``ontology.txt``,
    ``ontology.txt.1``, ... WebDataset splits at the first dot, so the member stays in the
    sample, and its decoder reads ``ontology.txt`` as text (by its last extension); open_clip
    reads only ``txt`` and ignores it."""
    return f"{name}.txt" if n == 0 else f"{name}.txt.{n}"


def _variant_members(sample: Sample, n: int) -> list[str]:
    """The variant members of caption ``n`` that hold text (empty members are left out)."""
    return [variant_member(name, n) for name, texts in sample.variants if n < len(texts) and texts[n]]


def _members(sample: Sample, jpg: bytes) -> dict[str, bytes]:
    members = {"__key__": sample.key, "jpg": jpg}
    for n, (_, text) in enumerate(sample.captions):
        members["txt" if n == 0 else f"txt.{n}"] = text.encode("utf-8")
    # Every caption gets every variant, empty when the pair has none: Hugging Face's webdataset
    # loader refuses tars whose samples do not all have the same members.
    for name, texts in sample.variants:
        for n in range(len(sample.captions)):
            text = texts[n] if n < len(texts) else None
            members[variant_member(name, n)] = (text or "").encode("utf-8")
    members["json"] = json.dumps(sample.meta, sort_keys=True, ensure_ascii=False, default=str).encode("utf-8")
    return members


def _tar_bytes(members: int) -> int:
    """Size of a tar whose members take ``members`` bytes: end blocks, then record padding."""
    return -(-(members + 2 * _TAR_BLOCK) // _TAR_RECORD) * _TAR_RECORD


def _sample_bytes(sample: Sample, jpg: bytes) -> int:
    return sum(_member_bytes(len(v)) for k, v in _members(sample, jpg).items() if k != "__key__")


def _shard_fingerprint(samples: Sequence[Sample], options: ShardOptions) -> str:
    digest = hashlib.sha256(f"{WRITER_VERSION}|{options}".encode())
    for s in samples:
        digest.update(s.fingerprint().encode())
    return digest.hexdigest()


def _load_previous(previous: Path | None) -> list[dict]:
    """The previous build's per-tar records, or [] when there is none or it cannot be trusted."""
    if previous is None or not (previous / FINGERPRINTS_FILE).is_file():
        return []
    try:
        doc = json.loads((previous / FINGERPRINTS_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return []
    if not isinstance(doc, dict) or doc.get("version") != WRITER_VERSION:
        return []
    return [s for s in doc.get("shards", []) if isinstance(s, dict)]


def _load_progress(folder: Path | None) -> list[dict]:
    """The per-tar records a killed run appended as it went (a torn last line is ignored)."""
    if folder is None or not (folder / PROGRESS_FILE).is_file():
        return []
    records = []
    for line in (folder / PROGRESS_FILE).read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and record.get("version") == WRITER_VERSION:
            records.append(record)
    return records


def merge_progress(src: Path, dst: Path) -> int:
    """Add the completed tars of killed run folder ``src`` to resume folder ``dst``; return how many.

    Why merge rather than replace: a run killed while resuming has taken over only the tars it
    reached, and ``dst`` may hold more. A tar of ``src`` wins over one of the same name in
    ``dst`` (it is newer); its record is appended after its files are in place, and the last
    record of a name is the one that counts.
    """
    dst.mkdir(parents=True, exist_ok=True)
    merged = 0
    for record in _load_progress(src):
        name = record.get("name")
        if not isinstance(name, str) or name != Path(name).name:
            continue
        files = [name, name.replace(".tar", ".parquet")]
        if not all((src / f).is_file() for f in files):
            continue
        for f in files:
            (dst / f).unlink(missing_ok=True)
            _link_or_copy(src / f, dst / f)
        with open(dst / PROGRESS_FILE, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
        merged += 1
    return merged


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def write_split(split: str, samples: Sequence[Sample], out_dir: Path, options: ShardOptions,
                jpeg_of: Callable[[list[Sample]], list[bytes | None]],
                previous: Path | None = None, resume_from: Path | None = None) -> SplitResult:
    """Write the tars of one split into ``out_dir``; return index rows, sizes and failed samples.

    A tar closes at ``options.max_samples`` samples or before a sample would take it past
    ``options.max_bytes`` (a single oversized sample still gets a tar of its own). ``jpeg_of``
    encodes a batch of samples' images (in parallel, in order), so memory holds about one
    shard's images at a time. A sample whose image fails to encode (``None``) is left out of its
    tar and returned, for the caller's rejects table. ``previous`` is the last build of this
    split; tars whose inputs did not change are hard-linked from it instead of rewritten.
    ``resume_from`` is a killed run's folder of this split: its completed tars are reused the
    same way (counted in ``resumed``).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    seen: set[str] = set()
    for s in samples:
        check_key(s.key)
        if s.key in seen:
            raise PipelineError(f"split {split}: sample key {s.key!r} occurs twice; keys must be unique")
        seen.add(s.key)
    sources = [(previous, {r.get("name"): r for r in _load_previous(previous)}, False),
               (resume_from, {r.get("name"): r for r in _load_progress(resume_from)}, True)]
    progress = out_dir / PROGRESS_FILE
    progress.unlink(missing_ok=True)
    result = SplitResult([], {}, [])
    records: list[dict] = []
    encoded: dict[int, bytes | None] = {}
    pos = 0

    def jpg_at(i: int) -> bytes | None:
        if i not in encoded:
            batch = list(samples[i:i + options.max_samples])
            encoded.update(zip(range(i, i + len(batch)), jpeg_of(batch), strict=True))
        return encoded.pop(i)

    while pos < len(samples):
        shard_no = len(records)
        name = shard_name(split, shard_no)
        reused = None
        for folder, by_name, resuming in sources:
            reused = _reuse(by_name.get(name), samples, pos, options, folder, out_dir, name)
            if reused is not None:
                result.resumed += resuming
                break
        if reused is not None:
            rows, consumed, failed_keys = reused
            result.failed += [s for s in samples[pos:pos + consumed] if s.key in failed_keys]
            result.reused += 1
            for i in [i for i in encoded if i < pos + consumed]:
                del encoded[i]
        else:
            chunk: list[tuple[Sample, bytes]] = []
            size = 0
            start = pos
            failed_keys = set()
            while pos < len(samples) and len(chunk) < options.max_samples:
                jpg = jpg_at(pos)
                if jpg is None:
                    result.failed.append(samples[pos])
                    failed_keys.add(samples[pos].key)
                    pos += 1
                    continue
                need = _sample_bytes(samples[pos], jpg)
                if options.max_bytes and chunk and _tar_bytes(size + need) > options.max_bytes:
                    encoded[pos] = jpg  # starts the next tar
                    break
                chunk.append((samples[pos], jpg))
                size += need
                pos += 1
            consumed = pos - start
            pos = start
            rows = _write_tar(split, name, chunk, out_dir)
            result.written += 1
        records.append({"name": name, "keys": [s.key for s in samples[pos:pos + consumed]],
                         "failed": sorted(failed_keys),
                         "fingerprint": _shard_fingerprint(samples[pos:pos + consumed], options)})
        pos += consumed
        if rows:
            result.index_rows.extend(rows)
            result.sizes[name] = len({r["key"] for r in rows})
            with open(progress, "a", encoding="utf-8") as fh:   # the tar and its index are complete
                fh.write(json.dumps({"version": WRITER_VERSION, **records[-1]}, ensure_ascii=False) + "\n")
            kill_point("shard_tar_done")
        else:  # every image of the chunk failed: no tar, and no number used up
            records.pop()
            (out_dir / name).unlink(missing_ok=True)
    write_json(result.sizes, out_dir / SIZES_FILE)
    write_json({"version": WRITER_VERSION, "options": str(options), "shards": records}, out_dir / FINGERPRINTS_FILE)
    progress.unlink(missing_ok=True)
    return result


def _reuse(record: dict | None, samples: Sequence[Sample], pos: int, options: ShardOptions,
           previous: Path | None, out_dir: Path, name: str) -> tuple[list[dict], int, set[str]] | None:
    """Link the previous build's tar ``name`` into ``out_dir`` if its inputs are unchanged."""
    if record is None or previous is None or record.get("name") != name:
        return None
    keys = record.get("keys") or []
    window = samples[pos:pos + len(keys)]
    if [s.key for s in window] != keys or record.get("fingerprint") != _shard_fingerprint(window, options):
        return None
    tar, index = previous / name, previous / name.replace(".tar", ".parquet")
    if not (tar.is_file() and index.is_file()):
        return None
    try:
        rows = pd.read_parquet(index).to_dict("records")
    except (OSError, ValueError):
        return None
    _link_or_copy(tar, out_dir / name)
    _link_or_copy(index, out_dir / index.name)
    return rows, len(keys), set(record.get("failed") or [])


def _write_tar(split: str, name: str, chunk: list[tuple[Sample, bytes]], out_dir: Path) -> list[dict]:
    """Write one tar and its index parquet; return the index rows (one per caption)."""
    if not chunk:
        return []
    with open(out_dir / name, "wb") as fh:
        writer = wds.TarWriter(fh, user="derm1m", group="derm1m", mode=0o444, mtime=0, encoder=False)
        for sample, jpg in chunk:
            writer.write(_members(sample, jpg))
        writer.close()
    offsets = _member_offsets(out_dir / name)
    rows = [{"key": s.key, "pair_id": pair_id, "image_id": s.image_id, "split": split, "shard": name,
             "index_in_shard": i, "txt_member": "txt" if n == 0 else f"txt.{n}",
             "variant_members": _variant_members(s, n), "offset": offsets[f"{s.key}.jpg"], "jpg_bytes": len(j)}
            for i, (s, j) in enumerate(chunk) for n, (pair_id, _) in enumerate(s.captions)]
    write_table(rows, "shard_index", out_dir / name.replace(".tar", ".parquet"))
    return rows


def _member_offsets(tar_path: Path) -> dict[str, int]:
    """Byte offset of each member's header in the tar (for random access by key)."""
    with tarfile.open(tar_path) as tar:
        return {m.name: m.offset for m in tar.getmembers()}

"""Write one split's WebDataset tars: ``<split>-NNNNNN.tar`` + per-tar index parquet + sizes.json.

Reproducible bit for bit: samples in a fixed order, fixed tar metadata (mtime 0, fixed owner
and mode), JPEG bytes from a deterministic encoder (or the source bytes, passed through), JSON
with sorted keys. Each tar gets an index parquet beside it (key, offset, pair_id, image_id) like
img2dataset's status files, and the split gets the ``sizes.json`` open_clip reads to know the
number of samples.

Parallel: the samples are cut into ranges of ``max_samples``; a worker turns each range into
its tar (or tars, when the byte limit cuts it) under temporary names, and the caller names
them in order, so the bytes depend on the samples and options only, never on the worker count.

Incremental: ``fingerprints.json`` records, per tar, the keys it consumed and a hash of every
input that shapes its bytes (captions, metadata, source image SHA-256, encoder options, shard
limits). When a rebuild finds, for a range, earlier tars that consumed its keys with the same
fingerprints, those tars are hard-linked into the new folder instead of re-encoded, so a change
to later rows leaves earlier shards untouched (same inode, same mtime) and costs no image work.

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
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image, UnidentifiedImageError

from pipeline.errors import PipelineError
from pipeline.faults import kill_point
from pipeline.images.decode import load_rgb
from pipeline.tables import atomic_path, write_json, write_table

if TYPE_CHECKING:
    from pipeline.executor import Executor

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
    incremental fingerprint without reading the file. ``passthrough`` says whether the image
    may be copied as it is (see :func:`encode_jpeg`) when the caller already knows, from what
    ingest measured (format, mode, EXIF orientation, size); None: the encoder reads the header.
    """

    key: str
    image_id: str
    image_path: str
    image_sha256: str
    captions: tuple[tuple[str, str], ...]
    meta: dict = field(hash=False)
    variants: tuple[tuple[str, tuple[str | None, ...]], ...] = ()
    passthrough: bool | None = field(default=None, compare=False)

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
    """What one split's write produced: per-tar counts, failures, reuse counts.

    The index rows stay on disk, one parquet per tar (:meth:`index_tables`), rather than in a
    list: a million rows of Python dicts is a gigabyte.
    """

    out_dir: Path
    sizes: dict[str, int] = field(default_factory=dict)
    failed: list[Sample] = field(default_factory=list)
    reused: int = 0
    written: int = 0
    resumed: int = 0  # of ``reused``: tars a killed run had completed
    rows: int = 0     # index rows (one per caption)

    def index_tables(self) -> Iterator[pa.Table]:
        """Each tar's index table, in tar order (each already sorted by the manifest key)."""
        for name in sorted(self.sizes):
            yield pq.read_table(self.out_dir / index_name(name))

    @property
    def index_rows(self) -> list[dict]:
        """Every index row of the split, in tar order (for tests and small splits)."""
        return [row for table in self.index_tables() for row in table.to_pylist()]


def encode_jpeg(path: str, max_side: int, quality: int, skip_reencode: bool = False,
                fits: bool | None = None) -> bytes | None:
    """Upright RGB JPEG no larger than ``max_side``; None if the file no longer decodes.

    With ``skip_reencode`` a source that is already an upright RGB baseline-or-progressive JPEG
    within ``max_side`` is passed through byte for byte, without decoding its pixels: re-encoding
    it would only lose quality and cost CPU. Its own metadata (EXIF, ICC) then travels with it.
    ``fits`` is that test's answer when the caller has it (the shard stage reads it from the
    images table: format, mode, orientation and size as ingest decoded them), so a pass-through
    image is only read and copied; None: Pillow reads the header and EXIF here. The file is read
    once either way.
    """
    try:
        data = Path(path).read_bytes()
    except OSError:
        return None
    if skip_reencode and (fits if fits is not None else _fits_as_is(data, max_side)):
        return data
    try:
        img = load_rgb(io.BytesIO(data))
    except (OSError, ValueError, SyntaxError):
        return None
    if max(img.size) > max_side:
        img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality, optimize=False, progressive=False, subsampling=0 if quality >= 90 else 2)
    return buf.getvalue()


def encode_samples(samples: Sequence[Sample], max_side: int, quality: int,
                   skip_reencode: bool = False) -> list[bytes | None]:
    """:func:`encode_jpeg` of each sample's image, each distinct file once (in ``pair`` mode the
    captions of a duplicate cluster share the canonical image)."""
    encoded: dict[str, bytes | None] = {}
    for s in samples:
        if s.image_path not in encoded:
            encoded[s.image_path] = encode_jpeg(s.image_path, max_side, quality, skip_reencode, s.passthrough)
    return [encoded[s.image_path] for s in samples]


def _fits_as_is(data: bytes, max_side: int) -> bool:
    """True when the bytes are a JPEG a reader decodes to the same upright RGB pixels unchanged."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            orientation = img.getexif().get(_EXIF_ORIENTATION, 1)
            return (img.format == "JPEG" and img.mode == "RGB" and orientation in (0, 1)
                    and max(img.size) <= max_side)
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError):
        return False


def shard_name(split: str, index: int) -> str:
    return f"{split}-{index:06d}.tar"


def index_name(tar: str) -> str:
    """The index parquet beside tar ``tar``."""
    return tar.replace(".tar", ".parquet")


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


def _sample_bytes(members: dict[str, bytes]) -> int:
    return sum(_member_bytes(len(v)) for k, v in members.items() if k != "__key__")


def _fingerprint_of(fingerprints: Sequence[str], options: ShardOptions) -> str:
    """A tar's fingerprint: the writer version, the options and its samples' fingerprints."""
    digest = hashlib.sha256(f"{WRITER_VERSION}|{options}".encode())
    for fp in fingerprints:
        digest.update(fp.encode())
    return digest.hexdigest()


def _shard_fingerprint(samples: Sequence[Sample], options: ShardOptions) -> str:
    return _fingerprint_of([s.fingerprint() for s in samples], options)


@dataclass(frozen=True)
class _Record:
    """A completed tar of an earlier build, as much of it as reuse needs (not its key list: the
    fingerprint covers the keys, and a million keys held per split would be ~100 MB)."""

    name: str
    first: str
    n: int
    fingerprint: str
    failed: tuple[str, ...]


def _records(raw: Iterable[object]) -> list[_Record]:
    out = []
    for r in raw:
        if not isinstance(r, dict) or not isinstance(r.get("name"), str) or not r.get("keys"):
            continue
        keys = r["keys"]
        out.append(_Record(r["name"], str(keys[0]), len(keys), str(r.get("fingerprint")),
                           tuple(str(k) for k in r.get("failed") or [])))
    return out


def _load_previous(previous: Path | None) -> list[_Record]:
    """The previous build's per-tar records, or [] when there is none or it cannot be trusted."""
    if previous is None or not (previous / FINGERPRINTS_FILE).is_file():
        return []
    try:
        doc = json.loads((previous / FINGERPRINTS_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return []
    if not isinstance(doc, dict) or doc.get("version") != WRITER_VERSION:
        return []
    return _records(doc.get("shards", []))


def _progress_lines(folder: Path | None) -> Iterator[dict]:
    """The per-tar records a run appended as it went (a torn last line is ignored)."""
    if folder is None or not (folder / PROGRESS_FILE).is_file():
        return
    with open(folder / PROGRESS_FILE, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and record.get("version") == WRITER_VERSION:
                yield record


def merge_progress(src: Path, dst: Path) -> int:
    """Add the completed tars of killed run folder ``src`` to resume folder ``dst``; return how many.

    Why merge rather than replace: a run killed while resuming has taken over only the tars it
    reached, and ``dst`` may hold more. A tar of ``src`` wins over one of the same name in
    ``dst`` (it is newer); its record is appended after its files are in place, and the last
    record of a name is the one that counts.
    """
    dst.mkdir(parents=True, exist_ok=True)
    merged = 0
    for record in _progress_lines(src):
        name = record.get("name")
        if not isinstance(name, str) or name != Path(name).name:
            continue
        files = [name, index_name(name)]
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


class _Candidates:
    """An earlier build's tars, found by the key they start with (see :func:`_range_task`).

    The last record of a name wins (a resumed run's merged progress may repeat a name)."""

    def __init__(self, folder: Path | None, records: list[_Record], resuming: bool) -> None:
        latest = {r.name: r for r in records}
        self.folder = folder
        self.records = [r for r in records if latest[r.name] is r]
        self.by_first = {r.first: i for i, r in enumerate(self.records)}
        self.resuming = resuming

    def covering(self, first: str, n: int) -> tuple[_Record, ...]:
        """Consecutive records starting at key ``first`` that consumed ``n`` keys, or ()."""
        i = self.by_first.get(first)
        if self.folder is None or i is None:
            return ()
        out, total = [], 0
        while total < n and i < len(self.records):
            out.append(self.records[i])
            total += self.records[i].n
            i += 1
        return tuple(out) if total == n else ()


@dataclass(frozen=True)
class RangeTask:
    """One range of a split's samples (``max_samples`` in a row) for a worker to turn into tars.

    Picklable: it travels to a process pool or a Dask worker with everything it needs, including
    the earlier tars that may stand in for it (``candidates``: folder, records, from a killed run).
    """

    split: str
    number: int
    samples: tuple[Sample, ...]
    out_dir: str
    options: ShardOptions
    jpeg_of: Callable[[list[Sample]], list[bytes | None]]
    tag: str
    candidates: tuple[tuple[str, tuple[_Record, ...], bool], ...] = ()


@dataclass
class TarPart:
    """A tar and its index a worker made (or linked) under temporary names; the parent names them.

    The worker writes the index with the name the tar gets when every range is one tar (range
    ``n`` is ``<split>-n``: the usual case); the parent rewrites it only when that guess is off.
    """

    tmp: str
    tmp_index: str
    name: str         # the shard name written into the index
    keys: list[str]   # the keys it consumed (failed ones included)
    failed: list[str]
    fingerprint: str
    samples: int
    rows: int
    reused: bool = False


@dataclass
class RangeResult:
    parts: list[TarPart]
    failed: list[Sample]
    resumed: bool = False  # its tars came from a killed run's folder


def build_range(task: RangeTask) -> RangeResult:
    """Turn one range into tars under temporary names in ``task.out_dir``: link the earlier
    build's tars when their fingerprints still match, else encode the images and write.

    A tar closes before a sample would take it past ``options.max_bytes`` (a single oversized
    sample still gets a tar of its own), so a range is one tar unless the byte limit cuts it.
    A sample whose image fails to encode (None) is left out and returned, for the rejects.
    The bytes depend on the range alone, so the worker count cannot change them.
    """
    samples, options = task.samples, task.options
    fingerprints = [s.fingerprint() for s in samples]
    for folder, records, resuming in task.candidates:
        linked = _reuse(task, fingerprints, Path(folder), records)
        if linked is not None:
            failed = {k for p in linked for k in p.failed}
            return RangeResult(linked, [s for s in samples if s.key in failed], resumed=resuming)
    jpgs = task.jpeg_of(list(samples))
    result = RangeResult([], [])
    chunk: list[tuple[Sample, dict[str, bytes]]] = []
    keys: list[str] = []
    failed: list[str] = []
    first = size = 0

    def close(end: int) -> None:
        nonlocal chunk, keys, failed, first, size
        if chunk:
            tmp, tmp_index, name = _part_paths(task, len(result.parts))
            rows = _write_tar(tmp, task.split, chunk)
            write_table([{**r, "shard": name} for r in rows], "shard_index", tmp_index)
            result.parts.append(TarPart(str(tmp), str(tmp_index), name, keys, failed,
                                        _fingerprint_of(fingerprints[first:end], options), len(chunk), len(rows)))
        chunk, keys, failed, first, size = [], [], [], end, 0

    for i, (sample, jpg) in enumerate(zip(samples, jpgs, strict=True)):
        if jpg is None:
            result.failed.append(sample)
            keys.append(sample.key)
            failed.append(sample.key)
            continue
        members = _members(sample, jpg)
        need = _sample_bytes(members)
        if options.max_bytes and chunk and _tar_bytes(size + need) > options.max_bytes:
            close(i)
        chunk.append((sample, members))
        keys.append(sample.key)
        size += need
    close(len(samples))
    return result


def _part_paths(task: RangeTask, part: int) -> tuple[Path, Path, str]:
    """Temporary tar and index paths of part ``part`` of a range, and its likely shard name."""
    stem = Path(task.out_dir) / f".{task.split}-r{task.number:06d}-{part}"
    return Path(f"{stem}.{task.tag}.tmp"), Path(f"{stem}i.{task.tag}.tmp"), shard_name(task.split, task.number + part)


def _reuse(task: RangeTask, fingerprints: list[str], folder: Path,
           records: tuple[_Record, ...]) -> list[TarPart] | None:
    """Link the earlier tars ``records`` for this range if every one's fingerprint still matches."""
    found, pos = [], 0
    for record in records:
        window = task.samples[pos:pos + record.n]
        if window[0].key != record.first or record.fingerprint != _fingerprint_of(fingerprints[pos:pos + record.n],
                                                                                   task.options):
            return None
        if not ((folder / record.name).is_file() and (folder / index_name(record.name)).is_file()):
            return None
        found.append((record, window))
        pos += record.n
    parts = []
    for n, (record, window) in enumerate(found):
        tmp, tmp_index, name = _part_paths(task, n)
        index = folder / index_name(record.name)
        try:
            if record.name == name:
                rows = pq.read_metadata(index).num_rows
                _link_or_copy(index, tmp_index)
            else:
                table = pq.read_table(index)
                rows = table.num_rows
                write_table(table.set_column(table.schema.get_field_index("shard"), "shard",
                                             pa.array([name] * rows, pa.string())), "shard_index", tmp_index)
        except (OSError, ValueError, pa.ArrowException):
            return None
        _link_or_copy(folder / record.name, tmp)
        parts.append(TarPart(str(tmp), str(tmp_index), name, [s.key for s in window], list(record.failed),
                             record.fingerprint, record.n - len(record.failed), rows, reused=True))
    return parts


def _write_tar(path: Path, split: str, chunk: list[tuple[Sample, dict[str, bytes]]]) -> list[dict]:
    """Write one tar; return its index rows (one per caption; ``shard`` is filled in by the caller).

    The bytes are those of ``webdataset.TarWriter`` (owner derm1m, mode 0444, mtime 0): each
    sample's members sorted by name, every member a header from :meth:`tarfile.TarInfo.tobuf`
    (the format ``tarfile`` writes by default, PAX) and its data padded to 512 bytes, then two
    zero blocks and padding to a whole 10 KiB record, as :meth:`tarfile.TarFile.close` ends an
    archive. Written here rather than through ``TarFile.addfile``, which copies each TarInfo and
    wraps each member in a file object: at six members a sample that was most of the stage's CPU.
    ``tests/test_shards.py`` checks the bytes against ``webdataset.TarWriter``'s. The ``.jpg``
    offsets come out of the same loop, so the tar is not read back to index it.
    """
    rows = []
    pos = 0
    with open(path, "wb") as fh:
        for i, (s, members) in enumerate(chunk):
            offset = 0
            for ext in sorted(members):
                if ext == "__key__":
                    continue
                data = members[ext]
                info = tarfile.TarInfo(f"{s.key}.{ext}")
                info.size, info.mtime, info.mode, info.uname, info.gname = len(data), 0, 0o444, "derm1m", "derm1m"
                header = info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
                if ext == "jpg":
                    offset = pos
                fh.write(header)
                fh.write(data)
                fh.write(b"\0" * (-len(data) % _TAR_BLOCK))
                pos += len(header) + len(data) + -len(data) % _TAR_BLOCK
            rows += [{"key": s.key, "pair_id": pair_id, "image_id": s.image_id, "split": split, "shard": "",
                      "index_in_shard": i, "txt_member": "txt" if n == 0 else f"txt.{n}",
                      "variant_members": _variant_members(s, n), "offset": offset, "jpg_bytes": len(members["jpg"])}
                     for n, (pair_id, _) in enumerate(s.captions)]
        fh.write(b"\0" * (2 * _TAR_BLOCK + -(pos + 2 * _TAR_BLOCK) % _TAR_RECORD))
    return rows


def _range_task(split: str, number: int, samples: list[Sample], out_dir: Path, options: ShardOptions,
                jpeg_of: Callable[[list[Sample]], list[bytes | None]], tag: str,
                sources: Sequence[_Candidates]) -> RangeTask:
    candidates = tuple((str(c.folder), found, c.resuming) for c in sources
                       if (found := c.covering(samples[0].key, len(samples))))
    return RangeTask(split, number, tuple(samples), str(out_dir), options, jpeg_of, tag, candidates)


def _ranges(samples: Iterable[Sample], size: int, split: str) -> Iterator[list[Sample]]:
    """Consecutive runs of ``size`` samples, checking keys: valid and strictly ascending.

    Ascending (the stage's query sorts by key) is what makes a repeated key detectable without
    remembering every key of a million-sample split.
    """
    batch: list[Sample] = []
    last: str | None = None
    for s in samples:
        check_key(s.key)
        if last is not None and s.key <= last:
            if s.key == last:
                raise PipelineError(f"split {split}: sample key {s.key!r} occurs twice; keys must be unique")
            raise PipelineError(f"split {split}: sample key {s.key!r} comes after {last!r}; samples must come in "
                                "ascending key order")
        last = s.key
        batch.append(s)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def write_split(split: str, samples: Iterable[Sample], out_dir: Path, options: ShardOptions,
                jpeg_of: Callable[[list[Sample]], list[bytes | None]],
                previous: Path | None = None, resume_from: Path | None = None,
                executor: Executor | None = None) -> SplitResult:
    """Write the tars of one split into ``out_dir``; return sizes, failed samples and counts.

    ``samples`` is a stream in ascending key order, cut into ranges of ``options.max_samples``;
    each range becomes one tar (more when ``options.max_bytes`` cuts it, none when every image
    failed) in a worker of ``executor`` (in this process when None): ``jpeg_of`` encodes a
    range's images there (it must pickle for a process pool), and the worker writes the tar.
    Here the finished tars are named in order (``<split>-NNNNNN.tar``), indexed, and recorded,
    so the output is the same whatever the worker count, and memory holds a few ranges at a
    time. ``previous`` is the last build of this split: a range whose samples and inputs did not
    change is hard-linked from it instead of rewritten. ``resume_from`` is a killed run's folder
    of this split: its completed tars are reused the same way (counted in ``resumed``).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    sources = [_Candidates(previous, _load_previous(previous), False),
               _Candidates(resume_from, _records(_progress_lines(resume_from)), True)]
    progress = out_dir / PROGRESS_FILE
    progress.unlink(missing_ok=True)
    result = SplitResult(out_dir)
    tag = f"{os.getpid()}.w"
    tasks = (_range_task(split, n, batch, out_dir, options, jpeg_of, tag, sources)
             for n, batch in enumerate(_ranges(samples, options.max_samples, split)))
    results: Iterable[RangeResult] = (executor.imap(build_range, tasks, f"shard {split}", "tar")
                                      if executor is not None else map(build_range, tasks))
    for done in results:
        result.failed += done.failed
        for part in done.parts:
            name = shard_name(split, len(result.sizes))
            os.replace(part.tmp, out_dir / name)
            if part.name == name:
                os.replace(part.tmp_index, out_dir / index_name(name))
            else:   # an earlier range made no tar or several: the names moved up
                table = pq.read_table(part.tmp_index)
                write_table(table.set_column(table.schema.get_field_index("shard"), "shard",
                                             pa.array([name] * table.num_rows, pa.string())),
                            "shard_index", out_dir / index_name(name))
                os.unlink(part.tmp_index)
            result.sizes[name] = part.samples
            result.rows += part.rows
            result.reused += part.reused
            result.resumed += part.reused and done.resumed
            result.written += not part.reused
            record = {"name": name, "keys": part.keys, "failed": sorted(part.failed), "fingerprint": part.fingerprint}
            with open(progress, "a", encoding="utf-8") as fh:   # the tar and its index are complete
                fh.write(json.dumps({"version": WRITER_VERSION, **record}, ensure_ascii=False) + "\n")
            kill_point("shard_tar_done")
    for stray in out_dir.glob(f".*.{tag}.tmp"):   # a range whose tars were never named (cannot happen)
        stray.unlink()
    write_json(result.sizes, out_dir / SIZES_FILE)
    _write_fingerprints(out_dir / FINGERPRINTS_FILE, options, _progress_lines(out_dir))
    progress.unlink(missing_ok=True)
    return result


def _write_fingerprints(path: Path, options: ShardOptions, records: Iterable[dict]) -> None:
    """``fingerprints.json`` from the progress records, written as they stream by.

    The same bytes as :func:`pipeline.tables.write_json` of ``{"options", "shards", "version"}``
    (sorted keys, indent 2), without holding every key of the split in memory at once.
    """
    def indented(obj: object) -> str:
        return json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False).replace("\n", "\n    ")

    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        fh.write("{\n" + f'  "options": {json.dumps(str(options), ensure_ascii=False)},\n  "shards": [')
        n = 0
        for record in records:
            record = {k: v for k, v in record.items() if k != "version"}
            fh.write(("," if n else "") + "\n    " + indented(record))
            n += 1
        fh.write(("\n  ]" if n else "]") + f',\n  "version": {json.dumps(WRITER_VERSION)}\n' + "}\n")

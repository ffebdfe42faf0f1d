"""Safe extraction of zip and tar archives (Derm1M's released zip, a dataset's tarball).

Why not ``extractall``: an archive is input like any other, and a hostile one can name
``../../.bashrc`` or ``/etc/cron.d/x`` (zip-slip), carry a symlink to ``/`` followed by a file
"inside" it, a device node, two entries with one name (the second silently replacing the
first), or a few kilobytes that inflate to terabytes (a zip bomb). Here every entry is checked
before a byte is written; a refused entry is a reject row (``archive_entry_unsafe``,
``archive_too_large``, ``source_file_unreadable`` for a corrupt one) and the rest is extracted.
Extraction goes to a temporary folder beside ``dest`` that is renamed into place at the end, so
an interrupted unpack leaves nothing half-written. Tar members are additionally extracted
through Python's ``data`` filter (PEP 706), so a check missed here is still caught there.

Accounting: entries read = files + folders extracted + rejects.
"""

from __future__ import annotations

import os
import posixpath
import stat
import tarfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.errors import PipelineError
from pipeline.rejects import Reject
from pipeline.tables import atomic_dir

STAGE = "unpack"
# Linux's limits on one path component and a whole path, in bytes: an entry beyond them would
# fail at write time and stop the whole unpack, so it is refused as an entry instead.
_NAME_MAX = 255
_PATH_MAX = 4000
_COPY_CHUNK = 1 << 20


@dataclass(frozen=True)
class ArchiveLimits:
    """What an archive may unpack to; beyond it an entry is ``archive_too_large``.

    ``max_ratio`` applies to zip entries larger than ``ratio_floor`` (small files compress
    well legitimately): Derm1M's JPEGs compress by about 1:1, a bomb by 1:1000.
    """

    max_total_bytes: int = 200 * 1024**3
    max_entry_bytes: int = 2 * 1024**3
    max_ratio: float = 100.0
    ratio_floor: int = 1024**2
    max_entries: int = 5_000_000


@dataclass
class ExtractResult:
    """What one extraction did: counts and the refused entries."""

    entries: int = 0
    files: int = 0
    folders: int = 0
    bytes: int = 0
    rejects: list[Reject] = field(default_factory=list)

    def summary(self) -> str:
        return (f"[unpack] entries {self.entries}, files {self.files}, folders {self.folders}, "
                f"rejected {len(self.rejects)}, {self.bytes:,} bytes")


def unsafe_name(name: str) -> str | None:
    """Why an entry name may not be written under the destination, or None when it is safe."""
    if not name or "\x00" in name:
        return "empty name or a NUL byte in the name"
    try:
        encoded = os.fsencode(name)
    except UnicodeError:
        return f"name {name!r} cannot be written as a file name here"
    longest = max((len(part) for part in encoded.replace(b"\\", b"/").split(b"/")), default=0)
    if longest > _NAME_MAX or len(encoded) > _PATH_MAX:
        return (f"name too long for the file system ({len(encoded):,} bytes, a part of {longest:,}; the limits are "
                f"{_NAME_MAX} per part and {_PATH_MAX} in all)")
    posix = name.replace("\\", "/")
    if posix.startswith("/") or (len(posix) > 1 and posix[1] == ":"):
        return f"absolute path {name!r}"
    if ".." in posix.split("/"):
        return f"path {name!r} climbs out with '..'"
    norm = posixpath.normpath(posix)
    if norm in (".", "") or norm.startswith("../"):
        return f"path {name!r} does not name a file under the destination"
    return None


def _inside(dest: Path, target: str) -> bool:
    """True when ``target`` (relative to ``dest``, already joined) stays under ``dest``."""
    root = os.path.realpath(dest)
    full = os.path.realpath(os.path.join(root, target))
    return full == root or full.startswith(root + os.sep)


class _Extraction:
    """Shared bookkeeping: names seen, bytes so far, reject rows."""

    def __init__(self, archive: Path, limits: ArchiveLimits) -> None:
        self.archive, self.limits = archive, limits
        self.result = ExtractResult()
        self.seen: set[str] = set()

    def reject(self, index: int, name: str, reason: str, detail: str) -> None:
        self.result.rejects.append(Reject(STAGE, self.archive.name, f"{index}:{name}", reason, detail, name))

    def admit(self, index: int, name: str, size: int, is_dir: bool) -> str | None:
        """The normalised name if the entry may be extracted; else records the reject, returns None."""
        self.result.entries += 1
        if self.result.entries > self.limits.max_entries:
            self.reject(index, name, "archive_too_large", f"more than {self.limits.max_entries} entries")
            return None
        why = unsafe_name(name)
        if why:
            self.reject(index, name, "archive_entry_unsafe", why)
            return None
        norm = posixpath.normpath(name.replace("\\", "/"))
        if norm in self.seen and not is_dir:
            self.reject(index, name, "archive_entry_unsafe", f"{norm!r} appears twice; the second copy would replace the first")
            return None
        if size > self.limits.max_entry_bytes:
            self.reject(index, name, "archive_too_large", f"{size:,} bytes > {self.limits.max_entry_bytes:,} per entry")
            return None
        if self.result.bytes + size > self.limits.max_total_bytes:
            self.reject(index, name, "archive_too_large",
                        f"unpacking it would pass {self.limits.max_total_bytes:,} bytes in total")
            return None
        self.seen.add(norm)
        return norm


def safe_extract(archive: str | Path, dest: str | Path, limits: ArchiveLimits | None = None) -> ExtractResult:
    """Extract a zip or tar (gz/bz2/xz) archive into ``dest`` (which must not exist yet).

    Refused entries become reject rows in the result; nothing is ever written outside ``dest``.
    A missing or unreadable archive, or an existing ``dest``, is a one-line ``PipelineError``.
    """
    archive, dest = Path(archive), Path(dest)
    limits = limits or ArchiveLimits()
    if not archive.is_file():
        raise PipelineError(f"{archive}: no such archive file")
    if dest.exists():
        raise PipelineError(f"{dest} already exists; remove it or unpack into a new folder")
    job = _Extraction(archive, limits)
    if zipfile.is_zipfile(archive):
        extract = _extract_zip
    elif tarfile.is_tarfile(archive):
        extract = _extract_tar
    else:
        raise PipelineError(f"{archive}: not a zip or tar archive")
    with atomic_dir(dest, mark=False) as tmp:   # the unpacked data is the user's: no output marker
        try:
            extract(archive, tmp, job)
        except (OSError, zipfile.BadZipFile, tarfile.TarError, EOFError) as exc:
            raise PipelineError(f"{archive}: cannot read the archive ({exc.__class__.__name__}: {exc})") from None
    return job.result


def _extract_zip(archive: Path, tmp: Path, job: _Extraction) -> None:
    limits = job.limits
    with zipfile.ZipFile(archive) as zf:
        for index, info in enumerate(zf.infolist()):
            mode = info.external_attr >> 16
            # zipfile cuts a name at its first NUL ("a.jpg\0../../x" reads as "a.jpg"); the name as
            # stored is checked, so the cut is a reject, not a silently different file.
            name = info.orig_filename if "\x00" in info.orig_filename else info.filename
            if stat.S_ISLNK(mode):
                job.result.entries += 1
                job.reject(index, name, "archive_entry_unsafe", "symbolic link entry (links are not extracted from zips)")
                continue
            if mode and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)) and stat.S_IFMT(mode):
                job.result.entries += 1
                job.reject(index, name, "archive_entry_unsafe", f"special file (mode {oct(mode)})")
                continue
            if (info.file_size > limits.ratio_floor
                    and info.file_size > limits.max_ratio * max(info.compress_size, 1)):
                job.result.entries += 1
                job.reject(index, name, "archive_too_large",
                           f"{info.compress_size:,} bytes inflate to {info.file_size:,} "
                           f"(ratio > {limits.max_ratio:g}: a zip bomb)")
                continue
            norm = job.admit(index, name, info.file_size, info.is_dir())
            if norm is None:
                continue
            target = tmp / norm
            if not _inside(tmp, norm):
                job.seen.discard(norm)
                job.reject(index, name, "archive_entry_unsafe", f"{name!r} resolves outside the destination")
                continue
            try:
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    job.result.folders += 1
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
            except (FileExistsError, NotADirectoryError):
                job.seen.discard(norm)
                job.reject(index, name, "archive_entry_unsafe", f"{norm!r} clashes with a file or folder already extracted")
                continue
            try:
                written = _copy_limited(zf.open(info), target, info.file_size)
            except (FileExistsError, IsADirectoryError):
                job.seen.discard(norm)
                job.reject(index, name, "archive_entry_unsafe", f"{norm!r} clashes with a folder already extracted")
                continue
            except (zipfile.BadZipFile, OSError, EOFError) as exc:
                target.unlink(missing_ok=True)
                job.seen.discard(norm)
                job.reject(index, name, "source_file_unreadable", f"corrupt entry: {exc}")
                continue
            job.result.files += 1
            job.result.bytes += written


def _copy_limited(src, target: Path, limit: int) -> int:
    """Copy a stream to ``target``, never more than ``limit`` bytes (the declared size)."""
    written = 0
    with src, open(target, "xb") as out:
        while chunk := src.read(_COPY_CHUNK):
            written += len(chunk)
            if written > limit:
                raise OSError(f"entry inflates past its declared {limit:,} bytes")
            out.write(chunk)
    return written


def _extract_tar(archive: Path, tmp: Path, job: _Extraction) -> None:
    with tarfile.open(archive) as tf:
        for index, member in enumerate(tf):
            name = member.name
            if member.isdev() or member.isfifo() or not (member.isfile() or member.isdir() or member.issym()
                                                         or member.islnk()):
                job.result.entries += 1
                job.reject(index, name, "archive_entry_unsafe", "device, FIFO or other special file")
                continue
            if member.issym() or member.islnk():
                link = member.linkname
                base = posixpath.dirname(name.replace("\\", "/")) if member.issym() else ""
                joined = posixpath.normpath(posixpath.join(base, link)) if link else ".."
                if link.startswith("/") or joined == ".." or joined.startswith("../") or not _inside(tmp, joined):
                    job.result.entries += 1
                    job.reject(index, name, "archive_entry_unsafe", f"link to {link!r} points outside the destination")
                    continue
            norm = job.admit(index, name, member.size, member.isdir())
            if norm is None:
                continue
            if not _inside(tmp, norm):
                job.seen.discard(norm)
                job.reject(index, name, "archive_entry_unsafe", f"{name!r} resolves outside the destination (via a link)")
                continue
            try:
                tf.extract(member, tmp, filter="data")
            except tarfile.FilterError as exc:
                job.seen.discard(norm)
                job.reject(index, name, "archive_entry_unsafe", f"refused by tarfile's data filter: {exc}")
                continue
            except (FileExistsError, NotADirectoryError, IsADirectoryError):
                job.seen.discard(norm)
                job.reject(index, name, "archive_entry_unsafe", f"{norm!r} clashes with a file or folder already extracted")
                continue
            if member.isdir():
                job.result.folders += 1
            else:
                job.result.files += 1
                job.result.bytes += member.size


def unpack(archive: str | Path, dest: str | Path, limits: ArchiveLimits | None = None) -> ExtractResult:
    """``derm1m unpack``: extract, then write ``<dest>.rejects.parquet`` beside ``dest``."""
    from pipeline.tables import write_table

    dest = Path(dest)
    result = safe_extract(archive, dest, limits)
    write_table([r.row() for r in result.rejects], "rejects", rejects_path(dest))
    return result


def rejects_path(dest: str | Path) -> Path:
    dest = Path(dest)
    return dest.parent / f"{dest.name}.rejects.parquet"

"""Open input files safely: only regular files, never blocking, never more bytes than allowed.

Why: a source is hostile input, and a path that names a FIFO blocks ``open()`` forever (a hung
ingest), a device node (``/dev/zero``) or an 8 GB sparse file named ``.jpg`` is read into memory
whole. Every adapter and the image check go through :func:`read_regular` /
:func:`open_regular_text`: the file is opened with ``O_NONBLOCK`` (a FIFO opens at once), checked
with ``fstat`` on the open descriptor (no race with a swap of the path), refused unless it is a
regular file, refused when its size is over the limit, and read with the limit enforced on the
bytes actually read (a file that grows, or a ``/proc`` file that reports size 0).

Problems are :class:`FileProblem` with a reason code (``file_not_regular``, ``file_too_large``,
or the caller's own for a missing or unreadable file).
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import TextIO

#: Defaults of ``ingest.max_image_bytes`` and ``ingest.max_metadata_bytes``.
DEFAULT_MAX_IMAGE_BYTES = 256 * 1024**2
DEFAULT_MAX_METADATA_BYTES = 4 * 1024**3


class FileProblem(Exception):
    """A file that may not be read as asked: ``reason`` (a reject code or ``missing``/``directory``/
    ``unreadable``/``loop``) and a one-line ``detail``."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason, self.detail = reason, detail


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def open_regular(path: str | Path, limit: int) -> tuple[int, int]:
    """An open read-only descriptor on ``path`` and its size, after the checks above."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise FileProblem("missing", f"no file at {path}") from None
    except IsADirectoryError:
        raise FileProblem("directory", f"{path} is a directory") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise FileProblem("loop", f"{path}: a symbolic link loop") from None
        if exc.errno == errno.ENAMETOOLONG:
            raise FileProblem("unreadable", f"{path}: name too long") from None
        raise FileProblem("unreadable", f"cannot open {path}: {exc.strerror or exc}") from None
    except ValueError as exc:   # a NUL in the path
        raise FileProblem("unreadable", f"cannot open {path!r}: {exc}") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise FileProblem("directory", f"{path} is a directory")
        if not stat.S_ISREG(st.st_mode):
            raise FileProblem("file_not_regular", f"{path} is {_kind(st.st_mode)}, not a regular file")
        if st.st_size > limit:
            raise FileProblem("file_too_large", f"{path} has {st.st_size:,} bytes, over the limit of {limit:,}")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd, st.st_size


def read_regular(path: str | Path, limit: int) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes (see the module docstring)."""
    fd, _ = open_regular(path, limit)
    with os.fdopen(fd, "rb") as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise FileProblem("file_too_large", f"{path} has more than {limit:,} bytes")
    return data


def open_regular_text(path: str | Path, limit: int, encoding: str = "utf-8-sig", errors: str = "strict",
                      newline: str | None = None) -> TextIO:
    """A text stream over a regular file of at most ``limit`` bytes (its size checked when opened;
    read as a stream, so a large CSV is not held in memory)."""
    fd, _ = open_regular(path, limit)
    return os.fdopen(fd, "r", encoding=encoding, errors=errors, newline=newline)

"""Perceptual hashing: the 64-bit pHash of an image as displayed (EXIF orientation applied).

``imagehash.phash`` is the reference implementation. A hash is stored as a signed 64-bit int
(the bit pattern of the unsigned hash) so numpy can XOR and popcount whole arrays at once,
and as 16 hex digits for people.
"""

from __future__ import annotations

import imagehash
import numpy as np

from pipeline.images.decode import load_rgb

HASH_METHOD = "imagehash.phash-64"


def phash_file(path: str) -> int | None:
    """pHash of the file as an unsigned int, or None if it can no longer be decoded."""
    try:
        img = load_rgb(path)
    except (OSError, ValueError, SyntaxError):
        return None
    return int(str(imagehash.phash(img)), 16)


def to_signed(values: list[int]) -> np.ndarray:
    """Unsigned 64-bit hashes -> int64 array with the same bits."""
    return np.array(values, dtype=np.uint64).view(np.int64)


def to_hex(value: int) -> str:
    return f"{value & 0xFFFFFFFFFFFFFFFF:016x}"


def popcount64(x: np.ndarray) -> np.ndarray:
    """Number of set bits of each uint64 (vectorised; numpy >= 2 has bitwise_count)."""
    return np.bitwise_count(x.view(np.uint64)).astype(np.int8)

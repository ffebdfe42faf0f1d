"""Stable identifiers: the same record always gets the same id, on any machine, in any order.

Ids are short hex digests of the record's provenance (never of row position), so a rebuild with
one extra source leaves every existing id unchanged. They contain no dots, which WebDataset
would read as extension separators.
"""

from __future__ import annotations

import hashlib


def _digest(*parts: str, n: int = 16) -> str:
    h = hashlib.blake2b(digest_size=16)
    for p in parts:
        h.update(p.encode("utf-8"))
        h.update(b"\x00")
    return h.hexdigest()[:n]


def image_id(source: str, relpath: str) -> str:
    """Id of one image file of one source (byte-identical files elsewhere get other ids)."""
    return "img" + _digest("image", source, relpath)


def pair_id(source: str, record_id: str, caption_index: int = 0) -> str:
    """Id of one image-caption pair: the source record plus which of its captions."""
    return "pair" + _digest("pair", source, record_id, str(caption_index))


def cluster_id(canonical_image_id: str) -> str:
    """Id of a duplicate cluster, derived from its canonical image so it is order independent."""
    return "clu" + _digest("cluster", canonical_image_id)


def unit_hash(key: str, salt: str) -> float:
    """Deterministic uniform number in [0, 1) for ``key``: how splits are drawn without a RNG."""
    h = hashlib.blake2b((salt + "\x00" + key).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(h, "big") / 2**64

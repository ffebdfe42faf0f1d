"""Near-duplicate candidates: pairs of images whose pHashes say "maybe the same photograph".

Generous on purpose (verification decides): a pair is a candidate when

* the two whole-image pHashes are within ``radius`` (re-encodes, resizes, colour changes,
  overlays: the pHash moves a few bits), or
* one image's whole-image pHash is within ``window_radius`` of one of the other's window
  pHashes (:data:`pipeline.images.views.WINDOWS`): the first is a crop of the second, or
* the same half of both (:data:`pipeline.images.views.SAME_VIEW`) is within ``window_radius``:
  a caption or watermark near one border spoiled the whole-image pHash, not the other half, or
* with ``mirror``, either of the first two against the first image's mirror-image pHash.

All searches are exact (multi-index hashing, :mod:`pipeline.images.neardup`) and vectorised.
Each candidate row names the window of ``b`` that matched ``a``'s whole image, so verification
knows how to align them; a pair found several ways gives several rows (the best one wins).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.images.neardup import pairs_between, pairs_within
from pipeline.images.views import SAME_VIEW


@dataclass
class Candidates:
    """Candidate rows: a's whole image (mirrored where ``mirror``) against b's window ``window``
    at pHash distance ``distance``; ``window`` indexes :func:`pipeline.images.views.match_views`
    (0 = whole image, k = views.WINDOWS[k - 1], then the same-window matches)."""

    a: np.ndarray
    b: np.ndarray
    window: np.ndarray
    mirror: np.ndarray
    distance: np.ndarray

    def __len__(self) -> int:
        return len(self.a)

    def pairs(self) -> int:
        """Distinct unordered image pairs among the rows."""
        lo, hi = np.minimum(self.a, self.b), np.maximum(self.a, self.b)
        return len(np.unique(lo * np.int64(max(1, int(hi.max(initial=0)) + 1)) + hi)) if len(lo) else 0


def find_candidates(full: np.ndarray, windows: np.ndarray, radius: int, window_radius: int,
                    mirrors: np.ndarray | None = None, same: tuple[int, ...] = SAME_VIEW) -> Candidates:
    """Candidate rows among n images: ``full`` (n,) int64 pHashes, ``windows`` (n, K) window
    pHashes, ``mirrors`` (n,) mirror-image pHashes or None; ``same`` the window columns also
    compared column to column. Rows come sorted by (a, b, window, mirror), each (a, b, window,
    mirror) once."""
    n = len(full)
    parts: list[tuple[np.ndarray, ...]] = []
    i, j, d = pairs_within(full, radius)
    parts.append((i, j, np.zeros(len(i), dtype=np.int64), np.zeros(len(i), dtype=bool), d))
    queries = [(full, False)] + ([(mirrors, True)] if mirrors is not None else [])
    if mirrors is not None:   # mirrored whole image against the other's whole image
        q, t, d = pairs_between(mirrors, full, radius)
        keep = q != t
        parts.append((q[keep], t[keep], np.zeros(int(keep.sum()), dtype=np.int64), np.ones(int(keep.sum()), dtype=bool),
                      d[keep]))
    k_windows = windows.shape[1] if windows.ndim == 2 else 0
    if k_windows and window_radius >= 0:
        flat = np.ascontiguousarray(windows).reshape(-1)
        for hashes, mirrored in queries:
            q, t, d = pairs_between(hashes, flat, window_radius)
            b, w = t // k_windows, t % k_windows + 1
            keep = q != b
            parts.append((q[keep], b[keep], w[keep], np.full(int(keep.sum()), mirrored), d[keep]))
        for j, col in enumerate(same):   # the same half of both: compared whole
            i, t, d = pairs_within(np.ascontiguousarray(windows[:, col]), window_radius)
            parts.append((i, t, np.full(len(i), k_windows + 1 + j, dtype=np.int64), np.zeros(len(i), dtype=bool), d))
    n_views = k_windows + 1 + len(same)
    a = np.concatenate([p[0] for p in parts]).astype(np.int64)
    b = np.concatenate([p[1] for p in parts]).astype(np.int64)
    w = np.concatenate([p[2] for p in parts]).astype(np.int64)
    m = np.concatenate([p[3] for p in parts]).astype(bool)
    dist = np.concatenate([p[4] for p in parts]).astype(np.int8)
    if not len(a):
        return Candidates(a, b, w, m, dist)
    key = ((a * np.int64(n) + b) * np.int64(n_views) + w) * 2 + m
    key, first = np.unique(key, return_index=True)
    return Candidates(a[first], b[first], w[first], m[first], dist[first])

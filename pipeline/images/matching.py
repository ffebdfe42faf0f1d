"""Verified near-duplicate edges: candidates by pHash, then verification of each candidate.

One code path for every place that asks "is this the same photograph?": the dedup stage's
clusters, its benchmark decontamination, and ``derm1m find-duplicates`` (both modes) all call
:func:`verified_edges` or :func:`verified_matches`, so they agree by construction.

* Candidates (:mod:`pipeline.images.candidates`): whole-image pHashes within ``radius``, a
  whole image within ``window_radius`` of a window of the other (a crop), or the same half of
  both within ``window_radius`` (an overlay spoiled the rest); generous.
* Verification (:mod:`pipeline.images.verify`): aligned fine structure of the thumbnails; the
  thresholds depend on the pair's modality (:class:`MatchConfig`): a pair with a dermoscopic
  image is judged by the dermoscopic policy, where partial agreement never suffices.

An edge records how it was found (window, mirror, pHash distance) and how it was accepted
(check and score), for audit in ``duplicate_edges``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from pipeline.images.candidates import Candidates, find_candidates
from pipeline.images.hashing import HashedImage, to_signed
from pipeline.images.neardup import pairs_between
from pipeline.images.verify import Policy, verify, whole_views
from pipeline.images.views import SAME_VIEW, WINDOWS, match_views, thumbs_array

WINDOW_NAMES = [name for name, _ in match_views()]


@dataclass(frozen=True)
class MatchConfig:
    """How candidates are found and verified (params.yaml ``dedup``)."""

    radius: int = 10                      # whole image vs whole image (pHash bits)
    window_radius: int = 6                # whole image vs a window of the other
    mirror: bool = False                  # also match left-right mirror images
    clinical: Policy = field(default_factory=lambda: Policy(corr=0.84, occlusion=True))
    dermoscopic: Policy = field(default_factory=lambda: Policy(corr=0.84, occlusion=False))


@dataclass
class Descriptors:
    """What matching needs of n images (from hashing with ``views=True``)."""

    full: np.ndarray           # (n,) int64 whole-image pHashes
    windows: np.ndarray        # (n, len(WINDOWS)) int64 window pHashes
    mirror: np.ndarray | None  # (n,) int64 mirror-image pHashes, or None
    thumbs: np.ndarray         # (n, THUMB, THUMB) uint8

    @classmethod
    def of(cls, hashed: Sequence[HashedImage], mirror: bool = False) -> Descriptors:
        n, k = len(hashed), len(WINDOWS)
        windows = to_signed([w for h in hashed for w in (h.windows or (h.phash,) * k)]).reshape(n, k)
        mirrors = to_signed([h.mirror if h.mirror is not None else h.phash for h in hashed]) if mirror else None
        return cls(to_signed([h.phash for h in hashed]), windows, mirrors, thumbs_array([h.thumb for h in hashed]))

    def __len__(self) -> int:
        return len(self.full)


@dataclass
class Edges:
    """Verified pairs: ``a``'s whole image matched ``b`` through window ``window``."""

    a: np.ndarray
    b: np.ndarray
    window: np.ndarray         # index into WINDOW_NAMES
    mirror: np.ndarray
    distance: np.ndarray       # pHash distance of the matching hashes
    check: np.ndarray          # "corr" or "cells"
    score: np.ndarray          # verification correlation (float32)
    candidates: int = 0        # candidate rows examined (for the stage summary)
    candidate_pairs: int = 0   # distinct candidate pairs

    def __len__(self) -> int:
        return len(self.a)


def _verify(thumbs_of: Callable[[np.ndarray], np.ndarray], cand: Candidates, cfg: MatchConfig,
            dermoscopic: np.ndarray) -> Edges:
    """Verify candidate rows and keep the best accepted row of each unordered pair.

    Only the images that appear in a candidate are gathered (``thumbs_of(sorted indices)``) and
    get a whole-image view: in a large corpus most images have no candidate at all."""
    windows = [window for _, window in match_views()]
    policy_of = (dermoscopic[cand.a] | dermoscopic[cand.b]).astype(np.int64)
    if len(cand):
        involved = np.unique(np.r_[cand.a, cand.b])
        thumbs = thumbs_of(involved)
        accepted, check, score = verify(thumbs, whole_views(thumbs), np.searchsorted(involved, cand.a),
                                        np.searchsorted(involved, cand.b), [windows[w] for w in cand.window],
                                        cand.mirror, [cfg.clinical, cfg.dermoscopic], policy_of)
    else:
        accepted, check, score = (np.zeros(0, dtype=bool), np.zeros(0, dtype=object), np.zeros(0, dtype=np.float32))
    keep = np.flatnonzero(accepted)
    a, b = cand.a[keep], cand.b[keep]
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    # Best row per unordered pair: highest score, then the lowest (window, mirror, a) for ties.
    order = np.lexsort((a, cand.mirror[keep], cand.window[keep], -score[keep], hi, lo))
    first = np.r_[True, (lo[order][1:] != lo[order][:-1]) | (hi[order][1:] != hi[order][:-1])] if len(order) else \
        np.zeros(0, dtype=bool)
    pick = keep[order[first]]
    return Edges(cand.a[pick], cand.b[pick], cand.window[pick], cand.mirror[pick], cand.distance[pick],
                 check[pick].astype(str), score[pick].astype(np.float32), len(cand), cand.pairs())


def verified_edges(desc: Descriptors, cfg: MatchConfig, dermoscopic: np.ndarray | None = None) -> Edges:
    """Every verified duplicate pair among the images (distinct contents: byte-identical files
    are the caller's business). ``dermoscopic`` flags images judged by the dermoscopic policy."""
    derm = np.zeros(len(desc), dtype=bool) if dermoscopic is None else np.asarray(dermoscopic, dtype=bool)
    cand = find_candidates(desc.full, desc.windows, cfg.radius, cfg.window_radius, desc.mirror)
    return _verify(lambda idx: desc.thumbs[idx], cand, cfg, derm)


def verified_matches(query: Descriptors, target: Descriptors, cfg: MatchConfig,
                     query_dermoscopic: np.ndarray | None = None,
                     target_dermoscopic: np.ndarray | None = None) -> Edges:
    """Verified pairs between two sets (corpus images vs a benchmark set), none inside either.

    Returns edges with ``a`` indexing ``query`` and ``b`` indexing ``target`` (the orientation
    of the match - which one is the crop - is in ``window``/``mirror`` only for audit)."""
    nq, nt = len(query), len(target)
    k = len(WINDOWS)
    parts: list[tuple[np.ndarray, ...]] = []

    def add(qa: np.ndarray, tb: np.ndarray, w: np.ndarray, m: bool, d: np.ndarray) -> None:
        parts.append((qa, tb, w, np.full(len(qa), m), d))

    for hashes, mirrored in [(query.full, False)] + ([(query.mirror, True)] if query.mirror is not None else []):
        q, t, d = pairs_between(hashes, target.full, cfg.radius)
        add(q, nq + t, np.zeros(len(q), dtype=np.int64), mirrored, d)
        q, t, d = pairs_between(hashes, target.windows.reshape(-1), cfg.window_radius)
        add(q, nq + t // k, t % k + 1, mirrored, d)
    t, q, d = pairs_between(target.full, query.windows.reshape(-1), cfg.window_radius)   # target is the crop
    add(nq + t, q // k, q % k + 1, False, d)
    for j, col in enumerate(SAME_VIEW):   # the same half of both (an overlay spoiled the rest)
        q, t, d = pairs_between(np.ascontiguousarray(query.windows[:, col]),
                                np.ascontiguousarray(target.windows[:, col]), cfg.window_radius)
        add(q, nq + t, np.full(len(q), k + 1 + j, dtype=np.int64), False, d)
    cand = Candidates(*(np.concatenate([p[i] for p in parts]) if parts else np.zeros(0) for i in range(5)))
    cand = Candidates(cand.a.astype(np.int64), cand.b.astype(np.int64), cand.window.astype(np.int64),
                      cand.mirror.astype(bool), cand.distance.astype(np.int8))
    derm = np.r_[np.zeros(nq, dtype=bool) if query_dermoscopic is None else np.asarray(query_dermoscopic, dtype=bool),
                 np.zeros(nt, dtype=bool) if target_dermoscopic is None else np.asarray(target_dermoscopic, dtype=bool)]
    edges = _verify(lambda idx: np.concatenate([query.thumbs[idx[idx < nq]], target.thumbs[idx[idx >= nq] - nq]]),
                    cand, cfg, derm)
    # Orient every edge as (query index, target index).
    qside = np.where(edges.a < nq, edges.a, edges.b)
    tside = np.where(edges.a < nq, edges.b, edges.a) - nq
    edges.a, edges.b = qside, tside
    order = np.lexsort((edges.b, edges.a))
    for name in ("a", "b", "window", "mirror", "distance", "check", "score"):
        setattr(edges, name, getattr(edges, name)[order])
    return edges

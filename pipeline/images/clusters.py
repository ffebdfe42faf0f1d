"""Duplicate clusters without chaining: every member is a verified duplicate of its canonical.

Why not connected components: with A~B and B~C but A and C unrelated (two different lesions
that each resemble a third image), union-find puts A and C in one cluster, and downstream
every caption of the cluster follows its canonical image - one lesion's captions land on
another's photograph. On HAM10000 that chained 1,398 images into one cluster.

**Leader (star) clustering**: visit the images in canonical order (the one a user would keep:
highest resolution, then the earliest source in params.yaml, then the smallest id). An image
that no earlier leader has claimed becomes a leader; each other image joins the adjacent leader
it matches best (highest verification score, then the earlier leader). So a cluster is a star:
its canonical image and images verified against *it*, never only against another member.
Byte-identical files are one content and always share a cluster.

:func:`components` stays for the split stage, which groups clusters that share a lesion or
patient (there, transitivity is the point: a leak is a leak through any chain).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from pipeline.images.hashing import HashedImage
from pipeline.images.matching import Descriptors, Edges, MatchConfig, verified_edges


def components(n: int, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Component label of each of ``n`` nodes given undirected edges (i, j)."""
    graph = coo_matrix((np.ones(len(i), dtype=np.int8), (i, j)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    return labels


def canonical_order(frame: pd.DataFrame) -> np.ndarray:
    """Rank of each row as a canonical image (0 = kept first): most pixels, then the earliest
    source (``source_rank``), then the smallest ``image_id``. Needs width, height, source_rank,
    image_id."""
    pixels = frame["width"].to_numpy(np.int64) * frame["height"].to_numpy(np.int64)
    order = np.lexsort((frame["image_id"].to_numpy().astype(str), frame["source_rank"].to_numpy(np.int64), -pixels))
    rank = np.empty(len(frame), dtype=np.int64)
    rank[order] = np.arange(len(frame))
    return rank


def leader_clusters(n: int, a: np.ndarray, b: np.ndarray, score: np.ndarray, rank: np.ndarray) -> np.ndarray:
    """The leader (canonical node) of each of ``n`` nodes, given verified undirected edges
    (a, b) with scores and each node's canonical ``rank`` (distinct; lower leads)."""
    leader = np.arange(n, dtype=np.int64)
    if not len(a):
        return leader
    src = np.r_[a, b].astype(np.int64)
    dst = np.r_[b, a].astype(np.int64)
    sc = np.r_[score, score].astype(np.float64)
    # Adjacency sorted by node, then by the neighbour's rank (earlier leaders first).
    order = np.lexsort((rank[dst], src))
    src, dst, sc = src[order], dst[order], sc[order]
    start = np.searchsorted(src, np.arange(n + 1))
    claimed = np.zeros(n, dtype=bool)
    is_leader = np.zeros(n, dtype=bool)
    for node in np.unique(src)[np.argsort(rank[np.unique(src)], kind="stable")].tolist():
        if claimed[node]:
            continue
        is_leader[node] = True
        claimed[dst[start[node]:start[node + 1]]] = True
    # Each follower joins its best adjacent leader (score desc, then leader rank).
    followers = ~is_leader[src] & is_leader[dst]
    f_src, f_dst, f_sc = src[followers], dst[followers], sc[followers]
    pick = np.lexsort((rank[f_dst], -f_sc, f_src))
    f_src, f_dst = f_src[pick], f_dst[pick]
    first = np.r_[True, f_src[1:] != f_src[:-1]] if len(f_src) else np.zeros(0, dtype=bool)
    leader[f_src[first]] = f_dst[first]
    return leader


@dataclass
class DuplicateClusters:
    """Clusters of n files: each file's canonical file and how it was linked to it."""

    canonical: np.ndarray      # (n,) index of each file's canonical file
    score: np.ndarray          # (n,) verification score against the canonical (1.0: itself or same bytes)
    rep: np.ndarray            # (n,) the file that stands for each file's bytes (best-ranked of its SHA-256)
    edges: Edges               # verified edges between representatives (file indices)
    exact_i: np.ndarray        # exact links: file -> representative of its bytes
    exact_j: np.ndarray


def duplicate_clusters(sha256: np.ndarray, rank: np.ndarray, hashed: list[HashedImage], cfg: MatchConfig,
                       dermoscopic: np.ndarray | None = None) -> DuplicateClusters:
    """Verified, chain-free duplicate clusters of n files (``hashed`` with views).

    Byte-identical files are one content (its best-ranked file represents it); contents are
    linked by :func:`pipeline.images.matching.verified_edges` and grouped by
    :func:`leader_clusters` in canonical ``rank`` order."""
    n = len(sha256)
    codes = pd.factorize(np.asarray(sha256))[0]
    by_rank = np.argsort(rank, kind="stable")
    rep_of_code = np.full(codes.max() + 1 if n else 0, -1, dtype=np.int64)
    for k in by_rank[::-1].tolist():        # the last write per code is its best-ranked file
        rep_of_code[codes[k]] = k
    rep = rep_of_code[codes] if n else np.zeros(0, dtype=np.int64)
    reps = np.flatnonzero(rep == np.arange(n))
    derm = None if dermoscopic is None else np.asarray(dermoscopic, dtype=bool)
    if derm is not None:   # a content is dermoscopic when any of its files is
        derm = np.bincount(rep, weights=derm.astype(np.int64), minlength=n)[reps] > 0
    desc = Descriptors.of([hashed[k] for k in reps.tolist()], cfg.mirror)
    local = verified_edges(desc, cfg, derm)
    leader_local = leader_clusters(len(reps), local.a, local.b, local.score, rank[reps])
    canonical = reps[leader_local][np.searchsorted(reps, rep)]
    score = np.ones(n, dtype=np.float32)
    lookup = {(int(min(x, y)), int(max(x, y))): s for x, y, s in zip(local.a.tolist(), local.b.tolist(),
                                                                       local.score.tolist(), strict=True)}
    for k in np.flatnonzero(rep != canonical).tolist():
        x, y = int(np.searchsorted(reps, rep[k])), int(np.searchsorted(reps, canonical[k]))
        score[k] = lookup[(min(x, y), max(x, y))]
    edges = Edges(reps[local.a], reps[local.b], local.window, local.mirror, local.distance, local.check, local.score,
                  local.candidates, local.candidate_pairs)
    exact = np.flatnonzero(rep != np.arange(n))
    return DuplicateClusters(canonical, score, rep, edges, exact, rep[exact])

"""All pairs of 64-bit hashes within Hamming radius r, exactly, by multi-index hashing.

Why this shape: a million hashes have 5e11 pairs, so brute force is out, and the textbook
multi-index split (r+1 blocks that must match exactly) makes blocks so narrow at r = 8 (7 bits)
that every block value is shared by ~8,000 hashes and candidates number in the tens of
billions. We use the generalised pigeonhole instead (Qin et al., "GPH"): split the 64 bits into
m blocks and give block k a threshold t_k with sum(t_k) = r - m + 1. Two hashes within r then
differ by at most t_k bits in at least one block k (else the distance would be at least
sum(t_k + 1) = r + 1). With m = 3 blocks of ~21 bits and t = (2, 2, 2) at r = 8, each hash
probes a few hundred block values that are almost all empty, and candidates are ~1e8 for 1M
uniform hashes instead of ~3e10.

Each block is a counting-sorted index (offsets into the hashes sorted by block value); a probe
is ``key ^ flip`` for every flip pattern of at most t_k bits. Everything is vectorised over the
hashes: the Python loop runs over blocks and flip patterns, never over hashes. Exactness and
uniqueness without a global ``np.unique``:

* a pair whose block values differ by the flip ``f != 0`` is probed only from the member whose
  key has the highest bit of ``f`` clear (the other member would find the same pair);
* a pair that qualifies in several blocks is kept only in the first block where it qualifies.

So every pair within r is produced exactly once. The plan (m, widths, thresholds) is chosen by a
small cost model: probes cost per hash, candidates cost per pair, index tables cost per slot.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import combinations

import numpy as np

from pipeline.images.hashing import popcount64

MAX_BLOCK_BITS = 24          # a block's offsets table has 2**bits + 1 int64 slots (128 MB at 24)
DEFAULT_BATCH = 1 << 22      # candidate pairs materialised at once (bounds peak memory)

# Relative costs in the plan's model (seconds per unit, measured on a 2-core x86 box with numpy 2).
_COST_PROBE = 12e-9          # one flip probe for one hash (gather two offsets, compare)
_COST_CANDIDATE = 25e-9      # one candidate pair expanded and verified by popcount
_COST_SLOT = 2e-9            # one offsets-table slot (bincount + cumsum)


@dataclass(frozen=True)
class Block:
    """A contiguous bit range of the hash and the Hamming threshold probed inside it."""

    shift: int
    bits: int
    threshold: int           # -1: the block is not searched (only when m > r + 1)

    def flips(self) -> int:
        """Number of flip patterns of at most ``threshold`` bits (the probes per hash)."""
        return sum(math.comb(self.bits, k) for k in range(self.threshold + 1))


def plan(radius: int, n: int) -> list[Block]:
    """The cheapest exact block plan for ``n`` hashes at ``radius`` under the cost model."""
    best: tuple[float, list[Block]] | None = None
    for m in range(3, max(3, radius + 1) + 1):
        blocks = _blocks(radius, m)
        if max(b.bits for b in blocks) > MAX_BLOCK_BITS:
            continue
        cost = plan_cost(blocks, n)
        if best is None or cost < best[0]:
            best = (cost, blocks)
    assert best is not None
    return best[1]


def _blocks(radius: int, m: int) -> list[Block]:
    """m near-equal blocks; thresholds as even as possible (wider blocks get the larger ones)."""
    bounds = [round(64 * k / m) for k in range(m + 1)]
    widths = [hi - lo for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)]
    total = radius - m + 1
    by_width = sorted(range(m), key=lambda k: (-widths[k], k))
    thresholds = [0] * m
    if total >= 0:
        base, extra = divmod(total, m)
        for rank, k in enumerate(by_width):
            thresholds[k] = base + (1 if rank < extra else 0)
    else:  # more blocks than r + 1: search r + 1 of them exactly, skip the rest
        for rank, k in enumerate(by_width):
            thresholds[k] = 0 if rank < radius + 1 else -1
    return [Block(lo, w, t) for lo, w, t in zip(bounds[:-1], widths, thresholds, strict=True)]


def plan_cost(blocks: list[Block], n: int) -> float:
    """Modelled seconds for uniform random hashes (real hashes cluster: more candidates)."""
    cost = 0.0
    for b in blocks:
        if b.threshold < 0:
            continue
        cost += _COST_SLOT * 2**b.bits + _COST_PROBE * n * b.flips() / 2
        cost += _COST_CANDIDATE * n * n / 2 * b.flips() / 2**b.bits
    return cost


def pairs_within(hashes: np.ndarray, radius: int, batch: int = DEFAULT_BATCH,
                 workers: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (i, j, distance) with i < j for every pair of ``hashes`` within ``radius``.

    ``hashes`` is int64 or uint64 (bit patterns). Radius 0 finds exact hash equality. Pairs come
    sorted by (i, j). ``batch`` bounds how many candidate pairs are materialised at once (peak
    memory is O(n + batch)); ``workers`` threads search blocks in parallel (numpy releases the
    GIL in the gathers and popcounts); default: one per core, at most one per block.
    """
    if radius < 0 or radius > 31:
        raise ValueError("radius must be between 0 and 31 for 64-bit hashes")
    if batch < 1:
        raise ValueError("batch must be at least 1")
    u = np.ascontiguousarray(hashes).view(np.uint64)
    n = len(u)
    if n < 2:
        return _empty()
    blocks = plan(radius, n)
    searched = [k for k, b in enumerate(blocks) if b.threshold >= 0]
    workers = max(1, min(workers or os.cpu_count() or 1, len(searched)))
    if workers == 1:
        parts = [_search_block(u, blocks, k, radius, batch) for k in searched]
    else:
        with ThreadPoolExecutor(workers) as pool:
            parts = list(pool.map(lambda k: _search_block(u, blocks, k, radius, batch), searched))
    i = np.concatenate([p[0] for p in parts])
    j = np.concatenate([p[1] for p in parts])
    if not len(i):
        return _empty()
    order = np.argsort(i * np.int64(n) + j, kind="stable")
    i, j = i[order], j[order]
    return i, j, popcount64(u[i] ^ u[j])


def _empty() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    empty = np.empty(0, dtype=np.int64)
    return empty, empty.copy(), np.empty(0, dtype=np.int8)


def _key(u: np.ndarray, block: Block) -> np.ndarray:
    return ((u >> np.uint64(block.shift)) & np.uint64((1 << block.bits) - 1)).astype(np.int64)


def pairs_between(queries: np.ndarray, targets: np.ndarray, radius: int, batch: int = DEFAULT_BATCH,
                  workers: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (q, t, distance) for every query/target pair within ``radius``, sorted by (q, t).

    The cross search behind decontamination and ``find-duplicates --against``: the targets (a
    benchmark set) are indexed, every query probes every flip pattern, and pairs inside either
    set are never generated. Same exactness and block plan as :func:`pairs_within`.
    """
    if radius < 0 or radius > 31:
        raise ValueError("radius must be between 0 and 31 for 64-bit hashes")
    if batch < 1:
        raise ValueError("batch must be at least 1")
    qu = np.ascontiguousarray(queries).view(np.uint64)
    tu = np.ascontiguousarray(targets).view(np.uint64)
    if not len(qu) or not len(tu):
        return _empty()
    if len(qu) > len(tu):  # probe from the smaller side, index the larger one
        t, q, d = pairs_between(tu, qu, radius, batch, workers)
        order = np.argsort(q * np.int64(len(tu)) + t, kind="stable")
        return q[order], t[order], d[order]
    # Probes scale with the queries and candidates with the product: plan for the larger side.
    blocks = plan(radius, len(tu))
    searched = [k for k, b in enumerate(blocks) if b.threshold >= 0]
    workers = max(1, min(workers or os.cpu_count() or 1, len(searched)))
    if workers == 1:
        parts = [_search_block(qu, blocks, k, radius, batch, tu) for k in searched]
    else:
        with ThreadPoolExecutor(workers) as pool:
            parts = list(pool.map(lambda k: _search_block(qu, blocks, k, radius, batch, tu), searched))
    q = np.concatenate([p[0] for p in parts])
    t = np.concatenate([p[1] for p in parts])
    if not len(q):
        return _empty()
    order = np.argsort(q * np.int64(len(tu)) + t, kind="stable")
    q, t = q[order], t[order]
    return q, t, popcount64(qu[q] ^ tu[t])


def _search_block(u: np.ndarray, blocks: list[Block], k: int, radius: int, batch: int,
                  targets: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Pairs within ``radius`` whose first qualifying block is block ``k`` (original indices).

    Without ``targets``: pairs inside ``u``, returned as (smaller index, larger index). With
    ``targets``: pairs (index into ``u``, index into ``targets``).
    """
    block = blocks[k]
    cross = targets is not None
    indexed = targets if cross else u
    key = _key(indexed, block)
    order = _argsort_keys(key, block.bits)
    skey = key[order]
    su = indexed[order]
    # int32 offsets keep the probed tables small (the gathers are what probing costs), and a
    # bool per slot says whether it is occupied, so the ~60% of probes that miss touch 2-4 MB.
    counts = np.bincount(skey, minlength=1 << block.bits)
    offsets = np.zeros((1 << block.bits) + 1, dtype=_offset_dtype(len(indexed)))
    np.cumsum(counts, out=offsets[1:])
    occupied = counts > 0
    del counts
    earlier = [b for b in blocks[:k] if b.threshold >= 0]
    found_a: list[np.ndarray] = []
    found_b: list[np.ndarray] = []
    # Self search works in sorted positions on both sides; cross search keeps query indices.
    qvals = u if cross else su

    def verify(qa: np.ndarray, cb: np.ndarray) -> None:
        x = qvals[qa] ^ su[cb]
        keep = popcount64(x) <= radius
        for e in earlier:  # already reported by an earlier block where it qualifies
            if not keep.any():
                break
            keep &= popcount64(_key(x, e)) > e.threshold
        if keep.any():
            found_a.append(qa[keep] if cross else order[qa[keep]])
            found_b.append(order[cb[keep]])

    def probe(queries: np.ndarray, qkey: np.ndarray, flip: int) -> None:
        target = qkey ^ flip if flip else qkey
        hit = np.take(occupied, target).nonzero()[0]
        if len(hit):
            t = np.take(target, hit)
            _expand(np.take(queries, hit), np.take(offsets, t).astype(np.int64),
                    np.take(offsets, t + 1).astype(np.int64), batch, verify)

    if cross:
        qkey = _key(u, block).astype(np.int32)
        queries = np.arange(len(u), dtype=np.int64)
        for f in [0] + [f for h in range(block.bits) for f in _flips_with_high_bit(h, block.threshold)]:
            probe(queries, qkey, f)
    else:
        # Flip 0: pairs inside runs of equal keys; position p pairs with p+1 .. end of its run.
        in_run = np.flatnonzero(skey[1:] == skey[:-1])   # positions followed by an equal key
        if len(in_run):
            _expand(in_run, in_run + 1, np.take(offsets, skey[in_run] + 1).astype(np.int64), batch, verify)
        # Flips of 1..t bits, grouped by their highest bit h: probe only from keys with bit h clear.
        skey32 = skey.astype(np.int32)
        for h in range(block.bits if block.threshold >= 1 else 0):
            queries = np.flatnonzero((skey32 >> h) & 1 == 0)
            qkey = skey32[queries]
            for f in _flips_with_high_bit(h, block.threshold):
                probe(queries, qkey, f)
    if not found_a:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty.copy()
    a, b = np.concatenate(found_a), np.concatenate(found_b)
    if cross:
        return a, b
    return np.minimum(a, b), np.maximum(a, b)


def _argsort_keys(key: np.ndarray, bits: int) -> np.ndarray:
    """Stable argsort of keys below 2**bits: LSD radix sort in two 16-bit-or-less passes.

    numpy sorts uint16 keys stably by radix sort; two such passes are ~3x faster than a
    comparison argsort of a million int64 keys, and the index build is most of a radius-4 run.
    """
    if bits <= 16:
        return np.argsort(key.astype(np.uint16), kind="stable")
    low_bits = bits // 2
    order = np.argsort((key & ((1 << low_bits) - 1)).astype(np.uint16), kind="stable")
    high = (key >> low_bits).astype(np.uint16)
    return order[np.argsort(high[order], kind="stable")]


def _offset_dtype(n: int) -> type:
    return np.int32 if n < 2**31 else np.int64


def _flips_with_high_bit(h: int, threshold: int) -> list[int]:
    """Every flip pattern of 1..threshold bits whose highest set bit is ``h``."""
    out = []
    for extra in range(threshold):
        for low in combinations(range(h), extra):
            out.append((1 << h) | sum(1 << b for b in low))
    return out


def _expand(q: np.ndarray, lo: np.ndarray, hi: np.ndarray, batch: int, verify) -> None:
    """Call ``verify(qa, cb)`` on every (q[x], c) with lo[x] <= c < hi[x], ``batch`` pairs at a time."""
    counts = hi - lo
    nonzero = counts > 0
    if not nonzero.all():
        q, lo, counts = q[nonzero], lo[nonzero], counts[nonzero]
    if not len(q):
        return
    ends = np.cumsum(counts)
    start = 0
    while start < len(q):
        # The longest slice of queries whose candidates fit the batch (at least one query).
        base = ends[start - 1] if start else 0
        stop = max(start + 1, int(np.searchsorted(ends, base + batch, side="right")))
        qs, ls, cs = q[start:stop], lo[start:stop], counts[start:stop]
        total = int(ends[stop - 1] - base)
        if total <= batch or len(qs) > 1:
            first = np.cumsum(cs) - cs
            qa = np.repeat(qs, cs)
            cb = np.arange(total, dtype=np.int64) - np.repeat(first, cs) + np.repeat(ls, cs)
            verify(qa, cb)
        else:  # one query with more candidates than the batch: slice its range
            for s in range(0, total, batch):
                cb = np.arange(ls[0] + s, ls[0] + min(total, s + batch), dtype=np.int64)
                verify(np.full(len(cb), qs[0], dtype=np.int64), cb)
        start = stop

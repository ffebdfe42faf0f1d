"""All pairs of 64-bit hashes within Hamming radius r, exactly, by multi-index hashing.

Pigeonhole: split the 64 bits into r+1 disjoint blocks; two hashes within distance r agree
exactly on at least one block. So candidates are pairs that share a block value, found by
sorting each block column (no Python loop over hashes), then verified with a popcount. Every
pair within r is found (exact, not approximate); a pair found through several blocks is kept once.
"""

from __future__ import annotations

import numpy as np

from pipeline.images.hashing import popcount64


def _block_masks(radius: int) -> list[tuple[int, int]]:
    """(shift, mask) of r+1 near-equal contiguous bit blocks covering 64 bits."""
    n = radius + 1
    bounds = np.linspace(0, 64, n + 1).round().astype(int)
    return [(int(lo), (1 << int(hi - lo)) - 1) for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)]


def pairs_within(hashes: np.ndarray, radius: int, max_group: int = 50_000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (i, j, distance) arrays with i < j for every pair of ``hashes`` within ``radius``.

    ``hashes`` is int64 (bit patterns). Radius 0 finds exact hash equality. ``max_group`` bounds
    the candidate blow-up of a single block value; larger groups are processed in slices.
    """
    if radius < 0 or radius > 31:
        raise ValueError("radius must be between 0 and 31 for 64-bit hashes")
    n = len(hashes)
    if n < 2:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty, empty.astype(np.int8)
    u = hashes.view(np.uint64)
    found_i, found_j = [], []
    for shift, mask in _block_masks(radius):
        block = (u >> np.uint64(shift)) & np.uint64(mask)
        order = np.argsort(block, kind="stable")
        sorted_block = block[order]
        # Runs of equal block values: every pair inside a run is a candidate.
        starts = np.flatnonzero(np.r_[True, sorted_block[1:] != sorted_block[:-1]])
        lengths = np.diff(np.r_[starts, n])
        multi = lengths > 1
        for start, length in zip(starts[multi], lengths[multi], strict=True):
            members = order[start:start + length]
            for lo in range(0, length, max_group):
                # Pairs inside this slice, plus pairs against every earlier slice of the run.
                chunk = members[lo:lo + max_group]
                a, b = np.triu_indices(len(chunk), k=1)
                prev = members[:lo]
                ii = np.r_[np.repeat(prev, len(chunk)), chunk[a]]
                jj = np.r_[np.tile(chunk, len(prev)), chunk[b]]
                d = popcount64(u[ii] ^ u[jj])
                keep = d <= radius
                found_i.append(np.minimum(ii[keep], jj[keep]))
                found_j.append(np.maximum(ii[keep], jj[keep]))
    if not found_i:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty, empty.astype(np.int8)
    i = np.concatenate(found_i).astype(np.int64)
    j = np.concatenate(found_j).astype(np.int64)
    pair_key = np.unique(i * n + j)
    i, j = pair_key // n, pair_key % n
    return i, j, popcount64(u[i] ^ u[j])

"""Verification of near-duplicate candidates: do two thumbnails show the same photograph?

Why a second check after the pHash: 64 bits of low frequencies cannot tell two dermoscopic
images apart (a dark lesion centred in pink skin inside the dermatoscope's dark ring), so any
radius wide enough to catch crops also links different lesions; chained through union-find,
that put 1,398 HAM10000 images in one cluster. Two copies of one photograph, however
resized, re-encoded, recoloured or trimmed, agree in *fine* structure (skin texture, hairs,
pigment network) once aligned; two photographs of different lesions do not.

The check, per candidate pair (a, b) where b's window ``w`` matched a's whole image:

1. **Views.** Both thumbnails (:mod:`pipeline.images.views`) are resampled to 32x32: a whole,
   b through ``w`` (box filter; one pair of small matrices per window, applied to a whole batch
   as two matrix products). The hashed windows are 5% of a side apart (:mod:`views`), so a
   centred crop is aligned to within a pixel. Whole-image views are computed once per image
   (:func:`whole_views`, int8) and shared by all of its pairs.
2. **Fine structure.** Each view is high-passed (minus its Gaussian blur, sigma 0.8 px) and
   standardised, so brightness, contrast, colour and JPEG changes drop out and smooth shapes
   shared by unrelated images (vignetting, a centred blob) weigh little.
3. **Score.** Pearson correlation over the overlap, best over shifts of -1..1 px (-2..2 px for
   window pairs). ``corr`` accepts when it reaches ``policy.corr``.
4. **Occlusion.** A burnt-in caption or watermark destroys the correlation where it sits. With
   ``policy.occlusion`` on, the best alignment is also scored per cell of a 4x4 grid, and a pair
   is accepted (check ``cells``) when all cells but ``policy.cells_ignored`` correlate at
   ``policy.cell_corr`` or more - agreement almost everywhere, which different photographs
   never reach, while one text band spoils only a few cells. The dermoscopic policy switches
   this off: there, a different lesion is exactly a change in a few central cells.

Everything is vectorised over pairs in batches of :data:`BATCH`, so memory stays flat.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np

from pipeline.images.views import FULL, THUMB, Window

VIEW = 32                      # side of the compared views (pixels)
SIGMA = 0.8                    # high-pass: view minus its Gaussian blur of this sigma (view pixels)
SHIFTS = tuple((dy, dx) for dy in range(-2, 3) for dx in range(-2, 3))
INT8_SCALE = 25.0             # whole-image views are stored as int8: standardised value x this
GRID = 4                       # occlusion check: GRID x GRID cells
BATCH = 2048                   # pairs verified at once


@dataclass(frozen=True)
class Policy:
    """Acceptance thresholds of one image modality (params.yaml ``dedup.verify``)."""

    corr: float                # high-pass correlation that accepts a pair
    occlusion: bool            # try the per-cell check when the correlation falls short
    cell_corr: float = 0.7     # per-cell correlation a cell must reach ...
    cells_ignored: int = 4     # ... in all cells but this many (of GRID * GRID)
    corr_floor: float = 0.1    # and the whole-view correlation at least this (a bright caption swamps the rest)


@cache
def box_matrix(lo: float, hi: float, n_in: int = THUMB, n_out: int = VIEW) -> np.ndarray:
    """(n_out, n_in) weights that average the span [lo, hi) (fractions of the side) of an
    ``n_in``-pixel row into ``n_out`` bins (a box filter with fractional pixel coverage)."""
    a, b = lo * n_in, hi * n_in
    edges = a + (b - a) * np.arange(n_out + 1) / n_out
    left = np.maximum(edges[:-1, None], np.arange(n_in)[None, :])
    right = np.minimum(edges[1:, None], np.arange(n_in)[None, :] + 1)
    weights = np.clip(right - left, 0, None)
    return (weights / weights.sum(axis=1, keepdims=True)).astype(np.float32)


@cache
def _blur_matrix(n: int = VIEW, sigma: float = SIGMA) -> np.ndarray:
    """(n, n) Gaussian blur along one axis (edges repeat the border pixel, as scipy's "nearest")."""
    radius = int(4 * sigma + 0.5)
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps /= taps.sum()
    out = np.zeros((n, n))
    for i in range(n):
        for k, tap in zip(range(-radius, radius + 1), taps, strict=True):
            out[i, min(max(i + k, 0), n - 1)] += tap
    return out


@cache
def _window_operators(window: Window) -> tuple[np.ndarray, np.ndarray]:
    """(right, left) matrices of a window: the transposed view's rows are ``left`` applied to
    ``thumb @ right``. ``right`` (THUMB, 2*VIEW) resamples columns and blurs a copy; ``left``
    (THUMB, 2*VIEW) does the same for rows, so one pass gives view and blurred view at once."""
    x0, y0, x1, y1 = window.bounds()
    rx, ry = box_matrix(x0, x1), box_matrix(y0, y1)
    blur = _blur_matrix(VIEW, SIGMA)
    right = np.concatenate([rx.T, (blur @ rx).T], axis=1).astype(np.float32)
    left = np.concatenate([ry.T, (blur @ ry).T], axis=1).astype(np.float32)
    return right, left


def views(thumbs: np.ndarray, windows: list[Window], mirror: np.ndarray | None = None) -> np.ndarray:
    """High-passed, standardised VIEW x VIEW views of ``thumbs`` (n, THUMB, THUMB) through one
    window each (mirrored left-right where ``mirror``). Views come transposed (columns first):
    every comparison treats both sides alike, so only mirroring needs to know.

    Resampling and the high-pass are linear, so each window is four matrices and a batch of
    thumbnails takes two large matrix products (BLAS), not a filter per image."""
    n = len(thumbs)
    out = np.empty((n, VIEW, VIEW), dtype=np.float32)
    x = thumbs.astype(np.float32)
    if mirror is not None and mirror.any():
        x[mirror] = x[mirror][:, :, ::-1]
    for w, members in _groups(windows).items():
        right, left = _window_operators(w)
        xm = x[members] if len(members) < n else x
        z = (xm.reshape(-1, THUMB) @ right).reshape(len(members), THUMB, 2 * VIEW)
        zt = np.ascontiguousarray(z.transpose(0, 2, 1))                 # (m, 2*VIEW, THUMB)
        sharp = zt[:, :VIEW].reshape(-1, THUMB) @ left[:, :VIEW]
        blurred = zt[:, VIEW:].reshape(-1, THUMB) @ left[:, VIEW:]
        out[members] = (sharp - blurred).reshape(len(members), VIEW, VIEW)
    flat = out.reshape(n, -1)
    flat -= flat.mean(axis=1, keepdims=True)
    flat /= flat.std(axis=1, keepdims=True) + 1e-3
    return out


def _overlap(q: np.ndarray, t: np.ndarray, dy: int, dx: int) -> tuple[np.ndarray, np.ndarray]:
    """The parts of q and t that overlap when t is shifted by (dy, dx)."""
    n = q.shape[-1]
    qs = q[:, max(0, -dy):n - max(0, dy), max(0, -dx):n - max(0, dx)]
    ts = t[:, max(0, dy):n - max(0, -dy), max(0, dx):n - max(0, -dx)]
    return qs, ts


def _pearson(q: np.ndarray, t: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    q = q - q.mean(axis=axes, keepdims=True)
    t = t - t.mean(axis=axes, keepdims=True)
    num = (q * t).sum(axis=axes)
    den = np.sqrt((q * q).sum(axis=axes) * (t * t).sum(axis=axes)) + 1e-6
    return num / den


def _cells(q: np.ndarray, t: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """(n, GRID*GRID) correlations per cell of the overlap at shift (dy, dx)."""
    qs, ts = _overlap(q, t, dy, dx)
    n, h, w = qs.shape
    ch, cw = h // GRID, w // GRID
    qc = qs[:, :ch * GRID, :cw * GRID].reshape(n, GRID, ch, GRID, cw)
    tc = ts[:, :ch * GRID, :cw * GRID].reshape(n, GRID, ch, GRID, cw)
    return _pearson(qc, tc, (2, 4)).reshape(n, GRID * GRID)


def whole_views(thumbs: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """Every image's whole-image view, computed once, as int8 (standardised values x
    :data:`INT8_SCALE`): 1 KB an image, shared by all of its candidate pairs."""
    out = np.empty((len(thumbs), VIEW, VIEW), dtype=np.int8)
    for lo in range(0, len(thumbs), chunk):
        v = views(thumbs[lo:lo + chunk], [FULL] * len(thumbs[lo:lo + chunk]))
        out[lo:lo + chunk] = np.clip(np.rint(v * INT8_SCALE), -127, 127)
    return out


def _groups(windows: list[Window]) -> dict[Window, np.ndarray]:
    groups: dict[Window, list[int]] = {}
    for k, w in enumerate(windows):
        groups.setdefault(w, []).append(k)
    return {w: np.array(m, dtype=np.int64) for w, m in groups.items()}


def _pair_views(thumbs: np.ndarray, whole: np.ndarray, a: np.ndarray, b: np.ndarray, windows: list[Window],
                mirror: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The two views of each pair: a whole (mirrored where asked), b through its window."""
    q = whole[a].astype(np.float32) / INT8_SCALE
    if mirror.any():
        q[mirror] = views(thumbs[a[mirror]], [FULL] * int(mirror.sum()), np.ones(int(mirror.sum()), dtype=bool))
    t = whole[b].astype(np.float32) / INT8_SCALE
    for w, idx in _groups(windows).items():
        if w != FULL:
            t[idx] = views(thumbs[b[idx]], [w] * len(idx))
    return q, t


def _best_shift(q: np.ndarray, t: np.ndarray, wide: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Best shift of each pair by the mean product over the overlap (the views are standardised
    as wholes, so this approximates the overlap's correlation cheaply): shifts of -2..2 px where
    ``wide`` (window pairs: the window grid is coarse), else -1..1."""
    best = np.full(len(q), -2.0, dtype=np.float32)
    shift = np.zeros(len(q), dtype=np.int64)
    for si, (dy, dx) in enumerate(SHIFTS):
        rows = np.arange(len(q)) if max(abs(dy), abs(dx)) <= 1 else np.flatnonzero(wide)
        if not len(rows):
            continue
        qs, ts = _overlap(q[rows], t[rows], dy, dx)
        r = np.einsum("nij,nij->n", qs, ts) / (qs.shape[1] * qs.shape[2])
        better = r > best[rows]
        best[rows[better]], shift[rows[better]] = r[better], si
    return best, shift


def verify(thumbs: np.ndarray, whole: np.ndarray, a: np.ndarray, b: np.ndarray, windows: list[Window],
           mirror: np.ndarray, policies: list[Policy], policy_of: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Verify candidate pairs. ``thumbs`` (n_images, THUMB, THUMB) uint8 and ``whole`` their
    :func:`whole_views`; ``a``, ``b`` image rows; ``windows[k]`` b's window that matched a's
    whole image (mirrored where ``mirror``); ``policies[policy_of[k]]`` pair k's thresholds.
    Returns (accepted, check, score): check is "corr", "cells" or "", score the correlation."""
    n = len(a)
    accepted = np.zeros(n, dtype=bool)
    check = np.full(n, "", dtype=object)
    score = np.zeros(n, dtype=np.float32)
    corr_need = np.array([p.corr for p in policies], dtype=np.float32)[policy_of]
    occl = np.array([p.occlusion for p in policies], dtype=bool)[policy_of]
    cell_need = np.array([p.cell_corr for p in policies], dtype=np.float32)[policy_of]
    ignored = np.array([p.cells_ignored for p in policies], dtype=np.int64)[policy_of]
    floor = np.array([p.corr_floor for p in policies], dtype=np.float32)[policy_of]
    for lo in range(0, n, BATCH):
        rows = np.arange(lo, min(n, lo + BATCH))
        wins = windows[lo:lo + BATCH]
        q, t = _pair_views(thumbs, whole, a[rows], b[rows], wins, mirror[rows])
        approx, shift = _best_shift(q, t, np.array([w != FULL for w in wins], dtype=bool))
        score[rows] = approx
        # Only pairs that could pass are scored exactly (most candidates are far below).
        keep = np.flatnonzero(approx >= np.minimum(floor[rows], corr_need[rows]) - 0.1)
        if not len(keep):
            continue
        corr = np.zeros(len(keep), dtype=np.float32)
        cells = np.zeros((len(keep), GRID * GRID), dtype=np.float32)
        for si in np.unique(shift[keep]).tolist():
            m = shift[keep] == si
            dy, dx = SHIFTS[si]
            qs, ts = _overlap(q[keep[m]], t[keep[m]], dy, dx)
            corr[m] = _pearson(qs, ts, (1, 2))
            cells[m] = _cells(q[keep[m]], t[keep[m]], dy, dx)
        r = rows[keep]
        score[r] = corr
        by_corr = corr >= corr_need[r]
        kth = np.sort(cells, axis=1)[np.arange(len(r)), np.minimum(ignored[r], GRID * GRID - 1)]
        by_cells = ~by_corr & occl[r] & (corr >= floor[r]) & (kth >= cell_need[r])
        accepted[r] = by_corr | by_cells
        check[r] = np.where(by_corr, "corr", np.where(by_cells, "cells", ""))
    return accepted, check, score

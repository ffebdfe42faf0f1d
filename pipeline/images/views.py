"""What hashing keeps of each image for near-duplicate search: window pHashes and a thumbnail.

Why: one pHash of the whole image finds re-encoded, resized and recoloured copies, but a copy
cropped by 10-20% sits 10-20 bits away from its original, and at the radius that would catch it
unrelated dermoscopic images (a dark lesion in the middle of pink skin) are just as close. So
hashing keeps, from the same reduced grey pixels it already decoded (nothing is decoded twice):

* **window hashes**: pHashes of sub-windows of the image (:data:`WINDOWS`): centred windows of
  95, 90, 85 and 80% of each side, and the four halves (top, bottom, left, right). A crop of an
  image is, pixel for pixel, one of its windows, so the crop's whole-image pHash lies close to
  the original's window pHash. A burnt-in caption, logo or watermark near one border moves the
  whole-image pHash by up to ~16 bits but leaves the opposite half untouched, so two images
  whose same half (:data:`SAME_VIEW`) agrees are candidates too, compared whole. These make
  *candidates*.
* **a thumbnail**: :data:`THUMB` x :data:`THUMB` grey pixels of the whole image (squashed to a
  square, so an aspect change is no change), from which the verification
  (:mod:`pipeline.images.verify`) resamples any window and compares fine structure. This makes
  candidates *verified* duplicates.

2.3 KB a thumbnail: 0.9 GB for Derm1M's 403,563 images.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

THUMB = 48     # thumbnail side (pixels); verification compares 32-px views resampled from it


@dataclass(frozen=True)
class Window:
    """A sub-window of an image in relative units: ``scale`` of the width (and of the height,
    unless ``height`` says otherwise), placed by ``ox, oy`` in [-1, 1] (-1: flush left/top, 0:
    centred, 1: flush right/bottom)."""

    name: str
    scale: float
    ox: float = 0.0
    oy: float = 0.0
    height: float | None = None

    def bounds(self) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1) as fractions of the image's width and height."""
        sy = self.scale if self.height is None else self.height
        x0 = (1 - self.scale) / 2 * (1 + self.ox)
        y0 = (1 - sy) / 2 * (1 + self.oy)
        return x0, y0, x0 + self.scale, y0 + sy


FULL = Window("full", 1.0)
# The windows hashed besides the whole image: centred, 5% of a side apart, for trimmed borders
# (the usual crop when an image is reposted), then the four halves (a copy cut in half, and the
# untouched half of a copy with a caption or watermark near the opposite border).
CENTRED: tuple[Window, ...] = (Window("c95", 0.95), Window("c90", 0.90), Window("c85", 0.85), Window("c80", 0.80))
HALVES: tuple[Window, ...] = (Window("top", 1.0, 0.0, -1.0, 0.5), Window("bottom", 1.0, 0.0, 1.0, 0.5),
                              Window("left", 0.5, -1.0, 0.0, 1.0), Window("right", 0.5, 1.0, 0.0, 1.0))
WINDOWS: tuple[Window, ...] = CENTRED + HALVES
# Positions in WINDOWS whose hashes are also compared with the same window of the other image.
SAME_VIEW: tuple[int, ...] = tuple(range(len(CENTRED), len(WINDOWS)))


def match_views() -> list[tuple[str, Window]]:
    """How a candidate was found, by its index: (name, the window of ``b`` that verification
    aligns with ``a``'s whole image). 0: whole against whole; 1..len(WINDOWS): ``a``'s whole
    image against ``b``'s window (a crop); then one per :data:`SAME_VIEW` window, named
    ``full/<window>``: the same window of both agreed, and the whole images are compared."""
    return ([(FULL.name, FULL)] + [(w.name, w) for w in WINDOWS]
            + [(f"full/{WINDOWS[k].name}", FULL) for k in SAME_VIEW])


def window_pixels(grey: np.ndarray, window: Window) -> np.ndarray:
    """The window's pixels of a grey image (whole pixels; at least 8 per side)."""
    h, w = grey.shape
    x0, y0, x1, y1 = window.bounds()
    c0, c1 = round(x0 * w), max(round(x0 * w) + 8, round(x1 * w))
    r0, r1 = round(y0 * h), max(round(y0 * h) + 8, round(y1 * h))
    return grey[r0:min(r1, h), c0:min(c1, w)]


def thumbnail(grey: np.ndarray) -> bytes:
    """The :data:`THUMB`-px square grey thumbnail (box filter), as raw bytes."""
    img = Image.fromarray(np.ascontiguousarray(grey, dtype=np.uint8))
    return img.resize((THUMB, THUMB), Image.Resampling.BOX).tobytes()


def window_crops(greys: Sequence[np.ndarray]) -> list[np.ndarray]:
    """For each grey image, its :data:`WINDOWS` crops in order (image-major)."""
    return [window_pixels(g, w) for g in greys for w in WINDOWS]


def thumbs_array(thumbs: Sequence[bytes]) -> np.ndarray:
    """Thumbnail bytes -> (n, THUMB, THUMB) uint8 array (empty bytes -> a flat grey image)."""
    out = np.full((len(thumbs), THUMB, THUMB), 128, dtype=np.uint8)
    for k, t in enumerate(thumbs):
        if len(t) == THUMB * THUMB:
            out[k] = np.frombuffer(t, dtype=np.uint8).reshape(THUMB, THUMB)
    return out

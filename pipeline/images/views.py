"""What hashing keeps of each image for near-duplicate search: window pHashes and a thumbnail.

Why: one pHash of the whole image finds re-encoded, resized and recoloured copies, but a copy
cropped by 10-20% sits 10-20 bits away from its original, and at the radius that would catch it
unrelated dermoscopic images (a dark lesion in the middle of pink skin) are just as close. So
hashing keeps, from the same reduced grey pixels it already decoded (nothing is decoded twice):

* **window hashes**: pHashes of sub-windows of the image (:data:`WINDOWS`: centred windows of
  95, 90, 85 and 80% of each side). A crop of an image is, pixel
  for pixel, one of its windows, so the crop's whole-image pHash lies close to the original's
  window pHash. These make *candidates*.
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
    """A sub-window of an image in relative units: ``scale`` of each side, placed by ``ox, oy``
    in [-1, 1] (-1: flush left/top, 0: centred, 1: flush right/bottom)."""

    name: str
    scale: float
    ox: float = 0.0
    oy: float = 0.0

    def bounds(self) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1) as fractions of the image's width and height."""
        x0 = (1 - self.scale) / 2 * (1 + self.ox)
        y0 = (1 - self.scale) / 2 * (1 + self.oy)
        return x0, y0, x0 + self.scale, y0 + self.scale


FULL = Window("full", 1.0)
# The windows hashed besides the whole image: centred, 5% of a side apart, for trimmed borders
# (the usual crop when an image is reposted).
WINDOWS: tuple[Window, ...] = (Window("c95", 0.95), Window("c90", 0.90), Window("c85", 0.85), Window("c80", 0.80))


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

"""Perceptual hashing: the 64-bit pHash of an image as displayed (EXIF orientation applied).

Two paths produce the same kind of hash (8x8 low frequencies of a 32x32 grey DCT, one bit per
coefficient above the median, bits in row-major order, first bit most significant):

* ``imagehash`` - the reference: full decode, RGB, ``imagehash.phash`` (Lanczos to 32x32,
  scipy DCT). Kept for tests and for anyone who needs hashes comparable with other tools.
* ``fast`` - what the pipeline uses: JPEGs are decoded at reduced scale (libjpeg DCT scaling via
  Pillow ``draft()``, luma only; other formats shrink by the same integer factor after
  decoding) to no less than twice the 32 px grid, and "Lanczos to 32x32, then the DCT" runs as
  two small matrix products per image size for a whole batch. The full-size decode, RGB
  conversion and per-image Lanczos + scipy call are what make the reference slow; decoding at
  1/2-1/8 scale averages the same pixels the Lanczos filter would, so hashes stay within a few
  bits of the reference (``bench/hash_speed.py`` prints the speed and the distribution).

The two paths differ by a bit or two on some images, so hashes of different paths must never be
compared: every table records its ``hash_method`` and the stages refuse to mix them.

A hash is stored as a signed 64-bit int (the bit pattern of the unsigned hash) so numpy can XOR
and popcount whole arrays at once, and as 16 hex digits for people.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import imagehash
import numpy as np
from PIL import Image, ImageOps

try:   # libjpeg-turbo without Pillow's per-file overhead; Pillow does the same decode otherwise
    import simplejpeg as _simplejpeg
except ImportError:  # pragma: no cover - a core dependency, but hashing must not need it
    _simplejpeg = None

from pipeline.images.decode import ImageProblem, load_rgb, validate_image_bytes
from pipeline.images.views import WINDOWS, thumbnail, window_crops

# hash path name (params.yaml dedup.hash_method) -> what the tables record as hash_method
HASH_METHODS: dict[str, str] = {
    "fast": "derm1m.phash-draft64-v1",
    "imagehash": "imagehash.phash-64",
}
DEFAULT_METHOD = "fast"

GRID = 32                  # pHash: 32x32 grey image ...
LOW = 8                    # ... whose 8x8 lowest DCT frequencies give the 64 bits
DRAFT_SIDE = 2 * GRID      # reduced JPEG decode keeps at least this many pixels per side
CHUNK = 64                 # images per batched DCT (and per task sent to a worker process)

# Unnormalised DCT-II rows 0..7 for 32 samples: the same basis as scipy.fftpack.dct (type 2);
# a common scale factor cannot change which coefficients lie above the median.
_DCT = np.cos(np.pi * (2 * np.arange(GRID)[None, :] + 1) * np.arange(LOW)[:, None] / (2 * GRID))
_BIT_WEIGHTS = (np.uint64(1) << np.arange(LOW * LOW - 1, -1, -1, dtype=np.uint64))
# A horizontal mirror multiplies DCT column frequency v by (-1)^v: the flipped image's hash
# comes from the same coefficients, with no second decode.
_MIRROR_SIGNS = np.where(np.arange(LOW) % 2 == 0, 1.0, -1.0)[None, None, :]
# EXIF orientation -> the transpose that shows the image upright (as ImageOps.exif_transpose).
_ORIENT = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
           5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
           8: Image.Transpose.ROTATE_90}


@dataclass(frozen=True)
class HashedImage:
    """A hashed file: its pHash (unsigned), displayed full-resolution size, and SHA-256."""

    phash: int
    width: int
    height: int
    sha256: str                 # "" unless asked for
    mirror: int | None = None   # pHash of the horizontally mirrored image, when asked for
    windows: tuple[int, ...] = ()   # pHashes of views.WINDOWS, when asked for (views=True)
    thumb: bytes = b""              # views.THUMB-px grey thumbnail, when asked for (views=True)


def check_method(method: str) -> str:
    """The recorded ``hash_method`` label of a path name; unknown names are a ValueError."""
    if method not in HASH_METHODS:
        raise ValueError(f"unknown hash method {method!r}; one of {sorted(HASH_METHODS)}")
    return HASH_METHODS[method]


def single_method(methods: Sequence[str], table: str) -> str | None:
    """The one hash method of a table's rows; several is an error (hash paths never mix)."""
    distinct = sorted(set(methods))
    if len(distinct) > 1:
        raise ValueError(f"{table} mixes hash methods {distinct}; re-run dedup with one dedup.hash_method")
    return distinct[0] if distinct else None


def lowfreq(grey: np.ndarray) -> np.ndarray:
    """(B, 32, 32) grey pixels -> (B, 8, 8) low-frequency DCT coefficients, one batch at once."""
    x = np.asarray(grey, dtype=np.float64)
    return _DCT @ x @ _DCT.T


def bits_from_lowfreq(coeffs: np.ndarray) -> np.ndarray:
    """(B, 8, 8) coefficients -> (B,) uint64 hashes: bit = coefficient above the image's median."""
    flat = coeffs.reshape(len(coeffs), LOW * LOW)
    above = flat > np.median(flat, axis=1, keepdims=True)
    return (above.astype(np.uint64) * _BIT_WEIGHTS).sum(axis=1, dtype=np.uint64)


def mirrored_lowfreq(coeffs: np.ndarray) -> np.ndarray:
    """Coefficients of the horizontally mirrored images (for flip-aware matching)."""
    return coeffs * _MIRROR_SIGNS


def phash_pixels(grey: np.ndarray) -> np.ndarray:
    """pHash of each (32, 32) grey image in a batch, as uint64."""
    return bits_from_lowfreq(lowfreq(grey))


def _grey(img: Image.Image) -> Image.Image:
    """Grey as the reference sees it: transparency over white, other modes through RGB."""
    if img.mode == "L":
        return img
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background.convert("L")
    if img.mode == "RGB":
        return img.convert("L")
    return img.convert("RGB").convert("L")


def _reduction(width: int, height: int) -> int:
    """Integer shrink factor keeping >= DRAFT_SIDE px per side (JPEG's rule: 8, 4, 2 or 1)."""
    scale = min(width // DRAFT_SIDE, height // DRAFT_SIDE)
    return next((s for s in (8, 4, 2) if scale >= s), 1)


def _exif_orientation(data: bytes) -> int:
    """The EXIF orientation tag of JPEG bytes (1 when absent or unreadable), without Pillow.

    Walks the markers before the scan to the APP1 Exif segment and reads tag 0x0112 of IFD0.
    """
    try:
        pos = 2
        while pos + 4 <= len(data) and data[pos] == 0xFF:
            marker, length = data[pos + 1], int.from_bytes(data[pos + 2:pos + 4], "big")
            if marker == 0xDA:   # start of scan: no more metadata
                return 1
            seg = data[pos + 4:pos + 2 + length]
            if marker == 0xE1 and seg[:6] == b"Exif\x00\x00":
                tiff = seg[6:]
                order = "little" if tiff[:2] == b"II" else "big"
                ifd = int.from_bytes(tiff[4:8], order)
                for k in range(int.from_bytes(tiff[ifd:ifd + 2], order)):
                    entry = tiff[ifd + 2 + 12 * k: ifd + 14 + 12 * k]
                    if int.from_bytes(entry[:2], order) == 0x0112:
                        value = int.from_bytes(entry[8:10], order)
                        return value if 1 <= value <= 8 else 1
                return 1
            pos += 2 + length
    except (IndexError, ValueError):
        pass
    return 1


def _jpeg_grey(data: bytes) -> tuple[np.ndarray, int, int] | None:
    """:func:`_fast_grey` for plain JPEGs through simplejpeg (libjpeg-turbo without Pillow's
    per-file Python work); None when it does not apply. Pixels are identical to Pillow's
    ``draft("L")`` decode (same libjpeg-turbo scaled IDCT; checked in the tests), so the hash
    does not depend on which decoder ran."""
    if _simplejpeg is None or data[:2] != b"\xff\xd8":
        return None
    try:
        height, width, colorspace, _ = _simplejpeg.decode_jpeg_header(data)
        if colorspace not in ("Gray", "YCbCr") or width * height > (Image.MAX_IMAGE_PIXELS or 2**62):
            return None   # CMYK/YCCK and decompression-bomb checks: Pillow's path
        factor = _reduction(width, height)
        size = (-(-height // factor), -(-width // factor))
        grey = _simplejpeg.decode_jpeg(data, colorspace="GRAY", min_height=size[0], min_width=size[1],
                                       min_factor=factor)[..., 0]
    except ValueError:
        return None       # anything unusual: Pillow decides (and names the problem)
    if grey.shape != size:
        return None
    orientation = _exif_orientation(data)
    if orientation in _ORIENT:
        grey = np.asarray(Image.fromarray(grey).transpose(_ORIENT[orientation]))
        if orientation >= 5:
            width, height = height, width
    return grey, width, height


def _fast_grey(data: bytes) -> tuple[np.ndarray, int, int]:
    """The reduced grey pixels of an image's bytes (upright), and its displayed full size.

    JPEGs decode at 1/2-1/8 scale (libjpeg DCT scaling, luma only); other formats decode in
    full and shrink by the same integer factor (box average), so a JPEG and a PNG of one picture
    reach the same reduced size.
    """
    fast = _jpeg_grey(data)
    if fast is not None:
        return fast
    with Image.open(io.BytesIO(data)) as img:
        width, height = img.size
        # A JPEG without an Exif segment has no orientation tag: skip building the Exif object.
        has_exif = img.format != "JPEG" or "exif" in img.info
        orientation = int(img.getexif().get(0x0112, 1) or 1) if has_exif else 1
        factor = _reduction(width, height)
        img.draft("L", (width // factor, height // factor))   # JPEG only; others ignore it
        img.load()
        small = _grey(img)
        if small.width > -(-width // factor):   # not a JPEG: reduce after the full decode
            small = small.reduce(factor)
        if orientation in _ORIENT:
            small = small.transpose(_ORIENT[orientation])
            if orientation >= 5:
                width, height = height, width
        return np.asarray(small), width, height


@cache
def _projection(size: int) -> np.ndarray:
    """(8, size) matrix = DCT rows 0..7 times Pillow's Lanczos weights from ``size`` to 32 px.

    Resizing is linear, so "Lanczos to 32x32, then the 8x8 DCT" is ``P_h @ X @ P_w.T`` with one
    small matrix per input size: no 32x32 image is ever made, and images of one size (a whole
    dataset, often) go through two batched matrix products. The weights follow Pillow's
    resampling (support 3 x scale, centres at (i + 0.5) x scale, normalised per output pixel);
    only the uint8 rounding of a resized image is skipped.
    """
    scale = size / GRID
    support = 3.0 * max(scale, 1.0)
    weights = np.zeros((GRID, size))
    for i in range(GRID):
        centre = (i + 0.5) * scale
        lo = max(int(centre - support + 0.5), 0)
        hi = min(int(centre + support + 0.5), size)
        x = (np.arange(lo, hi) - centre + 0.5) / max(scale, 1.0)
        w = np.where(np.abs(x) < 3.0, np.sinc(x) * np.sinc(x / 3.0), 0.0)
        weights[i, lo:hi] = w / w.sum()
    return _DCT @ weights


def lowfreq_of_images(greys: Sequence[np.ndarray]) -> np.ndarray:
    """(B, 8, 8) low frequencies of grey images of any sizes (same-size images batched)."""
    out = np.empty((len(greys), LOW, LOW))
    by_shape: dict[tuple[int, int], list[int]] = {}
    for k, g in enumerate(greys):
        by_shape.setdefault(g.shape, []).append(k)
    for (h, w), members in by_shape.items():
        ph, pw = _projection(h), _projection(w).T
        for lo in range(0, len(members), CHUNK):   # small batches stay in cache
            part = members[lo:lo + CHUNK]
            batch = np.stack([greys[k] for k in part]).astype(np.float64)   # uint8 until here
            out[part] = ph @ batch @ pw
    return out


def _reference_hash(data: bytes, mirror: bool = False,
                    views: bool = False) -> tuple[int, int, int, int | None, tuple[int, ...], bytes]:
    """imagehash.phash of the upright RGB image (the reference path), its displayed size, (if
    asked) the phash of its mirror image, and (if asked) its window pHashes and thumbnail."""
    rgb = load_rgb(io.BytesIO(data))
    mirrored = int(str(imagehash.phash(ImageOps.mirror(rgb))), 16) if mirror else None
    windows: tuple[int, ...] = ()
    thumb = b""
    if views:
        grey = np.asarray(rgb.convert("L").reduce(_reduction(rgb.width, rgb.height)))
        thumb = thumbnail(grey)
        boxes = []
        for w in WINDOWS:
            x0, y0, x1, y1 = w.bounds()
            boxes.append((round(x0 * rgb.width), round(y0 * rgb.height), round(x1 * rgb.width), round(y1 * rgb.height)))
        windows = tuple(int(str(imagehash.phash(rgb.crop(b))), 16) for b in boxes)
    return int(str(imagehash.phash(rgb)), 16), rgb.width, rgb.height, mirrored, windows, thumb


def _problem(path: str, data: bytes | None, exc: BaseException | None) -> ImageProblem:
    """Why a file could not be hashed, as a reject reason code (never raises)."""
    if data is None:
        if isinstance(exc, FileNotFoundError):
            return ImageProblem("image_missing", f"no file at {path}")
        return ImageProblem("image_unreadable", f"cannot read {path}: {exc}")
    if not data:
        return ImageProblem("image_empty", f"{path} has 0 bytes")
    checked = validate_image_bytes(data, Image.MAX_IMAGE_PIXELS or 2**62)
    if isinstance(checked, ImageProblem):
        return checked
    return ImageProblem("hash_failed", f"{path}: {exc.__class__.__name__}: {exc}")


def hash_files(paths: Sequence[str], method: str = DEFAULT_METHOD, mirror: bool = False,
               sha256: bool = False, views: bool = False) -> list[HashedImage | ImageProblem]:
    """Hash every file (one batch); a file that cannot be hashed gets its reject reason instead.

    ``mirror`` also returns each image's mirror-image hash (free on the fast path: the same DCT
    coefficients with odd columns negated), for flip-aware matching. ``sha256`` also digests
    the bytes (the dedup stage has them from ingest already; find-duplicates needs them).
    ``views`` also returns the window pHashes and the thumbnail (:mod:`pipeline.images.views`)
    that near-duplicate candidates and verification need, from the pixels already decoded.
    """
    check_method(method)
    out: list[HashedImage | ImageProblem | None] = [None] * len(paths)
    greys: list[np.ndarray] = []
    pending: list[tuple[int, int, int, str]] = []
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        for k, path in enumerate(paths):
            data = None
            try:
                data = Path(path).read_bytes()
                digest = hashlib.sha256(data).hexdigest() if sha256 else ""
                if method == "fast":
                    grey, width, height = _fast_grey(data)
                    greys.append(grey)
                    pending.append((k, width, height, digest))
                else:
                    value, width, height, mirrored, windows, thumb = _reference_hash(data, mirror, views)
                    out[k] = HashedImage(value, width, height, digest, mirrored, windows, thumb)
            except (OSError, ValueError, SyntaxError, Image.DecompressionBombError,
                    Image.DecompressionBombWarning) as exc:
                out[k] = _problem(str(path), data, exc)
    if greys:
        coeffs = lowfreq_of_images(greys)
        values = bits_from_lowfreq(coeffs).tolist()
        mirrors = bits_from_lowfreq(mirrored_lowfreq(coeffs)).tolist() if mirror else [None] * len(values)
        nw = len(WINDOWS)
        wins = bits_from_lowfreq(lowfreq_of_images(window_crops(greys))).tolist() if views else []
        for n, ((k, width, height, digest), value, mirrored) in enumerate(zip(pending, values, mirrors, strict=True)):
            out[k] = HashedImage(int(value), width, height, digest, None if mirrored is None else int(mirrored),
                                 tuple(int(x) for x in wins[n * nw:(n + 1) * nw]),
                                 thumbnail(greys[n]) if views else b"")
    return out  # type: ignore[return-value]


def _hash_task(task: tuple[list[str], str, bool, bool, bool]) -> list[HashedImage | ImageProblem]:
    """One worker task: a chunk of paths and the options (a top-level function for pickling)."""
    return hash_files(*task)


def hash_paths(paths: Sequence[str], method: str = DEFAULT_METHOD, workers: int | None = 1,
               desc: str = "phash", mirror: bool = False, sha256: bool = False,
               views: bool = False) -> list[HashedImage | ImageProblem]:
    """Hash many files in chunks of :data:`CHUNK`, over ``workers`` processes, in input order."""
    from pipeline.executor import map_ordered

    check_method(method)
    tasks = [(list(paths[i:i + CHUNK]), method, mirror, sha256, views) for i in range(0, len(paths), CHUNK)]
    results = map_ordered(_hash_task, tasks, workers, desc, f"x{CHUNK} img", chunksize=1)
    return [r for chunk in results for r in chunk]


def to_signed(values: list[int] | np.ndarray) -> np.ndarray:
    """Unsigned 64-bit hashes -> int64 array with the same bits."""
    return np.array(values, dtype=np.uint64).view(np.int64)


def to_hex(value: int) -> str:
    return f"{value & 0xFFFFFFFFFFFFFFFF:016x}"


def popcount64(x: np.ndarray) -> np.ndarray:
    """Number of set bits of each uint64 (vectorised; numpy >= 2 has bitwise_count)."""
    return np.bitwise_count(x.view(np.uint64)).astype(np.int8)

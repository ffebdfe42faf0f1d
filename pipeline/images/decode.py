"""Decode-validate one image file: it opens, decodes fully, fits the limits; else a reason code.

Why decode fully: a truncated JPEG opens fine and fails only when its pixels are read, so a
header check would let partial downloads into the shards. The size recorded is the displayed
size (after the EXIF orientation tag), which is what a viewer and the shard writer see.

Hostile files: a decompression bomb is refused from its header, before any pixel is decoded
(Pillow's bomb check, made an error at ``max_pixels``); an image far wider than tall (a
10000x20 banner) is refused as ``image_aspect_extreme``, because CLIP preprocessing resizes
the shorter side to 224 px and would blow the longer one up to a hundred thousand. Everything
else that decodes (CMYK, 16-bit, palette with transparency, animations) is accepted and
normalised by :func:`load_rgb` to upright 8-bit RGB (an animation's first frame).
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from pipeline.safeio import DEFAULT_MAX_IMAGE_BYTES, FileProblem, read_regular

# EXIF orientations 5-8 swap width and height when applied.
_SWAPS_AXES = {5, 6, 7, 8}
#: longer side / shorter side above which an image is refused (``ingest.max_aspect_ratio``).
DEFAULT_MAX_ASPECT_RATIO = 20.0
# Leading bytes of the formats ingest accepts: a file that starts like one but does not open has a
# broken header (image_header_invalid), not "not an image".
_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"II*\x00", b"MM\x00*", b"BM")
_FILE_REASONS = {"missing": "image_missing", "directory": "image_unreadable", "unreadable": "image_unreadable",
                 "loop": "path_invalid", "file_not_regular": "file_not_regular", "file_too_large": "file_too_large"}


@dataclass(frozen=True)
class ImageInfo:
    sha256: str
    bytes: int
    format: str
    mode: str
    width: int
    height: int
    exif_orientation: int


@dataclass(frozen=True)
class ImageProblem:
    reason: str
    detail: str


def validate_image(path: str | Path, max_pixels: int, min_side: int = 1,
                   max_aspect_ratio: float = DEFAULT_MAX_ASPECT_RATIO,
                   max_bytes: int = DEFAULT_MAX_IMAGE_BYTES) -> ImageInfo | ImageProblem:
    """Return facts about a decodable image, or the reject reason for a bad one (never raises).

    The file is read through :func:`pipeline.safeio.read_regular`: a FIFO or device named
    ``.jpg`` is ``file_not_regular`` (never opened for reading, so never a hang), a file over
    ``max_bytes`` (``ingest.max_image_bytes``) is ``file_too_large`` (never read into memory).
    """
    path = Path(path)
    try:
        data = read_regular(path, max_bytes)
    except FileProblem as exc:
        return ImageProblem(_FILE_REASONS.get(exc.reason, "image_unreadable"), exc.detail)
    if not data:
        return ImageProblem("image_empty", f"{path} has 0 bytes")
    return validate_image_bytes(data, max_pixels, min_side, max_aspect_ratio)


def exif_orientation(img: Image.Image) -> int:
    """The EXIF orientation (1-8); a tag that is text, out of range or unreadable counts as 1.

    Why: phones and editors write odd tags ("Horizontal (normal)", 0, 65535); the photo is
    still good, so the tag is ignored rather than the image rejected."""
    try:
        value = img.getexif().get(0x0112, 1)
    except Exception:  # noqa: BLE001  (a corrupt EXIF block: Pillow raises many kinds)
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def validate_image_bytes(data: bytes, max_pixels: int, min_side: int = 1,
                         max_aspect_ratio: float = DEFAULT_MAX_ASPECT_RATIO) -> ImageInfo | ImageProblem:
    """Validate image bytes (see :func:`validate_image`)."""
    previous = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                fmt = (img.format or "").upper()
                orientation = exif_orientation(img)
                img.load()
                width, height = img.size
                mode = img.mode
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        return ImageProblem("image_too_large", str(exc).split(".")[0])
    except UnidentifiedImageError:
        head = data[:16].decode("ascii", "replace").strip()
        if data.startswith(_SIGNATURES) or (data[:4] == b"RIFF" and data[8:12] == b"WEBP"):
            return ImageProblem("image_header_invalid", f"starts like an image ({data[:4].hex(' ')}) but its header "
                                "is invalid (e.g. a width or height of 0)")
        return ImageProblem("image_not_an_image", f"not a recognised image format (starts with {head!r})")
    except (OSError, SyntaxError, ValueError) as exc:
        msg = str(exc)
        if "truncated" in msg.lower() or "broken data stream" in msg.lower():
            return ImageProblem("image_truncated", msg)
        return ImageProblem("image_unreadable", msg or exc.__class__.__name__)
    finally:
        Image.MAX_IMAGE_PIXELS = previous
    if orientation in _SWAPS_AXES:
        width, height = height, width
    if min(width, height) < 1:
        return ImageProblem("image_header_invalid", f"the header says {width}x{height} pixels")
    if min(width, height) < min_side:
        return ImageProblem("image_too_small", f"{width}x{height} is below the minimum side of {min_side}px")
    if max_aspect_ratio and max(width, height) > max_aspect_ratio * min(width, height):
        return ImageProblem("image_aspect_extreme", f"{width}x{height}: sides differ by more than "
                            f"{max_aspect_ratio:g}x (ingest.max_aspect_ratio)")
    return ImageInfo(hashlib.sha256(data).hexdigest(), len(data), fmt, mode, width, height, orientation)


def to_8bit(img: Image.Image) -> Image.Image:
    """16-bit and 32-bit grey images as 8-bit ``L``, scaled, not clipped.

    Pillow's ``convert("RGB")`` clips an ``I;16`` pixel of 40000 to 255, so a 16-bit scan would
    come out almost white; dividing by 257 maps 0..65535 onto 0..255 as a viewer shows it.
    """
    if img.mode.startswith("I;16") or img.mode == "I":
        arr = np.asarray(img, dtype=np.float64)
        scale = 257.0 if img.mode.startswith("I;16") or arr.max(initial=0) > 255 else 1.0
        return Image.fromarray(np.clip(np.rint(arr / scale), 0, 255).astype(np.uint8), "L")
    if img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        hi = 1.0 if arr.max(initial=0) <= 1.0 else 255.0
        return Image.fromarray(np.clip(np.rint(arr * 255.0 / hi), 0, 255).astype(np.uint8), "L")
    return img


def load_rgb(path: str | Path | IO[bytes]) -> Image.Image:
    """Open an already validated image (a path or a binary file) upright (EXIF applied) in 8-bit RGB.

    Animated files give their first frame (the frame Pillow opens on), CMYK is converted,
    palette transparency and alpha are flattened onto white.
    """
    with Image.open(path) as img:
        img = to_8bit(ImageOps.exif_transpose(img))
        if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
            rgba = img.convert("RGBA")
            background = Image.new("RGB", rgba.size, (255, 255, 255))
            background.paste(rgba, mask=rgba.getchannel("A"))
            return background
        return img.convert("RGB")

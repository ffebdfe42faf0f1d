"""Image bytes for the hostile corpus, made by code at test time (no stored binaries).

Each function returns the bytes of one file. Valid images are small (64 px) and use flat,
known colours so a test can check what comes out of the shard stage: the middle of the top half
is :data:`TOP`, of the bottom half :data:`BOTTOM`, so orientation survives any conversion. The
left and right quarters hold random 8 px blocks, different for every image made, so dedup does
not merge the cases into one cluster (a shard carries a cluster's canonical image).
"""

from __future__ import annotations

import io
import itertools
import struct
import zlib

import numpy as np
from PIL import Image

TOP = (200, 40, 40)       # reddish: the top half of every "accepted" test image as displayed
BOTTOM = (40, 40, 200)    # bluish: the bottom half


_SEEDS = itertools.count(1)


def pattern(width: int = 64, height: int = 64, top=TOP, bottom=BOTTOM) -> np.ndarray:
    """HxWx3 uint8: ``top`` over ``bottom`` in the middle half, random 8 px blocks at the sides."""
    rng = np.random.default_rng(next(_SEEDS))
    arr = np.empty((height, width, 3), np.uint8)
    arr[: height // 2] = top
    arr[height // 2:] = bottom
    side = width // 4
    blocks = rng.integers(0, 256, (-(-height // 8), -(-side // 8), 3), dtype=np.uint8)
    tile = np.repeat(np.repeat(blocks, 8, axis=0), 8, axis=1)[:height, :side]
    arr[:, :side] = tile
    arr[:, width - side:] = tile[:, ::-1] // 2
    return arr


def two_tone(width: int = 64, height: int = 64) -> Image.Image:
    """An RGB image: TOP above BOTTOM in the middle, unique random sides (orientation is checkable)."""
    return Image.fromarray(pattern(width, height), "RGB")


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def jpeg(width: int = 64, height: int = 64) -> bytes:
    return encode(two_tone(width, height), "JPEG", quality=95, subsampling=0)


def noisy_png(width: int = 64, height: int = 64) -> bytes:
    """A PNG with incompressible content (so cutting it in half really truncates pixel data)."""
    rng = np.random.default_rng(7)
    return encode(Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8), "RGB"), "PNG")


def truncated(data: bytes) -> bytes:
    """The first half of a file: a partial download."""
    return data[: len(data) // 2]


def cmyk_jpeg() -> bytes:
    return encode(two_tone().convert("CMYK"), "JPEG", quality=95, subsampling=0)


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)


def raw_png(width: int, height: int, bit_depth: int, colour_type: int, rows: list[bytes]) -> bytes:
    """A PNG written by hand (Pillow cannot write 16-bit RGB): filter byte 0 before each row."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    idat = zlib.compress(b"".join(b"\x00" + r for r in rows), 9)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def grey16(width: int = 64, height: int = 64) -> np.ndarray:
    """16-bit grey: 200 * 257 above 40 * 257 in the middle (clipping to 8 bits would make both 255)."""
    return pattern(width, height, (200,) * 3, (40,) * 3)[..., 0].astype(np.uint16) * 257


def png16_gray(width: int = 64, height: int = 64) -> bytes:
    return raw_png(width, height, 16, 0, [row.astype(">u2").tobytes() for row in grey16(width, height)])


def png16_rgb(width: int = 64, height: int = 64) -> bytes:
    """16-bit RGB with the TOP/BOTTOM pattern scaled to 16 bits."""
    arr = pattern(width, height).astype(np.uint16) * 257
    return raw_png(width, height, 16, 2, [row.astype(">u2").tobytes() for row in arr])


def tiff16_gray() -> bytes:
    return encode(Image.fromarray(grey16()), "TIFF")


def bomb_png(width: int, height: int) -> bytes:
    """A PNG header claiming ``width`` x ``height`` 8-bit grey pixels over a few bytes of data.

    The pixel-limit check must refuse it from the header: decoding it would allocate
    width x height bytes."""
    rows = [b"\x00" * 8]  # far less data than the header claims; never decoded
    return raw_png(width, height, 8, 0, rows)


def palette_with_transparency() -> bytes:
    """A palette PNG: top half opaque TOP, bottom half palette index 0 marked transparent."""
    rgb = two_tone().quantize(colors=200, dither=Image.Dither.NONE)
    arr = np.asarray(rgb).copy() + 1
    arr[32:, 16:48] = 0
    img = Image.fromarray(arr.astype(np.uint8), "P")
    img.putpalette([0, 0, 0, *rgb.getpalette()[: 255 * 3]])
    return encode(img, "PNG", transparency=0)


def rgba_png() -> bytes:
    """RGBA: top half opaque TOP, bottom half fully transparent (flattened onto white)."""
    img = two_tone().convert("RGBA")
    alpha = Image.new("L", (64, 64), 255)
    alpha.paste(0, (0, 32, 64, 64))
    img.putalpha(alpha)
    return encode(img, "PNG")


def animated(fmt: str) -> bytes:
    """Two frames: the first two-tone, the second solid green (only the first may be kept)."""
    first = two_tone()
    second = Image.new("RGB", (64, 64), (0, 200, 0))
    buf = io.BytesIO()
    kw = {"lossless": True} if fmt == "WEBP" else {}
    first.save(buf, fmt, save_all=True, append_images=[second], duration=100, loop=0, **kw)
    return buf.getvalue()


def exif_rotated_jpeg() -> bytes:
    """Stored sideways (TOP on the left, 64 wide x 32 high) with EXIF orientation 6
    (rotate 90 degrees clockwise to display): displayed 32 wide x 64 high, TOP at the top."""
    stored = two_tone(32, 64).transpose(Image.Transpose.ROTATE_90)  # counter-clockwise: top goes left
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(stored, "JPEG", quality=95, subsampling=0, exif=exif.tobytes())


def solid_png(width: int, height: int) -> bytes:
    return encode(Image.new("RGB", (width, height), TOP), "PNG")

"""Image side: decode-validation reasons, EXIF/mode handling, exact near-duplicate search,
duplicate clustering, and the ingest helpers that guard paths and captions.

Images are real files written with Pillow into ``tmp_path``; hashes are real numpy arrays.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.images.decode import (
    ImageInfo,
    ImageProblem,
    load_rgb,
    validate_image,
    validate_image_bytes,
)
from pipeline.images.hashing import to_hex, to_signed
from pipeline.images.neardup import pairs_within
from pipeline.stages.ingest import BadPath, confine
from pipeline.text.filters import Caption, ControlCharCleaner

BIG = 10**8


def _noise(w: int, h: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))


def _halves(w: int, h: int) -> Image.Image:
    """Left half red, right half blue (survives JPEG well enough to check orientation)."""
    a = np.zeros((h, w, 3), np.uint8)
    a[:, : w // 2] = (255, 0, 0)
    a[:, w // 2:] = (0, 0, 255)
    return Image.fromarray(a)


def _reason(result: ImageInfo | ImageProblem) -> str:
    assert isinstance(result, ImageProblem), result
    return result.reason


# -- validate_image ---------------------------------------------------------------------------

def test_good_jpeg(tmp_path: Path) -> None:
    """A decodable JPEG yields its SHA-256, byte size, format, mode and size."""
    path = tmp_path / "good.jpg"
    _noise(80, 60).save(path, quality=90)
    data = path.read_bytes()
    info = validate_image(path, max_pixels=BIG)
    assert isinstance(info, ImageInfo)
    assert info.sha256 == hashlib.sha256(data).hexdigest()
    assert info.bytes == len(data)
    assert (info.format, info.mode, info.width, info.height, info.exif_orientation) == ("JPEG", "RGB", 80, 60, 1)
    assert validate_image_bytes(data, max_pixels=BIG) == info


def test_empty_missing_directory(tmp_path: Path) -> None:
    """Zero bytes, no file and a directory each get their own reason."""
    (tmp_path / "empty.jpg").write_bytes(b"")
    assert _reason(validate_image(tmp_path / "empty.jpg", BIG)) == "image_empty"
    assert _reason(validate_image(tmp_path / "missing.jpg", BIG)) == "image_missing"
    assert _reason(validate_image(tmp_path, BIG)) == "image_unreadable"


def test_html_named_jpg(tmp_path: Path) -> None:
    """An HTML error page saved as .jpg is not an image, and the detail shows how it starts."""
    path = tmp_path / "page.jpg"
    path.write_bytes(b"<!DOCTYPE html><html><body>404 Not Found</body></html>")
    result = validate_image(path, BIG)
    assert _reason(result) == "image_not_an_image"
    assert "<!DOCTYPE html>" in result.detail


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated(tmp_path: Path, fmt: str) -> None:
    """A partial download opens fine but fails the full decode: image_truncated."""
    path = tmp_path / f"img.{fmt.lower()}"
    _noise(80, 60).save(path, format=fmt)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert _reason(validate_image(path, BIG)) == "image_truncated"


def test_decompression_bomb(tmp_path: Path) -> None:
    """Over max_pixels is image_too_large (both Pillow's warning and error bands); at the limit is fine."""
    for size, ok in (((100, 100), False), ((40, 40), False), ((25, 40), True)):
        path = tmp_path / f"{size[0]}x{size[1]}.png"
        Image.new("RGB", size).save(path)
        result = validate_image(path, max_pixels=1000)
        if ok:
            assert isinstance(result, ImageInfo) and (result.width, result.height) == size
        else:
            assert _reason(result) == "image_too_large"
    assert Image.MAX_IMAGE_PIXELS == 89478485   # the global limit is restored afterwards


def test_too_small(tmp_path: Path) -> None:
    """The shorter displayed side must reach min_side."""
    path = tmp_path / "small.png"
    _noise(80, 60).save(path)
    assert isinstance(validate_image(path, BIG, min_side=60), ImageInfo)
    result = validate_image(path, BIG, min_side=61)
    assert _reason(result) == "image_too_small"
    assert "80x60" in result.detail


def test_exif_orientation_swaps_size(tmp_path: Path) -> None:
    """Orientation 6 (stored sideways): recorded size is the displayed one and load_rgb is upright."""
    path = tmp_path / "rot.jpg"
    img = _halves(80, 60)
    exif = img.getexif()
    exif[0x0112] = 6
    img.save(path, exif=exif, quality=95)
    info = validate_image(path, BIG)
    assert isinstance(info, ImageInfo)
    assert (info.width, info.height, info.exif_orientation) == (60, 80, 6)
    rgb = load_rgb(path)
    assert (rgb.mode, rgb.size) == ("RGB", (60, 80))
    # Rotated 90 degrees clockwise for display: the stored left (red) half is now on top.
    top, bottom = rgb.getpixel((30, 10)), rgb.getpixel((30, 70))
    assert top[0] > 200 and top[2] < 50
    assert bottom[2] > 200 and bottom[0] < 50


def test_exif_orientation_min_side_uses_displayed_size(tmp_path: Path) -> None:
    """min_side applies to the displayed size (200 wide stored sideways is 200 tall)."""
    path = tmp_path / "rot.jpg"
    img = _noise(200, 20)
    exif = img.getexif()
    exif[0x0112] = 8
    img.save(path, exif=exif)
    assert _reason(validate_image(path, BIG, min_side=21)) == "image_too_small"
    info = validate_image(path, BIG, min_side=20)
    assert (info.width, info.height) == (20, 200)


def test_palette_png_with_transparency(tmp_path: Path) -> None:
    """A palette PNG with a transparent index loads as RGB with transparency over white."""
    path = tmp_path / "pal.png"
    img = Image.new("P", (80, 60), 0)
    img.putpalette([0, 0, 0, 200, 0, 0] + [0] * 762)
    img.paste(1, (40, 0, 80, 60))
    img.save(path, transparency=0)
    info = validate_image(path, BIG)
    assert (info.format, info.mode) == ("PNG", "P")
    rgb = load_rgb(path)
    assert rgb.mode == "RGB"
    assert rgb.getpixel((10, 10)) == (255, 255, 255)
    assert rgb.getpixel((60, 10)) == (200, 0, 0)


def test_cmyk_jpeg(tmp_path: Path) -> None:
    """A CMYK JPEG validates (mode recorded) and loads as RGB with the right colour."""
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (40, 30), (0, 255, 255, 0)).save(path, quality=95)
    info = validate_image(path, BIG)
    assert (info.format, info.mode, info.width, info.height) == ("JPEG", "CMYK", 40, 30)
    rgb = load_rgb(path)
    assert rgb.mode == "RGB"
    r, g, b = rgb.getpixel((20, 15))
    assert r > 240 and g < 15 and b < 15


# -- pairs_within -----------------------------------------------------------------------------

def _brute(u: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    dist = np.bitwise_count(u[:, None] ^ u[None, :])
    i, j = np.nonzero(np.triu(dist <= radius, k=1))
    return i, j, dist[i, j]


@pytest.fixture(scope="module")
def planted_hashes() -> np.ndarray:
    """3,000 random 64-bit hashes (full bit range) plus 300 copies 0-10 bits away and exact repeats."""
    rng = np.random.default_rng(7)
    u = rng.integers(0, 2**64, 3000, dtype=np.uint64)
    near = []
    for _ in range(300):
        v = u[rng.integers(0, len(u))]
        for b in rng.choice(64, int(rng.integers(0, 11)), replace=False):
            v ^= np.uint64(1) << np.uint64(int(b))
        near.append(v)
    return np.concatenate([u, np.array(near, dtype=np.uint64)])


@pytest.mark.parametrize("radius", [0, 3, 8])
def test_pairs_within_equals_brute_force(planted_hashes: np.ndarray, radius: int) -> None:
    """Multi-index hashing finds exactly the brute-force pairs, i < j, with correct distances."""
    i, j, d = pairs_within(planted_hashes.view(np.int64), radius)
    bi, bj, bd = _brute(planted_hashes, radius)
    assert len(bi) > 0
    assert np.array_equal(i, bi) and np.array_equal(j, bj)
    assert np.array_equal(d, bd)
    assert (i < j).all()
    assert d.max() <= radius


def test_pairs_within_large_groups_batched() -> None:
    """Batching candidates (down to one or two pairs at a time) loses no pair and adds none."""
    rng = np.random.default_rng(3)
    u = np.concatenate([np.full(10, 12345, dtype=np.uint64), rng.integers(0, 2**64, 50, dtype=np.uint64),
                        np.full(7, 999 | (1 << 40), dtype=np.uint64)])
    u = np.concatenate([u, u[:5] ^ np.uint64(1 << 3)])
    for radius in (0, 2, 5):
        bi, bj, bd = _brute(u, radius)
        for batch in (1, 2, 3, 50_000):
            i, j, d = pairs_within(u.view(np.int64), radius, batch=batch)
            assert np.array_equal(i, bi) and np.array_equal(j, bj) and np.array_equal(d, bd), (radius, batch)


def test_pairs_within_edges() -> None:
    """Fewer than two hashes give no pairs; a radius outside 0..31 is a ValueError."""
    h = to_signed([1, 2, 3])
    for arr in (h[:0], h[:1]):
        i, j, d = pairs_within(arr, 3)
        assert len(i) == len(j) == len(d) == 0
    for bad in (-1, 32):
        with pytest.raises(ValueError, match="radius"):
            pairs_within(h, bad)


def test_hash_signed_roundtrip() -> None:
    """Unsigned hashes survive the int64 view used for storage and print as 16 hex digits."""
    values = [0, 1, 2**63, 2**64 - 1]
    signed = to_signed(values)
    assert signed.dtype == np.int64
    assert signed.view(np.uint64).tolist() == values
    assert [to_hex(int(x)) for x in signed] == ["0000000000000000", "0000000000000001", "8000000000000000",
                                                 "ffffffffffffffff"]


# -- ingest helpers ---------------------------------------------------------------------------

def test_confine(tmp_path: Path) -> None:
    """Relative paths under the root pass; '..', absolute paths, NUL and escaping symlinks do not."""
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "a.jpg").write_bytes(b"x")
    outside = tmp_path / "secret.jpg"
    outside.write_bytes(b"x")
    os.symlink(outside, root / "link.jpg")
    os.symlink(root / "a.jpg", root / "sub" / "inside.jpg")
    assert confine(root, "a.jpg") == root / "a.jpg"
    assert confine(root, "sub/b.jpg") == root / "sub" / "b.jpg"
    assert confine(root, "sub/inside.jpg") == root / "sub" / "inside.jpg"
    for bad in ("../x", "../root2/a.jpg", "sub/../../secret.jpg", "/etc/passwd", str(root / "a.jpg"), "link.jpg", ""):
        assert confine(root, bad) is None, bad
    # A path that cannot name a file is path_invalid (BadPath), not an escape: NUL, a symlink loop.
    os.symlink("loop.jpg", root / "loop.jpg")
    for bad in ("a\x00b", "loop.jpg"):
        with pytest.raises(BadPath):
            confine(root, bad)


def clean_caption(text: object) -> str:
    """What ingest's ``control_chars`` filter does to a caption (pipeline.text.filters)."""
    doc = Caption("" if text is None else str(text))
    ControlCharCleaner()(doc)
    return doc.text


def test_clean_caption() -> None:
    """Control characters become spaces; whitespace runs collapse; ends are stripped."""
    assert clean_caption("  A\x00red\tpatch\n\non the\x7f arm \x0b") == "A red patch on the arm"
    assert clean_caption("line one\r\nline two") == "line one line two"
    assert clean_caption("caf\u00e9 \u00a0 au lait") == "caf\u00e9 au lait"
    assert clean_caption("\x01\x02 \x1f") == ""
    assert clean_caption(None) == ""
    assert clean_caption(42) == "42"

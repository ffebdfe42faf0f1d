"""Draw skin-like images: a skin-tone background with texture and one to three lesions.

The drawing is cheap (Pillow only) but varied enough in lesion colour, shape, size and position
that unrelated images are far apart in perceptual-hash space, which the generator checks.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

# Approximate sRGB skin tones across the Fitzpatrick scale (I..VI).
SKIN_TONES: list[tuple[int, int, int]] = [
    (246, 222, 206), (232, 196, 170), (210, 165, 130),
    (176, 124, 92), (126, 84, 58), (82, 54, 40),
]
LESION_COLOURS: dict[str, tuple[int, int, int]] = {
    "brown": (110, 66, 38), "dark brown": (64, 36, 22), "black": (28, 22, 22),
    "red": (186, 48, 46), "pink": (222, 128, 134), "purple": (108, 52, 98),
    "blue-grey": (92, 100, 124), "yellow": (214, 182, 86), "white": (238, 232, 226),
}


def draw_skin_image(rng: np.random.Generator, width: int, height: int) -> tuple[Image.Image, dict]:
    """Return an RGB image and a description of what was drawn (tone, lesion colours)."""
    tone_index = int(rng.integers(0, len(SKIN_TONES)))
    base = np.array(SKIN_TONES[tone_index], dtype=np.float32)
    # Low-frequency shading (lighting across the body part) plus fine pore-like noise.
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    angle = rng.uniform(0, 2 * math.pi)
    grad = (np.cos(angle) * xx / width + np.sin(angle) * yy / height) * rng.uniform(10, 35)
    # A few random low-frequency waves (body contour, folds): they make unrelated images
    # differ in exactly the DCT band a perceptual hash looks at.
    for _ in range(3):
        fx, fy = rng.uniform(-2.5, 2.5, size=2)
        phase = rng.uniform(0, 2 * math.pi)
        grad += rng.uniform(8, 22) * np.cos(2 * math.pi * (fx * xx / width + fy * yy / height) + phase)
    noise = rng.normal(0, 6, size=(height, width, 1)).astype(np.float32)
    pixels = np.clip(base[None, None, :] + grad[..., None] + noise, 0, 255).astype(np.uint8)
    img = Image.fromarray(pixels, "RGB").filter(ImageFilter.GaussianBlur(0.8))

    n_lesions = int(rng.integers(1, 4))
    colours = []
    for i in range(n_lesions):
        name = list(LESION_COLOURS)[int(rng.integers(0, len(LESION_COLOURS)))]
        colours.append(name)
        size = rng.uniform(0.12, 0.45 if i == 0 else 0.2) * min(width, height)
        cx, cy = rng.uniform(0.15, 0.85) * width, rng.uniform(0.15, 0.85) * height
        img = _paste_lesion(img, rng, cx, cy, size, LESION_COLOURS[name])
    return img, {"skin_tone": tone_index + 1, "lesion_colours": colours, "n_lesions": n_lesions}


def _paste_lesion(img: Image.Image, rng: np.random.Generator, cx: float, cy: float, size: float,
                  colour: tuple[int, int, int]) -> Image.Image:
    """Blend an irregular blob (random-radius polygon, blurred edge) of ``colour`` into ``img``."""
    n = int(rng.integers(9, 20))
    irregularity = rng.uniform(0.05, 0.4)
    aspect = rng.uniform(0.6, 1.4)
    points = []
    for k in range(n):
        theta = 2 * math.pi * k / n
        r = size / 2 * (1 + rng.uniform(-irregularity, irregularity))
        points.append((cx + r * math.cos(theta) * aspect, cy + r * math.sin(theta)))
    mask = Image.new("L", img.size, 0)
    ImageDraw.Draw(mask).polygon(points, fill=int(rng.integers(170, 255)))
    mask = mask.filter(ImageFilter.GaussianBlur(rng.uniform(1.5, 6.0)))
    layer = Image.new("RGB", img.size, colour)
    out = Image.composite(layer, img, mask)
    if rng.random() < 0.4:  # a darker core, as in many pigmented lesions
        core = Image.new("L", img.size, 0)
        s = size * rng.uniform(0.2, 0.4)
        ImageDraw.Draw(core).ellipse([cx - s, cy - s, cx + s, cy + s], fill=150)
        core = core.filter(ImageFilter.GaussianBlur(3))
        dark = tuple(max(0, int(c * 0.55)) for c in colour)
        out = Image.composite(Image.new("RGB", img.size, dark), out, core)
    return out

"""Dead-leaves backgrounds: synthetic images with the edge and scale statistics of photos.

The reader of needle v2 trains on crops of ten bundled photos (several grey or microscopy) and
is tested on three colour photos it never saw; its errors at full detail are mostly background
views read as digits, and it reads held-out *training* photos far better (87.7 % vs 71 %). Nothing
is downloaded (six more installed photos joined later: ``scenes.READER_PHOTOS``), so part of
its training canvases are drawn from the dead-leaves
model (Lee, Mumford & Huang 2001): opaque shapes of power-law distributed size (density
``r**-3``, the scale invariance of natural images) stacked at random, here in a random palette
of a few colours, drawn at twice the size and box-filtered (soft edges, as a camera gives),
then slightly blurred, shaded by a smooth random light and noised. Such images are a known
stand-in for natural images when training local models (Baradad et al. 2021, "Learning to See
by Looking at Noise"). They are used for *training canvases only*; test and calibration scenes
are unchanged.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

RADIUS = (2.5, 96.0)
"""Smallest and largest leaf radius in output pixels (the finest token is 16 px)."""
LEAVES = 2000
"""Leaves per image: about three layers deep, over a background fill for the rest."""
SUPERSAMPLE = 2


def _radii(rng: np.random.Generator, count: int) -> np.ndarray:
    """``count`` radii with density proportional to ``r**-3`` on ``RADIUS`` (inverse CDF)."""
    low, high = (r**-2 for r in RADIUS)
    return (low - rng.random(count) * (low - high)) ** -0.5


_CORNERS = (24, 4, 3)
_REGULAR_XY = tuple(
    (np.cos(angles), np.sin(angles))
    for angles in (
        np.linspace(0, 2 * np.pi, corners, endpoint=False) + np.pi / corners
        for corners in _CORNERS[:2]
    )
)
"""Cosines and sines of the corners of the ellipse (a 24-gon) and the rectangle; a
triangle's angles are drawn per leaf."""


def _outline(rng: np.random.Generator, centre: np.ndarray, radius: float) -> list[float]:
    """A random leaf outline, flat ``[x0, y0, x1, y1, ...]``: an ellipse (aspect 0.4-1), a
    rectangle or a triangle, rotated."""
    kind = rng.integers(3)
    if kind == 2:
        angles = np.sort(rng.uniform(0, 2 * np.pi, _CORNERS[2]))
        cos, sin = np.cos(angles), np.sin(angles)
    else:
        cos, sin = _REGULAR_XY[kind]
    aspect = rng.uniform(0.4, 1.0)
    points = np.stack([cos, aspect * sin], 1) * radius
    turn = rng.uniform(0, 2 * np.pi)
    rotation = np.array([[np.cos(turn), -np.sin(turn)], [np.sin(turn), np.cos(turn)]])
    outline: list[float] = (points @ rotation.T + centre).ravel().tolist()
    return outline


def dead_leaves(rng: np.random.Generator, size: int) -> np.ndarray:
    """A ``(size, size, 3)`` float32 dead-leaves image in ``[0, 1]``, a pure function of ``rng``.

    Examples:
        >>> image = dead_leaves(np.random.default_rng(0), 64)
        >>> image.shape, image.dtype, bool(0 <= image.min() <= image.max() <= 1)
        ((64, 64, 3), dtype('float32'), True)
        >>> bool(image.std() > 0.02)  # edges and colours, not a flat fill
        True
    """
    big = size * SUPERSAMPLE
    hues = rng.uniform(0, 1, size=(int(rng.integers(3, 8)), 3))
    brightness = rng.uniform(0.05, 0.95, size=(len(hues), 1))
    saturation = rng.uniform(0, 0.8, size=(len(hues), 1))
    palette = brightness + saturation * (hues - hues.mean(1, keepdims=True))

    def colour() -> tuple[int, int, int]:
        value = palette[rng.integers(len(palette))] + rng.normal(0, 0.06, 3)
        r, g, b = np.clip(value * 255, 0, 255).round().astype(np.int64).tolist()
        return r, g, b

    image = Image.new("RGB", (big, big), colour())
    draw = ImageDraw.Draw(image)
    for radius in _radii(rng, LEAVES):
        centre = rng.uniform(-radius, size + radius, 2) * SUPERSAMPLE
        draw.polygon(_outline(rng, centre, radius * SUPERSAMPLE), fill=colour())
    image = image.resize((size, size), Image.Resampling.BOX)
    image = image.filter(ImageFilter.GaussianBlur(float(rng.uniform(0, 0.8))))
    light = Image.fromarray(rng.uniform(0.7, 1.3, (4, 4)).astype(np.float32), mode="F")
    shading = np.asarray(light.resize((size, size), Image.Resampling.BICUBIC))[..., None]
    noise = rng.normal(0, rng.uniform(0, 0.02), (size, size, 3))
    pixels = np.asarray(image, dtype=np.float32) / 255 * shading + noise
    result: np.ndarray = pixels.clip(0, 1).astype(np.float32)
    return result

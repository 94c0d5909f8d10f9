"""Needle-in-image scenes: one small handwritten digit on a crop of a real photo.

A scene is a 256 x 256 crop of a photo (taken at a random scale) with one scikit-learn
``load_digits`` digit (8 x 8 greyscale, upscaled to 16-32 px) blended in at a random position
with a random contrast against its local background. The ``distractor`` variant adds
high-frequency clutter that carries no answer: patches of scikit-image's brick/grass/gravel
textures and random scribbles -- what a detail-driven allocator spends its tokens on by mistake.

Train and test scenes never share a photo (``TRAIN_PHOTOS`` / ``TEST_PHOTOS``) nor a digit
sample (even / odd indices of ``load_digits``). Everything is a pure function of
``(split, variant, seed, index)``.
"""

from __future__ import annotations

import functools
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from installed_photos import installed_photo
from PIL import Image, ImageDraw
from torch import Tensor

SIZE = 256
DIGIT_SIZES = (16, 32)
TRAIN_PHOTOS = (
    "astronaut",
    "camera",
    "chelsea",
    "coffee",
    "coins",
    "hubble_deep_field",
    "immunohistochemistry",
    "moon",
    "rocket",
    "retina",
)
TEST_PHOTOS = ("china", "flower", "stereo_motorcycle")
TEXTURES = ("brick", "grass", "gravel")
SPLITS = ("train", "test")
VARIANTS = ("plain", "distractor")


def _rgb(image: np.ndarray) -> np.ndarray:
    array = np.asarray(image, dtype=np.float32) / 255.0
    return np.repeat(array[..., None], 3, axis=2) if array.ndim == 2 else array[..., :3]


def _scaled(photo: np.ndarray) -> list[np.ndarray]:
    """The photo at scales 1, 3/4, 1/2 (those whose short side stays >= SIZE)."""
    out = []
    for scale in (1.0, 0.75, 0.5):
        height, width = (round(side * scale) for side in photo.shape[:2])
        if min(height, width) < SIZE:
            continue
        resized = Image.fromarray((photo * 255).astype(np.uint8)).resize(
            (width, height), Image.Resampling.BILINEAR
        )
        out.append(np.asarray(resized, dtype=np.float32) / 255.0)
    return out


@functools.cache
def photos(split: str) -> tuple[list[np.ndarray], ...]:
    """Per photo of the split, its float32 ``(H, W, 3)`` copies at the usable scales."""
    if split not in SPLITS:
        raise ValueError(f"split: expected one of {SPLITS}, got {split!r}")
    names = TRAIN_PHOTOS if split == "train" else TEST_PHOTOS
    return tuple(_scaled(_rgb(installed_photo(name))) for name in names)


@functools.cache
def textures() -> tuple[np.ndarray, ...]:
    from skimage import data

    return tuple(_rgb(getattr(data, name)())[..., 0] for name in TEXTURES)


@functools.cache
def digits(split: str) -> tuple[np.ndarray, np.ndarray]:
    """``(N, 8, 8)`` float32 ink in ``[0, 1]`` and ``(N,)`` labels: even indices train, odd test."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    start = SPLITS.index(split)
    return (bunch.images[start::2] / 16.0).astype(np.float32), bunch.target[start::2]


def _generator(split: str, variant: str, seed: int, index: int) -> np.random.Generator:
    key = zlib.crc32(f"{split}/{variant}".encode())
    return np.random.default_rng([key, seed, index])


def _crop(rng: np.random.Generator, split: str) -> np.ndarray:
    return crop_of(rng, photos(split))


def crop_of(rng: np.random.Generator, pool: Sequence[list[np.ndarray]]) -> np.ndarray:
    """A random ``SIZE`` square of a random photo of ``pool`` (per photo, its scales: see
    :func:`photos`) at a random scale, mirrored half the time: ``(SIZE, SIZE, 3)`` float32."""
    scales = pool[rng.integers(len(pool))]
    photo = scales[rng.integers(len(scales))]
    top = rng.integers(photo.shape[0] - SIZE + 1)
    left = rng.integers(photo.shape[1] - SIZE + 1)
    crop = photo[top : top + SIZE, left : left + SIZE].copy()
    return crop[:, ::-1].copy() if rng.random() < 0.5 else crop


def _blend(scene: np.ndarray, alpha: np.ndarray, ink: np.ndarray, top: int, left: int) -> None:
    height, width = alpha.shape
    region = scene[top : top + height, left : left + width]
    region[:] = region * (1 - alpha[..., None]) + ink * alpha[..., None]


def _paste_digit(rng: np.random.Generator, scene: np.ndarray, split: str) -> tuple[int, Box]:
    images, labels = digits(split)
    pick = rng.integers(len(images))
    side = int(rng.integers(DIGIT_SIZES[0], DIGIT_SIZES[1] + 1))
    alpha = np.asarray(
        Image.fromarray(images[pick]).resize((side, side), Image.Resampling.BILINEAR)
    ).clip(0, 1)
    top, left = (int(rng.integers(SIZE - side + 1)) for _ in range(2))
    local = scene[top : top + side, left : left + side].mean(axis=(0, 1))
    contrast = rng.uniform(0.25, 0.75)
    darker = local.mean() > 0.5 if rng.random() < 0.8 else local.mean() <= 0.5
    ink = np.clip(local - contrast if darker else local + contrast, 0, 1)
    _blend(scene, alpha, ink, top, left)
    return int(labels[pick]), Box(top, left, side)


def _distract(rng: np.random.Generator, scene: np.ndarray, avoid: Box | Sequence[Box]) -> None:
    """4 texture patches and 3 scribbles, none over the digit (or over any of ``avoid``)."""
    for _ in range(4):
        texture = textures()[rng.integers(len(TEXTURES))]
        side = int(rng.integers(24, 57))
        top, left = _free_spot(rng, side, avoid)
        y, x = (int(rng.integers(texture.shape[0] - side)) for _ in range(2))
        patch = texture[y : y + side, x : x + side]
        patch = (patch - patch.mean()) / (patch.std() + 1e-6) * rng.uniform(0.15, 0.3)
        region = scene[top : top + side, left : left + side]
        region[:] = np.clip(region + patch[..., None], 0, 1)
    overlay = Image.new("L", (SIZE, SIZE))
    draw = ImageDraw.Draw(overlay)
    for _ in range(3):
        side = int(rng.integers(24, 49))
        top, left = _free_spot(rng, side, avoid)
        points = rng.uniform(0, side, size=(int(rng.integers(4, 9)), 2)) + np.array([left, top])
        draw.line([tuple(p) for p in points], fill=255, width=int(rng.integers(1, 3)))
    alpha = np.asarray(overlay, dtype=np.float32) / 255.0 * rng.uniform(0.4, 0.8)
    ink = rng.uniform(0, 1, size=3).astype(np.float32)
    _blend(scene, alpha, ink, 0, 0)


def _free_spot(rng: np.random.Generator, side: int, avoid: Box | Sequence[Box]) -> tuple[int, int]:
    boxes = [avoid] if isinstance(avoid, Box) else avoid
    while True:
        top, left = (int(rng.integers(SIZE - side + 1)) for _ in range(2))
        if not any(box.overlaps(top, left, side) for box in boxes):
            return top, left


@dataclass(frozen=True)
class Box:
    """A square ``side`` x ``side`` at ``(top, left)``."""

    top: int
    left: int
    side: int

    def overlaps(self, top: int, left: int, side: int) -> bool:
        return not (
            top >= self.top + self.side
            or self.top >= top + side
            or left >= self.left + self.side
            or self.left >= left + side
        )


def scene(split: str, variant: str, seed: int, index: int) -> tuple[np.ndarray, int, Box]:
    """One scene: ``(256, 256, 3)`` float32 in ``[0, 1]``, its digit and the digit's box.

    Examples:
        >>> image, label, box = scene("test", "plain", seed=0, index=3)
        >>> image.shape, 0 <= label <= 9, 16 <= box.side <= 32
        ((256, 256, 3), True, True)
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant: expected one of {VARIANTS}, got {variant!r}")
    rng = _generator(split, variant, seed, index)
    image = _crop(rng, split)
    label, box = _paste_digit(rng, image, split)
    if variant == "distractor":
        _distract(rng, image, box)
    return image, label, box


def scenes(split: str, variant: str, seed: int, count: int) -> tuple[Tensor, Tensor, Tensor]:
    """``count`` scenes: ``(count, 3, 256, 256)`` uint8 images, ``(count,)`` int64 labels and
    ``(count, 3)`` int64 digit boxes ``(top, left, side)``."""
    images = np.empty((count, SIZE, SIZE, 3), dtype=np.uint8)
    labels = np.empty(count, dtype=np.int64)
    boxes = np.empty((count, 3), dtype=np.int64)
    for index in range(count):
        image, labels[index], box = scene(split, variant, seed, index)
        images[index] = np.round(image * 255)
        boxes[index] = (box.top, box.left, box.side)
    pixels = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
    return pixels, torch.from_numpy(labels), torch.from_numpy(boxes)

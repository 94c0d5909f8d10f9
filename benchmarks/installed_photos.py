"""Photos that installed packages ship, read in one place: scikit-image's sample data,
scikit-learn's two sample images, matplotlib's ``grace_hopper.jpg`` and the five photos inside
the sporco wheel (the ``dev`` and ``bench`` extras). Nothing is downloaded at run time.

Examples:
    >>> installed_photo("china").shape, installed_photo("camera").shape
    ((427, 640, 3), (512, 512))
"""

from __future__ import annotations

import importlib.resources
from importlib.abc import Traversable
from pathlib import Path

import numpy as np
from PIL import Image

SPORCO = ("kodim23", "monarch", "sail", "tulips", "barbara")
"""The photos inside the sporco wheel (``sporco/data/<name>.png``)."""


def _decoded(source: Traversable) -> np.ndarray:
    with source.open("rb") as file:
        return np.asarray(Image.open(file).convert("RGB"))


def installed_photo(name: str) -> np.ndarray:
    """The photo ``name`` as its package stores it: ``(H, W, 3)`` RGB or ``(H, W)`` grey, uint8
    (a few scikit-image arrays are float or bool; they come as stored). ``"stereo_motorcycle"``
    is the left view of scikit-image's stereo pair; any other scikit-image ``data`` function
    name works as well.

    Examples:
        >>> installed_photo("grace_hopper").shape, installed_photo("tulips").dtype
        ((600, 512, 3), dtype('uint8'))
        >>> installed_photo("lena")
        Traceback (most recent call last):
        ...
        ValueError: no installed photo named 'lena'
    """
    from skimage import data

    if name in ("china", "flower"):
        from sklearn.datasets import load_sample_image

        return np.asarray(load_sample_image(f"{name}.jpg"))
    if name == "stereo_motorcycle":
        return np.asarray(data.stereo_motorcycle()[0])
    if name == "grace_hopper":
        from matplotlib import cbook

        return _decoded(Path(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))
    if name in SPORCO:
        return _decoded(importlib.resources.files("sporco") / "data" / f"{name}.png")
    if name.startswith("_") or not callable(getattr(data, name, None)):
        raise ValueError(f"no installed photo named {name!r}")
    return np.asarray(getattr(data, name)())

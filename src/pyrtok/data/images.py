"""Decode images to ``(3, H, W)`` float32 tensors: the embedded samples and user files."""

from __future__ import annotations

import os
from importlib import resources
from io import BytesIO
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

SAMPLES: dict[str, str] = {
    "astronaut": "astronaut.jpg",
    "camera": "camera.jpg",
    "chelsea": "chelsea.jpg",
    "coffee": "coffee.jpg",
    "rocket": "rocket.jpg",
}
"""Embedded sample name -> file in this package (credits in ``ATTRIBUTION.md``)."""


def list_samples() -> list[str]:
    """Names accepted by :func:`load_sample`, sorted.

    Examples:
        >>> list_samples()
        ['astronaut', 'camera', 'chelsea', 'coffee', 'rocket']
    """
    return sorted(SAMPLES)


def load_sample(name: str) -> Tensor:
    """Load an embedded CC0 / public-domain sample photo (longer side at most 512 px).

    Greyscale samples (``camera``) come back with their one channel repeated three times.

    Args:
        name: one of :func:`list_samples`.

    Returns:
        ``(3, H, W)`` float32 tensor with values in ``[0, 1]``; a new tensor on every call.

    Examples:
        >>> image = load_sample("coffee")
        >>> image.shape, image.dtype
        (torch.Size([3, 341, 512]), torch.float32)
    """
    if not isinstance(name, str):
        raise TypeError(f"name: expected a sample name (str), got {type(name).__name__}")
    if name not in SAMPLES:
        raise ValueError(
            f"name: unknown sample {name!r}; valid names are {', '.join(list_samples())}"
        )
    data = resources.files("pyrtok.data").joinpath(SAMPLES[name]).read_bytes()
    return _decode(data, f"sample {name!r}")


def load_image(path: str | os.PathLike[str]) -> Tensor:
    """Read an image file (PNG, JPEG, GIF, WebP, BMP, TIFF, ...) as an RGB image.

    Greyscale images get their channel repeated three times; an alpha channel is dropped;
    16-bit PNGs are scaled by ``1 / 65535``.

    Args:
        path: the image file.

    Returns:
        ``(3, H, W)`` float32 tensor with values in ``[0, 1]``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: ``path`` is not a file, cannot be read, or is not a decodable image.

    Examples:
        >>> import tempfile
        >>> from pyrtok.viz import save_png
        >>> path = save_png(torch.rand(40, 60), Path(tempfile.mkdtemp()) / "grey.png")
        >>> load_image(path).shape
        torch.Size([3, 40, 60])
    """
    file = Path(path)
    if not file.exists():
        raise FileNotFoundError(f"path: no such file: '{file}'")
    if not file.is_file():
        raise ValueError(f"path: '{file}' is not a file")
    try:
        data = file.read_bytes()
    except OSError as error:
        raise ValueError(f"path: cannot read '{file}': {error.strerror or error}") from error
    return _decode(data, f"'{file}'")


def _decode(data: bytes, source: str) -> Tensor:
    """Decode encoded image bytes to ``(3, H, W)`` float32 in ``[0, 1]``; ``source`` names them."""
    if not data:
        raise ValueError(f"{source}: the file is empty, not an image")
    formats = "pyrtok reads what Pillow reads (PNG, JPEG, GIF, WebP, BMP, TIFF, ...)"
    try:
        with Image.open(BytesIO(data)) as opened:
            opened.load()
            image = opened.copy()
    except UnidentifiedImageError:
        raise ValueError(
            f"{source}: not a readable image (its contents match no image format); {formats}"
        ) from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise ValueError(f"{source}: not a readable image ({error}); {formats}") from error
    if image.mode.startswith("I;16") or image.mode == "I":
        grey = torch.from_numpy(np.asarray(image, dtype=np.float32) / 65535.0)
        return grey.clamp(0, 1).expand(3, -1, -1).contiguous()
    rgb = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(rgb).permute(2, 0, 1).contiguous()

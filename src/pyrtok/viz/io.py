"""Write image tensors to PNG, JPEG or WebP files."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor

_HALF_STEP = 0.5 / 255
"""Values this close outside ``[0, 1]`` round to 0 or 255 anyway (float error, not content)."""


IMAGE_FORMATS: dict[str, str] = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}
"""File extension (lower case) -> the format :func:`save_image` writes."""

_OPTIONS: dict[str, dict[str, int]] = {"JPEG": {"quality": 95}, "WEBP": {"quality": 95}}


def check_image_path(path: str | os.PathLike[str]) -> Path:
    """Check that :func:`save_image` can write ``path``, before any work goes into the image.

    Args:
        path: the image file to write: its extension one of :data:`IMAGE_FORMATS` (any case),
            not a directory, and its nearest existing parent folder a writable folder (missing
            folders are created when saving).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: naming ``path`` and what is wrong with it.

    Examples:
        >>> check_image_path("figures/montage.webp")
        PosixPath('figures/montage.webp')
        >>> check_image_path("a.gif")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: path: 'a.gif': unsupported image extension '.gif'; expected .png, .jpg, ...
    """
    file = Path(path)
    if file.is_dir():
        raise ValueError(f"path: '{file}' is a directory; expected the path of an image file")
    if file.suffix.lower() not in IMAGE_FORMATS:
        *others, last = IMAGE_FORMATS
        raise ValueError(
            f"path: '{file}': unsupported image extension '{file.suffix}'; expected "
            f"{', '.join(others)} or {last}"
        )
    folder = next(p for p in file.absolute().parents if p.exists())
    if not folder.is_dir():
        raise ValueError(f"path: cannot write '{file}': '{folder}' is a file, not a folder")
    target = file if file.exists() else folder
    if not os.access(target, os.W_OK):
        raise ValueError(f"path: cannot write '{file}': '{target}' is not writable")
    return file


def save_image(image: Tensor, path: str | os.PathLike[str]) -> Path:
    """Save an image with values in ``[0, 1]`` as an 8-bit PNG, JPEG or WebP, creating parent
    folders.

    The format follows the extension (:data:`IMAGE_FORMATS`); JPEG and WebP at quality 95.

    Args:
        image: ``(3, H, W)`` (RGB), ``(1, H, W)`` or ``(H, W)`` (greyscale) floating tensor, any
            device. Values may stray from ``[0, 1]`` by less than half a quantisation step
            (``0.5 / 255``, e.g. float error after :func:`~pyrtok.reconstruct`); anything further
            is an error, not a silent clamp.
        path: the file to write (overwritten if it exists); see :func:`check_image_path`.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Examples:
        >>> import tempfile
        >>> path = save_image(torch.rand(3, 32, 48), Path(tempfile.mkdtemp()) / "sub" / "x.jpg")
        >>> path.stat().st_size > 0
        True
    """
    if not isinstance(image, Tensor):
        raise TypeError(f"image: expected a torch.Tensor, got {type(image).__name__}")
    if not image.is_floating_point():
        raise TypeError(
            f"image: expected a floating tensor with values in [0, 1], got {image.dtype}; "
            "convert 8-bit images with image.float() / 255"
        )
    if image.ndim == 2:
        image = image.unsqueeze(0)
    if image.ndim != 3 or image.shape[0] not in (1, 3) or image.numel() == 0:
        raise ValueError(
            f"image: expected shape (3, H, W), (1, H, W) or (H, W) with H, W >= 1, "
            f"got {tuple(image.shape)}"
        )
    values = image.detach().to("cpu", torch.float32)
    if not bool(values.isfinite().all()):
        raise ValueError("image: has NaN or Inf values")
    low, high = float(values.min()), float(values.max())
    if low < -_HALF_STEP or high > 1 + _HALF_STEP:
        raise ValueError(
            f"image: values must be in [0, 1], got min {low:.4g} and max {high:.4g}; "
            "rescale it, or clamp it with image.clamp(0, 1) if clipping is what you want"
        )
    pixels = (values * 255).round().clamp(0, 255).to(torch.uint8)
    file = check_image_path(path)
    file.parent.mkdir(parents=True, exist_ok=True)
    array = pixels.permute(1, 2, 0).numpy()
    image_format = IMAGE_FORMATS[file.suffix.lower()]
    Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array).save(
        file, format=image_format, **_OPTIONS.get(image_format, {})
    )
    return file


def save_png(image: Tensor, path: str | os.PathLike[str]) -> Path:
    """:func:`save_image` to a ``.png`` path (any other extension is an error).

    Examples:
        >>> import tempfile
        >>> path = save_png(torch.rand(3, 32, 48), Path(tempfile.mkdtemp()) / "sub" / "x.png")
        >>> path.stat().st_size > 0
        True
    """
    if check_image_path(path).suffix.lower() != ".png":
        raise ValueError(f"path: expected a .png file, got '{path}'; save_image writes JPEG, WebP")
    return save_image(image, path)

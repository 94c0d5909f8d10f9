"""Write image tensors to PNG files."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor

_HALF_STEP = 0.5 / 255
"""Values this close outside ``[0, 1]`` round to 0 or 255 anyway (float error, not content)."""


def save_png(image: Tensor, path: str | os.PathLike[str]) -> Path:
    """Save an image with values in ``[0, 1]`` as an 8-bit PNG, creating parent folders.

    Args:
        image: ``(3, H, W)`` (RGB), ``(1, H, W)`` or ``(H, W)`` (greyscale) floating tensor, any
            device. Values may stray from ``[0, 1]`` by less than half a quantisation step
            (``0.5 / 255``, e.g. float error after :func:`~pyrtok.reconstruct`); anything further
            is an error, not a silent clamp.
        path: the PNG file to write (overwritten if it exists).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Examples:
        >>> import tempfile
        >>> path = save_png(torch.rand(3, 32, 48), Path(tempfile.mkdtemp()) / "sub" / "x.png")
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
    file = Path(path)
    if file.is_dir():
        raise ValueError(f"path: '{file}' is a directory; expected the path of a PNG file")
    file.parent.mkdir(parents=True, exist_ok=True)
    array = pixels.permute(1, 2, 0).numpy()
    Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array).save(file, format="PNG")
    return file

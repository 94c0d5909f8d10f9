"""Regenerate the embedded sample images in ``src/pyrtok/data/`` from scikit-image's data.

One-off maintainer tool, not part of the library: it needs scikit-image (the ``bench`` extra)
and Pillow. Each photo is downsized (Lanczos, aspect kept) so its longer side is at most
``MAX_SIDE`` pixels and saved as a baseline JPEG; ``camera`` stays greyscale. Licences and
credits are in ``src/pyrtok/data/ATTRIBUTION.md``.

Run from the repository root::

    .venv/bin/python tools/make_samples.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import skimage.data
from PIL import Image

MAX_SIDE = 512
QUALITY = 90
SAMPLES = ("astronaut", "camera", "chelsea", "coffee", "rocket")
OUT_DIR = Path(__file__).resolve().parent.parent / "src" / "pyrtok" / "data"


def downsize(image: Image.Image, max_side: int = MAX_SIDE) -> Image.Image:
    """Shrink ``image`` so its longer side is at most ``max_side`` px, keeping the aspect ratio."""
    width, height = image.size
    scale = max_side / max(width, height)
    if scale >= 1:
        return image
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS)


def main() -> None:
    """Write ``<name>.jpg`` for every sample and print its size."""
    total = 0
    for name in SAMPLES:
        array = np.asarray(getattr(skimage.data, name)(), dtype=np.uint8)
        image = downsize(Image.fromarray(array))
        path = OUT_DIR / f"{name}.jpg"
        image.save(path, "JPEG", quality=QUALITY, optimize=True)
        total += path.stat().st_size
        print(
            f"{path.name:14s} {image.mode:3s} {image.height}x{image.width}  {path.stat().st_size} B"
        )
    print(f"total {total} B")


if __name__ == "__main__":
    main()

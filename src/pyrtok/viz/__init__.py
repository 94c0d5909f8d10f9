"""Viewing helpers: pyramid montages, allocation figures, titles and image output.

Examples:
    >>> import tempfile
    >>> from pathlib import Path
    >>> from pyrtok import laplacian_pyramid
    >>> from pyrtok.data import load_sample
    >>> montage = pyramid_montage(laplacian_pyramid(load_sample("chelsea"), levels=4), labels=True)
    >>> save_image(titled(montage, "chelsea"), Path(tempfile.mkdtemp()) / "montage.jpg").suffix
    '.jpg'
"""

from pyrtok.viz.io import IMAGE_FORMATS, check_image_path, save_image, save_png
from pyrtok.viz.layout import fit, shrink, side_by_side
from pyrtok.viz.montage import pyramid_montage
from pyrtok.viz.overlay import LEVEL_COLOURS, allocation_figure, allocation_overlay
from pyrtok.viz.text import colour_key, titled

__all__ = [
    "IMAGE_FORMATS",
    "LEVEL_COLOURS",
    "allocation_figure",
    "allocation_overlay",
    "check_image_path",
    "colour_key",
    "fit",
    "pyramid_montage",
    "save_image",
    "save_png",
    "shrink",
    "side_by_side",
    "titled",
]

"""Viewing helpers: pyramid montages and PNG output.

Examples:
    >>> import tempfile
    >>> from pathlib import Path
    >>> from pyrtok import laplacian_pyramid
    >>> from pyrtok.data import load_sample
    >>> montage = pyramid_montage(laplacian_pyramid(load_sample("chelsea"), levels=4))
    >>> save_png(montage, Path(tempfile.mkdtemp()) / "montage.png").suffix
    '.png'
"""

from pyrtok.viz.io import save_png
from pyrtok.viz.montage import pyramid_montage
from pyrtok.viz.overlay import LEVEL_COLOURS, allocation_figure, allocation_overlay, side_by_side

__all__ = [
    "LEVEL_COLOURS",
    "allocation_figure",
    "allocation_overlay",
    "pyramid_montage",
    "save_png",
    "side_by_side",
]

"""Embedded sample photos (CC0 / public domain, see ``ATTRIBUTION.md``) and an image loader.

Examples:
    >>> from pyrtok.data import list_samples, load_sample
    >>> [tuple(load_sample(name).shape) for name in list_samples()]
    [(3, 512, 512), (3, 512, 512), (3, 300, 451), (3, 341, 512), (3, 342, 512)]
"""

from pyrtok.data.images import list_samples, load_image, load_sample

__all__ = ["list_samples", "load_image", "load_sample"]

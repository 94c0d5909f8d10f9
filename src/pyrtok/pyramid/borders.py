"""Border extension along one axis, for any length >= 1 (repeated reflection included).

``reflect`` is reflect-101 (``dcb|abcd|cba``: PyTorch's "reflect", OpenCV's BORDER_DEFAULT),
``replicate`` repeats the edge sample, ``circular`` wraps around, ``constant`` pads with zeros.
:func:`border_source` is the one implementation of these rules; the pyramid ops turn it into
matrix entries once per size (:mod:`pyrtok.pyramid.axis_plan`).
"""

from __future__ import annotations

BORDER_NAMES = ("reflect", "replicate", "circular", "constant")


def check_border(border: str) -> None:
    """Raise a ValueError listing the valid names if ``border`` is not one of them."""
    if border not in BORDER_NAMES:
        raise ValueError(f"border: unknown name {border!r}; valid names are {list(BORDER_NAMES)}")


def border_source(position: int, length: int, border: str) -> int | None:
    """Sample index that ``position`` reads under ``border`` (``None``: a zero), any length.

    Examples:
        >>> [border_source(p, 4, "reflect") for p in range(-3, 6)]
        [3, 2, 1, 0, 1, 2, 3, 2, 1]
        >>> border_source(-1, 4, "constant") is None
        True
    """
    if 0 <= position < length:
        return position
    if border == "reflect":
        if length == 1:
            return 0
        period = 2 * (length - 1)
        folded = position % period
        return period - folded if folded >= length else folded
    if border == "replicate":
        return min(max(position, 0), length - 1)
    if border == "circular":
        return position % length
    return None

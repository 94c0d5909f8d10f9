"""Border extension along one axis, for any length >= 1 (repeated reflection included).

``reflect`` is reflect-101 (``dcb|abcd|cba``: PyTorch's "reflect", OpenCV's BORDER_DEFAULT),
``replicate`` repeats the edge sample, ``circular`` wraps around, ``constant`` pads with zeros.
Indices are computed on the tensor's device, so nothing is copied from the host per call.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

BORDER_NAMES = ("reflect", "replicate", "circular", "constant")


def check_border(border: str) -> None:
    """Raise a ValueError listing the valid names if ``border`` is not one of them."""
    if border not in BORDER_NAMES:
        raise ValueError(f"border: unknown name {border!r}; valid names are {list(BORDER_NAMES)}")


def border_index(position: Tensor, length: int, border: str) -> Tensor:
    """Map integer positions (possibly outside ``[0, length)``) to in-range sample indices.

    ``constant`` is not an index mapping (it pads zeros) and is handled by :func:`pad_axis`.

    Examples:
        >>> border_index(torch.arange(-3, 6), 4, "reflect")
        tensor([3, 2, 1, 0, 1, 2, 3, 2, 1])
    """
    if border == "reflect":
        if length == 1:
            return torch.zeros_like(position)
        period = 2 * (length - 1)
        folded = torch.remainder(position, period)
        return torch.where(folded >= length, period - folded, folded)
    if border == "replicate":
        return position.clamp(0, length - 1)
    if border == "circular":
        return torch.remainder(position, length)
    raise ValueError(f"border: no index mapping for {border!r}")


def pad_axis(x: Tensor, dim: int, before: int, after: int, border: str) -> Tensor:
    """Extend ``x`` along ``dim`` by ``before``/``after`` samples using ``border``.

    Shapes:
        x: ``(..., n, ...)`` -> ``(..., before + n + after, ...)``

    Examples:
        >>> pad_axis(torch.arange(3.0), -1, 2, 2, "reflect")
        tensor([2., 1., 0., 1., 2., 1., 0.])
    """
    if before == 0 and after == 0:
        return x
    if border == "constant":
        spec = [0, 0] * (x.ndim - 1 - dim % x.ndim) + [before, after]
        return F.pad(x, spec)
    length = x.shape[dim]
    position = torch.arange(-before, length + after, device=x.device)
    return x.index_select(dim, border_index(position, length, border))

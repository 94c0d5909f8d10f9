"""Controls: the oracle and anti-oracle scorers, and the model-free hit rate.

Both controls are plain pyrtok scorers (the ``scorer`` callable hook of
:func:`~pyrtok.allocation.allocate`), run by the same greedy strategy as every other arm:

- **oracle**: nodes that overlap the digit score above every other node, so greedy splits the
  digit's cell, then its nodes down to full resolution, first; the rest of the budget follows
  the content-blind uniform order.
- **anti-oracle**: nodes that overlap the digit score below every other node, so they are
  split only once everything else is (at full detail every node is).

Their accuracy gap is the range in which allocators can differ; the anti-oracle's accuracy on
small digits measures what the reader gets without the digit's fine tokens (leakage would show
there). A scene is a **hit** when a full-resolution leaf overlaps its digit.
"""

from __future__ import annotations

from collections.abc import Callable

from needle.model import uniform_scores
from torch import Tensor

from pyrtok.allocation.scorers import Scorer

from .reader import DEPTHS, contains

_LIFT = 10.0
"""Larger than any uniform score (those lie in ``[0, depth]``)."""


def digit_scorer(boxes: Tensor, sign: float) -> Scorer:
    """A scorer for the images whose digit boxes are ``boxes`` ``(B, 3)``: uniform order, with
    digit-overlapping nodes lifted above (``sign = 1``, oracle) or pushed below (``-1``,
    anti-oracle) every other node.

    Examples:
        >>> import torch
        >>> from pyrtok.allocation import allocate
        >>> box = torch.tensor([[100, 36, 10]])  # inside finest patch (6, 2), cell (1, 0)
        >>> a = allocate(torch.rand(1, 3, 256, 256), 22, 16, 64, "greedy", digit_scorer(box, 1.0))
        >>> [tuple(s.nonzero()[0].tolist()) for s in a.splits]
        [(0, 1, 0), (0, 3, 1)]
    """

    def scorer(images: Tensor, min_patch: int, max_patch: int) -> list[Tensor]:
        base = uniform_scores(images, min_patch, max_patch)
        return [
            score + sign * _LIFT * contains(boxes.to(score.device), d)[1].to(score.dtype)
            for d, score in enumerate(base)
        ]

    return scorer


def oracle(boxes: Tensor) -> Scorer:
    """:func:`digit_scorer` lifting the digit's nodes."""
    return digit_scorer(boxes, 1.0)


def anti_oracle(boxes: Tensor) -> Scorer:
    """:func:`digit_scorer` sinking the digit's nodes."""
    return digit_scorer(boxes, -1.0)


def hits(visible: list[Tensor], boxes: Tensor) -> Tensor:
    """``(B,)`` bool: a full-resolution node of ``visible`` (``Allocation.nodes()``) overlaps
    the digit box (``boxes`` ``(B, 3)`` ``(top, left, side)``).

    Examples:
        >>> import torch
        >>> visible = [torch.zeros(2, 4 << d, 4 << d, dtype=torch.bool) for d in range(3)]
        >>> visible[2][0, 6, 2] = visible[2][1, 0, 0] = True
        >>> hits(visible, torch.tensor([[100, 36, 10], [100, 36, 10]])).tolist()
        [True, False]
    """
    finest = DEPTHS - 1
    return (
        (visible[finest] & contains(boxes, finest)[1].to(visible[finest].device)).flatten(1).any(1)
    )


ScorerFactory = Callable[[Tensor], Scorer]
"""Digit boxes ``(B, 3)`` -> a scorer for those images (how a control sees the answer)."""

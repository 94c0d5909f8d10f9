"""Progressive refinement (item 5): the quadtree ladder of ``ProgressiveVLM`` on the reader.

An arm's greedy allocations are nested as the budget grows, so a ladder of budgets
``16 -> 40 -> 88 -> 160 -> 256`` refines a scene by *appending* tokens, as
:mod:`pyrtok.vlm.quadtree_ladder` does for a VLM: rung ``r`` sends the leaves of its allocation
that no earlier rung sent, and the parents they refine stay (in a VLM: in the KV cache). After
each rung the reader answers from every node seen so far and the scene stops at the first rung
whose :func:`~needle_v2.reader.confidence` is at least the threshold, or at the last rung.

Visual tokens are what the LM would hold when the scene stops: every leaf sent up to then, the
split parents included, so a scene that climbs the whole ladder costs *more* than the fixed
finest budget (256 + the parents of its splits). The comparison is the issue's: accuracy and
mean visual tokens per threshold against the fixed finest budget.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .reader import Rule, answer, confidence

LADDER = (16, 40, 88, 160, 256)
"""The rungs (visual tokens of each rung's allocation; a subset of :data:`arms.BUDGETS`)."""

LADDER_ARMS = ("uniform", "laplacian")
"""The arms climbed as ladders (the reference order and pyrtok's default scorer)."""

THRESHOLDS = (0.5, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995)


def leaves(visible: list[Tensor]) -> list[Tensor]:
    """The leaves among the visible nodes (``Allocation.nodes()`` per depth): the visible nodes
    none of whose children is visible.

    Examples:
        >>> seen = [torch.ones(1, 1, 1, dtype=torch.bool), torch.zeros(1, 2, 2, dtype=torch.bool)]
        >>> seen[1][0] = True
        >>> [int(m.sum()) for m in leaves(seen)]
        [0, 4]
    """
    out = []
    for depth, nodes in enumerate(visible):
        if depth + 1 == len(visible):
            out.append(nodes)
            continue
        batch, n = nodes.shape[:2]
        split = visible[depth + 1].reshape(batch, n, 2, n, 2).any(4).any(2)
        out.append(nodes & ~split)
    return out


def ladder_outcomes(
    probabilities: list[Tensor],
    visible: dict[int, list[Tensor]],
    labels: Tensor,
    rule: Rule,
    ladder: tuple[int, ...] = LADDER,
) -> dict[str, Tensor]:
    """Per rung and scene ``(R, B)``: whether the answer is right, its confidence and the visual
    tokens sent up to that rung (``visible``: an arm's nodes per budget, as ``arm.visible``)."""
    correct, sure, tokens = [], [], []
    sent: list[Tensor] | None = None
    for budget in ladder:
        nodes = visible[budget]
        digits = answer(probabilities, nodes, rule)
        correct.append(digits == labels)
        sure.append(confidence(probabilities, nodes, digits))
        new = leaves(nodes)
        sent = new if sent is None else [a | b for a, b in zip(sent, new, strict=True)]
        tokens.append(sum(m.flatten(1).sum(1) for m in sent))
    return {
        "correct": torch.stack(correct),
        "confidence": torch.stack(sure),
        "tokens": torch.stack(tokens),
    }


def stop(outcomes: dict[str, Tensor], threshold: float) -> tuple[Tensor, Tensor]:
    """Per scene: whether the answer at the stopping rung is right and the tokens sent by then.

    Examples:
        >>> out = {"correct": torch.tensor([[False, True], [True, True]]),
        ...        "confidence": torch.tensor([[0.3, 0.95], [0.9, 0.99]]),
        ...        "tokens": torch.tensor([[16, 16], [40, 40]])}
        >>> [t.tolist() for t in stop(out, 0.9)]
        [[True, True], [40, 16]]
    """
    sure = outcomes["confidence"] >= threshold
    sure[-1] = True
    rung = sure.int().argmax(0)
    scenes = torch.arange(rung.shape[0])
    return outcomes["correct"][rung, scenes], outcomes["tokens"][rung, scenes]

"""The allocators compared ("arms"), one list entry each.

An arm says which quadtree nodes the reader sees for each budget: ``arm.visible(batch, budgets)``
-> ``{budget: [(B, n, n) bool per depth]}`` (the shape of ``Allocation.nodes()``); the budget is
in visual tokens (leaves), ``16 + 3 s`` for ``s`` splits, 16 (the coarsest cells) to 256
(every finest token).

- :class:`QuadtreeArm`: pyrtok's greedy quadtree with a scorer: a name (``laplacian``,
  ``entropy``, ``blur``; #13's scorer variants once registered) or a factory that builds the
  scorer from the scene batch (the uniform order, the oracle controls).
- Token-selection baselines (#15: random, downsample, cls_attention, divprune) are arms too:
  they keep some finest tokens; their ``visible`` sets those depth-2 nodes and an ancestor when
  all its finest descendants are kept (its view is then determined by the kept tokens).

Add an arm by appending to :data:`ARMS`; ``kind`` places it in the goal test: ``frequency``
(pyrtok's scorers), ``baseline`` (what they must beat) or ``control``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from needle.model import uniform_scores
from torch import Tensor

from pyrtok.allocation import allocate
from pyrtok.allocation.scorers import Scorer, resolve_scorer

from .controls import ScorerFactory, anti_oracle, oracle
from .reader import GEOMETRY
from .scenes import MAX_PATCH, PATCH, SceneBatch

Kind = Literal["frequency", "baseline", "control"]


def _named(name: str) -> ScorerFactory:
    return lambda boxes: resolve_scorer(name)


def _uniform(boxes: Tensor) -> Scorer:
    return uniform_scores


def _fixed(scores: list[Tensor]) -> Scorer:
    """The scorer that returns ``scores`` (computed once, reused for every budget)."""
    return lambda *_: scores


@dataclass(frozen=True)
class QuadtreeArm:
    """Greedy quadtree allocation with the scorer ``factory(boxes)`` builds; scores are computed
    once per chunk of scenes and reused for every budget."""

    name: str
    kind: Kind
    factory: ScorerFactory
    chunk: int = 100

    def visible(self, batch: SceneBatch, budgets: list[int]) -> dict[int, list[Tensor]]:
        parts: dict[int, list[list[Tensor]]] = {b: [] for b in budgets}
        for start in range(0, len(batch), self.chunk):
            part = slice(start, start + self.chunk)
            images = batch.images[part].float() / 255
            scores = self.factory(batch.boxes[part])(images, PATCH, MAX_PATCH)
            for budget in budgets:
                allocation = allocate(images, budget, PATCH, MAX_PATCH, "greedy", _fixed(scores))
                parts[budget].append(allocation.nodes())
        return {b: [torch.cat(maps) for maps in zip(*p, strict=True)] for b, p in parts.items()}


ARMS: list[QuadtreeArm] = [
    QuadtreeArm("uniform", "baseline", _uniform),
    QuadtreeArm("laplacian", "frequency", _named("laplacian")),
    QuadtreeArm("entropy", "baseline", _named("entropy")),
    QuadtreeArm("blur", "baseline", _named("blur")),
    QuadtreeArm("oracle", "control", oracle),
    QuadtreeArm("anti_oracle", "control", anti_oracle),
]
"""Every arm the experiment runs, in table order."""

SPLITS = (0, 4, 8, 16, 24, 32, 48, 64, 80)
BUDGETS = [GEOMETRY.num_cells + 3 * s for s in SPLITS]
"""Visual tokens evaluated: 16 (coarsest) ... 256 (full detail)."""

"""The allocators compared ("arms"), one list entry each.

An arm says which quadtree nodes the reader sees for each budget: ``arm.visible(batch, budgets)``
-> ``{budget: [(B, n, n) bool per depth]}`` (the shape of ``Allocation.nodes()``); the budget is
in visual tokens (leaves), ``16 + 3 s`` for ``s`` splits, 16 (the coarsest cells) to 256
(every finest token).

- :class:`QuadtreeArm`: pyrtok's greedy quadtree with a scorer: a name (``laplacian``,
  ``entropy``, ``blur``), a :class:`~pyrtok.allocation.LaplacianScorer` with #13's options, or a
  factory that builds the scorer from the scene batch (the uniform order, the oracle controls).
- :class:`SelectionArm`: #15's token-selection baselines that apply to a local reader keep
  ``budget`` finest tokens and nothing else (``random``, seeded); ``visible`` sets those depth-2
  nodes and an ancestor when all its finest descendants are kept (its view is then determined by
  the kept tokens).
- :class:`DownsampleArm`: #15's ``downsample``, the resolution cap: every token of the finest
  uniform grid with at most ``budget`` tokens (16, 64 or 256; "at most" budget mode).

``cls_attention`` (VisionZip / VisPruner), ``mean_attention`` and FastV / PyramidDrop cannot
apply: they rank tokens by a ViT's CLS or mean attention, or by the LM's attention from the last
text token, and the local reader has neither attention nor a CLS token -- any substitute would
be a different method. ``divprune`` measures diversity of ViT embeddings; the reader has none
(its input pixels are no embedding; on them #15's greedy costs ~4 CPU-minutes per 400 scenes and
9 budgets here, not run). #15's harness runs all of them on a ViT VLM.

Add an arm by appending to :data:`ARMS`; ``kind`` places it in the goal test: ``frequency``
(pyrtok's scorers), ``baseline`` (what they must beat) or ``control``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from needle.model import uniform_scores
from torch import Tensor

from pyrtok.allocation import allocate
from pyrtok.allocation.scorers import LaplacianScorer, Scorer, resolve_scorer
from pyrtok.vlm.baselines import RandomSelector

from .controls import ScorerFactory, anti_oracle, oracle
from .reader import DEPTHS, GEOMETRY
from .scenes import MAX_PATCH, PATCH, SIZE, SceneBatch

Kind = Literal["frequency", "baseline", "control"]


def _named(name: str) -> ScorerFactory:
    return lambda boxes: resolve_scorer(name)


def _scorer(scorer: Scorer) -> ScorerFactory:
    return lambda boxes: scorer


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


def finest_closure(keep: Tensor) -> list[Tensor]:
    """Kept finest tokens ``(B, 16, 16)`` bool -> visible nodes per depth (the shape of
    ``Allocation.nodes()``): a coarser node is visible when all its finest descendants are.

    Examples:
        >>> keep = torch.zeros(1, 16, 16, dtype=torch.bool)
        >>> keep[0, :2, :2] = True
        >>> [int(v.sum()) for v in finest_closure(keep)]
        [0, 1, 4]
    """
    maps = [keep]
    for _ in range(DEPTHS - 1):
        batch, n = maps[0].shape[:2]
        maps.insert(0, maps[0].reshape(batch, n // 2, 2, n // 2, 2).all(4).all(2))
    return maps


@dataclass(frozen=True)
class SelectionArm:
    """Keep the finest tokens ``select(batch, budget)`` ``(B, 256)`` bool chooses (exactly
    ``budget`` per scene), in chunks of ``chunk`` scenes."""

    name: str
    kind: Kind
    select: Callable[[SceneBatch, int], Tensor]
    chunk: int = 100

    def visible(self, batch: SceneBatch, budgets: list[int]) -> dict[int, list[Tensor]]:
        side = SIZE // PATCH
        out: dict[int, list[Tensor]] = {}
        for budget in budgets:
            keep = torch.cat(
                [
                    self.select(batch[start : start + self.chunk], budget)
                    for start in range(0, len(batch), self.chunk)
                ]
            )
            out[budget] = finest_closure(keep.reshape(-1, side, side))
        return out


def _random(batch: SceneBatch, budget: int) -> Tensor:
    """#15's seeded random selector (seed 0) on the 256 finest tokens."""
    placeholder = torch.zeros(len(batch), (SIZE // PATCH) ** 2, 1)
    return RandomSelector(budget, seed=0).select(None, placeholder, SIZE // PATCH, SIZE // PATCH)


@dataclass(frozen=True)
class DownsampleArm:
    """The resolution cap: every node down to the deepest uniform level whose token count
    ``16 * 4**d`` is at most the budget."""

    name: str
    kind: Kind

    def visible(self, batch: SceneBatch, budgets: list[int]) -> dict[int, list[Tensor]]:
        cells = GEOMETRY.num_cells
        out = {}
        for budget in budgets:
            level = max(d for d in range(DEPTHS) if cells * 4**d <= budget)
            out[budget] = [
                torch.full((len(batch), 4 << d, 4 << d), d <= level, dtype=torch.bool)
                for d in range(DEPTHS)
            ]
        return out


Arm = QuadtreeArm | SelectionArm | DownsampleArm

ARMS: list[Arm] = [
    QuadtreeArm("uniform", "baseline", _uniform),
    QuadtreeArm("laplacian", "frequency", _named("laplacian")),
    QuadtreeArm("laplacian_b01", "frequency", _scorer(LaplacianScorer(bands=(0, 1)))),
    QuadtreeArm("laplacian_surround", "frequency", _scorer(LaplacianScorer(surround=1.0))),
    QuadtreeArm(
        "laplacian_b01_surround", "frequency", _scorer(LaplacianScorer(bands=(0, 1), surround=1.0))
    ),
    QuadtreeArm("entropy", "baseline", _named("entropy")),
    QuadtreeArm("blur", "baseline", _named("blur")),
    SelectionArm("random", "baseline", _random),
    DownsampleArm("downsample", "baseline"),
    QuadtreeArm("oracle", "control", oracle),
    QuadtreeArm("anti_oracle", "control", anti_oracle),
]
"""Every arm the experiment runs, in table order."""

SPLITS = (0, 4, 8, 16, 24, 32, 48, 64, 80)
BUDGETS = [GEOMETRY.num_cells + 3 * s for s in SPLITS]
"""Visual tokens evaluated: 16 (coarsest) ... 256 (full detail)."""

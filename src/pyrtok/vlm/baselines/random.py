"""Random token selection: the sanity baseline (UniPruneBench finds it strong)."""

from __future__ import annotations

import torch
from torch import Tensor

from pyrtok.vlm.baselines.budget import GridSelector, keep_top


class RandomSelector(GridSelector):
    """Keep ``budget`` tokens drawn uniformly without replacement, per image.

    Draws come from the selector's own generator, seeded at construction: two selectors built
    with the same seed make the same draws in the same calls, whatever the global RNG does.

    Args:
        budget: tokens kept per image.
        seed: seed of the selector's generator.

    Shapes:
        grid ``(B, h, w, D)`` -> keep ``(B, h, w)`` bool, ``budget`` True per row.

    Examples:
        >>> keep = RandomSelector(5, seed=0)(None, [torch.zeros(2, 4, 4, 8)], None, 8)
        >>> keep[0].sum(dim=(1, 2)).tolist()
        [5, 5]
    """

    def __init__(self, budget: int, seed: int = 0) -> None:
        super().__init__(budget)
        self.seed = seed
        self.generator = torch.Generator().manual_seed(seed)

    def select(self, images: Tensor | None, tokens: Tensor, rows: int, cols: int) -> Tensor:
        scores = torch.rand(tokens.shape[:2], generator=self.generator)
        return keep_top(scores, self.budget).to(tokens.device)

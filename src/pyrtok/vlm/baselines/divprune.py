"""DivPrune (Alvar et al., CVPR 2025): max-min diversity over token embeddings."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from pyrtok.vlm.baselines.budget import GridSelector


def divprune(tokens: Tensor, budget: int) -> Tensor:
    """Greedy max-min diverse subset under cosine distance ``1 - cos``.

    The first token is the one farthest from its nearest neighbour; each next token is the one
    whose distance to the nearest already chosen token is largest (DivPrune's greedy solution
    of the max-min diversity problem). Runs in float32, batched, ``O(N^2 D + budget * N)``.

    Args:
        tokens: ``(B, N, D)`` embeddings.
        budget: tokens to keep, ``1 <= budget <= N``.

    Returns:
        ``(B, N)`` bool, ``budget`` True per row.

    Examples:
        >>> tokens = torch.tensor([[[1.0, 0.0], [0.99, 0.1], [0.0, 1.0], [-1.0, 0.0]]])
        >>> divprune(tokens, 3).tolist()
        [[True, False, True, True]]
    """
    unit = F.normalize(tokens.float(), dim=-1)
    distance = 1 - unit @ unit.transpose(1, 2)
    batch, count = tokens.shape[:2]
    rows = torch.arange(batch, device=tokens.device)
    keep = torch.zeros(batch, count, dtype=torch.bool, device=tokens.device)
    if count == 1:
        return keep.fill_(True)
    eye = torch.eye(count, dtype=torch.bool, device=tokens.device)
    nearest = distance.masked_fill(eye, float("inf")).min(dim=1).values
    chosen = nearest.argmax(dim=1)
    nearest_chosen = distance[rows, chosen]
    keep[rows, chosen] = True
    for _ in range(budget - 1):
        chosen = nearest_chosen.masked_fill(keep, -1.0).argmax(dim=1)
        keep[rows, chosen] = True
        nearest_chosen = torch.minimum(nearest_chosen, distance[rows, chosen])
    return keep


class DivPruneSelector(GridSelector):
    """Keep the ``budget`` most diverse tokens (:func:`divprune`) of each image.

    DivPrune scores the tokens after LLaVA's projector; here the tokens are the vision
    features the projector receives (the grid the selector is given), so the diversity is
    measured one linear map (and a GELU) earlier.

    Args:
        budget: tokens kept per image.

    Shapes:
        grid ``(B, h, w, D)`` -> keep ``(B, h, w)`` bool, ``budget`` True per row.

    Examples:
        >>> keep = DivPruneSelector(3)(None, [torch.randn(2, 4, 4, 8)], None, 8)
        >>> keep[0].sum(dim=(1, 2)).tolist()
        [3, 3]
    """

    def select(self, images: Tensor | None, tokens: Tensor, rows: int, cols: int) -> Tensor:
        return divprune(tokens, self.budget)

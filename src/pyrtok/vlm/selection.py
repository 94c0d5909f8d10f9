"""Per-region selection of residual tokens: which finer-level tokens each image gets.

A selector maps ``(images, residual grids, query, patch_size)`` to one bool keep map per scale
``(B, h_s, w_s)``; scale 0 (the coarse tokens) is always kept in full.

- :class:`FrequencySelector` (default): a quadtree allocation by
  :func:`~pyrtok.allocation.allocate` with ``min_patch = p`` and ``max_patch = p * 2**(L-1)``.
  Quadtree depth ``d`` is VLM scale ``s = d``, so the keep map of scale ``s`` is the allocation's
  tree at that depth (:meth:`~pyrtok.allocation.Allocation.nodes`): the residual tokens of a
  region are kept where its node exists, i.e. under every split. Each split costs 4 residual
  tokens.
- :class:`AllSelector`: every residual token.
- :class:`QuerySelector`: query-conditioned (the seed's ``query_needs_detail``): a gate on the
  question decides whether the image gets any residual tokens; a bilinear score of question
  and residual token picks the top ``detail`` fraction per level.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from pyrtok.allocation import Allocation, FrequencyAwareAllocator, allocate


def _all_keep(grids: list[Tensor]) -> list[Tensor]:
    return [torch.ones(g.shape[:3], dtype=torch.bool, device=g.device) for g in grids]


def _check_detail(detail: float) -> float:
    if isinstance(detail, bool) or not isinstance(detail, int | float) or not 0 <= detail <= 1:
        raise ValueError(f"detail: expected a fraction in [0, 1], got {detail!r}")
    return float(detail)


class AllSelector(nn.Module):
    """Keep every token of every scale.

    Examples:
        >>> [k.all().item() for k in AllSelector()(None, [torch.zeros(1, 1, 1, 4)], None, 8)]
        [True]
    """

    def forward(
        self, images: Tensor | None, grids: list[Tensor], query: Tensor | None, patch_size: int
    ) -> list[Tensor]:
        return _all_keep(grids)


class FrequencySelector(nn.Module):
    """Residual tokens where the image has high-frequency content (quadtree allocation).

    Args:
        detail: fraction of the possible quadtree splits to make (0: coarse tokens only,
            1: every residual token); the budget is ``cells + 3 * round(detail * max_splits)``.
        strategy: as :func:`~pyrtok.allocation.allocate`.
        scorer: as :func:`~pyrtok.allocation.allocate`.
        allocator: a :class:`~pyrtok.allocation.FrequencyAwareAllocator` to use instead (its
            fixed budget; ``min_patch`` must be the encoder patch size and ``max_patch``
            ``patch_size * 2**(levels - 1)``).

    Shapes:
        ``images (B, C, H, W)`` -> ``L`` bool maps ``(B, h_s, w_s)``.

    Examples:
        >>> grids = [torch.zeros(2, 2, 2, 4), torch.zeros(2, 4, 4, 4)]
        >>> keep = FrequencySelector(detail=0.5)(torch.rand(2, 3, 32, 32), grids, None, 8)
        >>> [k.sum(dim=(1, 2)).tolist() for k in keep]
        [[4, 4], [8, 8]]
    """

    def __init__(
        self,
        detail: float = 0.5,
        strategy: str = "greedy",
        scorer: str = "laplacian",
        allocator: FrequencyAwareAllocator | None = None,
    ) -> None:
        super().__init__()
        self.detail = _check_detail(detail)
        self.strategy = strategy
        self.scorer = scorer
        if allocator is not None and not isinstance(allocator, FrequencyAwareAllocator):
            raise TypeError(
                f"allocator: expected a FrequencyAwareAllocator, got {type(allocator).__name__}"
            )
        self.allocator = allocator

    def forward(
        self, images: Tensor, grids: list[Tensor], query: Tensor | None, patch_size: int
    ) -> list[Tensor]:
        levels = len(grids)
        if levels == 1:
            return _all_keep(grids)
        max_patch = patch_size * 2 ** (levels - 1)
        if self.allocator is not None:
            if (self.allocator.min_patch, self.allocator.max_patch) != (patch_size, max_patch):
                raise ValueError(
                    f"allocator: expected min_patch={patch_size} and max_patch={max_patch} "
                    f"(encoder patch size and levels), got min_patch={self.allocator.min_patch} "
                    f"and max_patch={self.allocator.max_patch}"
                )
            allocation: Allocation = self.allocator(images)
        else:
            cells = (images.shape[-2] // max_patch) * (images.shape[-1] // max_patch)
            max_splits = cells * (4 ** (levels - 1) - 1) // 3
            budget = cells + 3 * round(self.detail * max_splits)
            allocation = allocate(images, budget, patch_size, max_patch, self.strategy, self.scorer)
        return allocation.nodes()


class QuerySelector(nn.Module):
    """Query-conditioned selection (the seed's ``query_needs_detail``).

    A gate ``sigmoid(w . q) > 0.5`` on the pooled question embedding decides whether an image
    gets residual tokens at all; if it does, each finer scale keeps its ``ceil(detail * n_s)``
    residual tokens with the highest score ``(W_q q) . (W_k r) / sqrt(d)``. Selection is hard
    (not differentiable); train the scorer on its own target, or use it untrained as a gate.

    Args:
        query_dim: size of the pooled question embedding (the LM's hidden size).
        feature_dim: vision feature size.
        detail: fraction of each finer scale's tokens to keep.
        score_dim: width ``d`` of the bilinear score.

    Shapes:
        ``query (B, query_dim)``, grids ``(B, h_s, w_s, feature_dim)`` -> bool ``(B, h_s, w_s)``.

    Examples:
        >>> selector = QuerySelector(query_dim=16, feature_dim=4, detail=0.25)
        >>> keep = selector(None, [torch.zeros(1, 1, 1, 4), torch.randn(1, 4, 4, 4)],
        ...     torch.randn(1, 16), 8)
        >>> keep[1].sum().item() in (0, 4)
        True
    """

    def __init__(
        self, query_dim: int, feature_dim: int, detail: float = 0.5, score_dim: int = 64
    ) -> None:
        super().__init__()
        self.detail = _check_detail(detail)
        self.gate = nn.Linear(query_dim, 1)
        self.query_proj = nn.Linear(query_dim, score_dim)
        self.key_proj = nn.Linear(feature_dim, score_dim)

    def forward(
        self, images: Tensor | None, grids: list[Tensor], query: Tensor | None, patch_size: int
    ) -> list[Tensor]:
        if query is None:
            raise ValueError("query: QuerySelector needs the pooled question embedding, got None")
        keep = _all_keep(grids)
        needs_detail = torch.sigmoid(self.gate(query.float()))[:, 0] > 0.5
        q = self.query_proj(query.float())
        for s in range(1, len(grids)):
            scores = torch.einsum("bd,bhwd->bhw", q, self.key_proj(grids[s].float()))
            flat = scores.flatten(1) / math.sqrt(q.shape[-1])
            count = math.ceil(self.detail * flat.shape[1])
            chosen = torch.zeros_like(flat, dtype=torch.bool)
            chosen.scatter_(1, flat.topk(count, dim=1).indices, True)
            keep[s] = (chosen & needs_detail[:, None]).view_as(keep[s])
        return keep

"""Split selection: which internal quadtree nodes to split so a batch meets its budget exactly.

Every strategy takes node scores (``depth`` maps, entry ``d`` of shape
``(B, cell_rows * 2**d, cell_cols * 2**d)``, see :mod:`pyrtok.allocation.scorers`) and a number
of splits ``s``, and returns ``depth`` boolean maps of the same shapes with exactly ``s`` nodes
set per image, forming valid trees (a node is split only if its parent is). The whole batch is
processed with tensor ops: no Python loop over images or nodes.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor

from pyrtok.allocation.quadtree import QuadtreeGeometry, children, sum_pool


def _flatten(maps: list[Tensor]) -> Tensor:
    return torch.cat([m.flatten(1) for m in maps], dim=1)


def _unflatten(flat: Tensor, geometry: QuadtreeGeometry) -> list[Tensor]:
    maps, start = [], 0
    for d in range(geometry.depth):
        rows, cols = geometry.grid(d)
        maps.append(flat[:, start : start + rows * cols].reshape(-1, rows, cols))
        start += rows * cols
    return maps


def _paths(values: list[Tensor], missing: int) -> Tensor:
    """``(B, n, depth)``: for every internal node (flattened as in :func:`_flatten`), the values
    on its path from the cell down to itself, padded with ``missing`` below the node."""
    depth = len(values)
    flat = []
    for d in range(depth):
        steps = []
        for a in range(depth):
            if a <= d:
                ancestor = values[a]
                for _ in range(d - a):
                    ancestor = children(ancestor)
                steps.append(ancestor)
            else:
                steps.append(torch.full_like(values[d], missing))
        flat.append(torch.stack(steps, dim=-1).flatten(1, 2))
    return torch.cat(flat, dim=1)


def greedy_keys(scores: list[Tensor]) -> list[Tensor]:
    """Sort keys that put the internal nodes in the order the greedy loop splits them.

    The loop pops the leaf of highest score, ties going to the shallower node, then to raster
    order. First every node gets its priority in that total order (an integer, higher = first,
    all distinct). For a node with path priorities ``p_0 (cell), ..., p_t (itself)``, key 1 is
    ``min(p)``, key 2 the minimum of the path below that position, and so on; missing keys
    rank above every priority. The loop's order is lexicographically decreasing keys. Key 1
    alone is the classic bound (a node is never split before its parent, so its priority is
    capped by the parent's); the further keys order the nodes that share it. A child's keys are
    always below its parent's (its path is the parent's plus one), so trees stay valid.

    Returns:
        ``depth`` int64 tensors ``(B, n)`` over the internal nodes flattened depth by depth.
    """
    flat = _flatten(scores)
    count = flat.shape[1]
    order = torch.sort(flat, dim=1, descending=True, stable=True).indices
    rank = torch.empty_like(order).scatter_(
        1, order, torch.arange(count, device=flat.device).expand_as(order)
    )
    priority, start = count - rank, 0
    values = []
    for score in scores:
        size = score.shape[1] * score.shape[2]
        values.append(priority[:, start : start + size].reshape(score.shape))
        start += size
    missing = count + 1
    path = _paths(values, missing)
    depth = path.shape[-1]
    position = torch.arange(depth, device=path.device)
    begin = torch.zeros(path.shape[:-1], dtype=torch.long, device=path.device)
    keys = []
    for _ in range(depth):
        masked = torch.where(position >= begin[..., None], path, missing)
        key, where = masked.min(dim=-1)
        keys.append(key)
        begin = torch.where(key == missing, begin, where + 1)
    return keys


def greedy_splits(scores: list[Tensor], geometry: QuadtreeGeometry, splits: int) -> list[Tensor]:
    """Repeatedly split the leaf with the highest score, ``splits`` times per image.

    The same trees as Quadformer's priority-queue loop (score ties go to the shallower node,
    then to raster order), computed for the whole batch with a few sorts: the loop's order is
    the lexicographic order of :func:`greedy_keys`, so its tree is the first ``splits`` nodes in
    that order. A parent always precedes its children, so the result is a valid tree.

    When scores never increase from a node to its children, this tree has the highest total
    score of all trees with ``splits`` splits (in general that needs
    :func:`~pyrtok.allocation.optimal.optimal_splits`).

    Examples:
        >>> g = QuadtreeGeometry.create(32, 32, 8, 16)
        >>> scores = [torch.tensor([[[4.0, 1.0], [3.0, 2.0]]])]
        >>> greedy_splits(scores, g, 2)[0]
        tensor([[[ True, False],
                 [ True, False]]])
    """
    if not scores:
        return []
    keys = greedy_keys(scores)
    order = torch.arange(keys[0].shape[1], device=keys[0].device).expand(keys[0].shape[0], -1)
    for key in reversed(keys):
        step = torch.sort(key.gather(1, order), dim=1, descending=True, stable=True).indices
        order = order.gather(1, step)
    chosen = torch.zeros(order.shape, dtype=torch.bool, device=order.device)
    chosen.scatter_(1, order[:, :splits], True)
    return _unflatten(chosen, geometry)


def uniform_splits(
    batch: int, geometry: QuadtreeGeometry, depth: int, device: torch.device
) -> list[Tensor]:
    """Split every node above ``depth``: a regular grid of ``cells * 4**depth`` equal tokens."""
    return [
        torch.full((batch, *geometry.grid(d)), d < depth, dtype=torch.bool, device=device)
        for d in range(geometry.depth)
    ]


def distribute(weights: Tensor, total: int, cap: int) -> Tensor:
    """Share ``total`` units among the columns of ``weights`` ``(B, n)`` in proportion to them,
    each between 0 and ``cap``, rounding by largest remainder so every row sums to ``total``.

    Shares above ``cap`` are clipped and the excess is shared again among the rest (water
    filling). A row of zero weights is shared evenly. Remainder ties go to the lower index.

    Examples:
        >>> distribute(torch.tensor([[1.0, 1.0, 1.0], [6.0, 1.0, 0.0]]), 4, 3)
        tensor([[2, 1, 1],
                [3, 1, 0]])
    """
    n = weights.shape[1]
    if not 0 <= total <= n * cap:
        raise ValueError(f"total: {total} units cannot be shared by {n} slots of at most {cap}")
    weights = weights.to(torch.float64).clamp(min=0)
    largest = weights.max(dim=1, keepdim=True).values
    weights = torch.where(largest > 0, weights / largest, 1.0)
    capped = torch.zeros_like(weights, dtype=torch.bool)
    target = torch.zeros_like(weights)
    for _ in range(n):
        free = ~capped
        left = total - cap * capped.sum(dim=1, keepdim=True)
        free_weight = torch.where(free, weights, 0.0)
        share = free_weight.sum(dim=1, keepdim=True)
        # Free slots that all have zero weight share evenly.
        free_weight = torch.where(share == 0, free.to(weights.dtype), free_weight)
        share = free_weight.sum(dim=1, keepdim=True)
        share = torch.where(share > 0, share, 1.0)
        target = torch.where(capped, float(cap), left * free_weight / share)
        over = target > cap
        if not bool(over.any()):
            break
        capped |= over
    base = target.floor().clamp(max=cap)
    short = total - base.sum(dim=1, keepdim=True)
    remainder = torch.where(base < cap, target - base, -1.0)
    rank = torch.sort(remainder, dim=1, descending=True, stable=True).indices.argsort(dim=1)
    return (base + (rank < short).to(base.dtype)).long()


def _by_cell(x: Tensor, d: int) -> Tensor:
    """``(B, rows_d, cols_d)`` -> ``(B, cell_rows, cell_cols, 4**d)``: each cell's
    ``2**d x 2**d`` nodes of depth ``d`` gathered, raster within the cell."""
    return rearrange(x, "b (rows i) (cols j) -> b rows cols (i j)", i=1 << d, j=1 << d)


def _from_cell(x: Tensor, d: int) -> Tensor:
    """The inverse of :func:`_by_cell`."""
    return rearrange(x, "b rows cols (i j) -> b (rows i) (cols j)", i=1 << d, j=1 << d)


def cell_splits(scores: list[Tensor], geometry: QuadtreeGeometry, per_cell: Tensor) -> list[Tensor]:
    """Realise ``per_cell`` ``(B, cell_rows, cell_cols)`` split counts breadth first.

    A cell with ``m`` splits is split level by level: whole levels first (a regular grid of 1,
    4, 16, ... leaves), and the splits left over for the next, partial level go to its
    highest-scoring nodes (ties in raster order).
    """
    maps = []
    for d in range(geometry.depth):
        before = (4**d - 1) // 3
        quota = (per_cell - before).clamp(0, 4**d)
        cell_scores = _by_cell(scores[d], d)
        rank = torch.sort(cell_scores, dim=-1, descending=True, stable=True).indices.argsort(-1)
        maps.append(_from_cell(rank < quota[..., None], d))
    return maps


def cell_weights(scores: list[Tensor]) -> Tensor:
    """``(B, cell_rows, cell_cols)``: the total score of each cell's internal nodes."""
    return sum(sum_pool(score, 1 << d) for d, score in enumerate(scores))  # type: ignore[return-value]


def proportional_splits(
    scores: list[Tensor], geometry: QuadtreeGeometry, splits: int, weights: Tensor | None = None
) -> list[Tensor]:
    """Share the splits among cells in proportion to ``weights`` (default: each cell's total
    score), largest-remainder rounded so the total is exact, then :func:`cell_splits`.

    This is the seed's per-patch allocation made exact: each cell's token count is
    ``1 + 3 * m`` with ``m`` its share of the splits.
    """
    if not scores:
        return []
    weights = cell_weights(scores) if weights is None else weights
    batch = weights.shape[0]
    per_cell = distribute(weights.reshape(batch, -1), splits, geometry.splits_per_cell)
    return cell_splits(scores, geometry, per_cell.reshape(weights.shape))

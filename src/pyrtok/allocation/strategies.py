"""Split selection: which internal quadtree nodes to split so a batch meets its budget exactly.

Every strategy takes node scores (``depth`` maps, entry ``d`` of shape
``(B, cell_rows * 2**d, cell_cols * 2**d)``, see :mod:`pyrtok.allocation.scorers`) and a number
of splits ``s``, and returns ``depth`` boolean maps of the same shapes with exactly ``s``
existing nodes set per image, forming valid trees (a node is split only if its parent is, where
the parent of a root is a forced split; see :class:`~pyrtok.allocation.QuadtreeGeometry`). They
set the forced splits too, never a node outside the image, and read no score of either. The
whole batch is processed with tensor ops: no Python loop over images or nodes.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor

from pyrtok.allocation.quadtree import QuadtreeGeometry, children, sum_pool


def node_masks(geometry: QuadtreeGeometry, device: torch.device) -> list[tuple[Tensor, Tensor]]:
    """``(exists, forced)`` bool maps ``(rows_d, cols_d)`` of every split depth ``d``."""
    return [
        (geometry.node_exists(d, device), geometry.forced_splits(d, device))
        for d in range(geometry.depth)
    ]


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
    masks = node_masks(geometry, scores[0].device)
    # Forced splits come first, nodes outside the image never (their scores are not read).
    scores = [
        torch.where(f, torch.inf, torch.where(e, score, -torch.inf))
        for score, (e, f) in zip(scores, masks, strict=True)
    ]
    splits += geometry.num_forced_splits
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
    """Split every node above ``depth``: a regular grid of equal tokens
    (``geometry.uniform_budgets()[depth]``; roots below ``depth`` stay whole)."""
    return [
        (f | (e & (d < depth))).expand(batch, -1, -1).clone()
        for d, (e, f) in enumerate(node_masks(geometry, device))
    ]


def distribute(weights: Tensor, total: int, cap: int | Tensor) -> Tensor:
    """Share ``total`` units among the columns of ``weights`` ``(B, n)`` in proportion to them,
    each between 0 and ``cap`` (an int, or ``(n,)`` per column), rounding by largest remainder
    so every row sums to ``total``.

    Shares above ``cap`` are clipped and the excess is shared again among the rest (water
    filling). A row of zero weights is shared evenly. Remainder ties go to the lower index.

    Examples:
        >>> distribute(torch.tensor([[1.0, 1.0, 1.0], [6.0, 1.0, 0.0]]), 4, 3)
        tensor([[2, 1, 1],
                [3, 1, 0]])
    """
    n = weights.shape[1]
    caps = torch.as_tensor(cap, dtype=torch.float64, device=weights.device).expand(n)
    if not 0 <= total <= int(caps.sum()):
        raise ValueError(f"total: {total} units cannot be shared by {n} slots of at most {cap}")
    weights = weights.to(torch.float64).clamp(min=0) * (caps > 0)
    largest = weights.max(dim=1, keepdim=True).values
    weights = torch.where(largest > 0, weights / largest, 1.0)
    capped = torch.zeros_like(weights, dtype=torch.bool)
    target = torch.zeros_like(weights)
    for _ in range(n):
        free = ~capped & (caps > 0)
        left = total - (caps * capped).sum(dim=1, keepdim=True)
        free_weight = torch.where(free, weights, 0.0)
        share = free_weight.sum(dim=1, keepdim=True)
        # Free slots that all have zero weight share evenly.
        free_weight = torch.where(share == 0, free.to(weights.dtype), free_weight)
        share = free_weight.sum(dim=1, keepdim=True)
        share = torch.where(share > 0, share, 1.0)
        target = torch.where(capped, caps, left * free_weight / share)
        over = target > caps
        if not bool(over.any()):
            break
        capped |= over
    base = torch.minimum(target.floor(), caps)
    short = total - base.sum(dim=1, keepdim=True)
    remainder = torch.where(base < caps, target - base, -1.0)
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

    A cell with ``m`` splits is split level by level: whole levels of its existing nodes first
    (a regular grid of 1, 4, 16, ... leaves in a whole cell), and the splits left over for the
    next, partial level go to its highest-scoring existing nodes (ties in raster order).
    """
    maps = []
    before = torch.zeros_like(per_cell)
    for d, (exists, forced) in enumerate(node_masks(geometry, per_cell.device)):
        count = _by_cell(exists[None], d).sum(dim=-1)
        quota = torch.minimum((per_cell - before).clamp(min=0), count)
        cell_scores = _by_cell(torch.where(exists, scores[d], -torch.inf), d)
        rank = torch.sort(cell_scores, dim=-1, descending=True, stable=True).indices.argsort(-1)
        maps.append(_from_cell(rank < quota[..., None], d) | forced)
        before = before + count
    return maps


def cell_capacity(geometry: QuadtreeGeometry, device: torch.device) -> Tensor:
    """``(cell_rows, cell_cols)`` int64: the existing internal nodes (possible splits) of each
    cell (``(4**depth - 1) / 3`` for a whole cell, fewer on the bottom/right edge)."""
    masks = node_masks(geometry, device)
    return sum(sum_pool(e.long(), 1 << d) for d, (e, _) in enumerate(masks))  # type: ignore[return-value]


def cell_weights(scores: list[Tensor], geometry: QuadtreeGeometry) -> Tensor:
    """``(B, cell_rows, cell_cols)``: the total score of each cell's existing internal nodes."""
    masks = node_masks(geometry, scores[0].device)
    return sum(  # type: ignore[return-value]
        sum_pool(torch.where(e, score, 0.0), 1 << d)
        for d, (score, (e, _)) in enumerate(zip(scores, masks, strict=True))
    )


def proportional_splits(
    scores: list[Tensor], geometry: QuadtreeGeometry, splits: int, weights: Tensor | None = None
) -> list[Tensor]:
    """Share the splits among cells in proportion to ``weights`` (default: each cell's total
    score), largest-remainder rounded so the total is exact, each cell at most its existing
    internal nodes, then :func:`cell_splits`.

    This is the seed's per-patch allocation made exact: a whole cell's token count is
    ``1 + 3 * m`` with ``m`` its share of the splits.
    """
    if not scores:
        return []
    weights = cell_weights(scores, geometry) if weights is None else weights
    batch = weights.shape[0]
    capacity = cell_capacity(geometry, weights.device).flatten()
    per_cell = distribute(weights.reshape(batch, -1), splits, capacity)
    return cell_splits(scores, geometry, per_cell.reshape(weights.shape))

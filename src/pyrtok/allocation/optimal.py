"""Exact best tree for a budget: dynamic programming over the quadtree, batched.

:func:`~pyrtok.allocation.strategies.greedy_splits` is optimal only when scores never increase
from a node to its children. :func:`optimal_splits` maximises the total score of the split nodes
for any scores. For every node it computes ``f[m]``, the best total with ``m`` splits inside the
node's subtree; children combine by max-plus convolution, then all cells of an image combine the
same way, pairwise. The argmax of every convolution is kept, and the splits are read back from
the root counts down. A forced split (a node reaching past the image) combines its children
without counting itself; a node outside the image holds no split. Cost per image is about
``max_splits**2`` additions.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor

from pyrtok.allocation.quadtree import QuadtreeGeometry
from pyrtok.allocation.strategies import node_masks

_CHUNK = 1 << 24


def _max_plus(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """``out[..., m] = max_i a[..., i] + b[..., m - i]`` and the maximising ``i`` (first one).

    Shapes:
        a, b: ``(..., n)`` -> both outputs ``(..., 2n - 1)``
    """
    n = a.shape[-1]
    m = torch.arange(2 * n - 1, device=a.device)
    i = torch.arange(n, device=a.device)
    j = m[None, :] - i[:, None]
    j = torch.where((j >= 0) & (j < n), j, n)
    lead = a.shape[:-1]
    a2, b2 = a.reshape(-1, n), b.reshape(-1, n)
    b2 = torch.cat([b2, torch.full_like(b2[:, :1], float("-inf"))], dim=1)
    values, index = [], []
    rows = max(1, _CHUNK // (n * (2 * n - 1)))
    for a_part, b_part in zip(torch.split(a2, rows), torch.split(b2, rows), strict=True):
        total = a_part[:, :, None] + b_part[:, j]
        best = total.max(dim=1)
        values.append(best.values)
        index.append(best.indices)
    return torch.cat(values).reshape(*lead, -1), torch.cat(index).reshape(*lead, -1)


def _quads(x: Tensor) -> Tensor:
    """``(B, 2r, 2c, n)`` -> ``(B, r, c, 4, n)``: the four children of each node, raster order."""
    return rearrange(x, "b (r i) (c j) n -> b r c (i j) n", i=2, j=2)


def _pad(x: Tensor, length: int) -> Tensor:
    extra = length - x.shape[-1]
    if extra == 0:
        return x
    return torch.cat([x, x.new_full((*x.shape[:-1], extra), float("-inf"))], dim=-1)


def _pick(argmax: Tensor, count: Tensor) -> tuple[Tensor, Tensor]:
    left = argmax.gather(-1, count[..., None]).squeeze(-1)
    return left, count - left


def optimal_splits(scores: list[Tensor], geometry: QuadtreeGeometry, splits: int) -> list[Tensor]:
    """The ``splits`` split nodes of highest total score that form valid trees, per image.

    Ties go to the first maximiser (fewer splits in earlier children and cells), so the result
    is deterministic.

    Examples:
        >>> g = QuadtreeGeometry.create(16, 16, 4, 16)
        >>> root = torch.tensor([[[0.0]]])
        >>> kids = torch.tensor([[[9.0, 0.0], [0.0, 0.0]]])
        >>> [s.int().tolist() for s in optimal_splits([root, kids], g, 2)]
        [[[[1]]], [[[1, 0], [0, 0]]]]
    """
    depth = geometry.depth
    if depth == 0:
        return []
    work = torch.float64 if scores[0].dtype == torch.float64 else torch.float32
    masks = node_masks(geometry, scores[0].device)

    def node_table(d: int, inside: Tensor | None) -> Tensor:
        """``f`` of the depth-``d`` nodes given their children's best ``inside``: an existing
        node may stay whole (0) or split (its score + inside), a forced split always splits
        without counting itself, a node outside holds nothing."""
        exists, forced = masks[d]
        gain = scores[d].to(work)[..., None]
        below = torch.zeros_like(gain) if inside is None else inside
        split = torch.cat([torch.zeros_like(gain), gain + below], dim=-1)
        nothing = torch.full_like(split, float("-inf"))
        nothing[..., 0] = 0
        table = torch.where(exists[..., None], split, nothing)
        return torch.where(forced[..., None], _pad(below, split.shape[-1]), table)

    # Bottom-up: f[d] is (B, rows_d, cols_d, n_d); keep the argmax of each convolution.
    f = node_table(depth - 1, None)
    trace: list[tuple[Tensor, Tensor, Tensor]] = []
    for d in reversed(range(depth - 1)):
        kids = _quads(f)
        first, arg_first = _max_plus(kids[..., 0, :], kids[..., 1, :])
        second, arg_second = _max_plus(kids[..., 2, :], kids[..., 3, :])
        both, arg_both = _max_plus(first, second)
        trace.append((arg_first, arg_second, arg_both))
        f = node_table(d, both)
    trace.reverse()
    # Combine the cells of each image pairwise.
    batch = f.shape[0]
    level = f.reshape(batch, geometry.num_cells, -1)
    rounds: list[tuple[Tensor, bool]] = []
    while level.shape[1] > 1:
        odd = level.shape[1] % 2 == 1
        carry = level[:, -1:] if odd else None
        pairs = level[:, : level.shape[1] - 1] if odd else level
        pairs = pairs.reshape(batch, -1, 2, pairs.shape[-1])
        merged, arg = _max_plus(pairs[:, :, 0], pairs[:, :, 1])
        rounds.append((arg, odd))
        if carry is not None:
            merged = torch.cat([merged, _pad(carry, merged.shape[-1])], dim=1)
        level = merged
    # Top-down: split counts per cell, then per node.
    count = torch.full((batch, 1), splits, dtype=torch.long, device=f.device)
    for arg, odd in reversed(rounds):
        pair_count = count[:, :-1] if odd else count
        left, right = _pick(arg, pair_count)
        count_next = torch.stack([left, right], dim=-1).reshape(batch, -1)
        count = torch.cat([count_next, count[:, -1:]], dim=1) if odd else count_next
    count = count.reshape(batch, geometry.cell_rows, geometry.cell_cols)
    maps = []
    for d in range(depth):
        exists, forced = masks[d]
        maps.append((exists & (count > 0)) | forced)
        if d == depth - 1:
            break
        arg_first, arg_second, arg_both = trace[d]
        inside = torch.where(forced, count, (count - 1).clamp(min=0))
        first, second = _pick(arg_both, inside)
        c0, c1 = _pick(arg_first, first)
        c2, c3 = _pick(arg_second, second)
        quads = torch.stack([c0, c1, c2, c3], dim=-1)
        count = rearrange(quads, "b r c (i j) -> b (r i) (c j)", i=2, j=2)
    return maps

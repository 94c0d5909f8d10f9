"""The :class:`Allocation` result and its construction from split maps."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from pyrtok.allocation.quadtree import QuadtreeGeometry, children, sum_pool

LeafOrder = Literal["raster", "morton"]
LEAF_ORDERS: tuple[LeafOrder, ...] = ("raster", "morton")


def check_order(order: object) -> LeafOrder:
    """Validate a leaf order name (``"raster"`` or ``"morton"``)."""
    if order == "raster":
        return "raster"
    if order == "morton":
        return "morton"
    raise ValueError(f"order: expected one of {list(LEAF_ORDERS)}, got {order!r}")


@dataclass(frozen=True, eq=False)
class Allocation:
    """Leaves of one quadtree per image: where each token is and which pyramid level it reads,
    and the tree they are the leaves of.

    Leaves are ordered by ``order``: ``"raster"`` sorts them row-major by their top-left corner
    (the order of a ViT's patch grid: at full detail it *is* that grid), ``"morton"`` goes cell
    by cell in raster order and depth first (Z order) inside a cell. Boxes are in pixels of the
    image. No leaf lies outside it; when a side is not a multiple of ``min_patch``, the leaves
    on the bottom/right edge reach past it by less than ``min_patch``, and their boxes (here
    whole) are clipped in
    :func:`~pyrtok.allocation.token_positions` and :func:`~pyrtok.allocation.detokenize` (see
    :class:`~pyrtok.allocation.quadtree.QuadtreeGeometry`).

    Attributes:
        boxes: ``(B, N, 3)`` int64 ``(y, x, size)`` of each leaf's top-left corner and side.
        leaf_level: ``(B, N)`` int64 Gaussian pyramid level ``k`` of each leaf
            (``size == min_patch * 2**k``).
        lengths: ``(B,)`` int64 number of leaves per image.
        mask: ``(B, N)`` bool, True for the first ``lengths[b]`` entries (padding is False).
        cell_counts: ``(B, cell_rows, cell_cols)`` int64 tokens per cell.
        splits: ``depth`` bool maps, entry ``d`` ``(B, cell_rows * 2**d, cell_cols * 2**d)``:
            which nodes of quadtree depth ``d`` are split (the tree, forced splits included;
            see :meth:`nodes`).
        image_size: ``(H, W)`` of the images the allocation was made for.
        min_patch: smallest leaf side in pixels (a level-0 token).
        max_patch: cell side in pixels, ``min_patch * 2**depth``.
        order: ``"raster"`` or ``"morton"``, the order of the leaves.

    Examples:
        >>> from pyrtok.allocation import allocate
        >>> a = allocate(torch.rand(2, 3, 128, 128), budget=10, min_patch=16, max_patch=64)
        >>> a.boxes.shape, a.lengths.tolist(), a.cell_counts.sum(dim=(1, 2)).tolist()
        (torch.Size([2, 10, 3]), [10, 10], [10, 10])
        >>> a[1].boxes.shape
        torch.Size([1, 10, 3])
        >>> nodes = a[0].nodes()  # the tree: cells, then 4 children per split (10 = 4 + 3 * 2)
        >>> nodes[0].sum().item(), sum(n.sum().item() for n in nodes[1:])
        (4, 8)
    """

    boxes: Tensor
    leaf_level: Tensor
    lengths: Tensor
    mask: Tensor
    cell_counts: Tensor
    splits: tuple[Tensor, ...]
    image_size: tuple[int, int]
    min_patch: int
    max_patch: int
    order: LeafOrder = "raster"

    @property
    def geometry(self) -> QuadtreeGeometry:
        return QuadtreeGeometry.create(*self.image_size, self.min_patch, self.max_patch)

    @property
    def batch_size(self) -> int:
        return int(self.boxes.shape[0])

    @property
    def device(self) -> torch.device:
        return self.boxes.device

    def __len__(self) -> int:
        return self.batch_size

    def __getitem__(self, index: int | slice | Tensor) -> Allocation:
        """The allocation of some images; an int keeps the batch dim (size 1)."""
        if isinstance(index, int):
            if not -self.batch_size <= index < self.batch_size:
                raise IndexError(
                    f"index: {index} is out of range for an allocation of {self.batch_size} images"
                )
            index = slice(index, index + 1 if index != -1 else None)
        return replace(
            self,
            boxes=self.boxes[index],
            leaf_level=self.leaf_level[index],
            lengths=self.lengths[index],
            mask=self.mask[index],
            cell_counts=self.cell_counts[index],
            splits=tuple(split[index] for split in self.splits),
        )

    def to(self, device: torch.device | str) -> Allocation:
        """A copy with every tensor on ``device``."""
        return replace(
            self,
            boxes=self.boxes.to(device),
            leaf_level=self.leaf_level.to(device),
            lengths=self.lengths.to(device),
            mask=self.mask.to(device),
            cell_counts=self.cell_counts.to(device),
            splits=tuple(split.to(device) for split in self.splits),
        )

    @staticmethod
    def cat(allocations: list[Allocation]) -> Allocation:
        """Stack allocations of the same geometry and order along the batch (rows keep their
        own token counts; padding grows to the longest).

        Examples:
            >>> from pyrtok.allocation import allocate
            >>> x = torch.rand(2, 3, 64, 64)
            >>> both = Allocation.cat([allocate(x[:1], 4, 16, 32), allocate(x[1:], 13, 16, 32)])
            >>> both.lengths.tolist(), tuple(both.boxes.shape)
            ([4, 13], (2, 13, 3))
        """
        if not allocations:
            raise ValueError("allocations: expected at least one Allocation, got none")
        first = allocations[0]
        for other in allocations[1:]:
            if (other.geometry, other.order) != (first.geometry, first.order):
                raise ValueError(
                    f"allocations: expected one geometry and order, got {first.geometry} "
                    f"({first.order}) and {other.geometry} ({other.order})"
                )
        count = max(int(a.boxes.shape[1]) for a in allocations)

        def padded(values: list[Tensor]) -> Tensor:  # dim 1 grows to ``count`` with zeros
            return torch.cat(
                [F.pad(v, [0, 0] * (v.ndim - 2) + [0, count - v.shape[1]]) for v in values]
            )

        return replace(
            first,
            boxes=padded([a.boxes for a in allocations]),
            leaf_level=padded([a.leaf_level for a in allocations]),
            lengths=torch.cat([a.lengths for a in allocations]),
            mask=padded([a.mask for a in allocations]),
            cell_counts=torch.cat([a.cell_counts for a in allocations]),
            splits=tuple(
                torch.cat([a.splits[d] for a in allocations]) for d in range(len(first.splits))
            ),
        )

    def level_counts(self) -> Tensor:
        """``(B, depth + 1)`` int64: tokens per pyramid level (column ``k`` = size
        ``min_patch * 2**k``)."""
        depth = self.geometry.depth
        onehot = F.one_hot(self.leaf_level.clamp(min=0), depth + 1)
        return (onehot * self.mask[..., None]).sum(dim=1)

    def nodes(self) -> list[Tensor]:
        """Which quadtree nodes are in the tree, per depth: ``depth + 1`` bool maps, entry ``d``
        ``(B, cell_rows * 2**d, cell_cols * 2**d)``: the roots, and the children of every split
        node, where they exist (:meth:`QuadtreeGeometry.node_exists`; forced splits are not
        nodes of the tree). A slice of the tree, nothing is rebuilt.

        With ``max_patch = min_patch * 2**(L - 1)``, entry ``d`` is the keep map of VLM scale
        ``s = d`` (see :class:`~pyrtok.allocation.QuadtreeGeometry` for the conventions): the
        residual tokens of a region are needed where its node is there.
        """
        geometry, device = self.geometry, self.device
        below = [torch.ones_like(self.cell_counts, dtype=torch.bool)]
        below += [children(split) for split in self.splits]
        return [b & geometry.node_exists(d, device) for d, b in enumerate(below)]


def _morton(row: Tensor, col: Tensor, bits: int) -> Tensor:
    code = torch.zeros_like(row)
    for bit in range(bits):
        code |= ((row >> bit) & 1) << (2 * bit + 1)
        code |= ((col >> bit) & 1) << (2 * bit)
    return code


def _node_table(
    geometry: QuadtreeGeometry, device: torch.device, order: LeafOrder
) -> tuple[Tensor, Tensor]:
    """Every node of depth 0..depth, depth-major then raster: ``(n, 4)`` ``(y, x, size, level)``
    and ``(n,)`` leaf order keys: for ``"morton"`` the cell raster index, then the Z order of
    the node's first finest node; for ``"raster"`` the row-major index of its top-left finest
    node. Leaves never share a top-left corner, so either key orders them strictly."""
    depth = geometry.depth
    rows_of, keys = [], []
    for d in range(depth + 1):
        rows, cols = geometry.grid(d)
        size = geometry.node_size(d)
        r = torch.arange(rows, device=device)[:, None].expand(rows, cols).flatten()
        c = torch.arange(cols, device=device)[None, :].expand(rows, cols).flatten()
        cell = (r >> d) * geometry.cell_cols + (c >> d)
        local = _morton(r & ((1 << d) - 1), c & ((1 << d) - 1), d)
        if order == "morton":
            keys.append(cell * 4**depth + (local << (2 * (depth - d))))
        else:
            keys.append((r << (depth - d)) * (geometry.cell_cols << depth) + (c << (depth - d)))
        level = torch.full_like(r, depth - d)
        rows_of.append(torch.stack([r * size, c * size, torch.full_like(r, size), level], dim=1))
    return torch.cat(rows_of), torch.cat(keys)


def allocation_from_splits(
    splits: list[Tensor],
    geometry: QuadtreeGeometry,
    batch: int,
    device: torch.device,
    order: LeafOrder = "raster",
) -> Allocation:
    """Turn split maps (``depth`` bool tensors ``(B, rows_d, cols_d)``) into leaves.

    A node is a leaf if it exists (:meth:`QuadtreeGeometry.node_exists`), is a root or the
    child of a split node, and is not split. Forced splits are added to ``splits``. ``order`` is
    the leaf order (see :class:`Allocation`).
    """
    order = check_order(order)
    splits = [split | geometry.forced_splits(d, device) for d, split in enumerate(splits)]
    below = torch.ones((batch, *geometry.grid(0)), dtype=torch.bool, device=device)
    leaf_maps = []
    cell_counts = torch.zeros((batch, *geometry.grid(0)), dtype=torch.long, device=device)
    for d in range(geometry.depth + 1):
        split = splits[d] if d < geometry.depth else torch.zeros_like(below)
        leaf = below & geometry.node_exists(d, device) & ~split
        leaf_maps.append(leaf.flatten(1))
        cell_counts += sum_pool(leaf.long(), 1 << d)
        below = children(split)
    leaf = torch.cat(leaf_maps, dim=1)
    table, keys = _node_table(geometry, device, order)
    lengths = leaf.sum(dim=1)
    count = int(lengths.max())
    never = torch.iinfo(torch.long).max
    ranked = torch.sort(torch.where(leaf, keys, never), dim=1).indices[:, :count]
    nodes = table[ranked]
    mask = torch.arange(count, device=device)[None, :] < lengths[:, None]
    return Allocation(
        boxes=torch.where(mask[..., None], nodes[..., :3], 0),
        leaf_level=torch.where(mask, nodes[..., 3], 0),
        lengths=lengths,
        mask=mask,
        cell_counts=cell_counts,
        splits=tuple(splits[: geometry.depth]),
        image_size=(geometry.height, geometry.width),
        min_patch=geometry.min_patch,
        max_patch=geometry.max_patch,
        order=order,
    )

"""Quadtree geometry: cells, node grids, budget arithmetic, padding and the input checks.

The image is tiled into cells of ``max_patch`` px. A node at depth ``d`` (cells are depth 0) is
``max_patch / 2**d`` px on a side; as a leaf it is one token read from Gaussian pyramid level
``k = depth - d`` as a ``min_patch`` x ``min_patch`` patch. The nodes of depth ``d`` form a grid
of ``(cell_rows * 2**d, cell_cols * 2**d)``; every per-node tensor in this package is laid out on
these grids, so a node's children are the 2x2 block below it.

Three indices name the same tree level, each where it reads naturally; convert them with the
methods of :class:`QuadtreeGeometry`, never by hand:

=====================  ===============  =====================================================
index                  0 is             used by
=====================  ===============  =====================================================
pyramid level ``k``    the finest       Gaussian/Laplacian pyramids, ``Allocation.leaf_level``
quadtree depth ``d``   the cells        split and score maps, ``Allocation.nodes()``
VLM scale ``s``        the coarsest     ``HierarchicalVLM`` scales, residual token grids
=====================  ===============  =====================================================

``k = depth - d`` and, with one VLM scale per pyramid level (``max_patch = min_patch *
2**(L - 1)``), ``s = d``.

Sizes that are not multiples of ``max_patch``: the node grids cover the image padded at the
bottom and right to whole cells (by reflection, reflect-101, for filtering), but no token lies on
the padding. Round the image up to whole ``min_patch`` leaves (``p``): the **leaf grid**,
``ceil(H / p) * p`` by ``ceil(W / p) * p``. At depth ``d`` (node side ``s``) the nodes that
**exist** are the top-left block of nodes wholly inside the leaf grid, so a leaf reaches past the
image by less than ``p`` pixels, and only when a side is not a multiple of ``p``; its box is
clipped to the image in :func:`~pyrtok.allocation.token_positions` and
:func:`~pyrtok.allocation.detokenize`. A node that reaches past the leaf grid but holds existing
nodes is a **forced split** (split by construction, not counted), so the image is tiled by
**roots**: whole cells, then strips of smaller nodes along the bottom and right edges (a 480 x 640
image with 64 px cells has 70 cells and 20 roots of 32 px). This is the largest set of nodes in
which every existing internal node has four existing children and full detail covers the image,
so with ``r`` roots a budget is feasible iff it is ``r + 3 * s`` for ``0 <= s <= max_splits`` (the
existing internal nodes), and full detail is ``ceil(H / p) * ceil(W / p)`` tokens (1200 for
480 x 640 at ``p = 16``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from pyrtok.pyramid.checks import sync_checks_enabled

_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _check_patch(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name}: expected an int, got {value!r}")
    if value < 1:
        raise ValueError(f"{name}: must be >= 1, got {value}")
    return value


@dataclass(frozen=True)
class QuadtreeGeometry:
    """Cell grid, depth and budget arithmetic for one image size.

    Build it with :meth:`create`, which validates the arguments.

    Examples:
        >>> g = QuadtreeGeometry.create(320, 512, min_patch=16, max_patch=128)
        >>> g.cell_rows, g.cell_cols, g.depth, g.padded_size
        (3, 4, 3, (384, 512))
        >>> g.num_cells, g.min_budget, g.full_budget, g.splits_for(19)  # 8 cells + 8 roots of 64
        (12, 16, 640, 1)
    """

    height: int
    width: int
    min_patch: int
    max_patch: int

    @classmethod
    def create(cls, height: int, width: int, min_patch: int, max_patch: int) -> QuadtreeGeometry:
        """Validate the patch sizes and the image size, and return the geometry."""
        min_patch = _check_patch(min_patch, "min_patch")
        max_patch = _check_patch(max_patch, "max_patch")
        ratio = max_patch // min_patch
        if max_patch % min_patch or ratio & (ratio - 1):
            raise ValueError(
                f"max_patch: must be min_patch times a power of two (min_patch={min_patch} -> "
                f"{min_patch}, {2 * min_patch}, {4 * min_patch}, ...), got max_patch={max_patch}"
            )
        if height < max_patch or width < max_patch:
            raise ValueError(
                f"images: each side must be >= max_patch={max_patch} (one cell), got an image of "
                f"{height}x{width}; use a smaller max_patch or a larger image"
            )
        return cls(height, width, min_patch, max_patch)

    @property
    def depth(self) -> int:
        """Number of split levels: ``max_patch == min_patch * 2**depth``."""
        return (self.max_patch // self.min_patch).bit_length() - 1

    @property
    def cell_rows(self) -> int:
        return int(-(-self.height // self.max_patch))

    @property
    def cell_cols(self) -> int:
        return int(-(-self.width // self.max_patch))

    @property
    def num_cells(self) -> int:
        return self.cell_rows * self.cell_cols

    @property
    def padded_size(self) -> tuple[int, int]:
        """``(H, W)`` after reflect padding to whole cells."""
        return self.cell_rows * self.max_patch, self.cell_cols * self.max_patch

    def existing_grid(self, d: int) -> tuple[int, int]:
        """``(rows, cols)`` of the top-left block of depth-``d`` nodes that exist: those wholly
        inside the leaf grid (the image rounded up to whole ``min_patch`` leaves)."""
        size, p = self.node_size(d), self.min_patch
        return -(-self.height // p) * p // size, -(-self.width // p) * p // size

    def node_exists(self, d: int, device: torch.device | str = "cpu") -> Tensor:
        """``(rows_d, cols_d)`` bool: which nodes of depth ``d`` exist (can be tokens)."""
        return _block(self.grid(d), self.existing_grid(d), device)

    def forced_splits(self, d: int, device: torch.device | str = "cpu") -> Tensor:
        """``(rows_d, cols_d)`` bool: the nodes of depth ``d`` that reach past the leaf grid but
        hold existing nodes; every tree splits them, and they are not counted as splits.

        Examples:
            >>> g = QuadtreeGeometry.create(48, 64, min_patch=16, max_patch=32)
            >>> g.forced_splits(0).int().tolist(), g.min_budget  # 2 cells + 4 roots of 16 px
            ([[0, 0], [1, 1]], 6)
            >>> g.num_forced_splits
            2
        """
        reaching = _block(self.grid(d), self._reaching_grid(d), device)
        return reaching & ~self.node_exists(d, device)

    def _reaching_grid(self, d: int) -> tuple[int, int]:
        """``(rows, cols)`` of the top-left block of depth-``d`` nodes that reach into the image."""
        size = self.node_size(d)
        return -(-self.height // size), -(-self.width // size)

    @property
    def num_forced_splits(self) -> int:
        """Forced splits over all depths (counted on the host: no device sync)."""
        reaching = (self._reaching_grid(d) for d in range(self.depth))
        return sum(rows * cols for rows, cols in reaching) - self.max_splits

    def _exist_count(self, d: int) -> int:
        rows, cols = self.existing_grid(d)
        return rows * cols

    @property
    def min_budget(self) -> int:
        """Tokens when nothing is split: one per root (an existing node whose parent does not
        exist); ``num_cells`` when the sides are multiples of ``max_patch``."""
        nested = sum(4 * self._exist_count(d) for d in range(self.depth))
        return sum(self._exist_count(d) for d in range(self.depth + 1)) - nested

    @property
    def max_splits(self) -> int:
        """Splits of full detail: every existing internal node."""
        return sum(self._exist_count(d) for d in range(self.depth))

    @property
    def full_budget(self) -> int:
        """Tokens when every leaf is ``min_patch`` (full detail): ``ceil(H / p) * ceil(W / p)``."""
        return self._exist_count(self.depth)

    def grid(self, d: int) -> tuple[int, int]:
        """``(rows, cols)`` of the node grid at depth ``d`` (0 = cells)."""
        return self.cell_rows << d, self.cell_cols << d

    def node_size(self, d: int) -> int:
        """Side in pixels of a node at depth ``d``."""
        return self.max_patch >> d

    def _check_index(self, value: int, top: int, name: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= top:
            raise ValueError(f"{name}: expected an int in [0, {top}], got {value!r}")
        return value

    def level_of_depth(self, d: int) -> int:
        """Pyramid level ``k`` (0 = finest) a leaf at quadtree depth ``d`` (0 = cell) reads.

        Examples:
            >>> g = QuadtreeGeometry.create(64, 64, min_patch=8, max_patch=32)
            >>> [g.level_of_depth(d) for d in range(g.depth + 1)]
            [2, 1, 0]
        """
        return self.depth - self._check_index(d, self.depth, "d")

    def depth_of_level(self, k: int) -> int:
        """Quadtree depth ``d`` of a leaf that reads pyramid level ``k``."""
        return self.depth - self._check_index(k, self.depth, "k")

    def scale_of_level(self, k: int) -> int:
        """VLM scale ``s`` (0 = coarsest) of pyramid level ``k`` when the VLM has one scale per
        level, ``depth + 1`` in all."""
        return self.depth_of_level(k)

    def level_of_scale(self, s: int) -> int:
        """Pyramid level ``k`` of VLM scale ``s`` (the inverse of :meth:`scale_of_level`)."""
        return self.level_of_depth(self._check_index(s, self.depth, "s"))

    def uniform_budgets(self) -> list[int]:
        """Budgets a regular grid of equal tokens can meet: every node above depth ``d`` split,
        entry ``d`` (``cells * 4**d`` when the sides are multiples of ``max_patch``)."""
        return [
            self.min_budget + 3 * sum(map(self._exist_count, range(d)))
            for d in range(self.depth + 1)
        ]

    def _describe(self) -> str:
        return (
            f"a {self.height}x{self.width} image with max_patch {self.max_patch} and min_patch "
            f"{self.min_patch} ({self.min_budget} root tokens)"
        )

    def splits_for(self, budget: int) -> int:
        """Number of splits that give exactly ``budget`` leaves, or a ValueError naming the
        nearest feasible budgets."""
        if isinstance(budget, bool) or not isinstance(budget, int):
            raise TypeError(f"budget: expected an int number of tokens, got {budget!r}")
        low, high = self.min_budget, self.full_budget
        if budget < low:
            raise ValueError(
                f"budget: {budget} tokens is below one token per root for {self._describe()}; "
                f"the smallest feasible budget is {low}"
            )
        if budget > high:
            raise ValueError(
                f"budget: {budget} tokens exceeds full detail (every leaf min_patch) for "
                f"{self._describe()}; the largest feasible budget is {high}"
            )
        splits, remainder = divmod(budget - low, 3)
        if remainder:
            below, above = low + 3 * splits, low + 3 * (splits + 1)
            raise ValueError(
                f"budget: {budget} tokens is not feasible for {self._describe()}: each split "
                f"adds 3 tokens, so budgets are {low} + 3*s (s = 0..{self.max_splits}); the "
                f"nearest feasible budgets are {below} and {above}"
            )
        return splits

    def uniform_depth(self, budget: int) -> int:
        """Depth ``d`` with ``cells * 4**d == budget``, or a ValueError naming the nearest."""
        self.splits_for(budget)
        options = self.uniform_budgets()
        if budget not in options:
            below = max(b for b in options if b < budget)
            above = min(b for b in options if b > budget)
            raise ValueError(
                f"budget: {budget} tokens is not a regular grid for {self._describe()}; the "
                f"uniform strategy needs cells * 4**d tokens, i.e. one of {options}; the "
                f"nearest are {below} and {above}"
            )
        return options.index(budget)


def check_images(images: object, name: str = "images", values: bool = True) -> Tensor:
    """Validate a batch of images: a floating ``(B, C, H, W)`` tensor without NaN/Inf (the
    values are read only with ``values``, and while :class:`~pyrtok.sync_checks` is on)."""
    if not isinstance(images, Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(images).__name__}")
    if images.is_nested:
        raise TypeError(
            f"{name}: got a nested tensor; give images of different sizes as a list of "
            f"(C, H, W) tensors: list({name}.unbind())"
        )
    if images.ndim != 4:
        raise ValueError(
            f"{name}: expected shape (B, C, H, W), got {images.ndim} dims {tuple(images.shape)}"
        )
    if images.dtype not in _FLOAT_DTYPES:
        raise TypeError(
            f"{name}: expected a floating dtype, got {images.dtype}; integer images: "
            f"x.float() / 255"
        )
    if images.numel() == 0:
        raise ValueError(f"{name}: is empty, shape {tuple(images.shape)}")
    if not (values and sync_checks_enabled()):
        return images
    # min and max propagate NaN and reveal +-Inf, without a full-size boolean temporary.
    low, high = torch.aminmax(images.detach())
    if not (bool(low.isfinite()) and bool(high.isfinite())):
        raise ValueError(f"{name}: contains NaN or Inf values")
    return images


def work_dtype(images: Tensor) -> torch.dtype:
    """float64 for float64 input, float32 otherwise (half precision is scored in float32)."""
    return torch.float64 if images.dtype == torch.float64 else torch.float32


def geometry_for(
    images: Tensor, min_patch: int, max_patch: int, values: bool = True
) -> QuadtreeGeometry:
    """Validate ``images`` (their values too with ``values``: :func:`check_images`) and return
    the quadtree geometry of their size."""
    check_images(images, values=values)
    return QuadtreeGeometry.create(images.shape[-2], images.shape[-1], min_patch, max_patch)


def pad_to_cells(images: Tensor, geometry: QuadtreeGeometry) -> Tensor:
    """Reflect-pad ``(B, C, H, W)`` at the bottom/right to ``geometry.padded_size``.

    The result is in :func:`work_dtype` (half-precision inputs become float32).

    Examples:
        >>> g = QuadtreeGeometry.create(40, 64, 16, 32)
        >>> pad_to_cells(torch.rand(1, 3, 40, 64), g).shape
        torch.Size([1, 3, 64, 64])
    """
    work = images.to(work_dtype(images))
    height, width = geometry.padded_size
    pad_h, pad_w = height - geometry.height, width - geometry.width
    if pad_h == 0 and pad_w == 0:
        return work
    return F.pad(work, (0, pad_w, 0, pad_h), mode="reflect")


def sum_pool(x: Tensor, factor: int) -> Tensor:
    """Sum non-overlapping ``factor`` x ``factor`` blocks of the last two dims.

    Examples:
        >>> sum_pool(torch.ones(1, 4, 6), 2)
        tensor([[[4., 4., 4.],
                 [4., 4., 4.]]])
    """
    if factor == 1:
        return x
    *lead, height, width = x.shape
    blocks = x.reshape(*lead, height // factor, factor, width // factor, factor)
    return blocks.sum(dim=(-3, -1))


def _block(grid: tuple[int, int], block: tuple[int, int], device: torch.device | str) -> Tensor:
    """``grid`` bool map, True on its top-left ``block``."""
    rows = torch.arange(grid[0], device=device) < block[0]
    cols = torch.arange(grid[1], device=device) < block[1]
    return rows[:, None] & cols[None, :]


def children(x: Tensor) -> Tensor:
    """Repeat each node of the last two dims over its 2x2 children.

    Examples:
        >>> children(torch.tensor([[1, 2]]))
        tensor([[1, 1, 2, 2],
                [1, 1, 2, 2]])
    """
    return x.repeat_interleave(2, dim=-2).repeat_interleave(2, dim=-1)

"""Quadtree leaves as Qwen2-VL patches: four 14-px sub-patches per leaf, duplicated in time.

Qwen2-VL embeds ``patch_size`` (14) px patches with a ``(temporal_patch_size, 14, 14)`` 3-D
conv (a still image is repeated ``temporal_patch_size`` times) and its merger joins each
``spatial_merge_size`` x ``spatial_merge_size`` (2 x 2) group into one LM token. A quadtree
leaf is one merger group: with ``min_patch = 28`` a leaf of side ``28 * 2**k`` is the 28 x 28
patch of Gaussian level ``k``, cut here into its 2 x 2 sub-patches in the merger's order
(row-major) and laid out as Qwen2-VL's processor flattens a patch, ``(C, T, 14, 14)``.

Each sub-patch gets a 2-D position in patch units of the full-resolution image, at its
centre: Qwen2-VL's integer patch index ``(row, col)`` is the centre of the 14-px patch at
pixels ``(14 * row + 7, 14 * col + 7)``, so a sub-patch centred at pixel ``(y, x)`` sits at
``(y / 14 - 0.5, x / 14 - 0.5)``. At level 0 these are Qwen2-VL's own integer positions; at
level ``k > 0`` a sub-patch covers ``2**k`` patches and its position is fractional (the
centre of the patches it stands for).
"""

from __future__ import annotations

from dataclasses import replace

import torch
from einops import rearrange
from torch import Tensor

from pyrtok.allocation import Allocation, TokenizedImages


def leaf_subpatches(tokens: Tensor, patch_size: int, merge: int, temporal: int) -> Tensor:
    """Cut each leaf token into ``merge**2`` sub-patches, flattened as Qwen2-VL's processor does.

    Args:
        tokens: ``(B, N, C * p * p)`` with ``p = patch_size * merge``, each token ``(C, p, p)``
            (the layout of :func:`~pyrtok.allocation.tokenize`).
        patch_size: the vision model's patch side (14).
        merge: ``spatial_merge_size`` (2).
        temporal: ``temporal_patch_size`` (2): each sub-patch is repeated this many times.

    Returns:
        ``(B, N * merge**2, C * temporal * patch_size**2)``: leaf ``n``'s sub-patches at rows
        ``merge**2 * n ...`` in row-major order, each flattened ``(C, T, P, P)``.

    Examples:
        >>> x = torch.arange(3 * 28 * 28.0).reshape(1, 1, -1)
        >>> sub = leaf_subpatches(x, 14, 2, 2)
        >>> sub.shape
        torch.Size([1, 4, 1176])
        >>> sub[0, 1, :3].tolist()  # top-right sub-patch: row 0, columns 14..16
        [14.0, 15.0, 16.0]
    """
    side = patch_size * merge
    if tokens.shape[-1] % (side * side):
        raise ValueError(
            f"tokens: expected C * {side} * {side} values per token (leaves of "
            f"patch_size * merge = {side} px), got {tokens.shape[-1]}"
        )
    patches = rearrange(
        tokens, "b n (c i y j x) -> b n (i j) c y x", i=merge, j=merge, y=patch_size, x=patch_size
    )
    repeated = patches.unsqueeze(-3).expand(*patches.shape[:-2], temporal, *patches.shape[-2:])
    return rearrange(repeated, "b n s c t y x -> b (n s) (c t y x)")


def subpatch_positions(boxes: Tensor, patch_size: int, merge: int) -> Tensor:
    """2-D rotary positions ``(row, col)`` of each leaf's sub-patches, in patch units.

    Args:
        boxes: ``(..., 3)`` leaf centre ``y``, centre ``x`` and side, in pixels.
        patch_size: the vision model's patch side (14).
        merge: ``spatial_merge_size`` (2).

    Returns:
        ``(..., merge**2, 2)`` float32 positions, sub-patches in row-major order.

    Examples:
        >>> level0 = torch.tensor([[42.0, 14.0, 28.0]])  # the leaf at pixels (28, 0), 28 px
        >>> subpatch_positions(level0, 14, 2)[0].tolist()
        [[2.0, 0.0], [2.0, 1.0], [3.0, 0.0], [3.0, 1.0]]
        >>> level1 = torch.tensor([[28.0, 28.0, 56.0]])  # the leaf at (0, 0), 56 px
        >>> subpatch_positions(level1, 14, 2)[0, 0].tolist()
        [0.5, 0.5]
    """
    boxes = boxes.float()
    offsets = (torch.arange(merge, device=boxes.device, dtype=torch.float32) + 0.5) / merge - 0.5
    rows = boxes[..., 0:1] + boxes[..., 2:3] * offsets  # (..., merge) sub-patch centres
    cols = boxes[..., 1:2] + boxes[..., 2:3] * offsets
    shape = (*boxes.shape[:-1], merge, merge)
    grid = torch.stack([rows[..., :, None].expand(shape), cols[..., None, :].expand(shape)], -1)
    return (grid / patch_size - 0.5).flatten(-3, -2)


def pixel_tokens(tokens: TokenizedImages, allocation: Allocation) -> TokenizedImages:
    """``tokens`` with ``positions (B, N, 3)`` in pixels: each leaf's centre ``y``, ``x`` and
    side (Qwen2-VL's rotary needs absolute patch units, not the tokenizer's fractions of the
    image size); zeros on padding.

    Examples:
        >>> from pyrtok.allocation import allocate, tokenize
        >>> x = torch.rand(1, 3, 56, 56)
        >>> a = allocate(x, 4, min_patch=28, max_patch=56)
        >>> pixel_tokens(tokenize(x, a), a).positions[0, 1].tolist()
        [14.0, 42.0, 28.0]
    """
    boxes = allocation.boxes.float()
    half = boxes[..., 2:3] / 2
    centres = torch.cat([boxes[..., :2] + half, boxes[..., 2:3]], dim=-1)
    return replace(tokens, positions=centres * allocation.mask[..., None])

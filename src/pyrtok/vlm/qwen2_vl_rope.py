"""Qwen2-VL's rotary positions for quadtree leaves: the vision tower's 2-D rotary and the LM's
M-RoPE.

**Vision tower.** Qwen2-VL rotates each attention head's halves by the patch row (first half of
the frequencies) and column (second half), angles ``position * inv_freq``. The tower builds
them from integer patch indices (a table in transformers 4.5x, ``position.float() *
inv_freq`` in 5.x: the same float32 products); :func:`vision_rotary` computes them from any
float positions, so a sub-patch of a level-``k`` leaf takes its fractional centre
(:func:`~pyrtok.vlm.qwen2_vl_patches.subpatch_positions`) and rotary interpolates smoothly
between the integer positions it was trained on.

**LM (M-RoPE).** Qwen2-VL gives every LM token three position ids, ``(temporal, height,
width)``. Text tokens have three equal ids counting up. An image after ``s`` tokens of text
puts its LM token at merge-grid cell ``(h, w)`` on ``(s, s + h, s + w)``, and the text after
it continues at ``s + max(grid_h, grid_w)`` (``get_rope_index``). A quadtree leaf takes the
position of its centre in merge-grid units: ``(s, s + y_c / 28 - 0.5, s + x_c / 28 - 0.5)``
for a centre at pixel ``(y_c, x_c)`` -- a leaf at level 0 is one merge cell, on Qwen2-VL's own
integer position; a larger leaf sits between the cells it covers (fractional ids; the LM's
rotary embedding multiplies ``position_ids.float()`` by its frequencies, so it takes them).
"""

from __future__ import annotations

import torch
from torch import Tensor

from pyrtok.vlm.residual import compact


def vision_rotary(
    positions: Tensor, inv_freq: Tensor, scaling: float = 1.0
) -> tuple[Tensor, Tensor]:
    """``(cos, sin)`` of Qwen2-VL's vision rotary embedding at 2-D positions.

    Args:
        positions: ``(M, 2)`` (row, col) in patch units, any float values.
        inv_freq: ``(F,)`` the tower's ``rotary_pos_emb.inv_freq`` (``F = head_dim / 4``).
        scaling: the rotary's ``attention_scaling`` (1 for Qwen2-VL).

    Returns:
        ``cos, sin``: ``(M, 4 * F)`` float32, laid out ``[row, col, row, col]`` as the tower's.

    Examples:
        >>> cos, sin = vision_rotary(torch.tensor([[0.0, 1.0]]), torch.tensor([1.0, 0.5]))
        >>> cos.shape, sin[0, :4].tolist() == torch.tensor([0.0, 0.0, 1.0, 0.5]).sin().tolist()
        (torch.Size([1, 8]), True)
    """
    angles = positions.float()[..., None] * inv_freq.float()  # (M, 2, F)
    half = angles.flatten(-2)
    full = torch.cat([half, half], dim=-1)
    return full.cos() * scaling, full.sin() * scaling


def leaf_mrope(centres: Tensor, merge_px: int) -> Tensor:
    """``(..., 2)`` M-RoPE (height, width) offsets of leaves centred at pixels ``centres
    (..., 2)`` in a grid of ``merge_px``-px cells (28 for Qwen2-VL): the centre in cells, minus
    half a cell.

    Examples:
        >>> leaf_mrope(torch.tensor([[14.0, 42.0], [28.0, 28.0]]), 28).tolist()
        [[0.0, 1.0], [0.5, 0.5]]
    """
    return centres.float() / merge_px - 0.5


def mrope_positions(
    before: Tensor,
    after: Tensor,
    visual: Tensor,
    visual_mask: Tensor,
    span: Tensor,
    left_pad: bool = False,
) -> tuple[Tensor, Tensor]:
    """M-RoPE ids of merged ``text before | visual tokens | text after`` rows.

    The layout is :func:`~pyrtok.vlm.sequence.merge_sequence`'s: each row's real tokens packed
    to one side. Text before the image counts ``0 .. s - 1``; visual token ``j`` is at
    ``(s, s + visual[j, 0], s + visual[j, 1])``; text after continues at ``s + span``.

    Args:
        before: ``(B, T)`` bool, the text before each row's image (``split_at_image``).
        after: ``(B, T)`` bool, the text after it.
        visual: ``(B, N, 2)`` (height, width) offset of each visual token (:func:`leaf_mrope`).
        visual_mask: ``(B, N)`` bool.
        span: ``(B,)`` ``max(grid_h, grid_w)`` of each row's image in merge cells.
        left_pad: pad on the left (generation) instead of the right.

    Returns:
        ``position_ids (3, B, S)`` float32 (zeros on padding) and ``next (B,)`` the id the
        next text token of each row takes.

    Examples:
        >>> before = torch.tensor([[True, True, False, False]])
        >>> after = torch.tensor([[False, False, False, True]])
        >>> visual = torch.tensor([[[0.0, 0.0], [0.0, 1.0]]])
        >>> ids, nxt = mrope_positions(before, after, visual, torch.ones(1, 2).bool(),
        ...     torch.tensor([2]))
        >>> ids[:, 0].tolist(), nxt.tolist()
        ([[0.0, 1.0, 2.0, 2.0, 4.0], [0.0, 1.0, 2.0, 2.0, 4.0], [0.0, 1.0, 2.0, 3.0, 4.0]], [5.0])
    """
    start = before.sum(dim=1).float()
    text_before = before.long().cumsum(dim=1).float() - 1
    text_after = start[:, None] + span.float()[:, None] + after.long().cumsum(dim=1).float() - 1
    image = torch.cat(
        [start[:, None, None].expand(*visual.shape[:2], 1), start[:, None, None] + visual.float()],
        dim=-1,
    )
    values = torch.cat(
        [
            text_before[..., None].expand(-1, -1, 3),
            image,
            text_after[..., None].expand(-1, -1, 3),
        ],
        dim=1,
    )
    keep = torch.cat([before, visual_mask, after], dim=1)
    packed, _ = compact(values, keep, left_pad=left_pad)
    nxt = start + span.float() + after.sum(dim=1).float()
    return packed.permute(2, 0, 1), nxt

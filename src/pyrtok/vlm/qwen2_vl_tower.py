"""Quadtree leaves through Qwen2-VL's own vision tower: packed, 2-D rotary, patch merger.

:func:`encode_qwen2_vl` runs a ``Qwen2VLForConditionalGeneration``'s tower (``visual``) on the
leaf tokens of :func:`~pyrtok.allocation.tokenize` (``min_patch = 28``, normalised):

1. each leaf becomes its four 14-px sub-patches, repeated in time as for a still image
   (:func:`~pyrtok.vlm.qwen2_vl_patches.leaf_subpatches`), through the tower's own 3-D conv;
2. the rows of all images are packed into one sequence with ``cu_seqlens`` (one attention
   block per image), with 2-D rotary angles at the sub-patches' centres
   (:func:`~pyrtok.vlm.qwen2_vl_rope.vision_rotary`; fractional for leaves above level 0);
3. the tower's blocks, then its merger: every four consecutive sub-patches, one leaf, become
   one LM token.

With every leaf at level 0 in raster order, the packed sequence is exactly what Qwen2-VL's
image processor makes of the image (merge groups row-major, sub-patches row-major inside),
so the features equal the tower's own.

Qwen2.5-VL's tower is supported the same way: it runs most blocks with attention inside
``window_size`` (112) px windows of the image, full attention in ``fullatt_block_indexes``, on
a sequence reordered window by window. A leaf keeps its window when no leaf crosses a window
border: a quadtree node of side ``s`` sits on the grid of its own side (cells, and the smaller
roots along the bottom and right edges of an image whose sides are not multiples of
``max_patch``, alike), and Qwen2.5-VL's windows sit on the ``window_size`` grid from the same
origin (cut by the image border), so with ``max_patch`` dividing ``window_size`` every node,
hence every leaf, lies in one window. The leaves are then ordered window by window (raster
order inside a window, as Qwen2.5-VL orders its merge groups), windowed blocks attend within a
window's leaves, full blocks within the image's, and the merger's outputs go back to the
allocation's order. At full detail this is Qwen2.5-VL's own forward. A larger ``max_patch``
would give leaves that span several windows: :func:`check_windows` raises for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pyrtok.allocation import TokenizedImages
from pyrtok.vlm.qwen2_vl_patches import leaf_subpatches, subpatch_positions
from pyrtok.vlm.qwen2_vl_rope import vision_rotary


@dataclass(frozen=True)
class Qwen2VLParts:
    """What pyrtok reuses from a ``Qwen2VLForConditionalGeneration``.

    Attributes:
        visual: the vision tower (patch embedding, rotary, blocks, merger).
        patch_size: its patch side (14).
        merge: ``spatial_merge_size`` (2): a leaf of level 0 is ``patch_size * merge`` px.
        temporal: ``temporal_patch_size`` (2).
        image_token_id: the image placeholder id.
        video_token_id: the video placeholder id (rejected: images only).
        out_size: width of the merger's output (the LM's hidden size).
        window: Qwen2.5-VL's attention window side in pixels (``None``: Qwen2-VL, no windows).
        full_blocks: the blocks with full attention when there are windows.
    """

    visual: nn.Module
    patch_size: int
    merge: int
    temporal: int
    image_token_id: int
    video_token_id: int | None
    out_size: int
    window: int | None = None
    full_blocks: frozenset[int] = frozenset()

    @property
    def leaf_size(self) -> int:
        """Side of a level-0 leaf: ``patch_size * merge`` (28)."""
        return self.patch_size * self.merge


def qwen2_vl_parts(model: nn.Module) -> Qwen2VLParts:
    """The tower and geometry of a ``Qwen2VLForConditionalGeneration`` or
    ``Qwen2_5_VLForConditionalGeneration`` (transformers 4.5x and 5.x layouts:
    ``model.visual`` or ``model.model.visual``).

    Examples:
        >>> from pyrtok.vlm.testing import tiny_qwen2_vl
        >>> parts = qwen2_vl_parts(tiny_qwen2_vl())
        >>> parts.patch_size, parts.merge, parts.leaf_size, parts.image_token_id
        (14, 2, 28, 90)
    """
    config = getattr(model, "config", None)
    base = getattr(model, "model", None)
    visual = getattr(base, "visual", None) or getattr(model, "visual", None)
    vision = getattr(config, "vision_config", None)
    if config is None or not isinstance(visual, nn.Module) or vision is None:
        raise TypeError(
            f"model: expected a Qwen2VLForConditionalGeneration (a config with vision_config "
            f"and a vision tower at .model.visual or .visual), got {type(model).__name__}"
        )
    token = getattr(config, "image_token_id", None)
    if not isinstance(token, int):
        raise ValueError(f"model: its config has no int image_token_id, got {token!r}")
    video = getattr(config, "video_token_id", None)
    out = getattr(vision, "out_hidden_size", None) or getattr(vision, "hidden_size", None)
    text = getattr(config, "text_config", config)
    window = (
        getattr(vision, "window_size", None) if hasattr(vision, "fullatt_block_indexes") else None
    )
    return Qwen2VLParts(
        visual=visual,
        patch_size=int(vision.patch_size),
        merge=int(vision.spatial_merge_size),
        temporal=int(vision.temporal_patch_size),
        image_token_id=token,
        video_token_id=video if isinstance(video, int) else None,
        out_size=int(out if isinstance(out, int) else text.hidden_size),
        window=window,
        full_blocks=frozenset(getattr(vision, "fullatt_block_indexes", ())),
    )


def check_windows(parts: Qwen2VLParts, max_patch: int) -> None:
    """Raise when leaves of ``max_patch`` px could cross Qwen2.5-VL's attention windows.

    Examples:
        >>> parts = Qwen2VLParts(nn.Identity(), 14, 2, 2, 90, None, 64, window=112)
        >>> check_windows(parts, 112)
        >>> try:
        ...     check_windows(parts, 224)
        ... except ValueError as error:
        ...     print(str(error)[:59])
        max_patch: 224 px leaves would span several of Qwen2.5-VL's
    """
    if parts.window is not None and parts.window % max_patch:
        raise ValueError(
            f"max_patch: {max_patch} px leaves would span several of Qwen2.5-VL's "
            f"{parts.window}-px attention windows, which its windowed blocks cannot attend "
            f"across; use a max_patch that divides {parts.window} (e.g. {parts.window})"
        )


def window_order(boxes: Tensor, mask: Tensor, window: int) -> Tensor:
    """``(B, N)`` key of each leaf's window, increasing in raster order over the windows
    (``-1`` on padding). ``boxes (B, N, 3)`` are leaf centres and sides in pixels.

    Examples:
        >>> boxes = torch.tensor([[[14.0, 14.0, 28.0], [14.0, 126.0, 28.0], [126.0, 14.0, 28.0]]])
        >>> window_order(boxes, torch.ones(1, 3).bool(), 112).tolist()
        [[0, 1, 2]]
    """
    cell = (boxes[..., :2] / window).floor().long()
    columns = int(cell[..., 1].max()) + 1 if cell.numel() else 1
    return torch.where(mask, cell[..., 0] * columns + cell[..., 1], -1)


def encode_qwen2_vl(parts: Qwen2VLParts, tokens: TokenizedImages) -> Tensor:
    """Leaf tokens -> Qwen2-VL's merged visual tokens, one per leaf.

    Args:
        parts: :func:`qwen2_vl_parts` of the model.
        tokens: normalised leaf tokens ``(B, N, C * 28 * 28)``, their ``mask (B, N)`` and
            ``positions (B, N, 3)`` in **pixels**: leaf centre ``y``, ``x`` and side
            (:func:`~pyrtok.vlm.qwen2_vl_patches.pixel_tokens`).

    Returns:
        ``(B, N, D)`` merger outputs (the LM's hidden size), zeros on padding.

    Examples:
        >>> from pyrtok.allocation import allocate, tokenize
        >>> from pyrtok.vlm.qwen2_vl_patches import pixel_tokens
        >>> from pyrtok.vlm.testing import tiny_qwen2_vl
        >>> parts = qwen2_vl_parts(tiny_qwen2_vl())
        >>> x = torch.rand(2, 3, 112, 112)
        >>> allocation = allocate(x, [4, 7], min_patch=28, max_patch=56)
        >>> tokens = pixel_tokens(tokenize(x, allocation), allocation)
        >>> encode_qwen2_vl(parts, tokens).shape
        torch.Size([2, 7, 64])
    """
    mask = tokens.mask
    visual: Any = parts.visual
    sub = leaf_subpatches(tokens.tokens, parts.patch_size, parts.merge, parts.temporal)
    group = parts.merge * parts.merge
    real = mask.repeat_interleave(group, dim=1)
    positions = subpatch_positions(tokens.positions, parts.patch_size, parts.merge).flatten(1, 2)
    lengths = mask.sum(dim=1) * group
    cu_seqlens = F.pad(lengths.cumsum(0, dtype=torch.int32), (1, 0))
    rotary = visual.rotary_pos_emb
    cos, sin = vision_rotary(
        positions[real], rotary.inv_freq, float(getattr(rotary, "attention_scaling", 1.0))
    )
    hidden = visual.patch_embed(sub[real])
    windows = cu_seqlens
    order = torch.arange(int(mask.sum()), device=mask.device)
    if parts.window is not None:  # Qwen2.5-VL: leaves window by window, image by image
        key = window_order(tokens.positions, mask, parts.window)
        row = torch.arange(mask.shape[0], device=mask.device)[:, None].expand_as(mask)
        flat = (row * (int(key.max()) + 1) + key)[mask]
        order = torch.sort(flat, stable=True).indices
        counts = torch.unique_consecutive(flat[order], return_counts=True)[1] * group
        windows = F.pad(counts.cumsum(0, dtype=torch.int32), (1, 0))
        sub_order = (order[:, None] * group + torch.arange(group, device=order.device)).flatten()
        hidden, cos, sin = hidden[sub_order], cos[sub_order], sin[sub_order]
    for index, block in enumerate(visual.blocks):
        full = parts.window is None or index in parts.full_blocks
        hidden = block(
            hidden, cu_seqlens=cu_seqlens if full else windows, position_embeddings=(cos, sin)
        )
    merged = visual.merger(hidden)
    out = merged.new_zeros((*mask.shape, merged.shape[-1]))
    out[mask] = merged[torch.argsort(order)]
    return out  # type: ignore[no-any-return]

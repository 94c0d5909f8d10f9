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

Qwen2.5-VL's tower is not supported: it reorders the patches into windows of ``window_size``
px and runs most blocks with attention inside a window only. :func:`qwen2_vl_parts` raises for
it (see the guide's Qwen2-VL page for why and what supporting it needs).
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
    """

    visual: nn.Module
    patch_size: int
    merge: int
    temporal: int
    image_token_id: int
    video_token_id: int | None
    out_size: int

    @property
    def leaf_size(self) -> int:
        """Side of a level-0 leaf: ``patch_size * merge`` (28)."""
        return self.patch_size * self.merge


def qwen2_vl_parts(model: nn.Module) -> Qwen2VLParts:
    """The tower and geometry of a ``Qwen2VLForConditionalGeneration`` (transformers 4.5x
    and 5.x layouts: ``model.visual`` or ``model.model.visual``).

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
    if getattr(config, "model_type", "") == "qwen2_5_vl" or hasattr(
        visual, "fullatt_block_indexes"
    ):
        raise ValueError(
            "model: Qwen2.5-VL is not supported: its vision tower reorders patches into "
            f"{getattr(vision, 'window_size', 112)}-px windows and runs most blocks with "
            "attention inside a window only, a layout pyrtok's leaves do not follow yet; use "
            "a Qwen2-VL model (Qwen2VLForConditionalGeneration)"
        )
    token = getattr(config, "image_token_id", None)
    if not isinstance(token, int):
        raise ValueError(f"model: its config has no int image_token_id, got {token!r}")
    video = getattr(config, "video_token_id", None)
    out = getattr(vision, "hidden_size", None)
    text = getattr(config, "text_config", config)
    return Qwen2VLParts(
        visual=visual,
        patch_size=int(vision.patch_size),
        merge=int(vision.spatial_merge_size),
        temporal=int(vision.temporal_patch_size),
        image_token_id=token,
        video_token_id=video if isinstance(video, int) else None,
        out_size=int(out if isinstance(out, int) else text.hidden_size),
    )


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
    for block in visual.blocks:
        hidden = block(hidden, cu_seqlens=cu_seqlens, position_embeddings=(cos, sin))
    merged = visual.merger(hidden)
    out = merged.new_zeros((*mask.shape, merged.shape[-1]))
    out[mask] = merged
    return out  # type: ignore[no-any-return]

"""Progressive refinement on the quadtree: a budget ladder whose rungs only append tokens.

Greedy allocations are nested as the budget grows: the tree for ``b1`` tokens is a subtree of
the tree for ``b2 > b1`` (the greedy order of splits does not depend on the budget). A ladder
``16 -> 64 -> 256`` therefore refines an image by *appending* tokens: rung ``s`` sends the
leaves of its allocation that the previous rung did not have (the children of the new splits),
after the prefix already in the LM's KV cache. The parents those children refine stay in the
cache: the LM reads the coarse token and then its detail, as a coarse-to-fine VAR sequence.

At each rung the vision model encodes that rung's whole allocation (so a new leaf attends to
the whole image at that rung's detail, as it would in a one-shot forward at that budget), for
the samples still active only; the features of the leaves already sent are not sent again.
Allocations that are not nested (``"optimal"``, ``"proportional"`` strategies) still work: a
rung then sends the leaves it does not share with the previous one.

Position ids: the LM counts real tokens (1-D), unless the model places its visual tokens
(:meth:`MixedResolutionVLM.leaf_positions <pyrtok.vlm.MixedResolutionVLM.leaf_positions>`,
Qwen2-VL's M-RoPE): then every leaf sent, at any rung, takes its place in the image, the text
before the image counts ``0, 1, ...`` on every axis, and the question after the last rung sent
takes the id the model gives the text after the image (a
:data:`~pyrtok.vlm.answering.PlacedSegment`).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from pyrtok.allocation import Allocation, QuadtreeGeometry, cell_pyramid
from pyrtok.vlm.answering import PlacedSegment, ProgressiveAnswerer, ProgressiveOutput, Segment
from pyrtok.vlm.pixels import check_unit_range
from pyrtok.vlm.progressive import check_question
from pyrtok.vlm.residual import compact
from pyrtok.vlm.sequence import check_prompt, split_at_image
from pyrtok.vlm.wiring import embed_text

if TYPE_CHECKING:
    from pyrtok.vlm.mixed_resolution_vlm import MixedResolutionVLM


def check_ladder(budgets: Sequence[int]) -> tuple[int, ...]:
    """Validate a budget ladder: one or more strictly increasing ints >= 1.

    Examples:
        >>> check_ladder([16, 64, 256])
        (16, 64, 256)
    """
    values = tuple(budgets)
    if not values or any(isinstance(b, bool) or not isinstance(b, int) or b < 1 for b in values):
        raise ValueError(f"budgets: expected one or more ints >= 1, got {values!r}")
    if any(b <= a for a, b in itertools.pairwise(values)):
        raise ValueError(f"budgets: expected strictly increasing budgets, got {values}")
    return values


def leaf_keys(allocation: Allocation) -> Tensor:
    """``(B, N)`` int64 id of each leaf (its node: corner and level), ``-1`` on padding.

    Examples:
        >>> from pyrtok.allocation import allocate
        >>> a = allocate(torch.rand(1, 3, 32, 32), 4, 8, 16)
        >>> leaf_keys(a).shape, bool((leaf_keys(a) >= 0).all())
        (torch.Size([1, 4]), True)
    """
    width = allocation.geometry.padded_size[1]
    levels = allocation.geometry.depth + 1
    boxes = allocation.boxes
    key = (boxes[..., 0] * width + boxes[..., 1]) * levels + allocation.leaf_level
    return torch.where(allocation.mask, key, -1)


def new_leaves(allocation: Allocation, previous: Tensor | None) -> Tensor:
    """``(B, N)`` bool: the leaves of ``allocation`` not among ``previous`` (``leaf_keys`` of
    the previous rung for the same images, ``None`` at the first rung: every leaf is new).

    Examples:
        >>> from pyrtok.allocation import allocate
        >>> x = torch.rand(1, 3, 32, 32)
        >>> coarse, fine = allocate(x, 4, 8, 16), allocate(x, 7, 8, 16)
        >>> int(new_leaves(fine, leaf_keys(coarse)).sum())  # one split: 4 children
        4
    """
    if previous is None:
        return allocation.mask
    keys = leaf_keys(allocation)
    span = int(max(keys.max(), previous.max())) + 1
    rows = torch.arange(keys.shape[0], device=keys.device)[:, None] * span
    seen = torch.isin(keys + rows, torch.where(previous >= 0, previous + rows, -1))
    return allocation.mask & ~seen


def ladder_generate(
    vlm: MixedResolutionVLM,
    pixel_values: Tensor,
    input_ids: Tensor,
    attention_mask: Tensor | None,
    ladder: tuple[int, ...],
    answerer: ProgressiveAnswerer,
    reuse_cache: bool,
) -> ProgressiveOutput:
    """The loop of :meth:`MixedResolutionVLM.progressive_generate`: rung ``s`` allocates
    ``ladder[s]`` on the one pyramid of the active samples, encodes that allocation and sends
    the leaves the previous rung did not have (rung 0: the text before the image first)."""
    tick = time.perf_counter()
    real = check_prompt(input_ids, attention_mask)
    check_unit_range(pixel_values)
    ones = torch.ones(input_ids.shape[0], dtype=torch.long, device=input_ids.device)
    before, after = split_at_image(input_ids, real, vlm.image_token_id, ones)
    check_question(after)
    text = embed_text(vlm.language_model, input_ids, vlm.image_token_id)
    geometry = QuadtreeGeometry.create(
        pixel_values.shape[-2], pixel_values.shape[-1], vlm.patch_size, vlm.max_patch
    )
    pyramid = cell_pyramid(pixel_values, geometry)
    sent: list[Tensor | None] = [None]  # leaf keys of the previous rung, whole batch

    def segment(s: int, active: Tensor) -> Segment | PlacedSegment:
        images = pixel_values[active]
        levels = [level[active] for level in pyramid]
        allocation = vlm.default_allocator(ladder[s])(images, levels)
        previous = sent[0]
        new = new_leaves(allocation, None if previous is None else previous[active])
        keys = leaf_keys(allocation)
        every = keys.new_full((pixel_values.shape[0], keys.shape[1]), -1)
        every[active] = keys
        sent[0] = every
        embeds, mask, _ = vlm.encode_tokens(vlm.tokenize(images, allocation, levels))
        prefix = mask.shape[1] - new.shape[1]  # the CLS token(s) with keep_prefix
        keep = torch.cat([mask[:, :prefix] & (s == 0), new], dim=1)
        text_keep = before[active] if s == 0 else before[active][:, :0]
        values = torch.cat([text[active][:, : text_keep.shape[1]], embeds.to(text.dtype)], dim=1)
        every_kept = torch.cat([text_keep, keep], dim=1)
        packed = compact(values, every_kept)
        visual = keep.sum(dim=1)
        leaf_places = vlm.leaf_positions(allocation, before[active].sum(dim=1))
        if leaf_places is None:
            return packed[0], packed[1], visual
        places, text_next = leaf_places  # (R, A, N): the text before counts on every axis
        counting = (text_keep.long().cumsum(dim=1) - 1).to(places.dtype)
        places = torch.cat([counting.expand(places.shape[0], -1, -1), places], dim=-1)
        ids = compact(places.permute(1, 2, 0), every_kept)[0].permute(2, 0, 1)
        return packed[0], packed[1], visual, ids, text_next

    return answerer.run(segment, compact(text, after), len(ladder), reuse_cache, tick)

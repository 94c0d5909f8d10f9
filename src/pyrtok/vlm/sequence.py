"""Placing visual tokens into the text: placeholder merge, padding, attention masks, positions.

A prompt row holds its image as a run of ``image_token_id`` placeholders: either one placeholder
(expanded here to the row's visual-token count) or exactly as many as the row has visual tokens
(LLaVA's processor convention; then the result equals LLaVA's ``masked_scatter``). Rows may
have different visual-token counts: each row is rebuilt as
``text before | visual tokens | text after`` from its real (``attention_mask == 1``) tokens and
padded on one side, with a matching attention mask, ``position_ids`` counting real tokens only,
and ``labels`` set to ``-100`` on visual tokens and padding.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from pyrtok.vlm.residual import compact

IGNORE_INDEX = -100


@dataclass(frozen=True, eq=False)
class MergedSequence:
    """LM inputs after merging.

    Attributes:
        inputs_embeds: ``(B, S, D)``.
        attention_mask: ``(B, S)`` int64, 1 on real tokens.
        position_ids: ``(B, S)`` int64, index of each token among its row's real tokens.
        labels: ``(B, S)`` int64 or ``None``.
    """

    inputs_embeds: Tensor
    attention_mask: Tensor
    position_ids: Tensor
    labels: Tensor | None


def positions_from_mask(mask: Tensor, start: Tensor | None = None) -> Tensor:
    """``(B, S)`` position ids: ``start + (number of real tokens before)``; padding repeats the
    previous position (it is masked anyway).

    Examples:
        >>> positions_from_mask(torch.tensor([[1, 1, 0, 1]]), torch.tensor([5])).tolist()
        [[5, 6, 6, 7]]
    """
    positions = (mask.long().cumsum(dim=1) - 1).clamp(min=0)
    return positions if start is None else positions + start[:, None]


def check_prompt(
    input_ids: Tensor, attention_mask: Tensor | None, labels: Tensor | None = None
) -> Tensor:
    """Validate ``input_ids (B, T)`` (and mask, labels of the same shape); returns the bool mask."""
    if not isinstance(input_ids, Tensor) or input_ids.ndim != 2:
        shape = (
            tuple(input_ids.shape) if isinstance(input_ids, Tensor) else type(input_ids).__name__
        )
        raise ValueError(f"input_ids: expected (B, T) token ids, got {shape}")
    if input_ids.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"input_ids: expected an integer dtype, got {input_ids.dtype}")
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    if attention_mask.shape != input_ids.shape:
        raise ValueError(
            f"attention_mask: expected the shape of input_ids {tuple(input_ids.shape)}, got "
            f"{tuple(attention_mask.shape)}"
        )
    if labels is not None and labels.shape != input_ids.shape:
        raise ValueError(
            f"labels: expected one label per input token, shape {tuple(input_ids.shape)} (the LM "
            f"shifts them itself), got {tuple(labels.shape)}"
        )
    return attention_mask.bool()


def split_at_image(
    input_ids: Tensor, attention_mask: Tensor | None, image_token_id: int, visual_counts: Tensor
) -> tuple[Tensor, Tensor]:
    """Bool maps ``(B, T)`` of the real text tokens before and after each row's image.

    Args:
        input_ids: ``(B, T)``.
        attention_mask: ``(B, T)`` (or ``None``: all real).
        image_token_id: the placeholder id.
        visual_counts: ``(B,)`` visual tokens per row.

    Raises:
        ValueError: a row without placeholders, or with a run that is neither 1 nor its
            visual count long, or placeholders that are not contiguous.

    Examples:
        >>> ids = torch.tensor([[5, 9, 6, 7], [0, 5, 9, 6]])
        >>> before, after = split_at_image(ids, torch.tensor([[1, 1, 1, 1], [0, 1, 1, 1]]), 9,
        ...     torch.tensor([3, 2]))
        >>> before.int().tolist(), after.int().tolist()
        ([[1, 0, 0, 0], [0, 1, 0, 0]], [[0, 0, 1, 1], [0, 0, 0, 1]])
    """
    real = check_prompt(input_ids, attention_mask)
    if visual_counts.shape != (input_ids.shape[0],):
        raise ValueError(
            f"pixel_values: got visual tokens for {visual_counts.shape[0]} images but input_ids "
            f"has {input_ids.shape[0]} rows"
        )
    is_image = (input_ids == image_token_id) & real
    counts = is_image.sum(dim=1)
    positions = torch.arange(input_ids.shape[1], device=input_ids.device)[None, :]
    first = torch.where(is_image, positions, input_ids.shape[1]).min(dim=1).values
    last = torch.where(is_image, positions, -1).max(dim=1).values
    visual_counts = visual_counts.to(counts.device)
    for row in range(input_ids.shape[0]):
        count, want = int(counts[row]), int(visual_counts[row])
        if count == 0:
            raise ValueError(
                f"input_ids: row {row} has no image token (id {image_token_id}); every row needs "
                f"one placeholder (or {want}, one per visual token) where its image goes"
            )
        if count not in (1, want):
            raise ValueError(
                f"input_ids: row {row} has {count} image tokens; expected 1 (expanded here) or "
                f"{want} (one per visual token of its image)"
            )
        if int(last[row] - first[row]) + 1 != count:
            raise ValueError(f"input_ids: the image tokens of row {row} are not contiguous")
    text = real & ~is_image
    return text & (positions < first[:, None]), text & (positions > last[:, None])


def merge_sequence(
    text_embeds: Tensor,
    input_ids: Tensor,
    attention_mask: Tensor | None,
    visual: Tensor,
    visual_mask: Tensor,
    image_token_id: int,
    labels: Tensor | None = None,
    padding_side: str = "right",
) -> MergedSequence:
    """Insert each row's visual tokens at its placeholder and re-pad the batch.

    Args:
        text_embeds: ``(B, T, D)`` embeddings of ``input_ids``.
        input_ids: ``(B, T)`` with a placeholder run per row.
        attention_mask: ``(B, T)`` or ``None``.
        visual: ``(B, N, D)`` visual tokens (row ``b`` uses its first ``visual_mask[b].sum()``).
        visual_mask: ``(B, N)`` bool.
        image_token_id: the placeholder id.
        labels: ``(B, T)`` or ``None``; placeholders and padding become ``-100``.
        padding_side: ``"right"`` (training) or ``"left"`` (generation).

    Returns:
        :class:`MergedSequence` of length ``S = max_b(text_b + visual_b)``.

    Examples:
        >>> ids = torch.tensor([[5, 9, 6], [5, 9, 6]])
        >>> merged = merge_sequence(torch.zeros(2, 3, 4), ids, None, torch.ones(2, 3, 4),
        ...     torch.tensor([[1, 1, 1], [1, 0, 0]]).bool(), 9, padding_side="left")
        >>> merged.attention_mask.tolist(), merged.position_ids[1].tolist()
        ([[1, 1, 1, 1, 1], [0, 0, 1, 1, 1]], [0, 0, 0, 1, 2])
    """
    if padding_side not in ("left", "right"):
        raise ValueError(f"padding_side: expected 'left' or 'right', got {padding_side!r}")
    check_prompt(input_ids, attention_mask, labels)
    if visual.shape[-1] != text_embeds.shape[-1]:
        raise ValueError(
            f"visual: expected tokens of the LM hidden size {text_embeds.shape[-1]}, got "
            f"{visual.shape[-1]}"
        )
    before, after = split_at_image(input_ids, attention_mask, image_token_id, visual_mask.sum(1))
    visual = visual.to(text_embeds.dtype)
    values = torch.cat([text_embeds, visual, text_embeds], dim=1)
    keep = torch.cat([before, visual_mask, after], dim=1)
    left = padding_side == "left"
    embeds, mask = compact(values, keep, left_pad=left)
    merged_labels = None
    if labels is not None:
        ignore = torch.full(
            visual_mask.shape, IGNORE_INDEX, dtype=labels.dtype, device=labels.device
        )
        merged_labels, _ = compact(torch.cat([labels, ignore, labels], dim=1), keep, left_pad=left)
        merged_labels = merged_labels.masked_fill(~mask, IGNORE_INDEX)
    return MergedSequence(
        inputs_embeds=embeds,
        attention_mask=mask.long(),
        position_ids=positions_from_mask(mask),
        labels=merged_labels,
    )

"""Coarse-to-fine answering with per-sample early exit and prefix KV-cache reuse.

The loop behind :meth:`ProgressiveVLM.progressive_generate` and
:meth:`MixedResolutionVLM.progressive_generate`. A model describes its levels as *segments*:
level 0 is ``text before the image | the first visual tokens``, level ``s`` the visual tokens
it adds. For a batch, level 0 prefills its segment, then the question (the text after the
image), and decodes an answer greedily. Each sample whose confidence reaches the level's
threshold stops there; the others keep their rows of the KV cache, which is cropped back to the
shared prefix (everything but the question and answer), and only the next segment is
prefilled, in the same LM call as the question asked again. Segments are computed when their
level runs, for the samples still active, so work for a level no sample reaches is never done.
``reuse_cache=False`` re-prefills the whole prefix at each level instead (the reference: same
logits, more work). With a confidence that reads only the first answer step
(``"first_token"``, ``"margin"``), a level where no sample stops skips decoding the rest of the
answer, which would be thrown away.

Layout per row: each segment (prefix, a level's tokens, the question, each answer token) is
packed to the left and right-padded to the batch's longest; padding in the middle of a row is
masked out and ``position_ids`` count real tokens only, so a row's logits do not depend on the
other rows.

Position ids: by default every token's id counts the real tokens before it. An LM that places
tokens instead of counting them (Qwen2-VL's M-RoPE: ``R = 3`` ids per token, a visual token at
its place in the image) has its segments carry their own ids, ``(R, A, n)``, and the id the
text after them starts at (:data:`PlacedSegment`); the question and the answer then count up
from that id, equal on all ``R`` axes, and the LM gets ``position_ids (R, B, S)``.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from pyrtok.vlm._hf import call_lm, output_cache
from pyrtok.vlm.confidence import FIRST_STEP_CONFIDENCES, ConfidenceFn
from pyrtok.vlm.sequence import positions_from_mask
from pyrtok.vlm.wiring import embed_text

Segment = tuple[Tensor, Tensor, Tensor]
"""``(embeds (A, n, D), mask (A, n), visual_tokens (A,))`` of one level for the ``A`` active
samples: left-packed embeddings, their mask, and how many of them are visual tokens."""

PlacedSegment = tuple[Tensor, Tensor, Tensor, Tensor, Tensor]
"""A :data:`Segment` with its own position ids, for LMs whose ids do not count tokens:
``(embeds, mask, visual_tokens, positions (R, A, n), text_next (A,))``, the ids of the
segment's tokens on ``R`` rotary axes (laid out as ``embeds``) and the id the question after
the segment takes (on every axis)."""

SegmentFn = Callable[[int, Tensor], Segment | PlacedSegment]
"""``segment(level, active) -> Segment | PlacedSegment``: the level's tokens for the samples
``active`` (row indices into the batch)."""


@dataclass(frozen=True, eq=False)
class ProgressiveOutput:
    """Per-sample result of a progressive generation.

    Attributes:
        sequences: ``(B, T)`` greedy answer tokens at the exit level (``T = max_new_tokens``).
        token_mask: ``(B, T)`` bool, False after an end-of-sequence token.
        logits: ``(B, T, V)`` float32 logits the answer tokens were chosen from.
        exit_level: ``(B,)`` int64 level each sample stopped at (0 = coarse).
        visual_tokens: ``(B,)`` int64 visual tokens the sample used (levels ``0..exit``).
        confidence: ``(B, L)`` float32 confidence at each level reached (NaN after the exit).
        lm_tokens: real tokens fed to the LM over all levels (prefill + question + decoding).
        level_seconds: wall time (``time.perf_counter``) of each level run, one entry per level
            reached (``max(exit_level) + 1`` entries). Level ``s`` covers computing its
            segment (the visual tokens it adds), carrying the cache (or the history) of the
            samples still active over from level ``s - 1``, its LM prefill, the answer decoding
            and the confidence; level 0 also covers what only it does (splitting and embedding
            the prompt). Assembling the output is not counted. ``sum(level_seconds[1:])`` is
            the time spent refining.
    """

    sequences: Tensor
    token_mask: Tensor
    logits: Tensor
    exit_level: Tensor
    visual_tokens: Tensor
    confidence: Tensor
    lm_tokens: int
    level_seconds: tuple[float, ...]


def check_thresholds(thresholds: tuple[float, ...], levels: int) -> tuple[float, ...]:
    """Validate one threshold per level but the last: in ``(0, 1]`` and not increasing.

    Examples:
        >>> check_thresholds((0.9, 0.8), 3)
        (0.9, 0.8)
    """
    values = tuple(thresholds)
    if len(values) != levels - 1:
        raise ValueError(
            f"thresholds: expected {levels - 1} values (one per level but the last, which always "
            f"answers), got {len(values)}: {values}"
        )
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
            raise ValueError(f"thresholds: each must be in (0, 1], got {values}")
    if any(b > a for a, b in itertools.pairwise(values)):
        raise ValueError(
            f"thresholds: expected non-increasing values (finer levels accept less "
            f"confidence), got {values}"
        )
    return values


def check_max_new_tokens(max_new_tokens: object) -> int:
    """Validate the answer length decoded at every level (an int >= 1)."""
    if (
        isinstance(max_new_tokens, bool)
        or not isinstance(max_new_tokens, int)
        or max_new_tokens < 1
    ):
        raise ValueError(f"max_new_tokens: expected an int >= 1, got {max_new_tokens!r}")
    return max_new_tokens


def default_eos(language_model: nn.Module, eos_token_id: int | None) -> int | None:
    """``eos_token_id`` as given, else the LM config's (its ``text_config``'s for a whole VLM
    such as Qwen2-VL), when it is one int."""
    if eos_token_id is None:
        config = getattr(language_model, "config", None)
        eos = getattr(getattr(config, "text_config", config), "eos_token_id", None)
        eos_token_id = eos if isinstance(eos, int) else None
    return eos_token_id


def trim(values: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Drop the columns that are padding in every row."""
    width = int(mask.sum(1).max()) if mask.numel() else 0
    return values[:, :width], mask[:, :width]


def placed(segment: Segment | PlacedSegment, past: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(embeds, mask, positions (R, A, n))`` of a segment trimmed (:func:`trim`), and the id
    the text after it takes: a :data:`PlacedSegment`'s own ids, else ids counting real tokens
    after ``past (A,)`` cached ones (``R = 1``).

    Examples:
        >>> embeds, mask = torch.zeros(1, 3, 2), torch.tensor([[True, True, False]])
        >>> segment = (embeds, mask, torch.tensor([2]))
        >>> _, _, positions, nxt = placed(segment, torch.tensor([4]))
        >>> positions.tolist(), nxt.tolist()
        ([[[4, 5]]], [6])
    """
    embeds, mask = trim(segment[0], segment[1])
    if len(segment) == 5:
        return embeds, mask, segment[3][..., : mask.shape[1]], segment[4]
    return embeds, mask, positions_from_mask(mask, past)[None], past + mask.sum(1)


def lm_positions(positions: Tensor) -> Tensor:
    """``(R, B, S)`` ids as the LM takes them: ``(B, S)`` when ``R = 1``."""
    return positions[0] if positions.shape[0] == 1 else positions


@dataclass(frozen=True, eq=False)
class ProgressiveAnswerer:
    """The early-exit loop over the levels a model describes with a :data:`SegmentFn`.

    Attributes:
        language_model: the HF causal LM.
        image_token_id: placeholder id (embedded as id 0 when answer tokens are fed back).
        thresholds: confidence needed to stop at levels ``0 .. L-2``.
        confidence: ``(logits, tokens, mask) -> (B,)``.
        max_new_tokens: answer length decoded at every level.
        eos_token_id: ends an answer early, or ``None``.
    """

    language_model: nn.Module
    image_token_id: int
    thresholds: tuple[float, ...]
    confidence: ConfidenceFn
    max_new_tokens: int
    eos_token_id: int | None

    def _ask(
        self,
        cache: Any,
        cached_mask: Tensor,
        prefill: tuple[Tensor, Tensor, Tensor],
        question: tuple[Tensor, Tensor],
        start: Tensor,
    ) -> tuple[Tensor, Any, Tensor, Tensor, int]:
        """Prefill ``prefill`` (embeddings, positions ``(R, B, n)``, mask) and the question,
        whose ids count up from ``start (B,)``, in one LM call after the cached tokens
        (``cache`` holds ``cached_mask``; ``None`` when nothing is cached). Returns the first
        answer step's float32 logits ``(B, V)``, the cache, the attention mask so far, the next
        position of each row and the real tokens fed."""
        p_embeds, p_pos, p_mask = prefill
        q_embeds, q_mask = question
        mask = torch.cat([cached_mask, p_mask, q_mask], dim=1)
        width = q_embeds.shape[1]
        q_pos = positions_from_mask(q_mask, start).to(p_pos.dtype)
        out = call_lm(
            self.language_model,
            torch.cat([p_embeds, q_embeds], dim=1),
            mask.long(),
            lm_positions(torch.cat([p_pos, q_pos.expand(p_pos.shape[0], -1, -1)], dim=-1)),
            cache=cache,
            use_cache=True,
            logits_to_keep=width,
        )
        rows = torch.arange(q_mask.shape[0], device=q_mask.device)
        step = out.logits[:, -width:][rows, q_mask.sum(1) - 1].float()
        fed = int(p_mask.sum()) + int(q_mask.sum())
        return step, output_cache(out), mask, start + q_mask.sum(1), fed

    def _decode(
        self, step: Tensor, cache: Any, mask: Tensor, count: Tensor, axes: int
    ) -> tuple[Tensor, Tensor, Tensor, Any, int]:
        """Greedy answer from the first step's logits, token ``t`` at id ``count + t`` on
        ``axes`` position axes. Returns logits ``(B, T, V)``, tokens, token mask, the cache and
        the real tokens fed (``T - 1`` steps per row)."""
        finished = torch.zeros(step.shape[0], dtype=torch.bool, device=step.device)
        logits, tokens, valid = [], [], []
        fed = 0
        for t in range(self.max_new_tokens):
            token = step.argmax(dim=-1)
            logits.append(step)
            tokens.append(token)
            valid.append(~finished)
            if self.eos_token_id is not None:
                finished = finished | (token == self.eos_token_id)
            if t == self.max_new_tokens - 1:
                break
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
            out = call_lm(
                self.language_model,
                embed_text(self.language_model, token[:, None], self.image_token_id),
                mask.long(),
                lm_positions(count[None, :, None].expand(axes, -1, 1)),
                cache=cache,
                use_cache=True,
                logits_to_keep=1,
            )
            cache = output_cache(out)
            count = count + 1
            fed += step.shape[0]
            step = out.logits[:, -1].float()
        return torch.stack(logits, 1), torch.stack(tokens, 1), torch.stack(valid, 1), cache, fed

    def run(
        self,
        segment: SegmentFn,
        question: tuple[Tensor, Tensor],
        levels: int,
        reuse_cache: bool,
        tick: float | None = None,
    ) -> ProgressiveOutput:
        """Answer coarse-to-fine over ``levels`` segments; each sample stops at the first level
        it is confident at.

        Args:
            segment: the levels' tokens (:data:`SegmentFn`).
            question: ``(embeds (B, q, D), mask (B, q))`` left-packed text after the image.
            levels: number of levels ``L``.
            reuse_cache: reuse the prefix KV cache across levels (else re-prefill).
            tick: ``time.perf_counter()`` when level 0's work began (default: now).
        """
        tick = time.perf_counter() if tick is None else tick
        level_seconds: list[float] = []
        batch, device = question[1].shape[0], question[1].device
        confidence = torch.full((batch, levels), float("nan"), device=device)
        exit_level = torch.full((batch,), levels - 1, dtype=torch.long, device=device)
        used = torch.zeros(batch, dtype=torch.long, device=device)
        results: dict[int, tuple[Tensor, Tensor, Tensor]] = {}
        active = torch.arange(batch, device=device)
        past_mask = torch.zeros((batch, 0), dtype=torch.bool, device=device)
        dtype = question[0].dtype
        history: tuple[Tensor, Tensor] | None = None
        cache: Any = None
        lm_tokens = 0
        for s in range(levels):
            segment_s = segment(s, active)
            seg_embeds, seg_mask, seg_pos, text_next = placed(segment_s, past_mask.sum(1))
            used[active] += segment_s[2].to(device)
            q = trim(question[0][active], question[1][active])
            if reuse_cache:  # only the new segment, after the cached prefix
                prefill, cached = (seg_embeds, seg_pos, seg_mask), past_mask
            else:  # the whole history, from scratch
                history = (
                    (seg_embeds.to(dtype), seg_pos)
                    if history is None
                    else (
                        torch.cat([history[0], seg_embeds.to(dtype)], 1),
                        torch.cat([history[1], seg_pos], -1),
                    )
                )
                prefill, cached = (*history, torch.cat([past_mask, seg_mask], 1)), past_mask[:, :0]
            step, level_cache, mask, count, fed = self._ask(
                cache if reuse_cache else None, cached, prefill, q, text_next.to(device)
            )
            past_mask = torch.cat([past_mask, seg_mask], 1)
            early = None
            if s < levels - 1 and self.confidence in FIRST_STEP_CONFIDENCES:
                first = step[:, None]
                valid = torch.ones(first.shape[:2], dtype=torch.bool, device=first.device)
                early = self.confidence(first, first.argmax(-1), valid).float()
            # Decode the answer unless nobody stops here and the score needs only step 0.
            decoded = early is None or bool((early >= self.thresholds[s]).any())
            if decoded:
                logits, tokens, valid, level_cache, more = self._decode(
                    step, level_cache, mask, count, seg_pos.shape[0]
                )
                fed += more
            score = early if early is not None else self.confidence(logits, tokens, valid).float()
            lm_tokens += fed
            confidence[active, s] = score
            last = s == levels - 1
            stop = torch.ones_like(score, dtype=torch.bool) if last else score >= self.thresholds[s]
            for i in stop.nonzero().flatten().tolist():
                results[int(active[i])] = (logits[i], tokens[i], valid[i])
            exit_level[active[stop]] = s
            keep = (~stop).nonzero().flatten()
            now = time.perf_counter()  # the carry-over below is the next level's work
            level_seconds.append(now - tick)
            tick = now
            if keep.numel() == 0:
                break
            active = active[keep]
            past_mask = past_mask[keep]
            if reuse_cache:  # back to the prefix (drop the question and the answer), survivors
                cache = level_cache
                cache.crop(-(q[0].shape[1] + (self.max_new_tokens - 1 if decoded else 0)))
                cache.batch_select_indices(keep)
            elif history is not None:
                history = (history[0][keep], history[1][:, keep])
        order = [results[b] for b in range(batch)]
        return ProgressiveOutput(
            sequences=torch.stack([r[1] for r in order]),
            token_mask=torch.stack([r[2] for r in order]),
            logits=torch.stack([r[0] for r in order]),
            exit_level=exit_level,
            visual_tokens=used,
            confidence=confidence,
            lm_tokens=lm_tokens,
            level_seconds=tuple(level_seconds),
        )

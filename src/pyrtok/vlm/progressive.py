"""ProgressiveVLM: coarse-to-fine answering with per-sample early exit and prefix KV-cache reuse.

For a batch, level 0 prefills ``text before the image | coarse tokens``, then the question (the
text after the image) and decodes an answer greedily. Each sample whose confidence reaches the
level's threshold stops there; the others keep their rows of the KV cache, which is cropped back
to the shared prefix (system prompt + visual tokens so far), and only the next level's residual
tokens are prefilled, in the same LM call as the question asked again. Nothing already in the
prefix is encoded twice. ``reuse_cache=False`` re-prefills the whole prefix at each level instead
(the reference: same logits, more work). With a confidence that reads only the first answer step
(``"first_token"``, ``"margin"``), a level where no sample stops skips decoding the rest of the
answer, which would be thrown away.

Layout per row: each segment (prefix, a level's tokens, the question, each answer token) is
packed to the left and right-padded to the batch's longest; padding in the middle of a row is
masked out and ``position_ids`` count real tokens only, so a row's logits do not depend on the
other rows.

``ProgressiveOutput.level_seconds`` records the wall time of each level run, so the cost of the
refinement levels (``level_seconds[1:]``) can be measured on its own.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from pyrtok.vlm._hf import call_lm, output_cache
from pyrtok.vlm.confidence import FIRST_STEP_CONFIDENCES, ConfidenceFn, resolve_confidence
from pyrtok.vlm.hierarchical import HierarchicalVLM
from pyrtok.vlm.residual import compact
from pyrtok.vlm.sequence import check_prompt, positions_from_mask, split_at_image


@dataclass(frozen=True, eq=False)
class ProgressiveOutput:
    """Per-sample result of :meth:`ProgressiveVLM.progressive_generate`.

    Attributes:
        sequences: ``(B, T)`` greedy answer tokens at the exit level (``T = max_new_tokens``).
        token_mask: ``(B, T)`` bool, False after an end-of-sequence token.
        logits: ``(B, T, V)`` float32 logits the answer tokens were chosen from.
        exit_level: ``(B,)`` int64 level each sample stopped at (0 = coarse).
        visual_tokens: ``(B,)`` int64 visual tokens the sample used (levels ``0..exit``).
        confidence: ``(B, L)`` float32 confidence at each level reached (NaN after the exit).
        lm_tokens: real tokens fed to the LM over all levels (prefill + question + decoding).
        level_seconds: wall time (``time.perf_counter``) of each level run, one entry per level
            reached (``max(exit_level) + 1`` entries). Level ``s`` covers carrying the cache (or
            the history) of the samples still active over from level ``s - 1``, its LM prefill,
            the answer decoding and the confidence; level 0 also covers what only it does
            (image encoding, splitting and embedding the prompt). Assembling the output is not
            counted. ``sum(level_seconds[1:])`` is the time spent refining.
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


def _trim(values: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    width = int(mask.sum(1).max()) if mask.numel() else 0
    return values[:, :width], mask[:, :width]


class ProgressiveVLM(HierarchicalVLM):
    """A :class:`HierarchicalVLM` that answers coarse-to-fine and stops per sample.

    ``forward``/``generate`` (training, plain generation) are inherited; see
    :meth:`progressive_generate` for the early-exit loop.

    Args:
        thresholds: confidence needed to stop at levels ``0 .. L-2`` (seed: 0.9, 0.8), in
            ``(0, 1]``, non-increasing; level ``L - 1`` always answers.
        confidence: ``"first_token"``, ``"mean_logprob"``, ``"margin"`` (see
            :mod:`pyrtok.vlm.confidence`) or a callable ``(logits, tokens, mask) -> (B,)``.
        max_new_tokens: answer length decoded at every level.
        eos_token_id: ends an answer early (default: the LM config's).
        reuse_cache: reuse the prefix KV cache across levels (``False``: re-prefill, reference).
        *args: as :class:`HierarchicalVLM` (default ``levels=3``).
        **kwargs: as :class:`HierarchicalVLM`.

    Examples:
        >>> from pyrtok.vlm.testing import tiny_clip, tiny_llama
        >>> vlm = ProgressiveVLM(tiny_clip(), tiny_llama(), levels=3, image_token_id=63)
        >>> ids = torch.tensor([[1, 63, 5]] * 2)
        >>> out = vlm.progressive_generate(torch.rand(2, 3, 128, 128), ids)
        >>> out.exit_level.tolist(), out.sequences.shape
        ([2, 2], torch.Size([2, 1]))
    """

    def __init__(
        self,
        *args: Any,
        thresholds: tuple[float, ...] = (0.9, 0.8),
        confidence: str | ConfidenceFn = "first_token",
        max_new_tokens: int = 1,
        eos_token_id: int | None = None,
        reuse_cache: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        if self.levels >= 2 and len(thresholds) > self.levels - 1:
            thresholds = tuple(thresholds)[: self.levels - 1]
        self.thresholds = check_thresholds(thresholds, self.levels)
        self.confidence = resolve_confidence(confidence)
        if (
            isinstance(max_new_tokens, bool)
            or not isinstance(max_new_tokens, int)
            or max_new_tokens < 1
        ):
            raise ValueError(f"max_new_tokens: expected an int >= 1, got {max_new_tokens!r}")
        self.max_new_tokens = max_new_tokens
        if eos_token_id is None:
            eos = getattr(getattr(self.language_model, "config", None), "eos_token_id", None)
            eos_token_id = eos if isinstance(eos, int) else None
        self.eos_token_id = eos_token_id
        self.reuse_cache = reuse_cache

    def _ask(
        self,
        cache: Any,
        cached_mask: Tensor,
        prefill: tuple[Tensor, Tensor, Tensor],
        question: tuple[Tensor, Tensor],
    ) -> tuple[Tensor, Any, Tensor, Tensor, int]:
        """Prefill ``prefill`` (embeddings, positions, mask) and the question in one LM call
        after the cached tokens (``cache`` holds ``cached_mask``; ``None`` when nothing is
        cached). Returns the first answer step's float32 logits ``(B, V)``, the cache, the
        attention mask so far, the next position of each row and the real tokens fed."""
        p_embeds, p_pos, p_mask = prefill
        q_embeds, q_mask = question
        start = cached_mask.sum(1) + p_mask.sum(1)
        mask = torch.cat([cached_mask, p_mask, q_mask], dim=1)
        width = q_embeds.shape[1]
        out = call_lm(
            self.language_model,
            torch.cat([p_embeds, q_embeds], dim=1),
            mask.long(),
            torch.cat([p_pos, positions_from_mask(q_mask, start)], dim=1),
            cache=cache,
            use_cache=True,
            logits_to_keep=width,
        )
        rows = torch.arange(q_mask.shape[0], device=q_mask.device)
        step = out.logits[:, -width:][rows, q_mask.sum(1) - 1].float()
        fed = int(p_mask.sum()) + int(q_mask.sum())
        return step, output_cache(out), mask, start + q_mask.sum(1), fed

    def _decode(
        self, step: Tensor, cache: Any, mask: Tensor, count: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Any, int]:
        """Greedy answer from the first step's logits. Returns logits ``(B, T, V)``, tokens,
        token mask, the cache and the real tokens fed (``T - 1`` steps per row)."""
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
                self.embed_text(token[:, None]),
                mask.long(),
                count[:, None],
                cache=cache,
                use_cache=True,
                logits_to_keep=1,
            )
            cache = output_cache(out)
            count = count + 1
            fed += step.shape[0]
            step = out.logits[:, -1].float()
        return torch.stack(logits, 1), torch.stack(tokens, 1), torch.stack(valid, 1), cache, fed

    @torch.no_grad()
    def progressive_generate(
        self,
        pixel_values: Tensor,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        reuse_cache: bool | None = None,
    ) -> ProgressiveOutput:
        """Answer coarse-to-fine; each sample stops at the first level it is confident at.

        Args:
            pixel_values: ``(B, 3, H, W)``.
            input_ids: ``(B, T)``: text before the image (system prompt), one placeholder
                (or one per visual token), then the question (at least one token per row).
            attention_mask: ``(B, T)``, any padding side.
            reuse_cache: override the module's setting for this call.

        Returns:
            :class:`ProgressiveOutput`.
        """
        tick = time.perf_counter()
        level_seconds: list[float] = []
        reuse = self.reuse_cache if reuse_cache is None else reuse_cache
        real = check_prompt(input_ids, attention_mask)
        visual = self._visual(pixel_values, input_ids, attention_mask)
        before, after = split_at_image(input_ids, real, self.image_token_id, visual.counts)
        empty = (after.sum(1) == 0).nonzero().flatten().tolist()
        if empty:
            raise ValueError(
                f"input_ids: rows {empty} have no text after the image token; progressive "
                f"inference reads the answer after the question, which must follow the image"
            )
        text = self.embed_text(input_ids)
        segments = [
            compact(
                torch.cat([text, visual.embeds], 1),
                torch.cat([before, visual.mask & (visual.scales == 0)], 1),
            )
        ]
        segments += [
            compact(visual.embeds, visual.mask & (visual.scales == s))
            for s in range(1, self.levels)
        ]
        question = compact(text, after)
        batch, device = input_ids.shape[0], input_ids.device
        per_scale = torch.stack(
            [(visual.mask & (visual.scales == s)).sum(1) for s in range(self.levels)], 1
        )
        confidence = torch.full((batch, self.levels), float("nan"), device=device)
        exit_level = torch.full((batch,), self.levels - 1, dtype=torch.long, device=device)
        results: dict[int, tuple[Tensor, Tensor, Tensor]] = {}
        active = torch.arange(batch, device=device)
        past_mask = torch.zeros((batch, 0), dtype=torch.bool, device=device)
        history = (text[:, :0], torch.zeros((batch, 0), dtype=torch.long, device=device))
        cache: Any = None
        lm_tokens = 0
        for s in range(self.levels):
            seg_embeds, seg_mask = _trim(segments[s][0][active], segments[s][1][active])
            seg_pos = positions_from_mask(seg_mask, past_mask.sum(1))
            q = _trim(question[0][active], question[1][active])
            if reuse:  # only the new segment, after the cached prefix
                prefill, cached = (seg_embeds, seg_pos, seg_mask), past_mask
            else:  # the whole history, from scratch
                history = (
                    torch.cat([history[0], seg_embeds], 1),
                    torch.cat([history[1], seg_pos], 1),
                )
                prefill, cached = (*history, torch.cat([past_mask, seg_mask], 1)), past_mask[:, :0]
            step, level_cache, mask, count, fed = self._ask(
                cache if reuse else None, cached, prefill, q
            )
            past_mask = torch.cat([past_mask, seg_mask], 1)
            early = None
            if s < self.levels - 1 and self.confidence in FIRST_STEP_CONFIDENCES:
                first = step[:, None]
                valid = torch.ones(first.shape[:2], dtype=torch.bool, device=first.device)
                early = self.confidence(first, first.argmax(-1), valid).float()
            # Decode the answer unless nobody stops here and the score needs only step 0.
            decoded = early is None or bool((early >= self.thresholds[s]).any())
            if decoded:
                logits, tokens, valid, level_cache, more = self._decode(
                    step, level_cache, mask, count
                )
                fed += more
            score = early if early is not None else self.confidence(logits, tokens, valid).float()
            lm_tokens += fed
            confidence[active, s] = score
            last = s == self.levels - 1
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
            if reuse:  # back to the prefix (drop the question and the answer), survivors only
                cache = level_cache
                cache.crop(-(q[0].shape[1] + (self.max_new_tokens - 1 if decoded else 0)))
                cache.batch_select_indices(keep)
            else:
                history = (history[0][keep], history[1][keep])
        order = [results[b] for b in range(batch)]
        steps = torch.arange(self.levels, device=device)[None, :]
        return ProgressiveOutput(
            sequences=torch.stack([r[1] for r in order]),
            token_mask=torch.stack([r[2] for r in order]),
            logits=torch.stack([r[0] for r in order]),
            exit_level=exit_level,
            visual_tokens=(per_scale * (steps <= exit_level[:, None])).sum(1),
            confidence=confidence,
            lm_tokens=lm_tokens,
            level_seconds=tuple(level_seconds),
        )

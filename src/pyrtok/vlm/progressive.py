"""ProgressiveVLM: coarse-to-fine answering over pyramid scales, with per-sample early exit.

Level 0 is ``text before the image | the coarse tokens``, level ``s`` the residual tokens of
scale ``s`` that the selector kept; the loop (early exit, KV-cache reuse, re-prefill reference)
is :class:`~pyrtok.vlm.answering.ProgressiveAnswerer`. Nothing already in the prefix is encoded
twice.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from pyrtok.quantize import VectorQuantizer
from pyrtok.vlm.answering import (
    ProgressiveAnswerer,
    ProgressiveOutput,
    check_max_new_tokens,
    check_thresholds,
    default_eos,
)
from pyrtok.vlm.confidence import ConfidenceFn, resolve_confidence
from pyrtok.vlm.hierarchical import HierarchicalVLM, SelectorSpec, _selector_argument
from pyrtok.vlm.residual import compact
from pyrtok.vlm.sequence import check_prompt, split_at_image

__all__ = ["ProgressiveOutput", "ProgressiveVLM", "check_thresholds"]


class ProgressiveVLM(HierarchicalVLM):
    """A :class:`HierarchicalVLM` that answers coarse-to-fine and stops per sample.

    ``forward``/``generate`` (training, plain generation) are inherited; see
    :meth:`progressive_generate` for the early-exit loop.

    Args:
        vision_encoder: as :class:`HierarchicalVLM`.
        language_model: as :class:`HierarchicalVLM`.
        projector: as :class:`HierarchicalVLM`.
        levels: as :class:`HierarchicalVLM`.
        selector: as :class:`HierarchicalVLM`.
        thresholds: confidence needed to stop at levels ``0 .. L-2`` (seed: 0.9, 0.8), in
            ``(0, 1]``, non-increasing; level ``L - 1`` always answers. Extra values are
            dropped (the seed's pair works for ``levels=2``).
        confidence: ``"first_token"``, ``"mean_logprob"``, ``"margin"`` (see
            :mod:`pyrtok.vlm.confidence`) or a callable ``(logits, tokens, mask) -> (B,)``.
        max_new_tokens: answer length decoded at every level.
        eos_token_id: ends an answer early (default: the LM config's).
        reuse_cache: reuse the prefix KV cache across levels (``False``: re-prefill, reference).
        image_token_id: as :class:`HierarchicalVLM`.
        quantizer: as :class:`HierarchicalVLM`.
        vq_weight: as :class:`HierarchicalVLM`.
        freeze: as :class:`HierarchicalVLM`.
        feature_layer: as :class:`HierarchicalVLM`.
        keep_prefix: as :class:`HierarchicalVLM`.
        patch_size: as :class:`HierarchicalVLM`.
        vision_hidden_size: as :class:`HierarchicalVLM`.
        image_mean: as :class:`HierarchicalVLM`.
        image_std: as :class:`HierarchicalVLM`.
        allocator: deprecated name of ``selector`` (a DeprecationWarning; giving both is a
            TypeError).

    Examples:
        >>> import torch
        >>> from pyrtok.vlm.testing import tiny_clip, tiny_llama
        >>> vlm = ProgressiveVLM(tiny_clip(), tiny_llama(), levels=3, image_token_id=63)
        >>> ids = torch.tensor([[1, 63, 5]] * 2)
        >>> out = vlm.progressive_generate(torch.rand(2, 3, 128, 128), ids)
        >>> out.exit_level.tolist(), out.sequences.shape
        ([2, 2], torch.Size([2, 1]))
    """

    def __init__(
        self,
        vision_encoder: nn.Module,
        language_model: nn.Module,
        projector: nn.Module | str | None = None,
        levels: int = 3,
        selector: SelectorSpec = None,
        *,
        thresholds: tuple[float, ...] = (0.9, 0.8),
        confidence: str | ConfidenceFn = "first_token",
        max_new_tokens: int = 1,
        eos_token_id: int | None = None,
        reuse_cache: bool = True,
        image_token_id: int | None = None,
        quantizer: VectorQuantizer | None = None,
        vq_weight: float = 1.0,
        freeze: tuple[str, ...] = (),
        feature_layer: int | None = None,
        keep_prefix: bool = False,
        patch_size: int | None = None,
        vision_hidden_size: int | None = None,
        image_mean: Sequence[float] | None = None,
        image_std: Sequence[float] | None = None,
        allocator: SelectorSpec = None,
    ) -> None:
        super().__init__(
            vision_encoder,
            language_model,
            projector,
            levels,
            _selector_argument(selector, allocator, None, stacklevel=2),
            image_token_id=image_token_id,
            quantizer=quantizer,
            vq_weight=vq_weight,
            freeze=freeze,
            feature_layer=feature_layer,
            keep_prefix=keep_prefix,
            patch_size=patch_size,
            vision_hidden_size=vision_hidden_size,
            image_mean=image_mean,
            image_std=image_std,
        )
        if self.levels >= 2 and len(thresholds) > self.levels - 1:
            thresholds = tuple(thresholds)[: self.levels - 1]
        self.thresholds = check_thresholds(thresholds, self.levels)
        self.confidence = resolve_confidence(confidence)
        self.max_new_tokens = check_max_new_tokens(max_new_tokens)
        self.eos_token_id = default_eos(language_model, eos_token_id)
        self.reuse_cache = reuse_cache

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
            :class:`~pyrtok.vlm.ProgressiveOutput`; level 0 of ``level_seconds`` includes
            encoding the image at every scale.
        """
        tick = time.perf_counter()
        real = check_prompt(input_ids, attention_mask)
        visual = self._visual(pixel_values, input_ids, attention_mask)
        before, after = split_at_image(input_ids, real, self.image_token_id, visual.counts)
        check_question(after)
        text = self.embed_text(input_ids)
        scale_masks = [visual.mask & (visual.scales == s) for s in range(self.levels)]
        segments = [
            compact(torch.cat([text, visual.embeds], 1), torch.cat([before, scale_masks[0]], 1))
        ]
        segments += [compact(visual.embeds, keep) for keep in scale_masks[1:]]
        counts = [keep.sum(1) for keep in scale_masks]

        def segment(s: int, active: Tensor) -> tuple[Tensor, Tensor, Tensor]:
            return segments[s][0][active], segments[s][1][active], counts[s][active]

        return self.answerer().run(
            segment,
            compact(text, after),
            self.levels,
            self.reuse_cache if reuse_cache is None else reuse_cache,
            tick,
        )

    def answerer(self) -> ProgressiveAnswerer:
        """The early-exit loop with this module's settings."""
        return ProgressiveAnswerer(
            self.language_model,
            self.image_token_id,
            self.thresholds,
            self.confidence,
            self.max_new_tokens,
            self.eos_token_id,
        )


def check_question(after: Tensor) -> None:
    """Raise unless every row has text after its image (the question the answer follows)."""
    empty = (after.sum(1) == 0).nonzero().flatten().tolist()
    if empty:
        raise ValueError(
            f"input_ids: rows {empty} have no text after the image token; progressive "
            f"inference reads the answer after the question, which must follow the image"
        )

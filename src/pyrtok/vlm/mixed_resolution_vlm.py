"""MixedResolutionVLM: frequency-aware quadtree tokens straight into a VLM.

One route, every step on exactly the tokens the allocation chose:

1. images in ``[0, 1]`` -> one Gaussian pyramid per image
   (:func:`~pyrtok.allocation.cell_pyramid`) -> the allocator scores it -> an
   :class:`~pyrtok.allocation.Allocation` (or the caller's ``allocation=``);
2. each leaf is read from that pyramid as a ``p`` x ``p`` token
   (:func:`~pyrtok.allocation.tokenize`) and normalised with the vision model's mean/std
   (the pyramid is linear and keeps constants, so this equals tokenizing normalised images);
3. the pretrained vision model runs on exactly those tokens, with its position embeddings
   sampled at the token centres (:func:`~pyrtok.vlm.encode_mixed_resolution`): the
   allocation decides what the encoder computes, not only what the LM reads;
4. projector -> tokens replace each row's image placeholder -> any HF causal LM.

At full detail (every leaf at level 0, ``min_patch`` = the model's patch size) in raster order
the tokens are the model's own patch grid, and :meth:`MixedResolutionVLM.from_llava` gives
LLaVA's own logits.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from pyrtok.allocation import (
    Allocation,
    BudgetMode,
    FrequencyAwareAllocator,
    LeafOrder,
    QuadtreeGeometry,
    Scorer,
    Strategy,
    TokenizedImages,
    cell_pyramid,
    tokenize,
)
from pyrtok.allocation.budgets import check_budget_mode
from pyrtok.allocation.image_lists import (
    check_allocation_list,
    check_image_list,
    for_image,
    group_budget,
    group_by_shape,
    trimmed,
)
from pyrtok.allocation.tokenizer import stack_token_groups
from pyrtok.quantize import VectorQuantizer
from pyrtok.vlm._hf import hidden_size
from pyrtok.vlm.answering import (
    ProgressiveAnswerer,
    ProgressiveOutput,
    check_max_new_tokens,
    check_thresholds,
    default_eos,
)
from pyrtok.vlm.confidence import ConfidenceFn, resolve_confidence
from pyrtok.vlm.mixed_resolution import (
    MixedResolutionFeatures,
    encode_mixed_resolution,
    vit_hidden_size,
    vit_patch_size,
)
from pyrtok.vlm.output import VLMOutput, vlm_output
from pyrtok.vlm.pixels import check_unit_range, normalisation_for, normalise_tokens
from pyrtok.vlm.quadtree_ladder import check_ladder, ladder_generate
from pyrtok.vlm.saving import load_owned_state, read_pretrained, write_pretrained
from pyrtok.vlm.sequence import MergedSequence, check_prompt, merge_sequence
from pyrtok.vlm.wiring import (
    check_one_image_per_row,
    check_projected,
    embed_text,
    freeze_parts,
    lm_forward,
    lm_generate,
    resolve_image_token,
    resolve_projector,
)

Allocator = Callable[..., Allocation]
"""``allocator(images (B, C, H, W) in [0, 1], pyramid=...) -> Allocation``; a
:class:`~pyrtok.allocation.FrequencyAwareAllocator` is one."""

Budget = float | Sequence[float]
"""Tokens per image: one int for the batch or one per row (a ``"per_pixel"`` density may be a
float); read as the module's ``budget_mode`` says."""

Images = Tensor | list[Tensor]
"""``(B, 3, H, W)`` in ``[0, 1]``, or a list of ``(3, H, W)`` images of different sizes."""

Allocations = Allocation | list[Allocation]
"""One Allocation for a batch tensor, a list of one per image for a list of images."""


class MixedResolutionVLM(nn.Module):
    """Quadtree tokens of each image through a pretrained vision model into a causal LM.

    Args:
        vision_model: a Hugging Face ViT-family vision model (``CLIPVisionModel``,
            ``SiglipVisionModel``, ``ViTModel``, ``Dinov2Model``; see
            :func:`~pyrtok.vlm.encode_mixed_resolution`).
        language_model: any HF causal LM (called with ``inputs_embeds``).
        projector: ``None`` (:class:`~pyrtok.vlm.MLPProjector`), ``"identity"`` or a module
            ``(..., D_v) -> (..., D)``.
        budget: visual tokens per image (default allocator); rows may be given their own
            budget per call.
        budget_mode: how budgets are read, ``"exact"``, ``"at_most"`` or ``"per_pixel"`` (see
            :func:`~pyrtok.allocation.allocate`).
        allocator: a callable ``(images, pyramid=...) -> Allocation`` instead of the default
            :class:`~pyrtok.allocation.FrequencyAwareAllocator`; its ``min_patch`` must be the
            vision model's patch size.
        max_patch: largest leaf (cell) side, ``patch_size * 2**depth`` (default
            ``4 * patch_size``: three leaf sizes).
        strategy: as :func:`~pyrtok.allocation.allocate`.
        scorer: as :func:`~pyrtok.allocation.allocate`; it sees ``[0, 1]`` pixels.
        order: leaf (token) order, ``"raster"`` or ``"morton"``.
        image_token_id: placeholder id in ``input_ids`` (default: ``language_model.config``'s).
        feature_layer: hidden state fed to the projector (``None``: last, after the final
            norm; LLaVA uses ``-2``).
        keep_prefix: also send the vision model's prefix (CLS) token(s), first.
        image_mean: per-channel mean the vision model was trained with (default: read from
            the models' configs where they carry it, else by model type: SigLIP 0.5, others
            CLIP's constants).
        image_std: per-channel std, as ``image_mean``.
        quantizer: optional :class:`~pyrtok.quantize.VectorQuantizer` (``dim = D_v``) before
            the projector; its loss times ``vq_weight`` is added to the LM loss.
        vq_weight: weight of the quantizer loss.
        freeze: any of ``"encoder"``, ``"projector"``, ``"language_model"``.

    Shapes:
        ``pixel_values (B, 3, H, W)`` in ``[0, 1]``, ``input_ids (B, T)`` with an image
        placeholder per row (one, or one per visual token) -> :class:`~pyrtok.vlm.VLMOutput`
        with ``logits (B, S, V)``.

    Examples:
        >>> import torch
        >>> from pyrtok.vlm.testing import tiny_clip, tiny_llama
        >>> vlm = MixedResolutionVLM(tiny_clip(), tiny_llama(), budget=10, image_token_id=63)
        >>> ids = torch.tensor([[1, 63, 5, 6], [1, 63, 7, 8]])
        >>> out = vlm(torch.rand(2, 3, 64, 64), ids, labels=ids)
        >>> out.visual_counts.tolist(), out.logits.shape, out.loss.ndim
        ([10, 10], torch.Size([2, 13, 64]), 0)
        >>> out = vlm(torch.rand(2, 3, 64, 64), ids, budget=[4, 19])  # a budget per row
        >>> out.visual_counts.tolist()
        [4, 19]
    """

    image_mean: Tensor
    image_std: Tensor

    def __init__(
        self,
        vision_model: nn.Module,
        language_model: nn.Module,
        projector: nn.Module | str | None = None,
        *,
        budget: Budget | None = None,
        budget_mode: BudgetMode = "exact",
        allocator: Allocator | None = None,
        max_patch: int | None = None,
        strategy: str | Strategy = "greedy",
        scorer: str | Scorer = "laplacian",
        order: LeafOrder = "raster",
        image_token_id: int | None = None,
        feature_layer: int | None = None,
        keep_prefix: bool = False,
        image_mean: Sequence[float] | None = None,
        image_std: Sequence[float] | None = None,
        quantizer: VectorQuantizer | None = None,
        vq_weight: float = 1.0,
        freeze: tuple[str, ...] = (),
    ) -> None:
        super().__init__()
        self.patch_size, feature_dim = self.vision_geometry(vision_model)
        self.vision_model = vision_model
        self.language_model = language_model
        self.hidden_size = hidden_size(language_model)
        self.projector = resolve_projector(projector, feature_dim, self.hidden_size)
        self.max_patch = 4 * self.patch_size if max_patch is None else max_patch
        QuadtreeGeometry.create(self.max_patch, self.max_patch, self.patch_size, self.max_patch)
        self.strategy, self.scorer, self.order = strategy, scorer, order
        self.budget = budget
        self.budget_mode = check_budget_mode(budget_mode)
        self.custom_allocator = allocator is not None
        if allocator is None and budget is not None:
            allocator = self.default_allocator(budget)
        elif getattr(allocator, "min_patch", self.patch_size) != self.patch_size:
            raise ValueError(
                f"allocator: its min_patch {getattr(allocator, 'min_patch', None)} must equal "
                f"the vision model's patch size {self.patch_size} (a leaf of level 0 is one "
                f"patch of the model)"
            )
        self.allocator = allocator
        self.image_token_id = resolve_image_token(image_token_id, language_model)
        self.feature_layer = feature_layer
        self.keep_prefix = keep_prefix
        mean, std = normalisation_for((vision_model, language_model), image_mean, image_std)
        self.register_buffer("image_mean", mean, persistent=False)
        self.register_buffer("image_std", std, persistent=False)
        if quantizer is not None and not isinstance(quantizer, VectorQuantizer):
            raise TypeError(
                f"quantizer: expected a VectorQuantizer, got {type(quantizer).__name__}"
            )
        self.quantizer = quantizer
        self.vq_weight = vq_weight
        freeze_parts(
            {
                "encoder": self.vision_model,
                "projector": self.projector,
                "language_model": self.language_model,
            },
            freeze,
        )

    def vision_geometry(self, vision_model: nn.Module) -> tuple[int, int]:
        """``(min_patch, feature width)``: the side of a level-0 leaf and the width of the
        features :meth:`vision_features` gives. A ViT's patch size and hidden size here; a
        subclass for another vision family overrides this with :meth:`vision_features`."""
        return vit_patch_size(vision_model), vit_hidden_size(vision_model)

    def vision_features(self, tokens: TokenizedImages) -> MixedResolutionFeatures:
        """The vision model on normalised tokens (:meth:`tokenize`), before the quantizer
        and projector (:func:`~pyrtok.vlm.encode_mixed_resolution` for a ViT)."""
        return encode_mixed_resolution(self.vision_model, tokens, self.feature_layer)

    def leaf_positions(self, allocation: Allocation, start: Tensor) -> tuple[Tensor, Tensor] | None:
        """Position ids of the visual tokens of ``allocation`` (those :meth:`encode_tokens`
        gives) after ``start (B,)`` text tokens, for an LM that places its visual tokens
        instead of counting them: ``positions (R, B, N)`` on its ``R`` rotary axes and
        ``text_next (B,)``, the id the text after the image takes. The quadtree ladder
        (:meth:`progressive_generate`) reads it. ``None`` here: the LM counts real tokens; a
        family with placed ids overrides it (Qwen2-VL's M-RoPE)."""
        return None

    def default_allocator(self, budget: Budget) -> FrequencyAwareAllocator:
        """A :class:`~pyrtok.allocation.FrequencyAwareAllocator` with this module's settings
        and ``budget``."""
        return FrequencyAwareAllocator(
            budget,
            self.patch_size,
            self.max_patch,
            self.strategy,
            self.scorer,
            self.order,
            self.budget_mode,
        )

    @classmethod
    def from_llava(cls, model: nn.Module, budget: Budget | None = None, **kwargs: Any) -> Any:
        """Wrap a ``LlavaForConditionalGeneration``: its vision tower (feature layer and CLS
        strategy), projector and LM. At full detail in raster order the logits equal LLaVA's
        own forward on the same normalised images and expanded placeholders.

        Examples:
            >>> from pyrtok.vlm.testing import tiny_llava
            >>> vlm = MixedResolutionVLM.from_llava(tiny_llava(), budget=16)
            >>> vlm.patch_size, vlm.feature_layer, vlm.image_token_id
            (8, -2, 63)
        """
        from pyrtok.vlm.llava import llava_parts

        parts = llava_parts(model)
        kwargs.setdefault("feature_layer", parts.feature_layer)
        kwargs.setdefault("keep_prefix", parts.keep_prefix)
        kwargs.setdefault("image_token_id", parts.image_token_id)
        return cls(parts.vision_tower, model, parts.projector, budget=budget, **kwargs)

    @classmethod
    def from_qwen2_vl(cls, model: nn.Module, budget: Budget | None = None, **kwargs: Any) -> Any:
        """Wrap a ``Qwen2VLForConditionalGeneration``: one leaf of ``28 * 2**k`` px is one
        merger group through its own vision tower and one M-RoPE LM token (see
        :class:`~pyrtok.vlm.qwen2_vl.Qwen2VLMixedResolutionVLM`). At full detail the logits
        equal Qwen2-VL's own forward.

        Examples:
            >>> from pyrtok.vlm.testing import tiny_qwen2_vl
            >>> vlm = MixedResolutionVLM.from_qwen2_vl(tiny_qwen2_vl(), budget=16)
            >>> vlm.patch_size, vlm.max_patch, vlm.image_token_id
            (28, 112, 90)
        """
        from pyrtok.vlm.qwen2_vl import Qwen2VLMixedResolutionVLM

        return Qwen2VLMixedResolutionVLM(model, budget=budget, **kwargs)

    def allocate(
        self, pixel_values: Tensor, budget: Budget | None = None
    ) -> tuple[Allocation, list[Tensor]]:
        """The allocation of ``pixel_values`` (``[0, 1]``) and the one pyramid it was scored
        on (which :meth:`tokenize` reads).

        Args:
            pixel_values: ``(B, C, H, W)`` in ``[0, 1]``.
            budget: tokens per image, one int or one per row (default: the module's), read as
                the module's ``budget_mode`` says.
        """
        check_unit_range(pixel_values)
        geometry = QuadtreeGeometry.create(
            pixel_values.shape[-2], pixel_values.shape[-1], self.patch_size, self.max_patch
        )
        pyramid = cell_pyramid(pixel_values, geometry)
        allocator = self.allocator if budget is None else self.default_allocator(budget)
        if allocator is None:
            raise ValueError("budget: give one here or to the constructor, got None")
        return self._checked(allocator(pixel_values, pyramid=pyramid), pixel_values), pyramid

    def _checked(self, allocation: object, pixel_values: Tensor) -> Allocation:
        if not isinstance(allocation, Allocation):
            raise TypeError(
                f"allocator: expected it to return an Allocation, got {type(allocation).__name__}"
            )
        if allocation.min_patch != self.patch_size:
            raise ValueError(
                f"allocation: min_patch must equal the vision model's patch size "
                f"{self.patch_size}, got {allocation.min_patch}; allocate with min_patch="
                f"{self.patch_size}"
            )
        if allocation.image_size != tuple(pixel_values.shape[-2:]):
            height, width = allocation.image_size
            raise ValueError(
                f"allocation: made for {height}x{width} images, got "
                f"{pixel_values.shape[-2]}x{pixel_values.shape[-1]}; allocate again for this size"
            )
        if allocation.batch_size != pixel_values.shape[0]:
            raise ValueError(
                f"allocation: holds {allocation.batch_size} images, got a batch of "
                f"{pixel_values.shape[0]}"
            )
        return allocation

    def tokenize(
        self, pixel_values: Tensor, allocation: Allocation, pyramid: list[Tensor] | None = None
    ) -> TokenizedImages:
        """Tokens of ``allocation`` read from ``pyramid`` (built here if not given) and
        normalised as the vision model expects."""
        tokens = tokenize(pixel_values, allocation, pyramid)
        return normalise_tokens(tokens, self.image_mean, self.image_std)

    def encode_images(
        self,
        pixel_values: Images,
        allocation: Allocations | None = None,
        budget: Budget | None = None,
    ) -> tuple[Tensor, Tensor, Allocations, Tensor | None]:
        """Images -> projected visual tokens.

        A list of images of different sizes is allocated and tokenized as one batch per size,
        and the vision model runs once on the tokens padded to the longest image.

        Returns:
            ``embeds (B, N, D)`` (zeros on padding), ``mask (B, N)``, the allocation (a list of
            one per image for a list) and the quantizer loss (or ``None``).
        """
        if isinstance(pixel_values, list):
            tokens, allocation = self._list_tokens(pixel_values, allocation, budget)
        else:
            tokens, allocation = self._batch_tokens(pixel_values, allocation, budget)
        embeds, mask, vq_loss = self.encode_tokens(tokens)
        return embeds, mask, allocation, vq_loss

    def encode_tokens(self, tokens: TokenizedImages) -> tuple[Tensor, Tensor, Tensor | None]:
        """Normalised tokens (:meth:`tokenize`) -> projected visual tokens ``embeds (B, N, D)``
        (zeros on padding; the prefix first with ``keep_prefix``), ``mask (B, N)`` and the
        quantizer loss (or ``None``)."""
        features = self.vision_features(tokens)
        hidden, mask = features.tokens, features.mask
        if self.keep_prefix and features.prefix.shape[1]:
            hidden = torch.cat([features.prefix, hidden], dim=1)
            mask = torch.cat([mask.new_ones(features.prefix.shape[:2]), mask], dim=1)
        vq_loss = None
        if self.quantizer is not None:
            hidden, _, vq_loss = self.quantizer(hidden, mask)
        embeds = check_projected(self.projector(hidden), self.hidden_size)
        return embeds * mask[..., None], mask, vq_loss

    def _batch_tokens(
        self, pixel_values: Tensor, allocation: Allocations | None, budget: Budget | None
    ) -> tuple[TokenizedImages, Allocation]:
        """The (normalised) tokens of a batch tensor and its allocation."""
        pyramid = None
        if allocation is None:
            allocation, pyramid = self.allocate(pixel_values, budget)
        else:
            check_unit_range(pixel_values)
            allocation = self._checked(allocation, pixel_values)
        return self.tokenize(pixel_values, allocation, pyramid), allocation

    def _list_tokens(
        self, pixel_values: list[Tensor], allocation: Allocations | None, budget: Budget | None
    ) -> tuple[TokenizedImages, list[Allocation]]:
        """The tokens of a list of images, one batch per size, padded to the longest image,
        and one trimmed allocation per image."""
        images = check_image_list(pixel_values, "pixel_values")
        if allocation is not None and not isinstance(allocation, list):
            raise TypeError(
                f"allocation: a list of images needs a list of allocations, got "
                f"{type(allocation).__name__}"
            )
        given = None if allocation is None else check_allocation_list(allocation, len(images))
        if budget is None and not self.custom_allocator:
            budget = self.budget
        parts, allocation_of = [], {}
        for group in group_by_shape(images):
            share = None if budget is None else group_budget(budget, group.rows, len(images))
            chosen = None if given is None else Allocation.cat([given[r] for r in group.rows])
            try:
                tokens, batch = self._batch_tokens(group.images, chosen, share)
            except ValueError as error:
                raise for_image(error, group, "pixel_values") from error
            parts.append((group.rows, tokens))
            for position, row in enumerate(group.rows):
                allocation_of[row] = trimmed(batch[position])
        allocations = [allocation_of[row] for row in range(len(images))]
        return stack_token_groups(parts, len(images)), allocations

    def merge(
        self,
        pixel_values: Images,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        labels: Tensor | None = None,
        allocation: Allocations | None = None,
        budget: Budget | None = None,
        padding_side: str = "right",
    ) -> tuple[MergedSequence, Tensor, Allocations, Tensor | None]:
        """The LM inputs, per-row visual counts, the allocation and the quantizer loss."""
        check_prompt(input_ids, attention_mask, labels)
        check_one_image_per_row(pixel_values, input_ids)
        embeds, mask, allocation, vq_loss = self.encode_images(pixel_values, allocation, budget)
        merged = merge_sequence(
            embed_text(self.language_model, input_ids, self.image_token_id),
            input_ids,
            attention_mask,
            embeds,
            mask,
            self.image_token_id,
            labels,
            padding_side,
        )
        return merged, mask.sum(dim=1), allocation, vq_loss

    def forward(
        self,
        pixel_values: Images,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        labels: Tensor | None = None,
        allocation: Allocations | None = None,
        budget: Budget | None = None,
    ) -> VLMOutput:
        """Run the LM on the merged sequence.

        Args:
            pixel_values: ``(B, 3, H, W)`` in ``[0, 1]`` (normalisation happens inside), or a
                list of ``(3, H, W)`` images of different sizes (each row then gets its own
                token count, as each image alone would).
            input_ids: ``(B, T)`` with one placeholder (or one per visual token) per row.
            attention_mask: ``(B, T)``.
            labels: ``(B, T)`` aligned with ``input_ids`` (``-100`` to ignore); the LM shifts.
            allocation: use this allocation instead of allocating (a list of one per image
                for a list of images).
            budget: tokens per image for this call, one int or one per row.

        Returns:
            :class:`~pyrtok.vlm.VLMOutput` with ``logits``, ``loss``, ``allocation`` and
            ``visual_counts``.
        """
        merged, counts, allocation, vq_loss = self.merge(
            pixel_values, input_ids, attention_mask, labels, allocation, budget
        )
        out = lm_forward(self.language_model, merged)
        return vlm_output(out, counts, allocation, vq_loss, self.vq_weight)

    @torch.no_grad()
    def generate(
        self,
        pixel_values: Images,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        allocation: Allocations | None = None,
        budget: Budget | None = None,
        **generate_kwargs: Any,
    ) -> Tensor:
        """``language_model.generate`` on the merged, left-padded sequence.

        Returns:
            ``(B, T_new)`` generated token ids.
        """
        merged, *_ = self.merge(
            pixel_values, input_ids, attention_mask, None, allocation, budget, "left"
        )
        return lm_generate(self.language_model, merged, **generate_kwargs)

    @torch.no_grad()
    def progressive_generate(
        self,
        pixel_values: Tensor,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        budgets: Sequence[int] = (16, 64, 256),
        thresholds: Sequence[float] = (0.9, 0.8),
        confidence: str | ConfidenceFn = "first_token",
        max_new_tokens: int = 1,
        eos_token_id: int | None = None,
        reuse_cache: bool = True,
    ) -> ProgressiveOutput:
        """Answer on a budget ladder; each sample stops at the first rung it is confident at.

        Rung 0 prefills ``text before the image | the tokens of budget 0``; each further rung
        appends only the leaves its allocation adds (see :mod:`pyrtok.vlm.quadtree_ladder`)
        after the KV cache of the previous rungs, and asks the question again. With the
        default greedy strategy the ladder's allocations are nested, so the LM reads every
        token of the final allocation plus the coarser tokens they refine.

        Args:
            pixel_values: ``(B, 3, H, W)`` in ``[0, 1]``.
            input_ids: ``(B, T)``: text before the image, one placeholder, then the question.
            attention_mask: ``(B, T)``, any padding side.
            budgets: the ladder, strictly increasing, read under the module's ``budget_mode``
                (``"exact"``: feasible token counts; ``"per_pixel"``: densities).
            thresholds: confidence needed to stop at rungs ``0 .. L-2`` (non-increasing).
            confidence: as :class:`~pyrtok.vlm.ProgressiveVLM`.
            max_new_tokens: answer length decoded at every rung.
            eos_token_id: ends an answer early (default: the LM config's).
            reuse_cache: reuse the prefix KV cache (``False``: re-prefill, the reference).

        Returns:
            :class:`~pyrtok.vlm.ProgressiveOutput` (``exit_level`` = the rung).

        Examples:
            >>> import torch
            >>> from pyrtok.vlm.testing import tiny_clip, tiny_llama
            >>> vlm = MixedResolutionVLM(tiny_clip(), tiny_llama(), image_token_id=63)
            >>> flat = torch.full((2, 3, 64, 64), 0.5)  # ties split breadth first
            >>> out = vlm.progressive_generate(flat, torch.tensor([[1, 63, 5]] * 2),
            ...     budgets=(4, 16, 64), thresholds=(1.0, 1.0))  # never confident: every rung
            >>> out.exit_level.tolist(), out.visual_tokens.tolist()  # 4 + 16 + 64 tokens
            ([2, 2], [84, 84])
        """
        return ladder_generate(
            self,
            pixel_values,
            input_ids,
            attention_mask,
            check_ladder(budgets),
            ProgressiveAnswerer(
                self.language_model,
                self.image_token_id,
                check_thresholds(tuple(thresholds), len(tuple(budgets))),
                resolve_confidence(confidence),
                check_max_new_tokens(max_new_tokens),
                default_eos(self.language_model, eos_token_id),
            ),
            reuse_cache,
        )

    def config_dict(self) -> dict[str, Any]:
        """What :meth:`save_pretrained` writes next to the weights."""
        custom = [
            name
            for name, value in (("scorer", self.scorer), ("strategy", self.strategy))
            if not isinstance(value, str)
        ] + (["allocator"] if self.custom_allocator else [])
        if custom:
            raise ValueError(
                f"save_pretrained: a custom {' and '.join(custom)} (a callable) cannot be written "
                f"to JSON; pass it again to from_pretrained ({custom[0]}=...)"
            )
        return {
            "budget": self.budget,
            "budget_mode": self.budget_mode,
            "max_patch": self.max_patch,
            "strategy": self.strategy,
            "scorer": self.scorer,
            "order": self.order,
            "image_token_id": self.image_token_id,
            "feature_layer": self.feature_layer,
            "keep_prefix": self.keep_prefix,
            "image_mean": self.image_mean.flatten().tolist(),
            "image_std": self.image_std.flatten().tolist(),
            "vq_weight": self.vq_weight,
            "quantizer": self.quantizer is not None,
        }

    def owned_parts(self) -> dict[str, nn.Module | None]:
        """The modules pyrtok owns here (the HF models are saved by their own methods)."""
        return {"projector": self.projector, "quantizer": self.quantizer}

    def save_pretrained(self, directory: str | Path) -> None:
        """Write the configuration (JSON) and the projector/quantizer weights (safetensors).

        The Hugging Face models are saved by their own ``save_pretrained``.
        """
        write_pretrained(directory, self.config_dict(), self.owned_parts())

    @classmethod
    def from_pretrained(
        cls,
        directory: str | Path,
        vision_model: nn.Module,
        language_model: nn.Module | None = None,
        **kwargs: Any,
    ) -> Any:
        """Rebuild from :meth:`save_pretrained` and the HF models.

        Args:
            directory: what :meth:`save_pretrained` wrote.
            vision_model: the vision model, or a whole ``LlavaForConditionalGeneration``
                (then leave ``language_model`` out; a family wrapper such as
                :class:`~pyrtok.vlm.qwen2_vl.Qwen2VLMixedResolutionVLM` takes its whole model
                here, see :meth:`from_settings`).
            language_model: the causal LM.
            **kwargs: constructor arguments that override the saved ones (e.g. a custom
                ``projector`` module, which must take the saved weights, or the
                ``quantizer``).
        """
        config, state = read_pretrained(directory)
        if config.pop("quantizer") and "quantizer" not in kwargs:
            raise ValueError(
                "quantizer: the saved model has one; pass quantizer=VectorQuantizer(...) with "
                "the same settings to load its weights"
            )
        model = cls.from_settings(vision_model, language_model, **(config | kwargs))
        load_owned_state(model.owned_parts(), state)
        return model

    @classmethod
    def from_settings(
        cls, vision_model: nn.Module, language_model: nn.Module | None = None, **settings: Any
    ) -> Any:
        """The wrapper :meth:`from_pretrained` loads into, built from the HF models and the
        saved settings: the per-family constructor hook. Here ``cls(vision_model,
        language_model, **settings)``, or :meth:`from_llava` for a whole LLaVA
        (``language_model=None``); a family that wraps one whole model overrides it (see
        :class:`~pyrtok.vlm.qwen2_vl.Qwen2VLMixedResolutionVLM`)."""
        if language_model is None:
            return cls.from_llava(vision_model, **settings)
        return cls(vision_model, language_model, **settings)

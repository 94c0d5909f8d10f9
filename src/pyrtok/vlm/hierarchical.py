"""HierarchicalVLM: multi-scale residual visual tokens, selected per region, into an HF LM."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from pyrtok.allocation import FrequencyAwareAllocator
from pyrtok.quantize import VectorQuantizer
from pyrtok.vlm._hf import hidden_size
from pyrtok.vlm.encoders import VisionEncoder, encode_pyramid
from pyrtok.vlm.output import VLMOutput, vlm_output
from pyrtok.vlm.pixels import check_unit_range, normalisation_for
from pyrtok.vlm.residual import residual_grids
from pyrtok.vlm.selection import (
    AllSelector,
    FrequencySelector,
    QuerySelector,
    Selector,
    check_keep,
    selected_tokens,
)
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


@dataclass(frozen=True, eq=False)
class VisualTokens:
    """Projected visual tokens of a batch, coarse scale first.

    Attributes:
        embeds: ``(B, N, D)`` in the LM's hidden size; zeros on padding.
        mask: ``(B, N)`` bool, True on real tokens (each row's first ``mask[b].sum()``).
        scales: ``(B, N)`` int64 scale of each token (0 = coarse, ``L - 1`` = finest residual).
        indices: ``(B, N)`` codebook indices when a quantizer is used (``-1`` on padding).
        vq_loss: the quantizer's loss (scalar) or ``None``.
    """

    embeds: Tensor
    mask: Tensor
    scales: Tensor
    indices: Tensor | None = None
    vq_loss: Tensor | None = None

    @property
    def counts(self) -> Tensor:
        """``(B,)`` visual tokens per image."""
        return self.mask.sum(dim=1)


SelectorSpec = str | Selector | FrequencyAwareAllocator | None
"""What ``selector=`` takes: ``None``/``"frequency"``, ``"all"``, ``"query"``, a
:class:`~pyrtok.allocation.FrequencyAwareAllocator` or a :class:`~pyrtok.vlm.Selector`."""


def _selector_argument(
    selector: SelectorSpec, allocator: SelectorSpec, default: SelectorSpec, stacklevel: int
) -> SelectorSpec:
    """``selector``, or the deprecated ``allocator`` (with a DeprecationWarning), or
    ``default``."""
    if allocator is None:
        return default if selector is None else selector
    if selector is not None:
        raise TypeError(
            "selector, allocator: got both; allocator= is the deprecated name of selector=, "
            "pass selector= only"
        )
    warnings.warn(
        "allocator= is deprecated and will be removed in the next release; pass the same value "
        "as selector=",
        DeprecationWarning,
        stacklevel=stacklevel + 1,
    )
    return allocator


def _resolve_selector(selector: SelectorSpec, query_dim: int, feature_dim: int) -> Selector:
    if selector is None or selector == "frequency":
        return FrequencySelector()
    if selector == "all":
        return AllSelector()
    if selector == "query":
        return QuerySelector(query_dim, feature_dim)
    if isinstance(selector, FrequencyAwareAllocator):
        return FrequencySelector(allocator=selector)
    if isinstance(selector, Selector):
        return selector
    raise ValueError(
        f"selector: expected None/'frequency', 'all', 'query', a FrequencyAwareAllocator or a "
        f"Selector (a callable (images, grids, query, patch_size) -> keep maps), got "
        f"{selector!r}"
    )


class HierarchicalVLM(nn.Module):
    """Coarse tokens + per-region residual tokens of finer pyramid levels, into a causal LM.

    The image ``(B, 3, H, W)`` is encoded at ``levels`` Gaussian pyramid levels by one encoder
    (coarsest ``H / 2**(L-1)``). Scale 0 gives the coarse tokens; scale ``s >= 1`` gives residual
    tokens ``F_s - upsample(F_{s-1})``, of which the ``selector`` keeps some regions. Kept
    tokens (optionally vector-quantised) are projected into the LM's hidden size, a learned
    per-scale embedding (zero at init) is added, and they replace each row's image placeholder
    in ``input_ids``. Rows may get different token counts; padding, attention masks, positions
    and labels are built accordingly (:func:`~pyrtok.vlm.sequence.merge_sequence`).

    Args:
        vision_encoder: a :class:`~pyrtok.vlm.encoders.VisionEncoder`, a Hugging Face vision
            model, or a module ``(B, 3, H, W) -> (B, N, D_v)`` (then give ``patch_size`` and
            ``vision_hidden_size``).
        language_model: any HF causal LM (called with ``inputs_embeds``).
        projector: ``None`` (``Linear-GELU-Linear``, :class:`~pyrtok.vlm.MLPProjector`),
            ``"identity"`` (needs ``D_v == D``) or a module ``(..., D_v) -> (..., D)``.
        levels: pyramid levels ``L >= 1``; ``H, W`` must be multiples of ``p * 2**(L-1)``.
        selector: ``None``/``"frequency"`` (:class:`~pyrtok.vlm.FrequencySelector`),
            ``"all"``, ``"query"`` (:class:`~pyrtok.vlm.QuerySelector`), a
            :class:`~pyrtok.allocation.FrequencyAwareAllocator` (in a
            :class:`~pyrtok.vlm.FrequencySelector`), or any :class:`~pyrtok.vlm.Selector`;
            its keep maps (and extra tokens, appended after each image's kept tokens, before
            the projector) are checked (:func:`~pyrtok.vlm.selection.check_keep`).
        allocator: deprecated name of ``selector`` (a DeprecationWarning; giving both is a
            TypeError); removed in the next release.
        image_token_id: placeholder id in ``input_ids`` (default: ``language_model.config``'s).
        quantizer: optional :class:`~pyrtok.quantize.VectorQuantizer` (``dim = D_v``) applied
            before the projector; its loss times ``vq_weight`` is added to the LM loss.
        freeze: any of ``"encoder"``, ``"projector"``, ``"language_model"`` (no gradients).
        feature_layer: passed to :class:`~pyrtok.vlm.encoders.VisionEncoder` when
            ``vision_encoder`` is not one.
        keep_prefix: passed to :class:`~pyrtok.vlm.encoders.VisionEncoder` when
            ``vision_encoder`` is not one.
        patch_size: passed to :class:`~pyrtok.vlm.encoders.VisionEncoder` when
            ``vision_encoder`` is not one.
        vision_hidden_size: passed to :class:`~pyrtok.vlm.encoders.VisionEncoder` when
            ``vision_encoder`` is not one.
        image_mean: per-channel mean to normalise with inside (give ``image_std`` too). Then
            ``pixel_values`` must be ``[0, 1]`` images: the selector scores them raw (the
            ``entropy`` scorer bins ``[0, 1]``) and the encoder sees them normalised. ``None``
            (default): ``pixel_values`` go to the encoder and the selector as given.
        image_std: per-channel std, with ``image_mean``.

    Examples:
        >>> from transformers import CLIPVisionConfig, CLIPVisionModel
        >>> from transformers import LlamaConfig, LlamaForCausalLM
        >>> vision = CLIPVisionModel(CLIPVisionConfig(hidden_size=32, intermediate_size=64,
        ...     num_hidden_layers=1, num_attention_heads=2, image_size=32, patch_size=8))
        >>> lm = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64,
        ...     num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2))
        >>> vlm = HierarchicalVLM(vision, lm, levels=2, image_token_id=63)
        >>> ids = torch.tensor([[1, 63, 5, 6], [1, 63, 7, 8]])
        >>> out = vlm(torch.rand(2, 3, 32, 32), ids, labels=ids)
        >>> out.logits.shape[0], out.loss.ndim
        (2, 0)
    """

    def __init__(
        self,
        vision_encoder: nn.Module,
        language_model: nn.Module,
        projector: nn.Module | str | None = None,
        levels: int = 3,
        selector: SelectorSpec = None,
        *,
        allocator: SelectorSpec = None,
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
    ) -> None:
        super().__init__()
        if (image_mean is None) != (image_std is None):
            raise ValueError(
                f"image_mean, image_std: give both (normalise inside) or neither, got "
                f"{image_mean!r} and {image_std!r}"
            )
        self.normalisation = (
            None if image_mean is None else normalisation_for((), image_mean, image_std)
        )
        if isinstance(levels, bool) or not isinstance(levels, int) or levels < 1:
            raise ValueError(f"levels: expected an int >= 1, got {levels!r}")
        if not isinstance(vision_encoder, VisionEncoder):
            vision_encoder = VisionEncoder(
                vision_encoder, feature_layer, keep_prefix, patch_size, vision_hidden_size
            )
        self.vision_encoder = vision_encoder
        self.language_model = language_model
        self.hidden_size = hidden_size(language_model)
        feature_dim = vision_encoder.hidden_size
        self.projector = resolve_projector(projector, feature_dim, self.hidden_size)
        self.levels = levels
        selector = _selector_argument(selector, allocator, None, stacklevel=2)
        self.selector = _resolve_selector(selector, self.hidden_size, feature_dim)
        self.image_token_id = resolve_image_token(image_token_id, language_model)
        if quantizer is not None and not isinstance(quantizer, VectorQuantizer):
            raise TypeError(
                f"quantizer: expected a VectorQuantizer, got {type(quantizer).__name__}"
            )
        self.quantizer = quantizer
        self.vq_weight = vq_weight
        self.scale_embedding = nn.Parameter(torch.zeros(levels, self.hidden_size))
        freeze_parts(
            {
                "encoder": self.vision_encoder,
                "projector": self.projector,
                "language_model": self.language_model,
            },
            freeze,
        )

    @classmethod
    def from_llava(
        cls,
        model: nn.Module,
        levels: int = 1,
        selector: SelectorSpec = None,
        *,
        allocator: SelectorSpec = None,
        **kwargs: Any,
    ) -> Any:
        """Wrap a ``LlavaForConditionalGeneration``: its vision tower (same feature layer and
        CLS strategy), its projector and its LM. With ``levels=1`` and ``selector="all"`` (the
        default here) the logits equal LLaVA's own forward on the same ``input_ids`` (expanded
        placeholders). ``allocator=`` is the deprecated name of ``selector=``.

        Examples:
            >>> from pyrtok.vlm.testing import tiny_llava
            >>> llava = tiny_llava()
            >>> vlm = HierarchicalVLM.from_llava(llava)
            >>> vlm.vision_encoder.feature_layer, vlm.image_token_id
            (-2, 63)
        """
        from pyrtok.vlm.llava import llava_parts

        parts = llava_parts(model)
        return cls(
            VisionEncoder(parts.vision_tower, parts.feature_layer, parts.keep_prefix),
            model,
            parts.projector,
            levels,
            # positional: the selector's slot, whatever a subclass names its keyword
            _selector_argument(selector, allocator, "all", stacklevel=2),
            image_token_id=parts.image_token_id,
            **kwargs,
        )

    def embed_text(self, input_ids: Tensor) -> Tensor:
        """``(B, T)`` ids -> ``(B, T, D)`` LM input embeddings (placeholders embedded as id 0)."""
        return embed_text(self.language_model, input_ids, self.image_token_id)

    def query_embedding(self, input_ids: Tensor, attention_mask: Tensor | None) -> Tensor:
        """``(B, D)`` mean embedding of each row's real text tokens (the query for selectors)."""
        real = check_prompt(input_ids, attention_mask) & (input_ids != self.image_token_id)
        weight = real[..., None].float()
        embeds = self.embed_text(input_ids).float()
        return (embeds * weight).sum(1) / weight.sum(1).clamp(min=1)

    def encode_images(self, pixel_values: Tensor, query: Tensor | None = None) -> VisualTokens:
        """Images -> selected, projected visual tokens.

        Args:
            pixel_values: ``(B, 3, H, W)``, ``H, W`` multiples of ``p * 2**(levels - 1)``
                (``[0, 1]`` when the module normalises inside).
            query: ``(B, D)`` pooled question embedding (for query-conditioned selectors).

        Returns:
            :class:`VisualTokens` with ``embeds (B, N, D)``.
        """
        encoder_input = pixel_values
        if self.normalisation is not None:
            mean, std = (v.to(pixel_values)[..., None] for v in self.normalisation)
            encoder_input = (check_unit_range(pixel_values) - mean) / std
        features = encode_pyramid(self.vision_encoder, encoder_input, self.levels)
        grids = residual_grids([f.grid for f in features])
        selection = check_keep(
            self.selector(pixel_values, grids, query, self.vision_encoder.patch_size),
            grids,
            self.selector,
        )
        tokens, mask, scales = selected_tokens(grids, selection, features[0].prefix)
        indices = vq_loss = None
        if self.quantizer is not None:
            tokens, indices, vq_loss = self.quantizer(tokens, mask)
        embeds = check_projected(self.projector(tokens), self.hidden_size)
        embeds = (embeds + self.scale_embedding[scales].to(embeds.dtype)) * mask[..., None]
        return VisualTokens(embeds, mask, scales, indices, vq_loss)

    def _visual(
        self, pixel_values: Tensor, input_ids: Tensor, attention_mask: Tensor | None
    ) -> VisualTokens:
        query = None
        if getattr(self.selector, "needs_query", False):
            query = self.query_embedding(input_ids, attention_mask)
        check_one_image_per_row(pixel_values, input_ids)
        return self.encode_images(pixel_values, query)

    def merge(
        self,
        pixel_values: Tensor,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        labels: Tensor | None = None,
        padding_side: str = "right",
    ) -> tuple[MergedSequence, VisualTokens]:
        """The LM inputs (embeddings, mask, positions, labels) and the visual tokens."""
        check_prompt(input_ids, attention_mask, labels)
        visual = self._visual(pixel_values, input_ids, attention_mask)
        merged = merge_sequence(
            self.embed_text(input_ids),
            input_ids,
            attention_mask,
            visual.embeds,
            visual.mask,
            self.image_token_id,
            labels,
            padding_side,
        )
        return merged, visual

    def forward(
        self,
        pixel_values: Tensor,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        labels: Tensor | None = None,
    ) -> VLMOutput:
        """Run the LM on the merged sequence.

        Args:
            pixel_values: ``(B, 3, H, W)``.
            input_ids: ``(B, T)`` with one placeholder (or one per visual token) per row.
            attention_mask: ``(B, T)``.
            labels: ``(B, T)`` aligned with ``input_ids`` (``-100`` to ignore); the LM shifts.

        Returns:
            :class:`~pyrtok.vlm.VLMOutput`: ``logits (B, S, V)`` over the merged sequence
            (right-padded), ``loss`` (plus ``vq_weight * vq_loss``) when ``labels`` is given,
            ``visual_counts``.
        """
        merged, visual = self.merge(pixel_values, input_ids, attention_mask, labels)
        out = lm_forward(self.language_model, merged)
        return vlm_output(out, visual.counts, vq_loss=visual.vq_loss, vq_weight=self.vq_weight)

    @torch.no_grad()
    def generate(
        self,
        pixel_values: Tensor,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        **generate_kwargs: Any,
    ) -> Tensor:
        """``language_model.generate`` on the merged, left-padded sequence.

        Returns:
            ``(B, T_new)`` generated token ids (HF returns only new tokens when given
            ``inputs_embeds``).
        """
        merged, _ = self.merge(pixel_values, input_ids, attention_mask, padding_side="left")
        return lm_generate(self.language_model, merged, **generate_kwargs)

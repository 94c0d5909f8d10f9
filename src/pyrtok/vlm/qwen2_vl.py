"""Qwen2-VL native: quadtree leaves through Qwen2-VL's vision tower and M-RoPE LM.

:class:`Qwen2VLMixedResolutionVLM` (built by
:meth:`MixedResolutionVLM.from_qwen2_vl <pyrtok.vlm.MixedResolutionVLM.from_qwen2_vl>`) is
:class:`~pyrtok.vlm.MixedResolutionVLM`'s route with Qwen2-VL's parts:

1. allocation as usual, with ``min_patch = patch_size * spatial_merge_size = 28``: a leaf of
   side ``28 * 2**k`` is the 28 x 28 patch of Gaussian level ``k``, i.e. one merger group and
   one LM token;
2. the tower runs on exactly the leaves (:func:`~pyrtok.vlm.qwen2_vl_tower.encode_qwen2_vl`:
   four 14-px sub-patches per leaf, packed with ``cu_seqlens``, 2-D rotary at their centres,
   the merger); no projector of pyrtok's (the merger is Qwen2-VL's projector);
3. the LM gets M-RoPE ids (:func:`~pyrtok.vlm.qwen2_vl_rope.mrope_positions`): each visual
   token at its leaf's centre on the merge grid, the text after the image continuing as
   Qwen2-VL's ``get_rope_index`` does.

Images must be ``[0, 1]`` tensors whose sides are multiples of 28, Qwen2-VL's own grid (what
its processor's ``smart_resize(h, w)`` gives), and at least ``max_patch``. Sides that are not
multiples of ``max_patch`` are tiled by smaller roots along the bottom and right edges (see
:mod:`pyrtok.allocation.quadtree`), so every leaf lies inside the image. At full detail (every
leaf at level 0, raster order) the logits equal ``Qwen2VLForConditionalGeneration``'s own
forward on the same image.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch
from torch import Tensor, nn

from pyrtok.allocation import Allocation, TokenizedImages
from pyrtok.vlm._hf import call_lm, output_cache
from pyrtok.vlm.answering import ProgressiveOutput
from pyrtok.vlm.mixed_resolution import MixedResolutionFeatures
from pyrtok.vlm.mixed_resolution_vlm import (
    Allocations,
    Budget,
    Images,
    MixedResolutionVLM,
)
from pyrtok.vlm.qwen2_vl_patches import pixel_tokens
from pyrtok.vlm.qwen2_vl_rope import leaf_mrope, mrope_positions
from pyrtok.vlm.qwen2_vl_tower import check_windows, encode_qwen2_vl, qwen2_vl_parts
from pyrtok.vlm.sequence import MergedSequence, split_at_image
from pyrtok.vlm.wiring import embed_text


def check_qwen2_vl_images(pixel_values: object, leaf: int) -> None:
    """Raise unless ``pixel_values`` are still images whose sides are whole merge groups.

    Args:
        pixel_values: ``(B, 3, H, W)`` or a list of ``(3, H, W)``.
        leaf: a merge group's side in pixels (``patch_size * spatial_merge_size = 28``).

    Examples:
        >>> check_qwen2_vl_images(torch.rand(1, 3, 140, 196), 28)  # 5 x 7 merge groups
        >>> try:
        ...     check_qwen2_vl_images(torch.rand(1, 3, 20, 56), 28)
        ... except ValueError as error:
        ...     print(str(error)[:65])
        pixel_values: a 20x56 image is smaller than one merge group (28 x
    """
    images = pixel_values if isinstance(pixel_values, list) else [pixel_values]
    for image in images:
        if not isinstance(image, Tensor):
            continue  # the generic checks name the type
        if image.ndim == 5 or (isinstance(pixel_values, list) and image.ndim == 4):
            raise ValueError(
                f"pixel_values: got a {image.ndim}-d tensor {tuple(image.shape)}, a video; "
                f"Qwen2-VL through pyrtok takes still images only, (B, 3, H, W) or a list of "
                f"(3, H, W)"
            )
        height, width = image.shape[-2:]
        if height < leaf or width < leaf:
            raise ValueError(
                f"pixel_values: a {height}x{width} image is smaller than one merge group "
                f"({leaf} x {leaf} px, one LM token); resize it to at least {leaf} px a side"
            )
        if height % leaf or width % leaf:
            raise ValueError(
                f"pixel_values: {height}x{width} is not a whole number of {leaf}-px merge "
                f"groups (patch_size * spatial_merge_size); resize to multiples of {leaf}, "
                f"as Qwen2-VL's processor does (transformers' smart_resize(h, w))"
            )


class Qwen2VLMixedResolutionVLM(MixedResolutionVLM):
    """:class:`~pyrtok.vlm.MixedResolutionVLM` on a ``Qwen2VLForConditionalGeneration`` (or a
    ``Qwen2_5_VLForConditionalGeneration``, whose windows need ``max_patch`` to divide
    ``window_size``, see :mod:`~pyrtok.vlm.qwen2_vl_tower`).

    Args:
        model: the Qwen2-VL model (its tower, merger and LM are used as they are).
        budget: LM visual tokens (leaves) per image, as :class:`~pyrtok.vlm.MixedResolutionVLM`.
        **kwargs: :class:`~pyrtok.vlm.MixedResolutionVLM` settings (``max_patch`` default
            ``4 * 28``, ``strategy``, ``scorer``, ``order``, ``budget_mode``, ``allocator``
            with ``min_patch=28``, ``quantizer``, ``freeze``, ``image_mean``/``image_std``,
            default CLIP's as Qwen2-VL's processor).

    Shapes:
        ``pixel_values (B, 3, H, W)`` in ``[0, 1]`` (``H, W`` multiples of 28, at least
        ``max_patch``) or a list of ``(3, H, W)``; ``input_ids (B, T)`` with one image
        placeholder per row (or one per visual token) -> :class:`~pyrtok.vlm.VLMOutput` with
        ``logits (B, S, V)``.

    Examples:
        >>> from pyrtok.vlm.testing import tiny_qwen2_vl
        >>> vlm = Qwen2VLMixedResolutionVLM(tiny_qwen2_vl(), budget=8)
        >>> ids = torch.tensor([[1, 88, 90, 89, 5, 6]])  # vision start, image, vision end
        >>> out = vlm(torch.rand(1, 3, 224, 112), ids)  # 2 cells of 112 px
        >>> out.visual_counts.tolist(), out.logits.shape
        ([8], torch.Size([1, 13, 96]))
    """

    def __init__(self, model: nn.Module, *, budget: Budget | None = None, **kwargs: Any) -> None:
        parts = qwen2_vl_parts(model)
        allocator = kwargs.get("allocator")
        if getattr(allocator, "min_patch", parts.leaf_size) != parts.leaf_size:
            raise ValueError(
                f"allocator: min_patch must be patch_size * spatial_merge_size = "
                f"{parts.patch_size} * {parts.merge} = {parts.leaf_size} (a level-0 leaf is one "
                f"merger group, one LM token), got {getattr(allocator, 'min_patch', None)}"
            )
        kwargs.setdefault("image_token_id", parts.image_token_id)
        super().__init__(parts.visual, model, "identity", budget=budget, **kwargs)
        check_windows(parts, self.max_patch)
        self.parts = parts

    @classmethod
    def from_settings(
        cls, vision_model: nn.Module, language_model: nn.Module | None = None, **settings: Any
    ) -> Any:
        """:meth:`from_pretrained`'s constructor: the whole Qwen2-VL model and the saved
        settings (``from_pretrained(directory, model)``).

        Examples:
            >>> import tempfile
            >>> from pyrtok.vlm.testing import tiny_qwen2_vl
            >>> model = tiny_qwen2_vl()
            >>> with tempfile.TemporaryDirectory() as directory:
            ...     Qwen2VLMixedResolutionVLM(model, budget=8, max_patch=56).save_pretrained(
            ...         directory)
            ...     again = Qwen2VLMixedResolutionVLM.from_pretrained(directory, model)
            >>> again.budget, again.max_patch
            (8, 56)
        """
        if language_model is not None:
            raise TypeError(
                f"language_model: Qwen2-VL is loaded from its whole model, "
                f"from_pretrained(directory, model); leave language_model out, got "
                f"{type(language_model).__name__}"
            )
        return cls(vision_model, **settings)

    def vision_geometry(self, vision_model: nn.Module) -> tuple[int, int]:
        """``(28, merger output width)``: a level-0 leaf is one merge group."""
        config: Any = vision_model.config
        out = getattr(config, "out_hidden_size", None) or config.hidden_size  # Qwen2.5-VL
        return int(config.patch_size * config.spatial_merge_size), int(out)

    def vision_features(self, tokens: TokenizedImages) -> MixedResolutionFeatures:
        """Qwen2-VL's tower and merger on the leaves (:func:`encode_qwen2_vl`)."""
        features = encode_qwen2_vl(self.parts, tokens)
        prefix = features.new_zeros((features.shape[0], 0, features.shape[-1]))
        return MixedResolutionFeatures(tokens=features, prefix=prefix, mask=tokens.mask)

    def tokenize(
        self, pixel_values: Tensor, allocation: Allocation, pyramid: list[Tensor] | None = None
    ) -> TokenizedImages:
        """Normalised leaf tokens with ``positions`` in pixels (leaf centre ``y``, ``x`` and
        side; see :func:`~pyrtok.vlm.qwen2_vl_patches.pixel_tokens`)."""
        return pixel_tokens(super().tokenize(pixel_values, allocation, pyramid), allocation)

    def _batch_tokens(
        self, pixel_values: Tensor, allocation: Allocations | None, budget: Budget | None
    ) -> tuple[TokenizedImages, Allocation]:
        check_qwen2_vl_images(pixel_values, self.patch_size)
        return super()._batch_tokens(pixel_values, allocation, budget)

    def _check_prompt_images(self, pixel_values: Images, input_ids: Tensor) -> None:
        check_qwen2_vl_images(pixel_values, self.patch_size)
        video = self.parts.video_token_id
        if video is not None and bool((input_ids == video).any()):
            raise ValueError(
                f"input_ids: holds Qwen2-VL's video token (id {video}); pyrtok takes still "
                f"images only: one image placeholder (id {self.image_token_id}) per row"
            )

    def _visual_offsets(self, allocation: Allocations, width: int) -> tuple[Tensor, Tensor]:
        """``(B, width, 2)`` M-RoPE (height, width) offsets of each row's leaves and ``(B,)``
        ``max(grid_h, grid_w)`` of its image, in merge cells."""
        rows = allocation if isinstance(allocation, list) else [allocation]
        offsets, spans = [], []
        for part in rows:
            boxes = part.boxes.float()
            centres = boxes[..., :2] + boxes[..., 2:3] / 2
            offset = leaf_mrope(centres, self.patch_size)
            offsets.append(torch.nn.functional.pad(offset, (0, 0, 0, width - offset.shape[1])))
            span = max(part.image_size) // self.patch_size
            spans.append(torch.full((part.batch_size,), span, device=boxes.device))
        return torch.cat(offsets), torch.cat(spans)

    def merge_with_next(
        self,
        pixel_values: Images,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        labels: Tensor | None = None,
        allocation: Allocations | None = None,
        budget: Budget | None = None,
        padding_side: str = "right",
    ) -> tuple[MergedSequence, Tensor, Allocations, Tensor | None, Tensor]:
        """:meth:`merge`, plus ``(B,)`` the M-RoPE id of each row's next text token."""
        self._check_prompt_images(pixel_values, input_ids)
        merged, counts, allocation, vq_loss = super().merge(
            pixel_values, input_ids, attention_mask, labels, allocation, budget, padding_side
        )
        before, after = split_at_image(input_ids, attention_mask, self.image_token_id, counts)
        width = int(counts.max())
        offsets, spans = self._visual_offsets(allocation, width)
        visual_mask = torch.arange(width, device=counts.device)[None, :] < counts[:, None]
        positions, nxt = mrope_positions(
            before,
            after,
            offsets.to(before.device),
            visual_mask.to(before.device),
            spans.to(before.device),
            left_pad=padding_side == "left",
        )
        merged = replace(merged, position_ids=positions.to(merged.inputs_embeds.device))
        return merged, counts, allocation, vq_loss, nxt

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
        """The LM inputs with M-RoPE ``position_ids (3, B, S)`` (float: leaves above level 0
        sit between merge cells), per-row visual counts, the allocation and the quantizer
        loss."""
        merged, counts, allocation, vq_loss, _ = self.merge_with_next(
            pixel_values, input_ids, attention_mask, labels, allocation, budget, padding_side
        )
        return merged, counts, allocation, vq_loss

    @torch.no_grad()
    def generate(
        self,
        pixel_values: Images,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        allocation: Allocations | None = None,
        budget: Budget | None = None,
        max_new_tokens: int = 16,
        eos_token_id: int | None = None,
        pad_token_id: int | None = None,
        do_sample: bool = False,
        **generate_kwargs: Any,
    ) -> Tensor:
        """Greedy decoding with M-RoPE ids (each new token continues its row's text ids).

        Hugging Face's ``generate`` would rebuild Qwen2-VL's position ids from
        ``input_ids`` and image grids it does not have here, so the loop is pyrtok's: one
        prefill of the merged, left-padded sequence, then one token per step with the KV
        cache. Rows that produced ``eos_token_id`` are padded with ``pad_token_id`` (defaults:
        the LM config's); decoding stops when every row has.

        Returns:
            ``(B, T_new)`` new token ids, ``T_new <= max_new_tokens``.
        """
        if generate_kwargs:
            raise TypeError(
                f"generate: takes max_new_tokens, eos_token_id, pad_token_id and do_sample=False "
                f"(greedy decoding with M-RoPE ids), got {sorted(generate_kwargs)}"
            )
        if do_sample:
            raise ValueError(
                "do_sample: Qwen2VLMixedResolutionVLM.generate decodes greedily only; pass "
                "do_sample=False, or sample from forward()'s logits"
            )
        if (
            isinstance(max_new_tokens, bool)
            or not isinstance(max_new_tokens, int)
            or max_new_tokens < 1
        ):
            raise ValueError(f"max_new_tokens: expected an int >= 1, got {max_new_tokens!r}")
        config = getattr(self.language_model.config, "text_config", self.language_model.config)
        eos = getattr(config, "eos_token_id", None) if eos_token_id is None else eos_token_id
        pad = getattr(config, "pad_token_id", None) if pad_token_id is None else pad_token_id
        pad = (eos if isinstance(eos, int) else 0) if pad is None else pad
        merged, _, _, _, nxt = self.merge_with_next(
            pixel_values, input_ids, attention_mask, None, allocation, budget, "left"
        )
        mask = merged.attention_mask
        out = call_lm(
            self.language_model,
            merged.inputs_embeds,
            mask,
            merged.position_ids,
            use_cache=True,
            logits_to_keep=1,
        )
        finished = torch.zeros(mask.shape[0], dtype=torch.bool, device=mask.device)
        new: list[Tensor] = []
        for step in range(max_new_tokens):
            token = out.logits[:, -1].argmax(dim=-1)
            token = torch.where(finished, torch.full_like(token, pad), token)
            new.append(token)
            if isinstance(eos, int):
                finished = finished | (token == eos)
            if step == max_new_tokens - 1 or bool(finished.all()):
                break
            mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=1)
            position = nxt.to(mask.device)[None, :, None].expand(3, -1, 1)
            out = call_lm(
                self.language_model,
                embed_text(self.language_model, token[:, None], self.image_token_id),
                mask,
                position,
                cache=output_cache(out),
                use_cache=True,
                logits_to_keep=1,
            )
            nxt = nxt + 1
        return torch.stack(new, dim=1)

    def leaf_positions(self, allocation: Allocation, start: Tensor) -> tuple[Tensor, Tensor]:
        """M-RoPE ids ``(3, B, N)`` of the leaves of ``allocation`` after ``start (B,)`` text
        tokens, each at its centre on the merge grid (``(s, s + h, s + w)``, zeros on padding),
        and ``(B,)`` the id of the text after the image, ``s + max(grid_h, grid_w)``; what the
        quadtree ladder appends at each rung.

        Examples:
            >>> from pyrtok.allocation import allocate
            >>> from pyrtok.vlm.testing import tiny_qwen2_vl
            >>> vlm = Qwen2VLMixedResolutionVLM(tiny_qwen2_vl(), max_patch=56)
            >>> allocation = allocate(torch.rand(1, 3, 56, 84), 3, min_patch=28, max_patch=56)
            >>> ids, nxt = vlm.leaf_positions(allocation, torch.tensor([2]))
            >>> ids[:, 0].tolist(), nxt.tolist()  # a 56-px cell, then two 28-px roots
            ([[2.0, 2.0, 2.0], [2.5, 2.0, 3.0], [2.5, 4.0, 4.0]], [5.0])
        """
        offsets, spans = self._visual_offsets(allocation, allocation.boxes.shape[1])
        begin = start.to(offsets.device).float()[:, None, None]
        ids = torch.cat([begin.expand(*offsets.shape[:2], 1), begin + offsets], dim=-1)
        ids = ids * allocation.mask[..., None]
        return ids.permute(2, 0, 1), begin[:, 0, 0] + spans.float()

    def progressive_generate(
        self, pixel_values: Tensor, input_ids: Tensor, *args: Any, **kwargs: Any
    ) -> ProgressiveOutput:
        """:meth:`MixedResolutionVLM.progressive_generate
        <pyrtok.vlm.MixedResolutionVLM.progressive_generate>` with M-RoPE ids: the leaves each
        rung appends take their places in the image (:meth:`leaf_positions`), and the text
        after the image (vision end, the question, the answer) the ids Qwen2-VL gives it, the
        same at every rung. Budgets are feasible token counts of the image (see
        :class:`~pyrtok.allocation.QuadtreeGeometry`).

        Examples:
            >>> from pyrtok.vlm.testing import tiny_qwen2_vl
            >>> vlm = Qwen2VLMixedResolutionVLM(tiny_qwen2_vl())
            >>> ids = torch.tensor([[1, 88, 90, 89, 5, 6]])
            >>> flat = torch.full((1, 3, 112, 224), 0.5)  # ties split breadth first
            >>> out = vlm.progressive_generate(flat, ids, budgets=(2, 11, 32),
            ...     thresholds=(1.0, 1.0))  # never confident: every rung
            >>> out.exit_level.tolist(), out.visual_tokens.tolist()  # 2 + 11 + 28 leaves sent
            ([2], [41])
        """
        self._check_prompt_images(pixel_values, input_ids)
        output: ProgressiveOutput = super().progressive_generate(
            pixel_values, input_ids, *args, **kwargs
        )
        return output

"""Reading the parts of a ``transformers`` ``LlavaForConditionalGeneration`` (4.5x and 5.x)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn


@dataclass(frozen=True)
class LlavaParts:
    """What :meth:`HierarchicalVLM.from_llava` reuses from a LLaVA model."""

    vision_tower: nn.Module
    projector: nn.Module
    feature_layer: int
    keep_prefix: bool
    image_token_id: int


def llava_parts(model: nn.Module) -> LlavaParts:
    """Vision tower, projector, feature layer, CLS strategy and image token of a LLaVA model.

    Examples:
        >>> from pyrtok.vlm.testing import tiny_llava
        >>> parts = llava_parts(tiny_llava())
        >>> parts.feature_layer, parts.keep_prefix, parts.image_token_id
        (-2, False, 63)
    """
    config = getattr(model, "config", None)
    base = getattr(model, "model", model)
    tower = getattr(base, "vision_tower", None)
    projector = getattr(base, "multi_modal_projector", None)
    if config is None or not isinstance(tower, nn.Module) or not isinstance(projector, nn.Module):
        raise TypeError(
            f"model: expected a LlavaForConditionalGeneration (vision_tower, "
            f"multi_modal_projector, config), got {type(model).__name__}"
        )
    layer = config.vision_feature_layer
    if not isinstance(layer, int):
        raise ValueError(
            f"model: vision_feature_layer must be one int layer, got {layer!r} (concatenated "
            f"layers are not supported)"
        )
    strategy = config.vision_feature_select_strategy
    if strategy not in ("default", "full"):
        raise ValueError(
            f"model: vision_feature_select_strategy must be 'default' or 'full', got {strategy!r}"
        )
    token = getattr(config, "image_token_id", None)
    if token is None:
        token = getattr(config, "image_token_index", None)
    if not isinstance(token, int):
        raise ValueError(f"model: its config has no int image_token_id, got {token!r}")
    return LlavaParts(tower, projector, layer, strategy == "full", token)

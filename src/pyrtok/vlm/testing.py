"""Tiny randomly initialised Hugging Face models for tests, docs and notebooks (no downloads)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def tiny_llama(vocab_size: int = 64, hidden_size: int = 32, layers: int = 2, seed: int = 0) -> Any:
    """A ``LlamaForCausalLM`` with random weights (eager attention).

    Examples:
        >>> tiny_llama().config.hidden_size
        32
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(  # type: ignore[call-arg]
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        attn_implementation="eager",
    )
    return LlamaForCausalLM(config).eval()  # type: ignore[no-untyped-call]


def tiny_clip(
    hidden_size: int = 32, image_size: int = 32, patch_size: int = 8, seed: int = 0
) -> nn.Module:
    """A ``CLIPVisionModel`` with random weights.

    Examples:
        >>> tiny_clip().config.patch_size
        8
    """
    from transformers import CLIPVisionConfig, CLIPVisionModel

    torch.manual_seed(seed)
    config = CLIPVisionConfig(  # type: ignore[call-arg]
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=image_size,
        patch_size=patch_size,
        attn_implementation="eager",
    )
    model: nn.Module = CLIPVisionModel(config).eval()  # type: ignore[no-untyped-call]
    return model


def tiny_llava(image_token_id: int = 63, seed: int = 0, vision: str = "clip") -> Any:
    """A ``LlavaForConditionalGeneration``: Llama with a CLIP tower (feature layer -2, CLS
    dropped) or, with ``vision="siglip"``, a SigLIP tower (no CLS: every token kept).

    Examples:
        >>> tiny_llava().config.image_token_id
        63
        >>> tiny_llava(vision="siglip").config.vision_feature_select_strategy
        'full'
    """
    from transformers import (
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        SiglipVisionConfig,
    )

    towers = {"clip": CLIPVisionConfig, "siglip": SiglipVisionConfig}
    if vision not in towers:
        raise ValueError(f"vision: expected one of {list(towers)}, got {vision!r}")
    torch.manual_seed(seed)
    tower = towers[vision](
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=32,
        patch_size=8,
    )
    text = LlamaConfig(
        vocab_size=64,
        hidden_size=48,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
    )
    config = LlavaConfig(  # type: ignore[call-arg]
        vision_config=tower,
        text_config=text,
        image_token_id=image_token_id,
        vision_feature_layer=-2,
        vision_feature_select_strategy="default" if vision == "clip" else "full",
        attn_implementation="eager",
    )
    return LlavaForConditionalGeneration(config).eval()  # type: ignore[no-untyped-call]

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
    hidden_size: int = 32,
    image_size: int = 32,
    patch_size: int = 8,
    seed: int = 0,
    *,
    layers: int = 2,
    attention: str = "eager",
) -> nn.Module:
    """A ``CLIPVisionModel`` with random weights (``attention``: ``"eager"`` or ``"sdpa"``).

    Examples:
        >>> tiny_clip().config.patch_size
        8
        >>> tiny_clip(layers=3, attention="sdpa").config.num_hidden_layers
        3
    """
    from transformers import CLIPVisionConfig, CLIPVisionModel

    torch.manual_seed(seed)
    config = CLIPVisionConfig(  # type: ignore[call-arg]
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=4,
        image_size=image_size,
        patch_size=patch_size,
        attn_implementation=attention,
    )
    model: nn.Module = CLIPVisionModel(config).eval()  # type: ignore[no-untyped-call]
    return model


def tiny_llava(
    image_token_id: int = 63,
    seed: int = 0,
    vision: str = "clip",
    *,
    image_size: int = 32,
    patch_size: int = 8,
    vision_width: int = 32,
    vision_layers: int = 2,
    text_width: int = 48,
    text_layers: int = 2,
    text_heads: int = 4,
    attention: str = "eager",
) -> Any:
    """A ``LlavaForConditionalGeneration``: Llama with a CLIP tower (feature layer -2, CLS
    dropped) or, with ``vision="siglip"``, a SigLIP tower (no CLS: every token kept). The
    keywords size it (MLP widths are twice the widths; the LM has ``text_heads // 2`` KV heads);
    the defaults give the tests' tiny model.

    Examples:
        >>> tiny_llava().config.image_token_id
        63
        >>> tiny_llava(vision="siglip").config.vision_feature_select_strategy
        'full'
        >>> big = tiny_llava(image_size=256, patch_size=16, text_layers=8, attention="sdpa")
        >>> big.config.vision_config.image_size, big.config.text_config.num_hidden_layers
        (256, 8)
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
        hidden_size=vision_width,
        intermediate_size=2 * vision_width,
        num_hidden_layers=vision_layers,
        num_attention_heads=4,
        image_size=image_size,
        patch_size=patch_size,
    )
    text = LlamaConfig(
        vocab_size=64,
        hidden_size=text_width,
        intermediate_size=2 * text_width,
        num_hidden_layers=text_layers,
        num_attention_heads=text_heads,
        num_key_value_heads=text_heads // 2,
    )
    config = LlavaConfig(  # type: ignore[call-arg]
        vision_config=tower,
        text_config=text,
        image_token_id=image_token_id,
        vision_feature_layer=-2,
        vision_feature_select_strategy="default" if vision == "clip" else "full",
        attn_implementation=attention,
    )
    return LlavaForConditionalGeneration(config).eval()  # type: ignore[no-untyped-call]


def tiny_qwen2_vl(seed: int = 0, version: str = "2") -> Any:
    """A ``Qwen2VLForConditionalGeneration`` with random weights (eager attention): a 2-block
    tower (14 px patches, 2 x 2 merge, 32 wide) and a 2-layer LM (64 wide, vocabulary 96;
    image token 90, video 91, vision start/end 88/89, eos 2; LM rotary base 10, so every M-RoPE
    axis moves the logits). ``version="2.5"`` gives a
    ``Qwen2_5_VLForConditionalGeneration``: a 3-block tower with 112 px attention windows
    and full attention in block 1.

    Examples:
        >>> model = tiny_qwen2_vl()
        >>> model.config.image_token_id, model.config.vision_config.patch_size
        (90, 14)
        >>> tiny_qwen2_vl(version="2.5").config.vision_config.window_size
        112
    """
    import transformers

    config_class: Any
    model_class: Any
    common: dict[str, Any] = {
        "patch_size": 14,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        "num_heads": 4,
    }
    if version == "2":
        from transformers import Qwen2VLConfig as config_class
        from transformers import Qwen2VLForConditionalGeneration as model_class

        vision = common | {"depth": 2, "embed_dim": 32, "hidden_size": 64, "mlp_ratio": 2}
    elif version == "2.5":
        from transformers import Qwen2_5_VLConfig as config_class
        from transformers import Qwen2_5_VLForConditionalGeneration as model_class

        vision = common | {
            "depth": 3,
            "hidden_size": 32,
            "out_hidden_size": 64,
            "intermediate_size": 64,
            "window_size": 112,
            "fullatt_block_indexes": [1],
        }
    else:
        raise ValueError(f"version: expected '2' or '2.5', got {version!r}")
    torch.manual_seed(seed)
    text = {
        "vocab_size": 96,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 4096,
        "rope_scaling": {"type": "mrope", "mrope_section": [2, 3, 3]},
        "bos_token_id": 1,
        "eos_token_id": 2,
        "pad_token_id": 0,
    }
    # transformers >= 4.52 nests the LM settings in text_config; 4.5x before reads them flat.
    nested = hasattr(transformers, "Qwen2VLTextConfig")  # 2.5's arrived in the same release
    settings: dict[str, Any] = {"text_config": text} if nested else dict(text)
    settings |= {
        "vision_config": vision,
        "attn_implementation": "eager",
        "image_token_id": 90,
        "video_token_id": 91,
        "vision_start_token_id": 88,
        "vision_end_token_id": 89,
    }
    model = model_class(config_class(**settings))
    # LM rotary frequencies from 1 to 1/10 (base 10, not 1e6): at 1e6 the width axis's
    # frequencies are below 1e-3, so wrong height/width M-RoPE ids would hardly move the logits.
    for name, module in model.named_modules():
        if name.endswith("rotary_emb") and "visual" not in name:
            count = module.inv_freq.shape[0]
            module.inv_freq.copy_(10.0 ** -(torch.arange(count) / count))
    return model.eval()

"""One budget definition for every method: tokens, equivalent tokens and prefill FLOPs.

- **visual tokens**: image tokens entering the LM (after any pre-LLM selection).
- **equivalent tokens** ``T = sum_l n_l / L``: image tokens each of the ``L`` LM layers
  processes, averaged over layers (SparseVLM #12's formula): a pre-LLM method with ``n`` tokens
  has ``T = n``; FastV keeping ``n`` of ``N`` after layer ``K`` has ``T = (K N + (L - K) n) / L``.
- **prefill FLOPs** (analytic, multiply-add = 2 FLOPs): per transformer layer processing ``n``
  tokens, ``2 n P`` for its ``P`` linear weights plus ``4 w * pairs`` for ``QK^T`` and ``AV``
  (``w``: query width, heads x head_dim; ``pairs = n (n + 1) / 2`` causal, ``n^2`` in the
  encoder); the encoder adds its patch embedding, the projector its linear weights per token,
  the LM its head for the one position that is read.

Measured prefill and decode time are taken by :func:`pyrtok.eval.sweep`.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from pyrtok.vlm.inllm_pruning import decoder_layers
from pyrtok.vlm.mixed_resolution import _layers


def equivalent_tokens(per_layer: Sequence[int]) -> float:
    """``sum(per_layer) / len(per_layer)``: image tokens per LM layer, averaged.

    Examples:
        >>> equivalent_tokens([16, 8])  # FastV K=1 keeping 8 of 16 in a 2-layer LM
        12.0
    """
    if len(per_layer) == 0:
        raise ValueError("per_layer: expected one image-token count per LM layer, got none")
    return sum(per_layer) / len(per_layer)


def linear_weights(module: nn.Module) -> int:
    """Weights of every ``nn.Linear`` inside ``module`` (biases not counted)."""
    return sum(m.weight.numel() for m in module.modules() if isinstance(m, nn.Linear))


def _query_width(layer: nn.Module) -> int:
    for module in layer.modules():
        for name in ("q_proj", "query"):
            projection = getattr(module, name, None)
            if isinstance(projection, nn.Linear):
                return int(projection.out_features)
    raise TypeError(f"layer: {type(layer).__name__} has no query projection")


def layer_flops(layer: nn.Module, tokens: int, causal: bool) -> float:
    """Analytic FLOPs of one transformer layer on ``tokens`` tokens (see the module doc).

    Examples:
        >>> from pyrtok.vlm.testing import tiny_llama
        >>> layer = tiny_llama().model.layers[0]
        >>> layer_flops(layer, 4, causal=True) == 2 * 4 * linear_weights(layer) + 4 * 32 * 10
        True
    """
    pairs = tokens * (tokens + 1) // 2 if causal else tokens * tokens
    return 2.0 * tokens * linear_weights(layer) + 4.0 * _query_width(layer) * pairs


def lm_prefill_flops(
    language_model: nn.Module, text_tokens: int, visual_per_layer: Sequence[int]
) -> float:
    """Prefill FLOPs of a Llama-family LM: layer ``l`` runs ``text + visual_per_layer[l]``
    tokens, then the LM head on the last position.

    Examples:
        >>> from pyrtok.vlm.testing import tiny_llama
        >>> lm = tiny_llama()
        >>> lm_prefill_flops(lm, 4, [8, 8]) > lm_prefill_flops(lm, 4, [8, 2])
        True
    """
    layers = decoder_layers(language_model)
    if len(visual_per_layer) != len(layers):
        raise ValueError(
            f"visual_per_layer: expected {len(layers)} counts (one per LM layer), got "
            f"{len(visual_per_layer)}"
        )
    total = sum(
        layer_flops(layer, text_tokens + n, causal=True)
        for layer, n in zip(layers, visual_per_layer, strict=True)
    )
    head = getattr(language_model, "get_output_embeddings", lambda: None)()
    return total + (2.0 * head.weight.numel() if isinstance(head, nn.Linear) else 0.0)


def encoder_flops(
    vision_model: nn.Module, tokens: int, projector: nn.Module | None = None, visual: int = 0
) -> float:
    """FLOPs of a ViT-family encoder on ``tokens`` tokens (prefix included; every layer
    runs), its patch embedding, and ``projector`` on the ``visual`` tokens kept.

    Examples:
        >>> from pyrtok.vlm.testing import tiny_clip
        >>> encoder_flops(tiny_clip(), 17) > encoder_flops(tiny_clip(), 5)
        True
    """
    root = getattr(vision_model, "vision_model", vision_model)
    layers = _layers(root)
    if layers is None:
        raise TypeError(f"vision_model: no encoder layers in {type(vision_model).__name__}")
    total = sum(layer_flops(layer, tokens, causal=False) for layer in layers)
    convs = [m for m in root.modules() if isinstance(m, nn.Conv2d)]
    if convs:
        total += 2.0 * tokens * sum(c.weight.numel() for c in convs)
    if projector is not None:
        total += 2.0 * visual * linear_weights(projector)
    return total

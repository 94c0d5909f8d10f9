"""Attention rows of a ViT layer from its queries and keys, without the full attention matrix.

Encoders run with SDPA or FlashAttention never return attention weights (FastV #31, VisionZip
#24). The baselines need only a little of them: the CLS token's row (VisionZip, VisPruner,
PruMerge) or the attention each token receives averaged over queries (the ``"mean"`` variant for
encoders without CLS, e.g. SigLIP). :class:`LayerInputs` records the input of one attention
module on each forward (a forward pre-hook); :func:`received_attention` recomputes the needed
rows from that input's queries and keys, in float32, a chunk of queries at a time.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor, nn

from pyrtok.vlm.mixed_resolution import _layers

AttentionMode = Literal["cls", "mean"]
ATTENTION_MODES = ("cls", "mean")


def _projections(attention: nn.Module) -> tuple[nn.Linear, nn.Linear] | None:
    for q_name, k_name in (("q_proj", "k_proj"), ("query", "key")):
        q, k = getattr(attention, q_name, None), getattr(attention, k_name, None)
        if isinstance(q, nn.Linear) and isinstance(k, nn.Linear):
            return q, k
    return None


def find_attention(vision_model: nn.Module, layer: int) -> nn.Module:
    """The self-attention module (the one holding the query and key projections) of encoder
    layer ``layer`` (Python indexing: ``-2`` is the layer whose output LLaVA's feature layer
    ``-2`` is) of a Hugging Face ViT-family vision model (CLIP, SigLIP, ViT, DINOv2).

    Examples:
        >>> from pyrtok.vlm.testing import tiny_clip
        >>> type(find_attention(tiny_clip(), -2)).__name__
        'CLIPAttention'
    """
    root = getattr(vision_model, "vision_model", vision_model)
    layers = _layers(root)
    if layers is None:
        raise TypeError(
            f"vision_model: expected a Hugging Face ViT-family model with encoder layers, got "
            f"{type(vision_model).__name__}"
        )
    if (
        isinstance(layer, bool)
        or not isinstance(layer, int)
        or not -len(layers) <= layer < len(layers)
    ):
        raise ValueError(
            f"layer: expected an int in [{-len(layers)}, {len(layers) - 1}] (the encoder has "
            f"{len(layers)} layers), got {layer!r}"
        )
    for module in layers[layer].modules():
        if _projections(module) is not None:
            return module
    raise TypeError(f"vision_model: layer {layer} has no attention with query/key projections")


def _heads(attention: nn.Module, width: int) -> tuple[int, int]:
    """(heads, head_dim) of an attention module."""
    for name in ("num_heads", "num_attention_heads"):
        heads = getattr(attention, name, None)
        if isinstance(heads, int):
            return heads, width // heads
    config = getattr(attention, "config", None)
    heads = getattr(config, "num_attention_heads", None)
    if not isinstance(heads, int):
        raise TypeError(f"attention: {type(attention).__name__} does not say its head count")
    return heads, width // heads


def received_attention(
    hidden: Tensor, attention: nn.Module, mode: AttentionMode, prefix: int, chunk: int = 256
) -> Tensor:
    """Attention the grid tokens receive at one layer, mean over heads, from ``q`` and ``k``.

    Args:
        hidden: ``(B, S, D)`` the attention module's input (after the layer's pre-norm),
            ``prefix`` CLS-like tokens first.
        attention: the module (its query and key projections are applied here).
        mode: ``"cls"``: the CLS token's attention row (needs ``prefix >= 1``); ``"mean"``:
            the attention each key receives averaged over all queries.
        prefix: tokens before the grid.
        chunk: queries per step for ``"mean"`` (memory ``B * heads * chunk * S``).

    Returns:
        ``(B, S - prefix)`` float32 scores of the grid tokens; equal to the eager attention
        weights' row (``"cls"``) or column mean (``"mean"``), averaged over heads.

    Examples:
        >>> from pyrtok.vlm.testing import tiny_clip
        >>> attention = find_attention(tiny_clip(), 0)
        >>> received_attention(torch.randn(2, 17, 32), attention, "cls", 1).shape
        torch.Size([2, 16])
    """
    q_proj, k_proj = _checked_projections(attention)
    heads, _ = _heads(attention, q_proj.out_features)
    with torch.autocast(hidden.device.type, enabled=False):
        q, k = _split_heads(hidden, q_proj, heads), _split_heads(hidden, k_proj, heads)
        q = q * q.shape[-1] ** -0.5
        rows = q[:, :, :1] if mode == "cls" else q
        total = torch.zeros(hidden.shape[:2], device=hidden.device)
        for start in range(0, rows.shape[2], chunk):
            weights = torch.softmax(rows[:, :, start : start + chunk] @ k.transpose(2, 3), -1)
            total += weights.sum(dim=2).mean(dim=1)
        scores: Tensor = total[:, prefix:] / rows.shape[2]
        return scores


def key_metric(hidden: Tensor, attention: nn.Module) -> Tensor:
    """The layer's keys, mean over heads: VisionZip's similarity metric for merging.

    Args:
        hidden: ``(B, S, D)`` the attention module's input.
        attention: the module (its key projection is applied here).

    Returns:
        ``(B, S, D / heads)`` float32, ``k_proj(hidden)`` split into heads and averaged over
        them (VisionZip's ``raw_key_states.mean(1)``).

    Examples:
        >>> from pyrtok.vlm.testing import tiny_clip
        >>> key_metric(torch.randn(2, 17, 32), find_attention(tiny_clip(), 0)).shape
        torch.Size([2, 17, 8])
    """
    _, k_proj = _checked_projections(attention)
    heads, _ = _heads(attention, k_proj.out_features)
    with torch.autocast(hidden.device.type, enabled=False):
        metric: Tensor = _split_heads(hidden, k_proj, heads).mean(dim=1)
        return metric


def _checked_projections(attention: nn.Module) -> tuple[nn.Linear, nn.Linear]:
    projections = _projections(attention)
    if projections is None:
        raise TypeError(f"attention: {type(attention).__name__} has no query/key projections")
    return projections


def _split_heads(hidden: Tensor, projection: nn.Linear, heads: int) -> Tensor:
    """``(B, S, D)`` -> ``(B, heads, S, D' / heads)`` float32 projection."""
    batch, length, _ = hidden.shape
    x = nn.functional.linear(hidden.float(), projection.weight.float(), _float(projection.bias))
    return x.view(batch, length, heads, -1).transpose(1, 2)


def _float(bias: Tensor | None) -> Tensor | None:
    return None if bias is None else bias.float()


class LayerInputs:
    """Records the input ``hidden_states`` of one module on every forward (a pre-hook).

    Args:
        module: the module to watch (e.g. :func:`find_attention`'s result).

    Attributes:
        last: the input of the latest forward, detached, or ``None`` before the first.
    """

    def __init__(self, module: nn.Module) -> None:
        self.last: Tensor | None = None
        self.handle = module.register_forward_pre_hook(self._record, with_kwargs=True)

    def _record(self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        hidden = kwargs.get("hidden_states", args[0] if args else None)
        if isinstance(hidden, Tensor):
            self.last = hidden.detach()

    def remove(self) -> None:
        """Stop recording."""
        self.handle.remove()

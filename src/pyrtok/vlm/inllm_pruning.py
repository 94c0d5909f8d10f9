"""In-LLM pruning of image tokens: FastV (layer K) and PyramidDrop (staged drops).

Image tokens enter the LM in full; at the start of a stage layer ``K`` they are ranked by the
attention the last prompt token pays them in layer ``K - 1`` and only the top ones go on
through layers ``K .. L-1`` (FastV: one stage, Chen et al., ECCV 2024; PyramidDrop: a stage per
``layer_list`` entry with a growing drop, Xing et al., CVPR 2025). Text tokens are never
dropped; kept tokens keep their original positions (RoPE), as in FastV's code.

The ranking row is recomputed from layer ``K - 1``'s queries and keys (a forward pre-hook on its
attention), so pruning works with SDPA and FlashAttention, which never return attention weights
(FastV #31). The pruning hooks (pre-hooks on the decoder layers) shorten the hidden states and
slice the attention mask and the position embeddings; the KV cache of layers ``>= K`` then holds
only the kept tokens, and during ``generate`` the decode steps' attention mask is sliced the
same way, so cached decoding reads exactly what the pruned prefill wrote.

Use it around a forward or ``generate`` of the LM, with the image tokens' positions::

    pruning = fastv(language_model, layer=2, keep=0.5)
    with pruning.armed(image_mask, attention_mask):
        out = language_model.generate(inputs_embeds=..., attention_mask=attention_mask)
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn


def decoder_layers(language_model: nn.Module) -> nn.ModuleList:
    """The decoder layers of a Hugging Face Llama-family LM (also inside a LLaVA model): the
    ``ModuleList`` whose layers have ``input_layernorm`` and ``self_attn``.

    Examples:
        >>> from pyrtok.vlm.testing import tiny_llava
        >>> len(decoder_layers(tiny_llava()))
        2
    """
    for module in language_model.modules():
        if isinstance(module, nn.ModuleList) and len(module):
            first = module[0]
            if hasattr(first, "input_layernorm") and hasattr(first, "self_attn"):
                return module
    raise TypeError(
        f"language_model: no Llama-family decoder layers (input_layernorm + self_attn) found in "
        f"{type(language_model).__name__}"
    )


@dataclass
class _State:
    """What one armed prefill decided, read again by every decode step."""

    image_mask: Tensor
    real: Tensor
    prefill_length: int
    index: Tensor
    index_at: dict[int, Tensor] = field(default_factory=dict)
    gather_at: dict[int, Tensor] = field(default_factory=dict)
    prefilled: bool = False
    decoding: bool = False


def _rope(attention: nn.Module) -> Any:
    apply = getattr(sys.modules[type(attention).__module__], "apply_rotary_pos_emb", None)
    if apply is None:
        raise TypeError(
            f"language_model: {type(attention).__name__}'s module has no apply_rotary_pos_emb"
        )
    return apply


def last_token_attention(
    attention: Any, hidden: Tensor, position_embeddings: Any, real: Tensor
) -> Tensor:
    """Attention of each row's last real token over all tokens, mean over heads.

    Args:
        attention: a Llama-family attention module (``q_proj``, ``k_proj``, ``head_dim``).
        hidden: ``(B, S, D)`` its input (after the layer's norm).
        position_embeddings: the ``(cos, sin)`` it is given.
        real: ``(B, S)`` bool, True on real (not padding) tokens.

    Returns:
        ``(B, S)`` float32 weights (0 on padding); equals the eager attention's row.
    """
    batch, length, _ = hidden.shape
    head_dim = int(attention.head_dim)
    with torch.autocast(hidden.device.type, enabled=False):
        q = attention.q_proj(hidden).view(batch, length, -1, head_dim).transpose(1, 2)
        k = attention.k_proj(hidden).view(batch, length, -1, head_dim).transpose(1, 2)
        for name, x in (("q_norm", q), ("k_norm", k)):
            norm = getattr(attention, name, None)
            if norm is not None:
                q, k = (norm(x), k) if name == "q_norm" else (q, norm(x))
        cos, sin = position_embeddings
        q, k = _rope(attention)(q, k, cos, sin)
        last = torch.where(real, torch.arange(length, device=real.device), -1).max(1).values
        rows = torch.arange(batch, device=hidden.device)
        query = q.transpose(1, 2)[rows, last][:, :, None].float()  # (B, H, 1, d)
        keys = k.float().repeat_interleave(q.shape[1] // k.shape[1], dim=1)
        scale = float(getattr(attention, "scaling", head_dim**-0.5))
        logits = (query @ keys.transpose(2, 3))[:, :, 0] * scale
        logits = logits.masked_fill(~real[:, None], float("-inf"))
        return torch.softmax(logits, dim=-1).mean(dim=1)


def _slice_mask(mask: Any, index: Tensor, rows: bool, tail: int) -> Any:
    """Columns ``index`` (then the last ``tail`` columns) of a 2D/4D mask; rows too."""
    if not isinstance(mask, Tensor):
        return mask
    batch = index.shape[0]
    columns = index
    if tail:
        total = mask.shape[-1]
        extra = torch.arange(total - tail, total, device=index.device).expand(batch, -1)
        columns = torch.cat([index, extra], 1)
    if mask.ndim == 2:
        return mask.gather(1, columns)
    expanded = mask.expand(batch, *mask.shape[1:])
    cols = columns[:, None, None, :].expand(-1, mask.shape[1], mask.shape[2], -1)
    out = expanded.gather(3, cols)
    if rows:
        out = out.gather(2, index[:, None, :, None].expand(-1, mask.shape[1], -1, out.shape[3]))
    return out


class InLLMPruning:
    """Staged pruning of image tokens inside a causal LM (FastV, PyramidDrop).

    Args:
        language_model: a Hugging Face Llama-family LM (or a LLaVA model holding one).
        stages: ``(layer, keep)`` pairs, layers increasing in ``1 .. L``: from ``layer`` on,
            ``keep`` (a fraction of the prompt's image tokens, rounded; non-increasing) stay.
            A stage at ``layer = L`` prunes nothing.

    Attributes:
        kept_positions: after an armed prefill, ``{layer: (B, S_layer)}`` the original
            positions each stage's layer keeps (text and the kept image tokens).

    Examples:
        >>> from pyrtok.vlm.testing import tiny_llama
        >>> pruning = InLLMPruning(tiny_llama(layers=4), [(1, 0.5), (3, 0.25)])
        >>> pruning.visual_per_layer(16)
        [16, 8, 8, 4]
    """

    def __init__(self, language_model: nn.Module, stages: Sequence[tuple[int, float]]) -> None:
        self.language_model = language_model
        self.layers = decoder_layers(language_model)
        count = len(self.layers)
        previous_layer, previous_keep = 0, 1.0
        checked = []
        for layer, keep in stages:
            if isinstance(layer, bool) or not isinstance(layer, int) or not 1 <= layer <= count:
                raise ValueError(
                    f"layer: expected an int in 1..{count} (prune after that many layers of "
                    f"the {count}-layer LM; {count} prunes nothing), got {layer!r}"
                )
            if layer <= previous_layer:
                raise ValueError(f"stages: layers must increase, got {list(stages)}")
            if not 0 <= keep <= previous_keep:
                raise ValueError(
                    f"keep: expected fractions in [0, 1] that do not grow, got {list(stages)}"
                )
            previous_layer, previous_keep = layer, keep
            if layer < count:
                checked.append((layer, float(keep)))
        self.stages = tuple(checked)
        self.kept_positions: dict[int, Tensor] = {}

    def kept(self, visual: int) -> list[int]:
        """Image tokens kept from each stage's layer on, for ``visual`` image tokens."""
        return [round(keep * visual) for _, keep in self.stages]

    def visual_per_layer(self, visual: int) -> list[int]:
        """Image tokens each of the ``L`` layers processes at prefill."""
        counts, current = [], visual
        starts = dict(zip((layer for layer, _ in self.stages), self.kept(visual), strict=True))
        for layer in range(len(self.layers)):
            current = starts.get(layer, current)
            counts.append(current)
        return counts

    @contextmanager
    def armed(self, image_mask: Tensor, attention_mask: Tensor | None = None) -> Iterator[None]:
        """Prune in the LM calls made inside the block: the first is the prefill (its
        sequence is ``image_mask``'s), the others decode steps after it.

        Args:
            image_mask: ``(B, S)`` bool, True at the image tokens; the same count per row.
            attention_mask: ``(B, S)`` 1 on real tokens (default: all real).
        """
        if not isinstance(image_mask, Tensor) or image_mask.ndim != 2:
            raise ValueError("image_mask: expected a (B, S) bool tensor of image positions")
        counts = image_mask.sum(1)
        if bool((counts != counts[0]).any()):
            raise ValueError(
                f"image_mask: every row needs the same number of image tokens to prune them to "
                f"one length, got {counts.tolist()}"
            )
        real = torch.ones_like(image_mask) if attention_mask is None else attention_mask.bool()
        batch, length = image_mask.shape
        index = torch.arange(length, device=image_mask.device).expand(batch, -1)
        state = _State(image_mask.bool(), real, length, index)
        handles = [self.layers[0].register_forward_pre_hook(self._start(state), with_kwargs=True)]
        kept = self.kept(int(counts[0]))
        for (layer, _), count in zip(self.stages, kept, strict=True):
            handles.append(
                _module(self.layers[layer - 1].self_attn).register_forward_pre_hook(
                    self._rank(state, layer, count), with_kwargs=True
                )
            )
        first = self.stages[0][0] if self.stages else len(self.layers)
        for layer in range(first, len(self.layers)):
            handles.append(
                self.layers[layer].register_forward_pre_hook(
                    self._prune(state, layer), with_kwargs=True
                )
            )
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()

    def _start(self, state: _State) -> Any:
        def hook(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            hidden = args[0] if args else kwargs["hidden_states"]
            if state.prefilled:
                state.decoding = True
                return
            if hidden.shape[:2] != state.image_mask.shape:
                raise ValueError(
                    f"image_mask: armed for {tuple(state.image_mask.shape)} (B, S) but the "
                    f"prefill has {tuple(hidden.shape[:2])}"
                )
            state.prefilled = True
            self.kept_positions = {}

        return hook

    def _rank(self, state: _State, layer: int, count: int) -> Any:
        def hook(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            if state.decoding:  # the prefill decided
                return
            hidden = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
            index = self._index_at(state, layer - 1)
            real = state.real.gather(1, index)
            image = state.image_mask.gather(1, index)
            weights = last_token_attention(module, hidden, kwargs.get("position_embeddings"), real)
            image_scores = weights.masked_fill(~image, float("-inf"))
            top = image_scores.topk(count, dim=1).indices
            keep = ~image
            if count:
                keep.scatter_(1, top, True)
            relative = torch.sort(
                torch.where(keep, torch.arange(keep.shape[1], device=keep.device), keep.shape[1]),
                dim=1,
            ).values[:, : int(keep[0].sum())]
            state.gather_at[layer] = relative
            state.index_at[layer] = index.gather(1, relative)
            self.kept_positions[layer] = state.index_at[layer]

        return hook

    def _prune(self, state: _State, layer: int) -> Any:
        def hook(
            module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
        ) -> tuple[tuple[Any, ...], dict[str, Any]]:
            index = self._index_at(state, layer)
            hidden = args[0] if args else kwargs.pop("hidden_states")
            if state.decoding:
                tail = _mask_length(kwargs.get("attention_mask")) - state.prefill_length
                kwargs["attention_mask"] = _slice_mask(
                    kwargs.get("attention_mask"), index, rows=False, tail=tail
                )
                return (hidden, *args[1:]), kwargs
            if layer in state.gather_at:
                relative = state.gather_at[layer]
                hidden = hidden.gather(1, relative[..., None].expand(-1, -1, hidden.shape[-1]))
            kwargs["attention_mask"] = _slice_mask(
                kwargs.get("attention_mask"), index, rows=True, tail=0
            )
            if isinstance(kwargs.get("position_ids"), Tensor):
                positions = kwargs["position_ids"].expand(index.shape[0], -1)
                kwargs["position_ids"] = positions.gather(1, index)
            embeddings = kwargs.get("position_embeddings")
            if isinstance(embeddings, tuple):
                kwargs["position_embeddings"] = tuple(
                    e.expand(index.shape[0], -1, -1).gather(
                        1, index[..., None].expand(-1, -1, e.shape[-1])
                    )
                    for e in embeddings
                )
            if isinstance(kwargs.get("cache_position"), Tensor):
                kwargs["cache_position"] = kwargs["cache_position"][: index.shape[1]]
            return (hidden, *args[1:]), kwargs

        return hook

    def _index_at(self, state: _State, layer: int) -> Tensor:
        """The original positions layer ``layer`` keeps (the latest stage at or before it)."""
        starts = [start for start, _ in self.stages if start <= layer]
        return state.index_at[starts[-1]] if starts else state.index


def _module(module: object) -> nn.Module:
    if not isinstance(module, nn.Module):
        raise TypeError(f"language_model: expected an attention module, got {module!r}")
    return module


def _mask_length(mask: Any) -> int:
    return int(mask.shape[-1]) if isinstance(mask, Tensor) else 0


def fastv(language_model: nn.Module, layer: int = 2, keep: float = 0.5) -> InLLMPruning:
    """FastV: after ``layer`` LM layers (its ``K``; default 2 as the paper), keep the ``keep``
    fraction (``1 - R``; default R = 50%) of image tokens the last token attends to most.

    Examples:
        >>> from pyrtok.vlm.testing import tiny_llama
        >>> fastv(tiny_llama(layers=4), layer=2, keep=0.25).visual_per_layer(16)
        [16, 16, 4, 4]
    """
    return InLLMPruning(language_model, [(layer, keep)])


def pyramid_drop(
    language_model: nn.Module, layers: Sequence[int] | None = None, ratio: float = 0.5
) -> InLLMPruning:
    """PyramidDrop: at each of ``layers`` (default: the LM split into 4 equal stages, e.g. 8,
    16, 24 of 32 as the paper's ``layer_list``; fewer stages in LMs under 4 layers) keep
    ``ratio`` (its ``lambda``, default 0.5) of the image tokens still there, ranked by the last
    instruction token's attention.

    Examples:
        >>> from pyrtok.vlm.testing import tiny_llama
        >>> pyramid_drop(tiny_llama(layers=4)).visual_per_layer(16)
        [16, 8, 4, 2]
    """
    count = len(decoder_layers(language_model))
    if layers is None:
        layers = sorted({count * i // 4 for i in range(1, 4)} - {0})
    if not 0 <= ratio <= 1:
        raise ValueError(f"ratio: expected a fraction in [0, 1], got {ratio!r}")
    return InLLMPruning(
        language_model, [(layer, ratio ** (i + 1)) for i, layer in enumerate(layers)]
    )

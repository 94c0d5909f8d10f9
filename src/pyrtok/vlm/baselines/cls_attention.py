"""CLS / mean attention selection (VisionZip's dominant tokens, VisPruner, PruMerge's score),
and VisionZip's merged contextual tokens."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pyrtok.vlm.baselines.attention import (
    ATTENTION_MODES,
    AttentionMode,
    LayerInputs,
    find_attention,
    received_attention,
)
from pyrtok.vlm.baselines.budget import GridSelector, keep_top


class ClsAttentionSelector(GridSelector):
    """Keep the ``budget`` tokens with the most attention at one encoder layer.

    ``mode="cls"``: the attention the CLS token pays each patch token (VisionZip's dominant
    tokens, VisPruner's important tokens; both read layer ``-2``, LLaVA's feature layer), mean
    over heads. ``mode="mean"``: the attention each token receives averaged over all queries,
    for encoders without a CLS token (SigLIP). The scores are recomputed from the layer's
    queries and keys (recorded by a forward pre-hook on its attention module), so they are the
    same whether the encoder runs eager attention, SDPA or FlashAttention; with SDPA no full
    attention matrix is formed for ``"cls"`` (one row) and ``"mean"`` goes a chunk of queries
    at a time.

    The selector must be built on the vision model the VLM runs (it watches that model's
    layer) and called after the encoder ran on the same images, as
    :class:`~pyrtok.vlm.HierarchicalVLM` does.

    Args:
        vision_model: the Hugging Face ViT-family vision model (CLIP, SigLIP, ViT, DINOv2).
        budget: tokens kept per image.
        layer: encoder layer whose attention scores (``-2``: the layer LLaVA's feature layer
            ``-2`` is the output of).
        mode: ``"cls"`` or ``"mean"``.

    Shapes:
        grid ``(B, h, w, D)`` -> keep ``(B, h, w)`` bool, ``budget`` True per row.

    Examples:
        >>> from pyrtok.vlm import HierarchicalVLM
        >>> from pyrtok.vlm.testing import tiny_llava
        >>> llava = tiny_llava()
        >>> selector = ClsAttentionSelector(llava.model.vision_tower, budget=6)
        >>> vlm = HierarchicalVLM.from_llava(llava, levels=1, selector=selector)
        >>> vlm.encode_images(torch.rand(2, 3, 32, 32)).counts.tolist()
        [6, 6]
    """

    def __init__(
        self, vision_model: nn.Module, budget: int, layer: int = -2, mode: AttentionMode = "cls"
    ) -> None:
        super().__init__(budget)
        self.attention: nn.Module
        if mode not in ATTENTION_MODES:
            raise ValueError(f"mode: expected one of {ATTENTION_MODES}, got {mode!r}")
        self.mode = mode
        self.layer = layer
        attention = find_attention(vision_model, layer)
        object.__setattr__(self, "attention", attention)  # watched, not owned: no submodule
        self.inputs = LayerInputs(attention)

    def remove_hook(self) -> None:
        """Stop watching the encoder layer (the selector cannot score afterwards)."""
        self.inputs.remove()

    def scores(self, rows: int, cols: int) -> Tensor:
        """``(B, rows * cols)`` attention scores of the latest encoder run's grid tokens."""
        hidden = self.inputs.last
        if hidden is None:
            raise RuntimeError(
                "ClsAttentionSelector: the vision model has not run yet; call the selector "
                "after the encoder, on the same images (as HierarchicalVLM does)"
            )
        prefix = hidden.shape[1] - rows * cols
        if prefix < 0:
            raise ValueError(
                f"grids: a {rows}x{cols} grid but layer {self.layer} saw {hidden.shape[1]} "
                f"tokens; build the selector on the vision model the VLM runs"
            )
        if self.mode == "cls" and prefix == 0:
            raise ValueError(
                "mode: 'cls' needs a CLS token but this encoder has none (e.g. SigLIP); use "
                "mode='mean' (the attention each token receives, averaged over queries)"
            )
        return received_attention(hidden, self.attention, self.mode, prefix)

    def select(self, images: Tensor | None, tokens: Tensor, rows: int, cols: int) -> Tensor:
        scores = self.scores(rows, cols).to(tokens.device)
        if scores.shape[0] != tokens.shape[0]:
            raise ValueError(
                f"grids: a batch of {tokens.shape[0]} but the encoder's latest run had "
                f"{scores.shape[0]} images; call the selector right after the encoder"
            )
        return keep_top(scores, self.budget)


def contextual_tokens(tokens: Tensor, keep: Tensor, keys: Tensor, count: int) -> Tensor:
    """VisionZip's contextual tokens: the tokens not kept, merged into ``count`` groups.

    Of each row's dropped tokens (raster order), every ``max(1, n // count)``-th is a target
    (the first ``count``); each other dropped token joins the target whose key is most similar
    (cosine), and each group is averaged.

    Args:
        tokens: ``(B, N, D)`` features.
        keep: ``(B, N)`` bool, the dominant tokens (the same count per row).
        keys: ``(B, N, K)`` the similarity metric (VisionZip: the layer's keys, mean over
            heads).
        count: contextual tokens per image, ``<=`` the dropped tokens.

    Returns:
        ``(B, count, D)`` merged tokens.

    Examples:
        >>> tokens = torch.arange(8.0).reshape(1, 4, 2)
        >>> keep = torch.tensor([[True, False, False, False]])
        >>> contextual_tokens(tokens, keep, tokens, 1).tolist()
        [[[4.0, 5.0]]]
    """
    dim = tokens.shape[-1]
    dropped_count = int((~keep[0]).sum())
    if not 1 <= count <= dropped_count:
        raise ValueError(
            f"count: expected 1 <= count <= {dropped_count} (the tokens not kept), got {count}"
        )
    order = torch.sort((~keep).int(), dim=1, descending=True, stable=True).indices
    dropped = order[:, :dropped_count]
    values = tokens.gather(1, dropped[..., None].expand(-1, -1, dim))
    metric = F.normalize(keys.float().gather(1, dropped[..., None].expand(-1, -1, keys.shape[-1])))
    step = max(1, dropped_count // count)
    targets = torch.arange(0, dropped_count, step, device=tokens.device)[:count]
    is_target = torch.zeros(dropped_count, dtype=torch.bool, device=tokens.device)
    is_target[targets] = True
    similarity = metric[:, ~is_target] @ metric[:, targets].transpose(1, 2)
    assign = F.one_hot(similarity.argmax(-1), count).to(values.dtype)
    sums = assign.transpose(1, 2) @ values[:, ~is_target] + values[:, targets]
    return sums / (1 + assign.sum(1))[..., None]

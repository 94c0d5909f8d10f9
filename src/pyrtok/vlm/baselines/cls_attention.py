"""CLS / mean attention selection (VisionZip's dominant tokens, VisPruner, PruMerge's score),
and VisionZip's merged contextual tokens sent with them."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pyrtok.vlm.baselines.attention import (
    ATTENTION_MODES,
    AttentionMode,
    LayerInputs,
    find_attention,
    key_metric,
    received_attention,
)
from pyrtok.vlm.baselines.budget import GridSelector, keep_top


class ClsAttentionSelector(GridSelector):
    """Keep the tokens with the most attention at one encoder layer, optionally plus
    VisionZip's merged contextual tokens, ``budget`` tokens per image in all.

    ``mode="cls"``: the attention the CLS token pays each patch token (VisionZip's dominant
    tokens, VisPruner's important tokens; both read layer ``-2``, LLaVA's feature layer), mean
    over heads. ``mode="mean"``: the attention each token receives averaged over all queries,
    for encoders without a CLS token (SigLIP). The scores are recomputed from the layer's
    queries and keys (recorded by a forward pre-hook on its attention module), so they are the
    same whether the encoder runs eager attention, SDPA or FlashAttention; with SDPA no full
    attention matrix is formed for ``"cls"`` (one row) and ``"mean"`` goes a chunk of queries
    at a time.

    With ``contextual=M`` it is VisionZip: the ``budget - M`` top-scored (dominant) tokens are
    kept and the other grid tokens are merged into ``M`` contextual tokens
    (:func:`contextual_tokens`, with the scoring layer's keys, mean over heads, as the
    similarity), sent after the dominant tokens, before the projector (a
    :class:`~pyrtok.vlm.selection.Selection`).

    The selector must be built on the vision model the VLM runs (it watches that model's
    layer) and called after the encoder ran on the same images, as
    :class:`~pyrtok.vlm.HierarchicalVLM` does.

    Args:
        vision_model: the Hugging Face ViT-family vision model (CLIP, SigLIP, ViT, DINOv2).
        budget: tokens per image (dominant plus contextual).
        layer: encoder layer whose attention scores (``-2``: the layer LLaVA's feature layer
            ``-2`` is the output of).
        mode: ``"cls"`` or ``"mean"``.
        contextual: merged contextual tokens among the ``budget``, ``0 <= M <= budget``
            (VisionZip's paper: 10 of 64, 20 of 128, 30 of 192).

    Shapes:
        grid ``(B, h, w, D)`` -> keep ``(B, h, w)`` bool with ``budget - M`` True per row, and
        with ``M > 0`` extra ``(B, M, D)``.

    Examples:
        >>> from pyrtok.vlm import HierarchicalVLM
        >>> from pyrtok.vlm.testing import tiny_llava
        >>> llava = tiny_llava()
        >>> selector = ClsAttentionSelector(llava.model.vision_tower, budget=6)
        >>> vlm = HierarchicalVLM.from_llava(llava, levels=1, selector=selector)
        >>> vlm.encode_images(torch.rand(2, 3, 32, 32)).counts.tolist()
        [6, 6]
        >>> vlm.selector = ClsAttentionSelector(llava.model.vision_tower, budget=6, contextual=2)
        >>> vlm.encode_images(torch.rand(2, 3, 32, 32)).counts.tolist()
        [6, 6]
    """

    def __init__(
        self,
        vision_model: nn.Module,
        budget: int,
        layer: int = -2,
        mode: AttentionMode = "cls",
        contextual: int = 0,
    ) -> None:
        super().__init__(budget)
        self.attention: nn.Module
        if mode not in ATTENTION_MODES:
            raise ValueError(f"mode: expected one of {ATTENTION_MODES}, got {mode!r}")
        if (
            isinstance(contextual, bool)
            or not isinstance(contextual, int)
            or not 0 <= contextual <= self.budget
        ):
            raise ValueError(
                f"contextual: expected an int in [0, {self.budget}] (merged tokens among the "
                f"budget), got {contextual!r}"
            )
        self.mode = mode
        self.layer = layer
        self.contextual = contextual
        attention = find_attention(vision_model, layer)
        object.__setattr__(self, "attention", attention)  # watched, not owned: no submodule
        self.inputs = LayerInputs(attention)

    def remove_hook(self) -> None:
        """Stop watching the encoder layer (the selector cannot score afterwards)."""
        self.inputs.remove()

    def _recorded(self, rows: int, cols: int) -> tuple[Tensor, int]:
        """The scoring layer's latest input ``(B, S, D)`` and its prefix length."""
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
        return hidden, prefix

    def scores(self, rows: int, cols: int) -> Tensor:
        """``(B, rows * cols)`` attention scores of the latest encoder run's grid tokens."""
        hidden, prefix = self._recorded(rows, cols)
        if self.mode == "cls" and prefix == 0:
            raise ValueError(
                "mode: 'cls' needs a CLS token but this encoder has none (e.g. SigLIP); use "
                "mode='mean' (the attention each token receives, averaged over queries)"
            )
        return received_attention(hidden, self.attention, self.mode, prefix)

    def select(
        self, images: Tensor | None, tokens: Tensor, rows: int, cols: int
    ) -> Tensor | tuple[Tensor, Tensor]:
        scores = self.scores(rows, cols).to(tokens.device)
        if scores.shape[0] != tokens.shape[0]:
            raise ValueError(
                f"grids: a batch of {tokens.shape[0]} but the encoder's latest run had "
                f"{scores.shape[0]} images; call the selector right after the encoder"
            )
        keep = keep_top(scores, self.budget - self.contextual)
        if self.contextual == 0:
            return keep
        hidden, prefix = self._recorded(rows, cols)
        keys = key_metric(hidden, self.attention)[:, prefix:].to(tokens.device)
        return keep, contextual_tokens(tokens, keep, keys, self.contextual)


def contextual_tokens(tokens: Tensor, keep: Tensor, keys: Tensor, count: int) -> Tensor:
    """VisionZip's contextual tokens: the tokens not kept, merged into ``count`` tokens.

    The rule of VisionZip's released code (``CLIPVisionTower_VisionZip.forward``): of each
    row's dropped tokens (raster order), every ``max(1, n // count)``-th is a target (the
    first ``count`` of them); every other dropped token is assigned to the target whose key is
    most similar (cosine); each contextual token is its target **plus the mean** of the tokens
    assigned to it (a target no token joins stays as it is). Similarities run in float32, the
    merge in float32, the result in ``tokens``' dtype.

    Args:
        tokens: ``(B, N, D)`` features.
        keep: ``(B, N)`` bool, the dominant tokens (the same count per row).
        keys: ``(B, N, K)`` the similarity metric (VisionZip: the scoring layer's keys, mean
            over heads, :func:`~pyrtok.vlm.baselines.attention.key_metric`).
        count: contextual tokens per image, ``1 <= count <=`` the dropped tokens.

    Returns:
        ``(B, count, D)`` merged tokens, in target order.

    Examples:
        >>> tokens = torch.arange(8.0).reshape(1, 4, 2)
        >>> keep = torch.tensor([[True, False, False, False]])
        >>> contextual_tokens(tokens, keep, tokens, 1).tolist()  # 2 + mean(4, 6)
        [[[7.0, 9.0]]]
    """
    dim = tokens.shape[-1]
    dropped_count = int((~keep[0]).sum())
    if not 1 <= count <= dropped_count:
        raise ValueError(
            f"count: expected 1 <= count <= {dropped_count} (the tokens not kept), got {count}"
        )
    order = torch.sort((~keep).int(), dim=1, descending=True, stable=True).indices
    dropped = order[:, :dropped_count]
    values = tokens.float().gather(1, dropped[..., None].expand(-1, -1, dim))
    index = dropped[..., None].expand(-1, -1, keys.shape[-1])
    metric = F.normalize(keys.float().gather(1, index), dim=-1)
    step = max(1, dropped_count // count)
    targets = torch.arange(0, dropped_count, step, device=tokens.device)[:count]
    is_target = torch.zeros(dropped_count, dtype=torch.bool, device=tokens.device)
    is_target[targets] = True
    similarity = metric[:, ~is_target] @ metric[:, targets].transpose(1, 2)
    assign = F.one_hot(similarity.argmax(-1), count).float()
    means = (assign.transpose(1, 2) @ values[:, ~is_target]) / assign.sum(1).clamp(min=1)[..., None]
    return (values[:, targets] + means).to(tokens.dtype)

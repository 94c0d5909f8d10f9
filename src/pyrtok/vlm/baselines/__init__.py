"""Pre-LLM token-reduction baselines as :class:`~pyrtok.vlm.Selector` s.

Each sends exactly ``budget`` tokens per image from its ViT grid (kept grid tokens, plus the
merged or pooled tokens of VisionZip and downsample); their home is a LLaVA-style
full-image encoding, :meth:`HierarchicalVLM.from_llava(model, levels=1, selector=...)
<pyrtok.vlm.HierarchicalVLM.from_llava>`. In-LLM pruning (FastV, PyramidDrop) is
:mod:`pyrtok.vlm.inllm_pruning`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from pyrtok.vlm.baselines.attention import find_attention, key_metric, received_attention
from pyrtok.vlm.baselines.budget import GridSelector, check_budget, keep_top
from pyrtok.vlm.baselines.cls_attention import ClsAttentionSelector, contextual_tokens
from pyrtok.vlm.baselines.divprune import DivPruneSelector, divprune
from pyrtok.vlm.baselines.downsample import DownsampleSelector, pool_budgets, pool_tokens
from pyrtok.vlm.baselines.random import RandomSelector

BASELINES: dict[str, Callable[..., GridSelector]] = {
    "random": lambda vision_model, budget, seed: RandomSelector(budget, seed),
    "downsample": lambda vision_model, budget, seed: DownsampleSelector(budget),
    "cls_attention": lambda vision_model, budget, seed: ClsAttentionSelector(
        vision_model, budget, mode="cls"
    ),
    "mean_attention": lambda vision_model, budget, seed: ClsAttentionSelector(
        vision_model, budget, mode="mean"
    ),
    "divprune": lambda vision_model, budget, seed: DivPruneSelector(budget),
    "visionzip": lambda vision_model, budget, seed: ClsAttentionSelector(
        vision_model, budget, mode="cls", contextual=visionzip_contextual(budget)
    ),
}
"""Name -> ``builder(vision_model, budget, seed)``; add your own entries."""


def visionzip_contextual(budget: int) -> int:
    """VisionZip's contextual share of a budget: ``budget * 10 // 64`` (its paper's LLaVA-1.5
    settings: 54 + 10 of 64, 108 + 20 of 128, 162 + 30 of 192 tokens).

    Examples:
        >>> [visionzip_contextual(b) for b in (64, 128, 192, 6)]
        [10, 20, 30, 0]
    """
    return budget * 10 // 64


def baseline_selector(name: str, vision_model: nn.Module, budget: int, seed: int = 0) -> Any:
    """The baseline ``name`` (a key of :data:`BASELINES`) keeping ``budget`` tokens.

    Examples:
        >>> from pyrtok.vlm.testing import tiny_clip
        >>> type(baseline_selector("divprune", tiny_clip(), 4)).__name__
        'DivPruneSelector'
    """
    if name not in BASELINES:
        raise ValueError(f"name: no baseline {name!r}; expected one of {sorted(BASELINES)}")
    return BASELINES[name](vision_model, budget, seed)


__all__ = [
    "BASELINES",
    "ClsAttentionSelector",
    "DivPruneSelector",
    "DownsampleSelector",
    "GridSelector",
    "RandomSelector",
    "baseline_selector",
    "check_budget",
    "contextual_tokens",
    "divprune",
    "find_attention",
    "keep_top",
    "key_metric",
    "pool_budgets",
    "pool_tokens",
    "received_attention",
    "visionzip_contextual",
]

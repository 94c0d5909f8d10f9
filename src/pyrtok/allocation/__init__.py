"""Frequency-aware visual-token allocation on a quadtree, and the mixed-resolution tokenizer."""

from pyrtok.allocation.allocation import LEAF_ORDERS, Allocation, LeafOrder
from pyrtok.allocation.allocator import FrequencyAwareAllocator, allocate
from pyrtok.allocation.budgets import BUDGET_MODES, BudgetMode
from pyrtok.allocation.cell_pyramid import cell_pyramid
from pyrtok.allocation.quadtree import QuadtreeGeometry
from pyrtok.allocation.scorers import (
    SCORERS,
    LaplacianScorer,
    Scorer,
    blur_scores,
    entropy_scores,
    laplacian_scores,
    threshold_weights,
)
from pyrtok.allocation.strategy_registry import (
    STRATEGIES,
    SplitRequest,
    Strategy,
    check_splits,
    resolve_strategy,
)
from pyrtok.allocation.tokenizer import (
    MixedResolutionTokenizer,
    PackedTokens,
    TokenizedImages,
    detokenize,
    tokenize,
)

__all__ = [
    "BUDGET_MODES",
    "LEAF_ORDERS",
    "SCORERS",
    "STRATEGIES",
    "Allocation",
    "BudgetMode",
    "FrequencyAwareAllocator",
    "LaplacianScorer",
    "LeafOrder",
    "MixedResolutionTokenizer",
    "PackedTokens",
    "QuadtreeGeometry",
    "Scorer",
    "SplitRequest",
    "Strategy",
    "TokenizedImages",
    "allocate",
    "blur_scores",
    "cell_pyramid",
    "check_splits",
    "detokenize",
    "entropy_scores",
    "laplacian_scores",
    "resolve_strategy",
    "threshold_weights",
    "tokenize",
]

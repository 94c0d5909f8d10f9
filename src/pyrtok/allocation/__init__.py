"""Frequency-aware visual-token allocation on a quadtree, and the mixed-resolution tokenizer."""

from pyrtok.allocation.allocation import Allocation
from pyrtok.allocation.allocator import STRATEGIES, FrequencyAwareAllocator, allocate
from pyrtok.allocation.quadtree import QuadtreeGeometry
from pyrtok.allocation.scorers import (
    SCORERS,
    Scorer,
    blur_scores,
    entropy_scores,
    laplacian_scores,
    threshold_weights,
)
from pyrtok.allocation.tokenizer import (
    MixedResolutionTokenizer,
    PackedTokens,
    TokenizedImages,
    detokenize,
    tokenize,
)

__all__ = [
    "SCORERS",
    "STRATEGIES",
    "Allocation",
    "FrequencyAwareAllocator",
    "MixedResolutionTokenizer",
    "PackedTokens",
    "QuadtreeGeometry",
    "Scorer",
    "TokenizedImages",
    "allocate",
    "blur_scores",
    "detokenize",
    "entropy_scores",
    "laplacian_scores",
    "threshold_weights",
    "tokenize",
]

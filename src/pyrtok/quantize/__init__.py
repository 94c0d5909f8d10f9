"""Vector quantisation: exact nearest-code search, ``VectorQuantizer``, VAR's multi-scale quantiser.

Examples:
    >>> import torch
    >>> from pyrtok.quantize import VectorQuantizer
    >>> q, indices, loss = VectorQuantizer(dim=4, codebook_size=8)(torch.randn(10, 4))
    >>> indices.shape
    torch.Size([10])
"""

from pyrtok.quantize.estimators import rotation_trick, straight_through
from pyrtok.quantize.kmeans import kmeans
from pyrtok.quantize.multiscale import MSQOutput, MultiScaleResidualQuantizer
from pyrtok.quantize.search import nearest_code
from pyrtok.quantize.stats import CodebookStats, perplexity
from pyrtok.quantize.vector_quantizer import VectorQuantizer, VQOutput

__all__ = [
    "CodebookStats",
    "MSQOutput",
    "MultiScaleResidualQuantizer",
    "VQOutput",
    "VectorQuantizer",
    "kmeans",
    "nearest_code",
    "perplexity",
    "rotation_trick",
    "straight_through",
]

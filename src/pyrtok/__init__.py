"""pyrtok: pyramid-based visual-token allocation for vision-language models."""

from pyrtok.allocation import (
    Allocation,
    FrequencyAwareAllocator,
    MixedResolutionTokenizer,
    allocate,
    detokenize,
    tokenize,
)
from pyrtok.losses import LapLoss, lap_loss
from pyrtok.pyramid import (
    GaussianPyramid,
    LaplacianPyramid,
    band_energy,
    gaussian_pyramid,
    laplacian_energy,
    laplacian_pyramid,
    pyr_down,
    pyr_up,
    reconstruct,
    sync_checks,
)
from pyrtok.quantize import MultiScaleResidualQuantizer, VectorQuantizer, nearest_code
from pyrtok.vlm import (
    HierarchicalVLM,
    MixedResolutionEncoder,
    MixedResolutionVLM,
    ProgressiveVLM,
)

__version__ = "0.1.0"

__all__ = [
    "Allocation",
    "FrequencyAwareAllocator",
    "GaussianPyramid",
    "HierarchicalVLM",
    "LapLoss",
    "LaplacianPyramid",
    "MixedResolutionEncoder",
    "MixedResolutionTokenizer",
    "MixedResolutionVLM",
    "MultiScaleResidualQuantizer",
    "ProgressiveVLM",
    "VectorQuantizer",
    "__version__",
    "allocate",
    "band_energy",
    "detokenize",
    "gaussian_pyramid",
    "lap_loss",
    "laplacian_energy",
    "laplacian_pyramid",
    "nearest_code",
    "pyr_down",
    "pyr_up",
    "reconstruct",
    "sync_checks",
    "tokenize",
]

"""pyrtok: pyramid-based visual-token allocation for vision-language models."""

from pyrtok.losses import LapLoss, lap_loss
from pyrtok.pyramid import (
    GaussianPyramid,
    LaplacianPyramid,
    band_energy,
    gaussian_pyramid,
    laplacian_pyramid,
    pyr_down,
    pyr_up,
    reconstruct,
)

__version__ = "0.1.0"

__all__ = [
    "GaussianPyramid",
    "LapLoss",
    "LaplacianPyramid",
    "__version__",
    "band_energy",
    "gaussian_pyramid",
    "lap_loss",
    "laplacian_pyramid",
    "pyr_down",
    "pyr_up",
    "reconstruct",
]

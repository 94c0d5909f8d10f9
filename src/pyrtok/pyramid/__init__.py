"""Laplacian and Gaussian pyramids: functional ops, modules and band energy."""

from pyrtok.pyramid.borders import BORDER_NAMES
from pyrtok.pyramid.checks import SYNC_CHECKS_ENV, sync_checks, sync_checks_enabled
from pyrtok.pyramid.energy import band_energy, laplacian_energy
from pyrtok.pyramid.functional import (
    auto_levels,
    gaussian_pyramid,
    laplacian_from_gaussian,
    laplacian_pyramid,
    max_levels,
    pyr_down,
    pyr_up,
    pyramid_sizes,
    reconstruct,
)
from pyrtok.pyramid.kernels import KERNEL_NAMES, gaussian_taps
from pyrtok.pyramid.modules import GaussianPyramid, LaplacianPyramid

__all__ = [
    "BORDER_NAMES",
    "KERNEL_NAMES",
    "SYNC_CHECKS_ENV",
    "GaussianPyramid",
    "LaplacianPyramid",
    "auto_levels",
    "band_energy",
    "gaussian_pyramid",
    "gaussian_taps",
    "laplacian_energy",
    "laplacian_from_gaussian",
    "laplacian_pyramid",
    "max_levels",
    "pyr_down",
    "pyr_up",
    "pyramid_sizes",
    "reconstruct",
    "sync_checks",
    "sync_checks_enabled",
]

"""Filter taps for pyramid REDUCE/EXPAND: named kernels, Gaussian taps, user tensors.

A kernel is a 1-D, odd-length, unit-sum set of taps applied separably along H and W. Named kernels
resolve to a tuple of Python floats: compile-time constants that need no device, no dtype and no
host-to-device copy. A user tensor (or a module's ``taps`` buffer) is used as a tensor, on the
device where it lives.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TypeAlias

import torch
from torch import Tensor

Taps: TypeAlias = tuple[float, ...] | Tensor
"""Resolved filter taps: Python floats (named kernels) or a 1-D floating tensor."""

KernelLike: TypeAlias = str | tuple[str, float] | Sequence[float] | Tensor
"""What the pyramid functions accept as ``kernel``: ``"binom5"``, ``"gauss"``, ``("gauss", sigma)``,
a sequence of floats, or a 1-D tensor (odd length; normalised to unit sum)."""

KERNEL_NAMES = ("binom5", "gauss")


def gaussian_taps(sigma: float, radius: int | None = None) -> tuple[float, ...]:
    """Sampled, unit-sum Gaussian taps of standard deviation ``sigma``.

    Args:
        sigma: standard deviation in pixels, > 0.
        radius: half-width; defaults to ``max(2, ceil(2.5 * sigma))`` (length ``2 * radius + 1``).

    Returns:
        ``2 * radius + 1`` floats summing to 1.

    Examples:
        >>> taps = gaussian_taps(1.0)
        >>> len(taps), round(sum(taps), 12)
        (7, 1.0)
    """
    if not sigma > 0 or not math.isfinite(sigma):
        raise ValueError(f"gauss kernel: sigma must be a finite number > 0, got {sigma!r}")
    r = max(2, math.ceil(2.5 * sigma)) if radius is None else radius
    if r < 1:
        raise ValueError(f"gauss kernel: radius must be >= 1, got {r}")
    weights = [math.exp(-0.5 * (i / sigma) ** 2) for i in range(-r, r + 1)]
    total = math.fsum(weights)
    return tuple(w / total for w in weights)


def resolve_kernel(kernel: KernelLike) -> Taps:
    """Turn any accepted ``kernel`` argument into taps, validating it.

    Examples:
        >>> resolve_kernel("binom5")
        (0.0625, 0.25, 0.375, 0.25, 0.0625)
    """
    if isinstance(kernel, str):
        if kernel == "binom5":
            return (1 / 16, 4 / 16, 6 / 16, 4 / 16, 1 / 16)
        if kernel == "gauss":
            return gaussian_taps(1.0)
        raise ValueError(f"kernel: unknown name {kernel!r}; valid names are {list(KERNEL_NAMES)}")
    if isinstance(kernel, Tensor):
        return _validate_tensor_taps(kernel)
    if isinstance(kernel, tuple) and len(kernel) == 2 and isinstance(kernel[0], str):
        name, sigma = kernel
        if name != "gauss":
            raise ValueError(f"kernel: only ('gauss', sigma) takes a parameter, got {kernel!r}")
        return gaussian_taps(float(sigma))
    if isinstance(kernel, Sequence):
        values = tuple(float(v) for v in kernel)
        _validate_length(len(values))
        total = math.fsum(values)
        if not math.isfinite(total) or total == 0:
            raise ValueError(f"kernel: taps must sum to a finite non-zero value, got sum {total}")
        return tuple(v / total for v in values)
    raise TypeError(
        f"kernel: expected a name {list(KERNEL_NAMES)}, ('gauss', sigma), a sequence of floats "
        f"or a 1-D tensor, got {type(kernel).__name__}"
    )


def taps_as_tensor(kernel: KernelLike) -> Tensor:
    """Taps as a float64 tensor, for registering as a module buffer.

    Examples:
        >>> taps_as_tensor("binom5") * 16
        tensor([1., 4., 6., 4., 1.], dtype=torch.float64)
    """
    taps = resolve_kernel(kernel)
    if isinstance(taps, Tensor):
        return taps.detach().to(torch.float64).clone()
    return torch.tensor(taps, dtype=torch.float64)


def kernel_length(taps: Taps) -> int:
    """Number of taps (odd)."""
    return int(taps.shape[0]) if isinstance(taps, Tensor) else len(taps)


def _validate_length(length: int) -> None:
    if length < 1 or length % 2 == 0:
        raise ValueError(f"kernel: need an odd number of taps (>= 1), got {length}")


def _validate_tensor_taps(kernel: Tensor) -> Tensor:
    if kernel.ndim != 1:
        raise ValueError(f"kernel: a tensor kernel must be 1-D, got shape {tuple(kernel.shape)}")
    if not kernel.is_floating_point():
        raise TypeError(f"kernel: a tensor kernel must be floating point, got {kernel.dtype}")
    _validate_length(kernel.shape[0])
    return kernel / kernel.sum()

"""Decide per call between the fused Triton kernels and the pure-torch path (policy only).

The fused path is taken when all of these hold (otherwise the torch path runs, unchanged):

- ``x`` is a CUDA tensor (or a CPU tensor while ``TRITON_INTERPRET=1``, which is how the kernels
  are tested without a GPU), of dtype float32, bfloat16 or float16;
- ``border == "reflect"`` and the kernel is symmetric with 1, 3 or 5 taps (``"binom5"``, the
  default, or e.g. ``[1, 2, 1]``);
- :func:`pyrtok._triton.kernels_enabled` allows it: Triton imports, the code is not being traced
  by ``torch.compile`` (which compiles the torch path itself), and ``PYRTOK_DISABLE_TRITON`` is
  not ``"1"``.

The kernels themselves run through :mod:`.ops`. Nothing here imports Triton.
"""

from __future__ import annotations

import math
import weakref

import torch
from torch import Tensor

from pyrtok import _triton
from pyrtok.pyramid.kernels import KernelLike, resolve_kernel
from pyrtok.pyramid.triton.taps import SymTaps

_FUSED_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def fused_taps(x: object, kernel: KernelLike, border: str) -> SymTaps | None:
    """Taps ``(W0, W1, W2)`` for the fused kernels if this call can use them, else ``None``.

    Never raises for an input the torch path would reject: it returns ``None`` and lets the
    torch path raise its own error (an invalid ``kernel`` raises the same error either way).

    Examples:
        >>> fused_taps(torch.rand(3, 8, 8), "binom5", "reflect") is None  # CPU tensor
        True
    """
    if not isinstance(x, Tensor) or x.dtype not in _FUSED_DTYPES or x.ndim < 2:
        return None
    if x.shape[-1] < 1 or x.shape[-2] < 1 or border != "reflect":
        return None
    if not _triton.kernels_enabled(x.device):
        return None
    return symmetric_taps(kernel)


def symmetric_taps(kernel: KernelLike) -> SymTaps | None:
    """``(W0, W1, W2)`` of a symmetric 1-, 3- or 5-tap kernel (zero-padded to 5), else ``None``.

    Examples:
        >>> symmetric_taps("binom5")
        (0.0625, 0.25, 0.375)
        >>> symmetric_taps([1, 2, 1])
        (0.0, 0.25, 0.5)
        >>> symmetric_taps("gauss") is None  # 7 taps
        True
    """
    if isinstance(kernel, Tensor):
        if kernel.ndim != 1 or not kernel.is_floating_point() or kernel.shape[0] % 2 == 0:
            return None
        raw = _host_values(kernel)
        total = sum(raw)
        if not math.isfinite(total) or total == 0:
            return None
        taps = tuple(v / total for v in raw)
    else:
        resolved = resolve_kernel(kernel)
        assert not isinstance(resolved, Tensor)
        taps = resolved
    if len(taps) > 5 or any(a != b for a, b in zip(taps, reversed(taps), strict=True)):
        return None
    if not all(math.isfinite(v) for v in taps):
        return None
    pad = (5 - len(taps)) // 2
    full = (0.0,) * pad + tuple(taps) + (0.0,) * pad
    return (full[0], full[1], full[2])


_host_cache: dict[int, tuple[weakref.ref[Tensor], int, tuple[float, ...]]] = {}


def _host_values(taps: Tensor) -> tuple[float, ...]:
    """Values of a taps tensor on the host: one device-to-host copy per tensor and version.

    A module keeps its taps in a buffer on the GPU; reading it on every call would synchronise
    the host with the device each time, so the values are remembered until the tensor changes
    (in-place edits bump its version) or is freed.
    """
    if taps.device.type == "cpu":
        return tuple(float(v) for v in taps.tolist())
    key = id(taps)
    hit = _host_cache.get(key)
    if hit is not None and hit[0]() is taps and hit[1] == taps._version:
        return hit[2]
    values = tuple(float(v) for v in taps.tolist())
    _host_cache[key] = (
        weakref.ref(taps, lambda _, key=key: _host_cache.pop(key, None)),  # type: ignore[misc]
        taps._version,
        values,
    )
    return values

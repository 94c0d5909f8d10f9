"""Input checks of the pyramid ops, and the one switch for the checks that sync with the device.

Shape, dtype and size checks read only tensor metadata: they cost nothing on any device and
always run. A check that reads tensor *values* (is every band energy finite?) copies a result
to the host, which on a GPU waits for every queued kernel: in a training loop that stall costs
more than the op. Those checks run only while :func:`sync_checks_enabled`; turn them off for
training with one switch::

    import pyrtok.pyramid as pp
    pp.sync_checks(False)          # from here on, for the whole process
    with pp.sync_checks(False):    # or only inside the block
        ...

or with the environment variable ``PYRTOK_SYNC_CHECKS=0`` (read on every call, so it reaches
DataLoader workers and launchers). They are always skipped while ``torch.compile`` traces.
"""

from __future__ import annotations

import os
from types import TracebackType

import torch
from torch import Tensor

SYNC_CHECKS_ENV = "PYRTOK_SYNC_CHECKS"
"""Set to ``"0"`` to skip every check that syncs with the device (see :class:`sync_checks`)."""

_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_switch: list[bool] = [True]


# Lower case like torch.set_grad_enabled, which it mirrors: a call and a context manager.
class sync_checks:
    """Turn the checks that sync with the device on or off, for the process or a block.

    Called, it sets the switch and keeps it; used as a context manager, it restores the
    previous setting on exit. ``PYRTOK_SYNC_CHECKS=0`` turns them off whatever this says.

    Examples:
        >>> with sync_checks(False):
        ...     sync_checks_enabled()
        False
        >>> sync_checks_enabled()
        True
    """

    def __init__(self, enabled: bool) -> None:
        self.previous = _switch[0]
        _switch[0] = bool(enabled)

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        _switch[0] = self.previous


def sync_checks_enabled() -> bool:
    """Whether checks that read tensor values (and so sync with the device) run now."""
    if torch.compiler.is_compiling() or os.environ.get(SYNC_CHECKS_ENV, "1") == "0":
        return False
    return _switch[0]


def check_image(x: Tensor, name: str = "x") -> None:
    """Validate a pyramid input: a floating tensor of shape ``(..., H, W)`` with ``H, W >= 1``."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    if x.ndim < 2:
        raise ValueError(
            f"{name}: expected a tensor of shape (..., H, W) with at least 2 dims, "
            f"got shape {tuple(x.shape)}"
        )
    if x.dtype not in _FLOAT_DTYPES:
        raise TypeError(
            f"{name}: expected a floating dtype (float16, bfloat16, float32, float64), "
            f"got {x.dtype}; convert with x.float() (integer images: x.float() / 255)"
        )
    if x.shape[-1] < 1 or x.shape[-2] < 1:
        raise ValueError(f"{name}: H and W must be >= 1, got shape {tuple(x.shape)}")


def check_pyramid(pyramid: list[Tensor] | tuple[Tensor, ...], name: str = "pyramid") -> None:
    """Check that ``pyramid`` can come from one :func:`~pyrtok.laplacian_pyramid` call.

    Levels must share leading dims, dtype and device, and each level's size must be the
    ``ceil``-half of the one before.
    """
    if not isinstance(pyramid, (list, tuple)) or len(pyramid) == 0:
        raise ValueError(f"{name}: expected a non-empty list of tensors, got {pyramid!r}")
    for k, level in enumerate(pyramid):
        check_image(level, f"{name}[{k}]")
    first = pyramid[0]
    for k in range(1, len(pyramid)):
        fine, level = pyramid[k - 1], pyramid[k]
        expected = ((fine.shape[-2] + 1) // 2, (fine.shape[-1] + 1) // 2)
        if level.shape[:-2] != first.shape[:-2] or tuple(level.shape[-2:]) != expected:
            raise ValueError(
                f"{name}: level {k} has shape {tuple(level.shape)} but level {k - 1} has shape "
                f"{tuple(fine.shape)}; one pyramid needs shape "
                f"{(*first.shape[:-2], *expected)} here (sides ceil-halved, same leading dims)"
            )
        if level.dtype != first.dtype or level.device != first.device:
            raise ValueError(
                f"{name}: level {k} is {level.dtype} on {level.device} but level 0 is "
                f"{first.dtype} on {first.device}"
            )


def check_patch_size(first: Tensor, patch_size: int, name: str) -> tuple[int, int]:
    """Validate the channel dim of ``first`` (``(..., C, H, W)``) and ``patch_size``; ``(H, W)``."""
    if first.ndim < 3:
        raise ValueError(
            f"{name}: levels need a channel dim, shape (..., C, H, W); got shape "
            f"{tuple(first.shape)}"
        )
    height, width = first.shape[-2], first.shape[-1]
    if isinstance(patch_size, bool) or not isinstance(patch_size, int):
        raise TypeError(f"patch_size: expected an int, got {patch_size!r}")
    if not 1 <= patch_size <= max(height, width):
        raise ValueError(
            f"patch_size: must be between 1 and the image's larger side {max(height, width)} "
            f"(image {height}x{width}), got {patch_size}"
        )
    return height, width


def check_finite_energy(energy: Tensor) -> None:
    """Raise if a band energy is NaN or Inf (a device sync: see :class:`sync_checks`)."""
    if sync_checks_enabled() and not bool(energy.isfinite().all()):
        raise ValueError(
            "pyramid: band energy is NaN or Inf; the input image has NaN/Inf values or values "
            "too large to square in float32"
        )

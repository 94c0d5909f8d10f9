"""Whether a Triton kernel may run: the one gate the pyramid ops and the VQ search share.

Triton is optional (it ships with CUDA builds of PyTorch on Linux, not with CPU wheels, macOS or
Windows). A kernel runs on tensors of a device only when :func:`kernels_enabled` says so:

- the code is not being traced by ``torch.compile`` (:func:`compiling`; it compiles the torch
  path itself);
- ``PYRTOK_DISABLE_TRITON`` is not ``"1"`` (:func:`disabled`), read on every call;
- the tensors are on CUDA, or on the CPU while Triton interprets kernels (``TRITON_INTERPRET=1``,
  :func:`interpreting`; how the kernels are tested without a GPU);
- Triton imports (:func:`available`).

Otherwise the caller runs its pure-torch path, the reference. Nothing here imports Triton
before :func:`available` is first asked.
"""

from __future__ import annotations

import functools
import os

import torch

DISABLE_ENV = "PYRTOK_DISABLE_TRITON"
"""Set this environment variable to ``"1"`` to force the pure-torch path everywhere."""


@functools.cache
def available() -> bool:
    """Whether Triton imports (checked once per process).

    Examples:
        >>> isinstance(available(), bool)
        True
    """
    try:
        import triton
        import triton.language  # noqa: F401
    except ImportError:
        return False
    return True


def disabled() -> bool:
    """Whether ``PYRTOK_DISABLE_TRITON=1`` forces the torch path (read on every call)."""
    return os.environ.get(DISABLE_ENV, "0") == "1"


def interpreting() -> bool:
    """Whether Triton runs kernels in its CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "yes", "on")


def compiling() -> bool:
    """Whether ``torch.compile`` is tracing the caller (it then compiles the torch path)."""
    return bool(torch.compiler.is_compiling())


def kernels_enabled(device: torch.device) -> bool:
    """Whether a Triton kernel may run on tensors of ``device`` now (see the module doc).

    Examples:
        >>> kernels_enabled(torch.device("meta"))
        False
    """
    if compiling() or disabled():
        return False
    if not (device.type == "cuda" or (device.type == "cpu" and interpreting())):
        return False
    return available()

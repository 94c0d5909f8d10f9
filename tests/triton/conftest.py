"""The ``test_interp_*`` files check the fused kernels against the torch path. They run

- on the CPU where ``TRITON_INTERPRET=1`` was set before Triton was imported
  (:mod:`test_under_interpreter` starts such a pytest process), or
- on a GPU where ``PYRTOK_KERNEL_TESTS=cuda`` is set: every tensor they create then lands on the
  GPU and the compiled kernels run (``PYRTOK_KERNEL_TESTS=cuda pytest tests/triton``).

Elsewhere they are not collected, so the interpreter never leaks into the rest of the suite.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import torch

ON_GPU = os.environ.get("PYRTOK_KERNEL_TESTS") == "cuda"
collect_ignore_glob = (
    [] if ON_GPU or os.environ.get("TRITON_INTERPRET") == "1" else ["test_interp_*.py"]
)


@pytest.fixture(autouse=True)
def _kernel_test_device(request: pytest.FixtureRequest) -> Iterator[None]:
    """Create the kernel tests' tensors on the GPU when ``PYRTOK_KERNEL_TESTS=cuda``."""
    if not (ON_GPU and request.path.name.startswith("test_interp_")):
        yield
        return
    if not torch.cuda.is_available():
        pytest.fail("PYRTOK_KERNEL_TESTS=cuda is set but torch sees no CUDA device")
    torch.set_default_device("cuda")
    try:
        yield
    finally:
        torch.set_default_device("cpu")

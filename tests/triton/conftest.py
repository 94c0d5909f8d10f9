"""The ``test_interp_*`` files check the fused kernels against the torch path. They run

- on the CPU where ``TRITON_INTERPRET=1`` was set before Triton was imported
  (:mod:`test_under_interpreter` starts such a pytest process), or
- on a GPU where ``PYRTOK_KERNEL_TESTS=cuda`` is set: every tensor they create then lands on the
  GPU and the compiled kernels run (``PYRTOK_KERNEL_TESTS=cuda pytest tests/triton``).

Elsewhere they are not collected, so the interpreter never leaks into the rest of the suite.
Where Triton is not installed they skip.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import torch

from pyrtok import _triton

ON_GPU = os.environ.get("PYRTOK_KERNEL_TESTS") == "cuda"
collect_ignore_glob = (
    [] if ON_GPU or os.environ.get("TRITON_INTERPRET") == "1" else ["test_interp_*.py"]
)


@pytest.fixture(autouse=True)
def _kernel_test_device(request: pytest.FixtureRequest) -> Iterator[None]:
    """Skip the kernel tests without Triton; on ``PYRTOK_KERNEL_TESTS=cuda`` create their tensors
    on the GPU."""
    kernel_test = request.path.name.startswith("test_interp_")
    if kernel_test and not _triton.available():
        pytest.skip("Triton is not installed (it is optional)")
    if not (ON_GPU and kernel_test):
        yield
        return
    if not torch.cuda.is_available():
        pytest.fail("PYRTOK_KERNEL_TESTS=cuda is set but torch sees no CUDA device")
    torch.set_default_device("cuda")
    try:
        yield
    finally:
        torch.set_default_device("cpu")

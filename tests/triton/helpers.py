"""Shared helpers for the Triton kernel tests: the torch reference path and a launch counter."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch

from pyrtok._triton import DISABLE_ENV
from pyrtok.pyramid.triton import launch


@contextlib.contextmanager
def torch_path() -> Iterator[None]:
    """Run the public functions on the pure-torch path (the reference)."""
    old = os.environ.get(DISABLE_ENV)
    os.environ[DISABLE_ENV] = "1"
    try:
        yield
    finally:
        if old is None:
            del os.environ[DISABLE_ENV]
        else:
            os.environ[DISABLE_ENV] = old


class LaunchCounter:
    """Counts kernel launches by kind: ``level_step``, ``expand``, ``separable_gather``."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.counts = {"level_step": 0, "expand": 0, "separable_gather": 0}
        for name in self.counts:
            monkeypatch.setattr(launch, name, self._counted(name, getattr(launch, name)))

    def _counted(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            self.counts[name] += 1
            return fn(*args, **kwargs)

        return wrapper

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def poisoned_alloc(
    shape: tuple[int, ...], dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """Outputs start as NaN, so an element a kernel forgets to write fails every comparison."""
    return torch.full(shape, float("nan"), dtype=dtype, device=device)


def max_error(
    got: list[torch.Tensor] | torch.Tensor, want: list[torch.Tensor] | torch.Tensor
) -> float:
    """Largest absolute difference over matching tensors (NaN counts as infinite)."""
    pairs = zip(got, want, strict=True) if isinstance(got, list) else [(got, want)]
    worst = 0.0
    for a, b in pairs:
        assert isinstance(a, torch.Tensor)
        assert isinstance(b, torch.Tensor)
        assert a.shape == b.shape, (a.shape, b.shape)
        assert a.dtype == b.dtype, (a.dtype, b.dtype)
        diff = (a.double() - b.double()).abs()
        if diff.isnan().any():
            return float("inf")
        worst = max(worst, float(diff.max()) if diff.numel() else 0.0)
    return worst

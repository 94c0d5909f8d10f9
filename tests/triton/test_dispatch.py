"""Dispatch rules, checked in the main test process (no interpreter, no GPU)."""

from __future__ import annotations

import pytest
import torch

from pyrtok import _triton
from pyrtok._triton import DISABLE_ENV
from pyrtok.pyramid.triton.dispatch import fused_taps, symmetric_taps


def test_cpu_tensors_take_the_torch_path_without_interpreter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    monkeypatch.delenv(DISABLE_ENV, raising=False)
    assert fused_taps(torch.rand(2, 8, 8), "binom5", "reflect") is None


def test_interpreter_routes_cpu_tensors_to_kernels(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_triton, "available", lambda: True)
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.delenv(DISABLE_ENV, raising=False)
    assert fused_taps(torch.rand(2, 8, 8), "binom5", "reflect") == (0.0625, 0.25, 0.375)
    monkeypatch.setenv(DISABLE_ENV, "1")
    assert fused_taps(torch.rand(2, 8, 8), "binom5", "reflect") is None


@pytest.mark.parametrize(
    ("x", "border"),
    [
        (torch.rand(2, 8, 8, dtype=torch.float64), "reflect"),
        (torch.randint(0, 9, (2, 8, 8)), "reflect"),
        (torch.rand(8), "reflect"),
        (torch.rand(2, 0, 8), "reflect"),
        (torch.rand(2, 8, 8), "replicate"),
        (torch.rand(2, 8, 8, device="meta"), "reflect"),
        ("not a tensor", "reflect"),
    ],
)
def test_unsupported_inputs_are_left_to_the_torch_path(
    x: object, border: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.setattr(_triton, "available", lambda: True)
    monkeypatch.delenv(DISABLE_ENV, raising=False)
    assert fused_taps(x, "binom5", border) is None


def test_compiling_takes_the_torch_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.delenv(DISABLE_ENV, raising=False)
    monkeypatch.setattr(_triton, "available", lambda: True)
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    assert fused_taps(torch.rand(2, 8, 8), "binom5", "reflect") is None


def test_missing_triton_takes_the_torch_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.delenv(DISABLE_ENV, raising=False)
    monkeypatch.setattr(_triton, "available", lambda: False)
    assert fused_taps(torch.rand(2, 8, 8), "binom5", "reflect") is None


@pytest.mark.parametrize(
    ("kernel", "expected"),
    [
        ("binom5", (0.0625, 0.25, 0.375)),
        ([1, 4, 6, 4, 1], (0.0625, 0.25, 0.375)),
        ([1, 2, 1], (0.0, 0.25, 0.5)),
        ([3], (0.0, 0.0, 1.0)),
        (torch.tensor([1.0, 2.0, 1.0], dtype=torch.float64), (0.0, 0.25, 0.5)),
        ("gauss", None),  # 7 taps
        ([1, 2, 3], None),  # not symmetric
        ([1, 2, 3, 2, 1, 1, 1], None),
        (torch.tensor([1.0, 1.0]), None),  # even length: the torch path raises
        (torch.zeros(3), None),  # zero sum
    ],
)
def test_symmetric_taps(kernel: object, expected: tuple[float, float, float] | None) -> None:
    assert symmetric_taps(kernel) == expected  # type: ignore[arg-type]


def test_invalid_kernel_raises_the_torch_path_error() -> None:
    with pytest.raises(ValueError, match="kernel: unknown name"):
        symmetric_taps("box")

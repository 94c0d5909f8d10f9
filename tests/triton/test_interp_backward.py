"""Backward passes through the adjoint kernels against torch autograd of the torch path
(float32; the interpreter has no float64 kernels to gradcheck, so gradients are compared to
the reference's autograd, which has its own float64 gradcheck in tests/pyramid)."""

from __future__ import annotations

import pytest
import torch

import pyrtok
from pyrtok.pyramid.energy import laplacian_energy
from pyrtok.pyramid.triton import launch

from .helpers import LaunchCounter, max_error, poisoned_alloc, torch_path

SIZES = [(2, 3), (5, 8), (13, 17), (1, 9)]


@pytest.fixture(autouse=True)
def _poison(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(launch, "_alloc", poisoned_alloc)


def _grad(fn, inputs: list[torch.Tensor], weights: list[torch.Tensor | None]) -> list[torch.Tensor]:  # type: ignore[no-untyped-def]
    """Gradient of ``sum(w * out)`` over the outputs with a weight (``None``: output unused)."""
    leaves = [t.detach().clone().requires_grad_(True) for t in inputs]
    outputs = fn(*leaves)
    outputs = list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
    total = sum((o * w).sum() for o, w in zip(outputs, weights, strict=True) if w is not None)
    return list(torch.autograd.grad(total, leaves))


@pytest.mark.parametrize("size", SIZES)
def test_build_gradient(size: tuple[int, int]) -> None:
    torch.manual_seed(0)
    x = torch.rand(2, *size)
    levels = min(3, pyrtok.pyramid.max_levels(*size))
    weights: list[torch.Tensor | None] = [
        torch.randn(o.shape) for o in pyrtok.laplacian_pyramid(x, levels)
    ]
    weights[0] = None  # an unused output: its gradient arrives as None
    fused = _grad(lambda t: pyrtok.laplacian_pyramid(t, levels), [x], weights)
    with torch_path():
        reference = _grad(lambda t: pyrtok.laplacian_pyramid(t, levels), [x], weights)
    assert max_error(fused, reference) <= 1e-5


@pytest.mark.parametrize("size", SIZES)
def test_reconstruct_gradient(size: tuple[int, int], monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(1)
    levels = min(3, pyrtok.pyramid.max_levels(*size))
    with torch_path():
        pyramid = pyrtok.laplacian_pyramid(torch.rand(2, *size), levels)
    weight = torch.randn(2, *size)
    counter = LaunchCounter(monkeypatch)
    fused = _grad(lambda *p: pyrtok.reconstruct(list(p)), pyramid, [weight])
    assert counter.counts["separable_gather"] == levels - 1
    with torch_path():
        reference = _grad(lambda *p: pyrtok.reconstruct(list(p)), pyramid, [weight])
    assert max_error(fused, reference) <= 1e-5


@pytest.mark.parametrize("size", [(5, 8), (13, 17), (6, 1)])
def test_pyr_down_and_pyr_up_gradients(size: tuple[int, int]) -> None:
    torch.manual_seed(2)
    x = torch.rand(2, *size)
    small = pyrtok.pyr_down(x)
    w_small, w_up = torch.randn(small.shape), torch.randn(x.shape)
    fused = _grad(pyrtok.pyr_down, [x], [w_small])
    fused += _grad(lambda s: pyrtok.pyr_up(s, size), [small], [w_up])
    with torch_path():
        reference = _grad(pyrtok.pyr_down, [x], [w_small])
        reference += _grad(lambda s: pyrtok.pyr_up(s, size), [small], [w_up])
    assert max_error(fused, reference) <= 1e-5


def test_double_backward() -> None:
    """The adjoint kernels are differentiable too (a gradient penalty through the pyramid)."""
    torch.manual_seed(3)
    x0 = torch.rand(2, 9, 12)

    def penalty() -> torch.Tensor:
        x = x0.clone().requires_grad_(True)
        loss = sum(level.square().sum() for level in pyrtok.laplacian_pyramid(x, 3))
        (grad,) = torch.autograd.grad(loss, x, create_graph=True)
        (second,) = torch.autograd.grad(grad.square().sum(), x)
        return second

    fused = penalty()
    with torch_path():
        reference = penalty()
    assert max_error(fused, reference) <= 1e-4 * float(reference.abs().max())


def test_half_precision_gradient_within_rounding() -> None:
    torch.manual_seed(4)
    x = torch.rand(2, 13, 17).to(torch.bfloat16)
    weights: list[torch.Tensor | None] = [
        torch.randn(o.shape).to(torch.bfloat16) for o in pyrtok.laplacian_pyramid(x, 3)
    ]
    (fused,) = _grad(lambda t: pyrtok.laplacian_pyramid(t, 3), [x], weights)
    with torch_path():
        (exact,) = _grad(
            lambda t: pyrtok.laplacian_pyramid(t, 3),
            [x.double()],
            [None if w is None else w.double() for w in weights],
        )
    assert fused.dtype == torch.bfloat16
    scale = float(exact.abs().max())
    assert max_error(fused.double(), exact) <= 4 * torch.finfo(torch.bfloat16).eps * scale


@pytest.mark.parametrize("patch", [4, 3])
def test_energy_gradient(patch: int) -> None:
    """Through the in-kernel energy (patch 4: levels 0-2) and the torch one (patch 3: k >= 1)."""
    torch.manual_seed(5)
    x = torch.rand(1, 2, 10, 13)
    weight = torch.randn(1, 3, -(-10 // patch), -(-13 // patch))
    fused = _grad(lambda t: laplacian_energy(t, patch, 3)[1], [x], [weight])
    with torch_path():
        reference = _grad(lambda t: laplacian_energy(t, patch, 3)[1], [x], [weight])
    assert max_error(fused, reference) <= 1e-5

"""The blocked CPU path (axis_plan + separable): every output written, equal to the NumPy
references for every border and kernel, batched planes equal to one plane at a time (the
cross-plane windows and their seams), and exact float64 gradients."""

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyrtok import laplacian_pyramid, pyr_down, pyr_up, reconstruct
from pyrtok.pyramid import pyramid_sizes, separable
from pyrtok.pyramid.axis_plan import ADJOINT, axis_plan
from pyrtok.pyramid.kernels import resolve_kernel
from tests.pyramid.reference import pyr_down_reference, pyr_up_reference

BORDERS = ["reflect", "replicate", "circular", "constant"]
KERNELS = ["binom5", "gauss", [1.0, 2.0, 1.0], [1.0]]

cv2 = pytest.importorskip("cv2")


@pytest.fixture
def nan_outputs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Outputs start as NaN, so an output the path forgets to write shows up."""
    real = torch.Tensor.new_empty

    def filled(self: torch.Tensor, *size: object, **kwargs: object) -> torch.Tensor:
        return real(self, *size, **kwargs).fill_(float("nan"))  # type: ignore[arg-type]

    monkeypatch.setattr(torch.Tensor, "new_empty", filled)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    planes=st.integers(1, 3),
    height=st.integers(1, 70),
    width=st.integers(1, 70),
    border=st.sampled_from(BORDERS),
    kernel=st.sampled_from(KERNELS),
    odd=st.tuples(st.booleans(), st.booleans()),
)
def test_equals_reference_for_any_shape(
    nan_outputs: None,
    planes: int,
    height: int,
    width: int,
    border: str,
    kernel: object,
    odd: tuple[bool, bool],
) -> None:
    taps = np.array(resolve_kernel(kernel))  # type: ignore[arg-type]
    x = torch.rand(planes, height, width, dtype=torch.float64)
    down = pyr_down(x, kernel, border).numpy()  # type: ignore[arg-type]
    np.testing.assert_allclose(down, pyr_down_reference(x.numpy(), taps, border), atol=1e-12)
    size = (max(1, 2 * height - odd[0]), max(1, 2 * width - odd[1]))
    up = pyr_up(x, size, kernel, border).numpy()  # type: ignore[arg-type]
    np.testing.assert_allclose(up, pyr_up_reference(x.numpy(), size, taps, border), atol=1e-12)


@pytest.mark.parametrize(("height", "width"), [(512, 512), (97, 130), (64, 33), (37, 512)])
def test_float32_batch_equals_cv2_per_plane(nan_outputs: None, height: int, width: int) -> None:
    """Batched planes (windows across plane seams when the rows line up) equal cv2 per plane."""
    x = torch.rand(5, height, width)
    down, up = pyr_down(x), pyr_up(x)
    for z in range(5):
        plane = x[z].numpy()
        np.testing.assert_allclose(down[z].numpy(), cv2.pyrDown(plane), atol=2e-6, rtol=0)
        np.testing.assert_allclose(up[z].numpy(), cv2.pyrUp(plane), atol=2e-6, rtol=0)


def test_plans_block_large_sizes_and_cover_every_output() -> None:
    plan = axis_plan("reduce", 512, 5, "reflect", 1)
    assert (plan.blocks, plan.low.rows, plan.high.rows) == (254, (0,), (255,))
    expand = axis_plan("expand", 512, 5, "reflect", 8)
    assert expand.blocks * expand.block + len(expand.low.rows) + len(expand.high.rows) == 512
    for n in range(1, 12):  # every output exactly once: edges + blocks
        for kind in ADJOINT:
            plan = axis_plan(kind, n, 5, "reflect", 4)
            rows = [*plan.low.rows, *plan.high.rows]
            rows += range(plan.out_start, plan.out_start + plan.block * plan.blocks)
            assert sorted(rows) == list(range(plan.n_out))


@pytest.mark.parametrize("border", BORDERS)
def test_gradcheck_float64_blocked_sizes(border: str) -> None:
    """Sizes large enough for interior blocks on both axes (the last dim blocks 32 outputs);
    fast mode (random projections) keeps it to seconds."""
    x = torch.rand(2, 20, 70, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: pyr_down(x, border=border), (x,), fast_mode=True)
    coarse = torch.rand(2, 10, 35, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda c: pyr_up(c, (19, 70), border=border), (coarse,), fast_mode=True
    )


def test_gradcheck_float64_build_and_reconstruct_with_band_base() -> None:
    x = torch.rand(1, 1, 20, 68, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: tuple(laplacian_pyramid(x, 3)), (x,), fast_mode=True)
    bands = tuple(b.detach().requires_grad_() for b in laplacian_pyramid(x, 3))
    assert torch.autograd.gradcheck(lambda *b: reconstruct(list(b)), bands, fast_mode=True)


def test_gradient_reaches_tensor_taps() -> None:
    taps = torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64, requires_grad=True)
    x = torch.rand(1, 40, 70, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda t: pyr_down(x, t), (taps,), fast_mode=True)


def test_no_grad_and_grad_paths_agree() -> None:
    x = torch.rand(3, 64, 96)
    with torch.no_grad():
        fast = laplacian_pyramid(x, 4)
    tracked = laplacian_pyramid(x.requires_grad_(), 4)
    for a, b in zip(fast, tracked, strict=True):
        assert torch.equal(a, b.detach())


@pytest.mark.parametrize("kind", ["reduce", "expand"])
@pytest.mark.parametrize("border", BORDERS)
@pytest.mark.parametrize("kernel", ["binom5", "gauss", [1.0, 2.0, 1.0]])
def test_adjoint_plans_are_the_transposes(kind: str, border: str, kernel: object) -> None:
    """The backward operator of each kind is exactly the transposed matrix, at sizes with and
    without interior blocks, along the rows and the last dim."""
    taps = resolve_kernel(kernel)  # type: ignore[arg-type]
    for n in (1, 2, 5, 9, 40, 83):
        coarse = (n + 1) // 2
        n_in, n_out = (n, coarse) if kind == "reduce" else (coarse, n)
        for dim in (0, 1):
            eye = torch.eye(n_in, dtype=torch.float64)
            forward = separable._compute(eye, dim, kind, n, taps, border, None, 1.0)
            eye_out = torch.eye(n_out, dtype=torch.float64)
            adjoint = separable._compute(eye_out, dim, ADJOINT[kind], n, taps, border, None, 1.0)
            # Along dim 0 the result is the matrix A (dim 1: A^T); the adjoint gives the other.
            torch.testing.assert_close(adjoint, forward.t(), rtol=0, atol=1e-15)


def test_backward_uses_the_adjoint_and_double_backward_works() -> None:
    x = torch.rand(2, 18, 70, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda x: pyr_down(x), (x,), fast_mode=True)
    coarse = torch.rand(2, 9, 35, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda c: pyr_up(c, (17, 70)), (coarse,), fast_mode=True)


@pytest.mark.parametrize("shape", [(0, 3, 16, 16), (2, 0, 16, 17), (0, 9, 9)])
def test_empty_batches_keep_their_shapes(shape: tuple[int, ...]) -> None:
    x = torch.rand(*shape, requires_grad=True)
    bands = laplacian_pyramid(x, 3)
    sizes = pyramid_sizes(shape[-2], shape[-1], 3)
    assert [tuple(b.shape) for b in bands] == [(*shape[:-2], *size) for size in sizes]
    assert reconstruct(bands).shape == x.shape
    assert pyr_down(x).shape == (*shape[:-2], (shape[-2] + 1) // 2, (shape[-1] + 1) // 2)
    assert pyr_up(x).shape == (*shape[:-2], 2 * shape[-2], 2 * shape[-1])
    reconstruct(bands).sum().backward()
    assert x.grad is not None
    assert x.grad.shape == x.shape


def test_a_first_call_in_inference_mode_leaves_no_inference_tensors_for_autograd() -> None:
    # The block factors are cached per size: built under inference_mode by a first call, they
    # must still be usable by a later call that autograd records (learnable taps save them).
    from pyrtok.pyramid import pyr_down

    x = torch.rand(1, 3, 44, 52)
    taps = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0]) / 16
    with torch.inference_mode():
        pyr_down(x, kernel=taps)
    learnable = taps.clone().requires_grad_()
    pyr_down(x, kernel=learnable).sum().backward()
    assert learnable.grad is not None

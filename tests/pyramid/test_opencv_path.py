"""The OpenCV forward path: equals the torch path, same gradients, off by switch or without cv2."""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pyrtok.pyramid import functional, opencv_path
from pyrtok.pyramid.functional import laplacian_pyramid, pyr_down, pyr_up, reconstruct

pytest.importorskip("cv2")

T = TypeVar("T")
TOLERANCE = {torch.float32: (1e-6, 1e-6), torch.float64: (1e-13, 1e-13)}


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records every OpenCV-path call ("down" / "up")."""
    seen: list[str] = []
    down, up = opencv_path.pyr_down, opencv_path.pyr_up

    def record_down(x: torch.Tensor) -> torch.Tensor:
        seen.append("down")
        return down(x)

    def record_up(x: torch.Tensor, *args: Any) -> torch.Tensor:
        seen.append("up")
        return up(x, *args)

    monkeypatch.setattr(opencv_path, "pyr_down", record_down)
    monkeypatch.setattr(opencv_path, "pyr_up", record_up)
    return seen


def torch_path(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` with ``PYRTOK_DISABLE_OPENCV=1``."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(opencv_path.DISABLE_ENV, "1")
        return fn(*args, **kwargs)


def close(got: torch.Tensor, want: torch.Tensor) -> None:
    rtol, atol = TOLERANCE[want.dtype]
    assert got.dtype == want.dtype
    torch.testing.assert_close(got, want, rtol=rtol, atol=atol)


shapes = st.tuples(st.lists(st.integers(0, 3), max_size=2), st.integers(1, 40), st.integers(1, 40))
dtypes = st.sampled_from([torch.float32, torch.float64])


@settings(max_examples=40, deadline=None)
@given(shape=shapes, dtype=dtypes)
def test_pyr_down_equals_torch_path(shape: tuple[list[int], int, int], dtype: torch.dtype) -> None:
    lead, h, w = shape
    x = torch.rand(*lead, h, w, dtype=dtype)
    assert opencv_path.usable(x, opencv_path._BINOM5, "reflect")
    close(pyr_down(x), torch_path(pyr_down, x))


@settings(max_examples=40, deadline=None)
@given(shape=shapes, dtype=dtypes, odd=st.tuples(st.booleans(), st.booleans()))
def test_pyr_up_equals_torch_path_odd_sizes_included(
    shape: tuple[list[int], int, int], dtype: torch.dtype, odd: tuple[bool, bool]
) -> None:
    lead, h, w = shape
    size = (2 * h - odd[0], 2 * w - odd[1])
    x = torch.rand(*lead, h, w, dtype=dtype)
    close(pyr_up(x, size), torch_path(pyr_up, x, size))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_pyramid_and_reconstruct_run_opencv_and_equal_torch_path(
    dtype: torch.dtype, calls: list[str]
) -> None:
    x = torch.rand(2, 3, 64, 48, dtype=dtype)
    bands = laplacian_pyramid(x, levels=4)
    assert calls == ["down"] * 3 + ["up"] * 3
    for got, want in zip(bands, torch_path(laplacian_pyramid, x, levels=4), strict=True):
        close(got, want)
    close(reconstruct(bands), torch_path(reconstruct, bands))


def test_odd_expand_and_other_operators_stay_on_torch_path(calls: list[str]) -> None:
    x = torch.rand(2, 5, 6)
    pyr_up(x, (9, 12))
    pyr_down(x, kernel="gauss")
    pyr_down(x, border="replicate")
    pyr_down(x, kernel=torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0]))
    pyr_down(x.half())
    assert calls == []
    pyr_up(x, (10, 12))
    pyr_down(x, kernel=(1.0, 4.0, 6.0, 4.0, 1.0))  # the same taps, given by value
    assert calls == ["up", "down"]


@pytest.mark.parametrize("op", ["down", "up", "band"])
def test_backward_equals_torch_path(op: str, calls: list[str]) -> None:
    x = torch.rand(2, 7, 10, dtype=torch.float64, requires_grad=True)
    base = torch.rand(2, 14, 20, dtype=torch.float64, requires_grad=True)
    weight = torch.rand(2, 14, 20, dtype=torch.float64)

    def loss() -> torch.Tensor:
        if op == "down":
            return (pyr_down(x) * weight[:, :4, :5]).sum()
        if op == "up":
            return (pyr_up(x) * weight).sum()
        return (functional.laplacian_from_gaussian([base, x])[0] * weight).sum()

    got: tuple[torch.Tensor | None, ...] = torch.autograd.grad(loss(), [x, base], allow_unused=True)
    assert calls == [op if op != "band" else "up"]
    want: tuple[torch.Tensor | None, ...] = torch_path(
        torch.autograd.grad, torch_path(loss), [x, base], allow_unused=True
    )
    for g, r in zip(got, want, strict=True):
        if r is None:
            assert g is None
        else:
            assert g is not None
            close(g, r)


def test_double_backward_through_opencv_forward() -> None:
    x = torch.rand(1, 6, 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda t: pyr_down(t) ** 2, (x,))
    assert torch.autograd.gradcheck(lambda t: pyr_up(t) ** 2, (x,))


def test_env_switch_forces_torch_path(monkeypatch: pytest.MonkeyPatch, calls: list[str]) -> None:
    x = torch.rand(3, 16, 16)
    monkeypatch.setenv(opencv_path.DISABLE_ENV, "1")
    reconstruct(laplacian_pyramid(x, levels=3))
    assert calls == []
    monkeypatch.setenv(opencv_path.DISABLE_ENV, "0")
    pyr_down(x)
    assert calls == ["down"]


def test_without_cv2_everything_still_works(
    monkeypatch: pytest.MonkeyPatch, calls: list[str]
) -> None:
    import builtins

    real_import = builtins.__import__

    def no_cv2(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "cv2":
            raise ImportError("No module named 'cv2'")
        return real_import(name, *args, **kwargs)

    opencv_path.cv2_module.cache_clear()
    monkeypatch.setattr(builtins, "__import__", no_cv2)
    try:
        assert opencv_path.cv2_module() is None
        x = torch.rand(2, 3, 20, 30, dtype=torch.float64)
        bands = laplacian_pyramid(x, levels=3)
        torch.testing.assert_close(reconstruct(bands), x, rtol=0, atol=1e-12)
        assert calls == []
    finally:
        opencv_path.cv2_module.cache_clear()


@pytest.fixture
def threads() -> Iterator[Callable[[int], None]]:
    """Sets torch's thread count for the test; restores it after."""
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)


def _opencv_op(op: str, x: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
    if op == "down":
        return opencv_path.pyr_down(x)
    return opencv_path.pyr_up(x, base, -1.0) if op == "band" else opencv_path.pyr_up(x)


@pytest.mark.parametrize("op", ["down", "up", "band"])
def test_planes_over_threads_equal_one_thread_bit_for_bit(
    op: str, monkeypatch: pytest.MonkeyPatch, threads: Callable[[int], None]
) -> None:
    """Every plane count (more planes than threads, fewer, not a multiple) gives the bytes of
    the one-thread loop, and the work runs on the pool's threads."""
    cv2 = opencv_path.cv2_module()
    seen: set[str] = set()

    class Recording:
        def __getattr__(self, name: str) -> Any:
            def call(*args: Any, **kwargs: Any) -> Any:
                seen.add(threading.current_thread().name)
                return getattr(cv2, name)(*args, **kwargs)

            return call

    monkeypatch.setattr(opencv_path, "PARALLEL_VALUES", 0)
    monkeypatch.setattr(opencv_path, "cv2_module", Recording)
    for planes in (1, 2, 5, 7):
        x = torch.rand(planes, 12, 10)
        base = torch.rand(planes, 24, 20)
        threads(1)
        serial = _opencv_op(op, x, base)
        threads(3)
        assert torch.equal(_opencv_op(op, x, base), serial)
    assert any(name.startswith("pyrtok-opencv") for name in seen)
    assert "MainThread" in seen  # one plane, or one thread: no hand-off


def _child_pyr_down(queue: Any) -> None:
    torch.set_num_threads(2)
    opencv_path.PARALLEL_VALUES = 0
    queue.put(opencv_path.pyr_down(torch.ones(4, 8, 8)).sum().item())


def test_forked_child_builds_its_own_pool(
    monkeypatch: pytest.MonkeyPatch, threads: Callable[[int], None]
) -> None:
    """A pool's threads do not survive fork: a child process that splits planes must start a
    pool of its own instead of waiting forever on the parent's."""
    monkeypatch.setattr(opencv_path, "PARALLEL_VALUES", 0)
    threads(2)
    opencv_path.pyr_down(torch.ones(4, 8, 8))  # the parent's pool exists now
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_child_pyr_down, args=(queue,))
    child.start()
    child.join(timeout=60)
    if child.is_alive():
        child.kill()
        pytest.fail("the forked child hung on the parent's thread pool")
    assert child.exitcode == 0
    assert queue.get(timeout=5) == pytest.approx(64.0)

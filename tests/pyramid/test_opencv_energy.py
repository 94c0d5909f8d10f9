"""The CPU one-pass band energy (OpenCV, one plane at a time): the bands of the OpenCV path bit
for bit, the energy of ``band_energy``, taken only where it computes exactly that."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pyrtok import band_energy, laplacian_energy, laplacian_pyramid
from pyrtok.pyramid import opencv_path

pytest.importorskip("cv2")


def _record_one_pass(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Records each call of the one-pass path (its ``keep_pyramid``)."""
    seen: list[bool] = []
    original = opencv_path.laplacian_energy

    def record(x: torch.Tensor, levels: int, patch: int, keep: bool = True) -> object:
        seen.append(keep)
        return original(x, levels, patch, keep)

    monkeypatch.setattr(opencv_path, "laplacian_energy", record)
    return seen


@pytest.fixture
def one_pass(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    return _record_one_pass(monkeypatch)


@settings(max_examples=30, deadline=None)
@given(
    lead=st.lists(st.integers(1, 3), min_size=1, max_size=3),
    levels=st.integers(2, 4),
    factor=st.integers(1, 2),
    patches=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    dtype=st.sampled_from([torch.float32, torch.float64]),
)
def test_one_pass_equals_pyramid_then_band_energy(
    lead: list[int], levels: int, factor: int, patches: tuple[int, int], dtype: torch.dtype
) -> None:
    patch = factor << (levels - 1)
    x = torch.rand(*lead, patch * patches[0], patch * patches[1], dtype=dtype) * 4 - 2
    with pytest.MonkeyPatch.context() as spy:  # hypothesis: no function-scoped fixture
        seen = _record_one_pass(spy)
        pyramid, energy = laplacian_energy(x, patch, levels)
        kept, alone = laplacian_energy(x, patch, levels, keep_pyramid=False)
    assert seen == [True, False]
    want = laplacian_pyramid(x, levels)  # the OpenCV path, two passes
    assert all(torch.equal(a, b) for a, b in zip(pyramid, want, strict=True))
    reference = band_energy(want, patch)
    assert energy.dtype == reference.dtype == dtype
    assert energy.shape == reference.shape
    rtol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(energy, reference, rtol=rtol, atol=rtol * float(reference.max()))
    assert kept == []
    assert torch.equal(alone, energy)


def test_other_calls_keep_the_two_pass_path(one_pass: list[bool]) -> None:
    x = torch.rand(2, 3, 32, 48)
    laplacian_energy(x, 16, 3)
    assert one_pass == [True]
    laplacian_energy(x, 12, 2)  # 32 is no multiple of 12
    laplacian_energy(x, 2, 3)  # patch 2: a level-2 coefficient spans two patches
    laplacian_energy(torch.rand(2, 3, 24, 48), 16, 3)  # 24 rows: a partial patch
    laplacian_energy(x, 16, 1)  # nothing to build
    laplacian_energy(x, 16, 3, kernel="gauss")
    laplacian_energy(x.half(), 16, 3)
    with pytest.MonkeyPatch.context() as env:
        env.setenv(opencv_path.DISABLE_ENV, "1")
        laplacian_energy(x, 16, 3)
    assert one_pass == [True]


def test_gradients_take_the_two_pass_path(one_pass: list[bool]) -> None:
    x = torch.rand(1, 3, 32, 32, requires_grad=True)
    _, energy = laplacian_energy(x, 16, 3)
    energy.sum().backward()
    assert one_pass == []
    assert x.grad is not None
    assert bool(x.grad.abs().sum() > 0)
    with torch.no_grad():
        laplacian_energy(x, 16, 3)
    assert one_pass == [True]


def test_bad_arguments_raise_as_before(one_pass: list[bool]) -> None:
    x = torch.rand(2, 3, 32, 32)
    with pytest.raises(ValueError, match="patch_size: must be between 1"):
        laplacian_energy(x, 0, 3)
    with pytest.raises(TypeError, match="patch_size: expected an int"):
        laplacian_energy(x, 16.0, 3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="levels: 9 is too many"):
        laplacian_energy(x, 16, 9)
    with pytest.raises(ValueError, match="levels need a channel dim"):
        laplacian_energy(torch.rand(32, 32), 16, 3)
    nan = x.clone()
    nan[1, 2, 3, 4] = float("nan")
    with pytest.raises(ValueError, match="band energy is NaN or Inf"):
        laplacian_energy(nan, 16, 3)
    assert one_pass == [True]  # the NaN input ran it; the others failed their checks first


@pytest.fixture
def threads() -> Iterator[None]:
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.mark.usefixtures("threads")
@pytest.mark.parametrize("keep", [True, False])
def test_planes_over_threads_equal_one_thread_bit_for_bit(
    keep: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(opencv_path, "PARALLEL_VALUES", 0)
    for planes in (1, 2, 5, 7):
        x = torch.rand(planes, 1, 16, 32)
        torch.set_num_threads(1)
        serial = opencv_path.laplacian_energy(x, 3, 8, keep)
        torch.set_num_threads(3)
        split = opencv_path.laplacian_energy(x, 3, 8, keep)
        assert torch.equal(split[1], serial[1])
        assert all(torch.equal(a, b) for a, b in zip(split[0], serial[0], strict=True))

"""nearest_code: exact against float64 brute force, bounded memory, clear errors."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pyrtok import _triton
from pyrtok._triton import DISABLE_ENV
from pyrtok.quantize import nearest_code, search
from pyrtok.quantize.search import _use_triton, resolve_precision, score_error_bound
from tests.quantize.helpers import brute_force_nearest

PRECISIONS = ["fp32", "bf16"]


@pytest.mark.parametrize("precision", PRECISIONS)
@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(0, 300),
    k=st.integers(1, 300),
    d=st.integers(1, 70),
    chunk=st.sampled_from([None, 1, 7, 64]),
    seed=st.integers(0, 2**16),
)
def test_equals_float64_brute_force_on_random_data(
    precision: str, n: int, k: int, d: int, chunk: int | None, seed: int
) -> None:
    g = torch.Generator().manual_seed(seed)
    x, codes = torch.randn(n, d, generator=g), torch.randn(k, d, generator=g)
    got = nearest_code(x, codes, precision=precision, chunk_rows=chunk)  # type: ignore[arg-type]
    assert got.dtype == torch.int64
    assert got.shape == (n,)
    assert torch.equal(got, brute_force_nearest(x, codes))


@pytest.mark.parametrize("precision", PRECISIONS)
def test_near_ties_and_cancellation_are_exact(precision: str) -> None:
    """Large common offset (catastrophic cancellation in |e|^2 - 2x.e) and near-duplicate codes."""
    g = torch.Generator().manual_seed(1)
    base = torch.randn(64, 32, generator=g) + 300.0
    codes = torch.cat([base, base + 1e-3 * torch.randn(64, 32, generator=g)])
    x = codes[torch.randint(0, 128, (2000,), generator=g)] + 2e-3 * torch.randn(
        2000, 32, generator=g
    )
    got = nearest_code(x, codes, precision=precision)  # type: ignore[arg-type]
    assert torch.equal(got, brute_force_nearest(x, codes))


def _record_score_precisions(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []
    original = search._operands

    def spy(*args: object) -> object:
        seen.append(str(args[-1]))
        return original(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(search, "_operands", spy)
    return seen


def test_bf16_windows_on_a_large_random_codebook(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = _record_score_precisions(monkeypatch)
    g = torch.Generator().manual_seed(4)
    x, codes = torch.randn(100, 256, generator=g), torch.randn(8192, 256, generator=g)
    got = nearest_code(x, codes, precision="bf16")
    assert seen == ["bf16"]  # windows stayed small: no float32 redo
    assert torch.equal(got, brute_force_nearest(x, codes))


def test_bf16_falls_back_to_float32_on_clustered_data(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = _record_score_precisions(monkeypatch)
    g = torch.Generator().manual_seed(5)
    codes = torch.randn(256, 48, generator=g) * 0.01 + 1.0  # tight cluster: wide bf16 windows
    x = codes[torch.randint(0, 256, (3000,), generator=g)] + 1e-3 * torch.randn(3000, 48)
    got = nearest_code(x, codes, precision="bf16", chunk_rows=1000)
    assert seen == ["bf16", "fp32"]
    assert torch.equal(got, brute_force_nearest(x, codes))


@pytest.mark.parametrize("precision", PRECISIONS)
def test_exact_ties_go_to_the_lowest_index(precision: str) -> None:
    codes = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    x = torch.tensor([[2.0, 0.0], [0.0, 3.0], [1.0, 1.0]])  # last: equidistant to all four
    assert nearest_code(x, codes, precision=precision).tolist() == [0, 1, 0]  # type: ignore[arg-type]


def test_half_precision_inputs_are_searched_in_float32() -> None:
    g = torch.Generator().manual_seed(2)
    x, codes = torch.randn(200, 16, generator=g), torch.randn(50, 16, generator=g)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = nearest_code(x.bfloat16(), codes)
    assert torch.equal(got, brute_force_nearest(x.bfloat16().float(), codes))


def test_error_bound_covers_float32_scores() -> None:
    g = torch.Generator().manual_seed(3)
    x, codes = torch.randn(500, 64, generator=g) * 10, torch.randn(300, 64, generator=g) * 10
    sq = codes.square().sum(1)
    scores32 = x @ codes.T - 0.5 * sq
    exact = x.double() @ codes.double().T - 0.5 * codes.double().square().sum(1)
    bound = score_error_bound(x.norm(dim=1), sq.max().sqrt(), 64, "fp32")
    assert ((scores32.double() - exact).abs() <= bound[:, None].double()).all()
    # and it is not vacuous: within a few hundred times the worst observed error
    assert bound.max() < 500 * (scores32.double() - exact).abs().max()


def test_precision_resolution_and_dispatch(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_precision("auto", torch.device("cuda")) == "tf32"
    assert resolve_precision("auto", torch.device("cpu")) in ("bf16", "fp32")
    assert resolve_precision("auto", torch.device("cpu"), codebook_numel=256 * 48) == "fp32"
    assert resolve_precision("fp32", torch.device("cpu")) == "fp32"
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    monkeypatch.delenv(DISABLE_ENV, raising=False)
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    monkeypatch.setattr(_triton, "available", lambda: True)  # whether or not Triton is here
    assert _use_triton(cuda, "tf32")
    assert _use_triton(cuda, "fp32")
    assert not _use_triton(cuda, "bf16")
    assert not _use_triton(cpu, "fp32")
    monkeypatch.setenv("TRITON_INTERPRET", "1")  # the kernel's CPU test mode
    assert _use_triton(cpu, "fp32")
    monkeypatch.setenv(DISABLE_ENV, "1")
    assert not _use_triton(cuda, "tf32")
    assert not _use_triton(cpu, "fp32")
    monkeypatch.delenv(DISABLE_ENV)
    monkeypatch.setattr(_triton, "available", lambda: False)
    assert not _use_triton(cuda, "tf32")


def test_disable_env_forces_the_torch_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """``PYRTOK_DISABLE_TRITON=1`` reaches :func:`nearest_code`, even where a kernel could run."""
    monkeypatch.setattr(_triton, "available", lambda: True)
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.setenv(DISABLE_ENV, "1")

    def no_kernel(*args: object) -> None:
        raise AssertionError("the fused search ran")

    monkeypatch.setattr(search, "fused_search", no_kernel)
    g = torch.Generator().manual_seed(5)
    x, codes = torch.randn(40, 6, generator=g), torch.randn(30, 6, generator=g)
    assert torch.equal(nearest_code(x, codes, precision="fp32"), brute_force_nearest(x, codes))
    monkeypatch.delenv(DISABLE_ENV)
    with pytest.raises(AssertionError, match="the fused search ran"):
        nearest_code(x, codes, precision="fp32")


def test_bad_input() -> None:
    x, codes = torch.randn(4, 3), torch.randn(5, 3)
    with pytest.raises(ValueError, match=r"x: expected last dim 3 .* got 2"):
        nearest_code(torch.randn(4, 2), codes)
    with pytest.raises(TypeError, match=r"x: expected a floating dtype, got torch.int64"):
        nearest_code(torch.ones(4, 3, dtype=torch.int64), codes)
    with pytest.raises(ValueError, match=r"codebook: expected shape \(rows, D\)"):
        nearest_code(x, torch.randn(5))
    with pytest.raises(ValueError, match="codebook: expected at least one code"):
        nearest_code(x, torch.randn(0, 3))
    with pytest.raises(ValueError, match="precision: expected 'auto'"):
        nearest_code(x, codes, precision="fp8")  # type: ignore[arg-type]


def test_non_finite_rows_raise() -> None:
    x = torch.tensor([[1.0, 1.0], [float("nan"), 0.0]])
    with pytest.raises(ValueError, match="row 1"):
        nearest_code(x, torch.tensor([[0.0, 0.0], [1.0, 1.0]]))

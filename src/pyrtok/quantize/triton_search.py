"""Fused Triton nearest-code kernel: score tiles stay on chip, only the top-2 leaves.

Imported lazily by :mod:`pyrtok.quantize.search` when :func:`pyrtok._triton.kernels_enabled`
allows a kernel (a CUDA tensor and Triton imports). Under ``TRITON_INTERPRET=1`` (set before
Triton is imported) the kernel also runs on CPU tensors, which is how the test suite checks it
against the torch path. Without Triton this module still imports; its kernel cannot run.

One program owns ``BLOCK_N`` rows and sweeps the codebook in ``BLOCK_K`` tiles; each tile's
``BLOCK_N x BLOCK_K`` scores ``x.e - ||e||^2 / 2`` are accumulated over ``D`` in ``BLOCK_D``
slices with ``tl.dot`` and reduced in registers to a running best index, best and second-best
score. :func:`pyrtok.quantize.search.nearest_code` certifies each row from the gap between the
two (exact answer; undecided rows are redone in float64).
"""

from __future__ import annotations

import functools
from typing import Any

import torch
from torch import Tensor

try:
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - exercised only where triton is missing
    triton = None
    tl = None


def _build_kernel() -> Any:
    # Pointer and size parameters stay unannotated: compiled Triton (3.6) resolves annotations
    # as globals inside the kernel and rejects ``Any``; the interpreter does not.
    @triton.jit  # type: ignore[untyped-decorator]
    def _top2_kernel(  # type: ignore[no-untyped-def]
        x_ptr,
        e_ptr,
        esq_ptr,
        idx_ptr,
        best_ptr,
        second_ptr,
        n_rows,
        n_codes,
        dim,
        BLOCK_N: tl.constexpr,
        BLOCK_K: tl.constexpr,
        BLOCK_D: tl.constexpr,
        PRECISION: tl.constexpr,
    ) -> None:
        rows = tl.program_id(0).to(tl.int64) * BLOCK_N + tl.arange(0, BLOCK_N)
        row_ok = rows < n_rows
        lanes = tl.arange(0, BLOCK_K)
        best = tl.full((BLOCK_N,), float("-inf"), tl.float32)
        second = tl.full((BLOCK_N,), float("-inf"), tl.float32)
        best_idx = tl.zeros((BLOCK_N,), tl.int32)
        for k0 in range(0, n_codes, BLOCK_K):
            cols = k0 + lanes
            col_ok = cols < n_codes
            code_offsets = cols.to(tl.int64) * dim
            acc = tl.zeros((BLOCK_N, BLOCK_K), tl.float32)
            for d0 in range(0, dim, BLOCK_D):
                ds = d0 + tl.arange(0, BLOCK_D)
                d_ok = ds < dim
                xt = tl.load(
                    x_ptr + rows[:, None] * dim + ds[None, :],
                    mask=row_ok[:, None] & d_ok[None, :],
                    other=0.0,
                )
                et = tl.load(
                    e_ptr + code_offsets[None, :] + ds[:, None],
                    mask=col_ok[None, :] & d_ok[:, None],
                    other=0.0,
                )
                acc = tl.dot(xt, et, acc, input_precision=PRECISION)
            esq = tl.load(esq_ptr + cols, mask=col_ok, other=0.0)
            score = tl.where(col_ok[None, :], acc - 0.5 * esq[None, :], float("-inf"))
            tile_best, tile_arg = tl.max(score, axis=1, return_indices=True)
            hit = lanes[None, :] == tile_arg[:, None]
            tile_second = tl.max(tl.where(hit, float("-inf"), score), axis=1)
            second = tl.maximum(tl.minimum(best, tile_best), tl.maximum(second, tile_second))
            best_idx = tl.where(tile_best > best, tile_arg + k0, best_idx)
            best = tl.maximum(best, tile_best)
        tl.store(idx_ptr + rows, best_idx.to(tl.int64), mask=row_ok)
        tl.store(best_ptr + rows, best, mask=row_ok)
        tl.store(second_ptr + rows, second, mask=row_ok)

    return _top2_kernel


@functools.cache
def _kernel() -> Any:
    return _build_kernel()


def _next_pow2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def top2_scores_triton(
    x: Tensor, codebook: Tensor, code_sqnorm: Tensor, precision: str = "tf32"
) -> tuple[Tensor, Tensor, Tensor]:
    """Fused search: best index, best and second-best score ``x.e - |e|^2 / 2`` per row.

    Args:
        x: ``(N, D)`` contiguous float32 (CUDA, or CPU under ``TRITON_INTERPRET=1``).
        codebook: ``(K, D)`` contiguous float32, same device.
        code_sqnorm: ``(K,)`` float32.
        precision: ``"tf32"`` or ``"fp32"`` (IEEE) products.

    Returns:
        ``(index (N,) int64, best (N,) float32, second (N,) float32)``; ``second`` is ``-inf``
        when ``K == 1``. Ties within float32 keep the lowest index.
    """
    if triton is None:
        raise RuntimeError("top2_scores_triton: triton is not installed")
    n, dim = x.shape
    k = codebook.shape[0]
    index = torch.empty(n, dtype=torch.int64, device=x.device)
    best = torch.empty(n, dtype=torch.float32, device=x.device)
    second = torch.empty(n, dtype=torch.float32, device=x.device)
    block_n, block_k = 64, 128
    block_d = min(64, max(16, _next_pow2(dim)))
    grid = (triton.cdiv(n, block_n),)
    _kernel()[grid](
        x.contiguous(),
        codebook.contiguous(),
        code_sqnorm.contiguous(),
        index,
        best,
        second,
        n,
        k,
        dim,
        BLOCK_N=block_n,
        BLOCK_K=block_k,
        BLOCK_D=block_d,
        PRECISION="tf32" if precision == "tf32" else "ieee",
        num_warps=4,
        num_stages=3,
    )
    return index, best, second

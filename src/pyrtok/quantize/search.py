"""Nearest-code search without an ``N x K`` distance matrix, exact to float64 brute force.

The search maximises the score ``s = x.e - ||e||^2 / 2`` (the squared distance is
``||x||^2 - 2 s``), a tile of rows at a time:

- **torch path** (CPU, or CUDA without Triton): one ``matmul`` per tile of rows (64 MiB of scores),
  in float32 or — where the CPU has native bfloat16 dot products — in bfloat16 with float32
  accumulation (4x faster on AVX512-BF16/AMX). A rigorous rounding-error bound ``B`` gives each
  row a *window* ``s >= max(s) - 2B`` that provably contains the true nearest code. A row with
  one code in its window is done (the usual case in float32); bfloat16 windows hold a handful,
  which are re-scored in float32 by a sampled matmul and settled when the float32 gap exceeds
  its own bound; whatever is still undecided (exact or near ties) is re-ranked with float64
  ``||x - e||^2``.
- **Triton path** (CUDA; CPU too under ``TRITON_INTERPRET=1``; see
  :func:`pyrtok._triton.kernels_enabled`): a fused kernel keeps the distance tiles on chip and
  returns each row's best index and best/second-best score; rows whose two scores are closer
  than ``2B`` (not provably decided) go through the torch path in float64.

Either way the result equals ``argmin`` of float64 brute-force distances except exact float64
ties, which go to the lowest index (as ``torch.argmin``), and memory is bounded by one tile.
"""

from __future__ import annotations

import warnings
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from pyrtok import _triton

Precision = Literal["auto", "fp32", "tf32", "bf16"]
ScorePrecision = Literal["fp32", "tf32", "bf16", "fp64"]

_TILE_BYTES = 1 << 26
"""Score-tile budget: ``chunk_rows * K`` scores take at most 64 MiB (few, large tiles: each
parallel op costs a thread barrier, which hurts on busy machines)."""
_RERANK_ELEMENTS = 1 << 22
"""Float64 re-rank budget: ``pairs * D`` values per slice (32 MiB)."""

_U32 = 2.0**-24
_SAFETY = 2.0


def native_bf16_cpu() -> bool:
    """True when this CPU multiplies bfloat16 natively (AVX512-BF16 or AMX)."""
    cpu = torch.cpu
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(cpu, name, lambda: False)()) for name in checks)


def resolve_precision(
    precision: Precision, device: torch.device, codebook_numel: int = 1 << 30
) -> ScorePrecision:
    """Turn ``"auto"`` into a concrete choice; other values pass through.

    ``"auto"``: ``"tf32"`` on CUDA; ``"bf16"`` on CPUs with native bf16 when the codebook has at
    least ``2**18`` values (``K * D``; below that the matmul is too cheap to be worth the wider
    re-rank windows); ``"fp32"`` otherwise.
    """
    if precision == "auto":
        if device.type == "cuda":
            return "tf32"
        big = codebook_numel >= 1 << 18
        return "bf16" if device.type == "cpu" and big and native_bf16_cpu() else "fp32"
    if precision == "fp32" or precision == "tf32" or precision == "bf16":
        return precision
    raise ValueError(f"precision: expected 'auto', 'fp32', 'tf32' or 'bf16', got {precision!r}")


def score_error_bound(
    x_norm: Tensor, code_norm_max: Tensor, dim: int, precision: ScorePrecision
) -> Tensor:
    """Bound on the rounding error of one computed score ``x.e - ||e||^2 / 2``, per row.

    Accumulation of ``dim + 1`` products errs by at most ``gamma = (dim + 3) u`` (``u = 2**-24``,
    or ``2**-53`` for float64) times the sum of their magnitudes, ``<= |x| |e| + |e|^2 / 2``.
    TF32 adds the rounding of both operands (``2**-10``); bfloat16 adds that of both operands
    (``2**-8``), of the folded ``-|e|^2 / 2`` column and of the bfloat16 result (``2**-9`` each).
    A factor of 2 covers accumulators that are not round-to-nearest; a tiny absolute term covers
    flushed subnormals.

    Args:
        x_norm: ``(N,)`` row norms. code_norm_max: scalar, the largest code norm.
        dim: ``D``. precision: ``"fp32"``, ``"tf32"``, ``"bf16"`` or ``"fp64"``.

    Returns:
        ``(N,)`` float32 bounds.
    """
    gamma = (dim + 3) * (2.0**-53 if precision == "fp64" else _U32)
    dot = {"fp32": 0.0, "tf32": 2.0**-10, "bf16": 3 * 2.0**-9, "fp64": 0.0}[precision]
    bias = 2.0**-9 if precision == "bf16" else 0.0
    cross = x_norm * code_norm_max
    half_sq = 0.5 * code_norm_max.square()
    tiny = (dim + 1) * 2.0**-125 * (1.0 + x_norm + code_norm_max)
    return _SAFETY * ((gamma + dot) * cross + (gamma + bias + dot / 2) * half_sq) + tiny


def _check_inputs(x: Tensor, codebook: Tensor) -> None:
    for name, t in (("x", x), ("codebook", codebook)):
        if not isinstance(t, Tensor):
            raise TypeError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
        if not t.is_floating_point():
            raise TypeError(f"{name}: expected a floating dtype, got {t.dtype}")
        if t.ndim != 2:
            raise ValueError(f"{name}: expected shape (rows, D), got shape {tuple(t.shape)}")
    if x.shape[1] != codebook.shape[1]:
        raise ValueError(
            f"x: expected last dim {codebook.shape[1]} (the codebook's D), got {x.shape[1]}"
        )
    if codebook.shape[0] < 1:
        raise ValueError("codebook: expected at least one code, got 0")
    if x.device != codebook.device:
        raise ValueError(
            f"x: expected the codebook's device {codebook.device}, got device {x.device}"
        )


def _use_triton(device: torch.device, precision: ScorePrecision) -> bool:
    """Whether the fused kernel searches: the shared gate allows it (CUDA, or CPU under
    ``TRITON_INTERPRET=1``; Triton imports; not compiling; not ``PYRTOK_DISABLE_TRITON=1``)
    and the products are not bfloat16 (a torch-path choice)."""
    return precision != "bf16" and _triton.kernels_enabled(device)


def _float32_scores(
    x: Tensor, codebook: Tensor, code_sqnorm: Tensor, rows: Tensor, cols: Tensor
) -> Tensor:
    """Float32 scores ``x[rows] . e[cols] - |e[cols]|^2 / 2`` by a sampled matmul (SDDMM)."""
    n_rows, k = x.shape[0], codebook.shape[0]
    crow = torch.zeros(n_rows + 1, dtype=torch.int64, device=x.device)
    crow[1:] = torch.bincount(rows, minlength=n_rows).cumsum(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
        pattern = torch.sparse_csr_tensor(
            crow, cols, x.new_zeros(cols.shape[0]), size=(n_rows, k), check_invariants=False
        )
        dots: Tensor = torch.sparse.sampled_addmm(pattern, x, codebook.t(), beta=0.0).values()
    return dots - 0.5 * code_sqnorm[cols]


def _pick_candidates(
    x: Tensor,
    codebook: Tensor,
    code_sqnorm: Tensor,
    rows: Tensor,
    cols: Tensor,
    bound32: Tensor | None,
) -> Tensor:
    """Exact winner among candidate pairs ``(rows[i], cols[i])`` (sorted by row) of ``x``'s rows.

    A row is settled when its window holds one code or, with ``bound32`` (windows from
    bfloat16 scores), when the float32 scores of its candidates leave a single best more than
    ``bound32`` ahead. The other rows' candidates are measured as float64 ``||x - e||^2``
    (ties -> lowest index). Rows without candidates get ``K``. Masks are applied by
    arithmetic, so only unsettled rows (rare) cost a compaction.
    """
    n_rows, k = x.shape[0], codebook.shape[0]
    ones = torch.ones_like(rows)
    if bound32 is None:
        if rows.numel() == n_rows and bool(
            (rows == torch.arange(n_rows, device=rows.device)).all()
        ):
            return cols  # one candidate per row: the usual float32 case
        count = torch.zeros(n_rows, dtype=torch.int64, device=x.device).scatter_add_(0, rows, ones)
        index = torch.full((n_rows,), k, device=x.device).scatter_reduce(0, rows, cols, "amin")
        unsettled = count > 1
    else:
        score = _float32_scores(x, codebook, code_sqnorm, rows, cols)
        inf = torch.tensor(float("-inf"), device=x.device)
        best = score.new_full((n_rows,), float("-inf")).scatter_reduce(0, rows, score, "amax")
        is_best = score == best[rows]
        n_best = torch.zeros(n_rows, dtype=torch.int64, device=x.device).scatter_add_(
            0, rows, is_best.long()
        )
        second = score.new_full((n_rows,), float("-inf")).scatter_reduce(
            0, rows, torch.where(is_best, inf, score), "amax"
        )
        index = torch.full((n_rows,), k, device=x.device).scatter_reduce(
            0, rows, torch.where(is_best, cols, k), "amin"
        )
        unsettled = (n_best > 1) | (best - second <= bound32)
    if not bool(unsettled.any()):
        return index
    keep = unsettled[rows]
    rows, cols = rows[keep], cols[keep]
    step = max(1, _RERANK_ELEMENTS // x.shape[1])
    dist = torch.cat(
        [
            (x[rows[s : s + step]].double() - codebook[cols[s : s + step]].double())
            .square()
            .sum(dim=1)
            for s in range(0, len(rows), step)
        ]
    )
    nearest = dist.new_full((n_rows,), float("inf")).scatter_reduce(0, rows, dist, "amin")
    exact = torch.full((n_rows,), k, device=x.device).scatter_reduce(
        0, rows, torch.where(dist == nearest[rows], cols, k), "amin"
    )
    return torch.where(unsettled, exact, index)


_BLOCK = 64
"""Codes per block of the two-level window scan (the codebook is padded to a multiple)."""


def _operands(
    x: Tensor, codebook: Tensor, code_sqnorm: Tensor, precision: ScorePrecision
) -> tuple[Tensor, Tensor, Tensor | None]:
    """``(lhs, rhs_t, bias)``: a tile's scores are ``lhs[tile] @ rhs_t (+ bias)``.

    The codebook is padded with dummy codes of score ``-inf`` up to a multiple of ``_BLOCK``.
    """
    pad = -codebook.shape[0] % _BLOCK
    neg_half_sq = F.pad(-0.5 * code_sqnorm, (0, pad), value=float("-inf"))
    codes = F.pad(codebook, (0, 0, 0, pad))
    if precision == "bf16":  # fold -|e|^2/2 into the matmul as an extra column
        lhs = torch.cat([x, x.new_ones(x.shape[0], 1)], dim=1).bfloat16()
        rhs = torch.cat([codes, neg_half_sq[:, None]], dim=1).bfloat16()
        return lhs, rhs.t(), None
    dtype = torch.float64 if precision == "fp64" else torch.float32
    return x.to(dtype), codes.to(dtype).t(), neg_half_sq.to(dtype)


def _window(
    lhs: Tensor, rhs_t: Tensor, bias: Tensor | None, bound: Tensor
) -> tuple[Tensor, Tensor]:
    """Candidate pairs ``(rows, cols)`` whose score is within ``bound`` of the row's best.

    Two levels, so the full score tile is read once: the maximum of every block of ``_BLOCK``
    codes, then an exact scan of the few blocks whose maximum reaches the threshold.
    """
    scores = torch.mm(lhs, rhs_t) if bias is None else torch.addmm(bias, lhs, rhs_t)
    blocks = scores.view(scores.shape[0], -1, _BLOCK)
    block_top = blocks.amax(dim=2)
    top = block_top.amax(dim=1)
    if scores.dtype == torch.bfloat16:  # round down: the window must not be narrower
        threshold = top.float() - bound
        threshold = (threshold - threshold.abs() * 2.0**-7).to(scores.dtype)
    else:
        threshold = top - bound.to(scores.dtype)
    block_rows, block_ids = (block_top >= threshold[:, None]).nonzero(as_tuple=True)
    hits = blocks[block_rows, block_ids] >= threshold[block_rows, None]
    pick, offset = hits.nonzero(as_tuple=True)
    return block_rows[pick], block_ids[pick] * _BLOCK + offset


def window_search_torch(
    x: Tensor,
    codebook: Tensor,
    code_sqnorm: Tensor,
    precision: ScorePrecision,
    chunk_rows: int | None = None,
) -> Tensor:
    """Torch path: tiled scores, per-row certified window, exact re-rank (see module doc).

    In bfloat16, a tile whose windows average more than ``max(2, K * D / 2**17)`` codes per row
    (clustered data, where re-ranking would cost more than float32 scores) is redone in
    float32, and so are the remaining tiles.

    Args:
        x: ``(N, D)`` float32 (or float64). codebook: ``(K, D)``, same dtype.
        code_sqnorm: ``(K,)`` squared code norms.
        precision: scores in ``"bf16"``, ``"fp64"`` or float32 (anything else).
        chunk_rows: rows per tile (default: 64 MiB of scores).

    Returns:
        ``(N,)`` int64 exact indices.

    Raises:
        ValueError: a row of ``x`` (or a code) is not finite, so no code is nearest.
    """
    n, dim = x.shape
    k = codebook.shape[0]
    precision = precision if precision in ("bf16", "fp64") else "fp32"
    x_norm, code_norm_max = x.norm(dim=1), code_sqnorm.max().sqrt()
    bound32 = 2.0 * score_error_bound(x_norm, code_norm_max, dim, "fp32")
    bound = 2.0 * score_error_bound(x_norm, code_norm_max, dim, precision)
    lhs, rhs_t, bias = _operands(x, codebook, code_sqnorm, precision)
    max_candidates = max(2.0, k * dim / 2**17)
    per_row = lhs.new_empty(0).element_size() * rhs_t.shape[1]
    rows_per_tile = chunk_rows if chunk_rows is not None else max(1, _TILE_BYTES // per_row)
    low_windows = precision == "bf16"
    all_rows, all_cols = [], []
    for start in range(0, n, rows_per_tile):
        stop = min(start + rows_per_tile, n)
        rows, cols = _window(lhs[start:stop], rhs_t, bias, bound[start:stop])
        if precision == "bf16" and rows.numel() > max_candidates * (stop - start):
            precision, bound = "fp32", bound32
            lhs, rhs_t, bias = _operands(x, codebook, code_sqnorm, "fp32")
            rows, cols = _window(lhs[start:stop], rhs_t, bias, bound[start:stop])
        all_rows.append(rows + start)
        all_cols.append(cols)
    # one pass over all candidates (few large ops rather than many small ones per tile)
    index = _pick_candidates(
        x,
        codebook,
        code_sqnorm,
        torch.cat(all_rows),
        torch.cat(all_cols),
        bound32 if low_windows else None,
    )
    missing = (index == k).nonzero().squeeze(1)
    if missing.numel() > 0:
        raise ValueError(
            f"x: expected finite rows and codes, got no nearest code for {missing.numel()} "
            f"row(s) (first: row {int(missing[0])}); check for NaN/Inf"
        )
    return index


def nearest_code(
    x: Tensor,
    codebook: Tensor,
    *,
    code_sqnorm: Tensor | None = None,
    precision: Precision = "auto",
    chunk_rows: int | None = None,
) -> Tensor:
    """Index of the nearest code (squared L2) for every row of ``x``; exact, no ``N x K`` matrix.

    Args:
        x: ``(N, D)`` query vectors, any floating dtype (searched in float32; autocast ignored).
        codebook: ``(K, D)`` codes, same device.
        code_sqnorm: optional ``(K,)`` precomputed ``codebook.float().square().sum(1)``.
        precision: speed hint for the products; the *result is exact for every choice* (low
            precision only widens the windows that are re-ranked). ``"auto"``: TF32 in the CUDA
            kernel, bfloat16 on CPUs with native bf16 for codebooks of ``>= 2**18`` values,
            float32 otherwise (see :func:`resolve_precision`). ``"tf32"`` only
            affects the CUDA kernel (float32 elsewhere); ``"bf16"`` uses the torch path.
        chunk_rows: rows per tile on the torch path (default: 64 MiB of scores).

    Returns:
        ``(N,)`` int64 indices, equal to float64 brute force except exact ties (lowest index).

    Examples:
        >>> import torch
        >>> codes = torch.tensor([[0.0, 0.0], [1.0, 1.0], [4.0, 0.0]])
        >>> nearest_code(torch.tensor([[0.9, 0.8], [3.0, 0.1], [-1.0, 0.0]]), codes)
        tensor([1, 2, 0])
    """
    _check_inputs(x, codebook)
    resolved = resolve_precision(precision, x.device, codebook.numel())
    with torch.autocast(device_type=x.device.type, enabled=False):
        x32 = x.detach().float().contiguous()
        codes32 = codebook.detach().float().contiguous()
        if code_sqnorm is None:
            code_sqnorm = codes32.square().sum(dim=1)
        if x32.shape[0] == 0:
            return torch.empty(0, dtype=torch.int64, device=x.device)
        if not _use_triton(x32.device, resolved):
            return window_search_torch(x32, codes32, code_sqnorm, resolved, chunk_rows)
        return fused_search(x32, codes32, code_sqnorm, resolved)


def fused_search(
    x: Tensor, codebook: Tensor, code_sqnorm: Tensor, precision: ScorePrecision
) -> Tensor:
    """Triton path: fused top-2 kernel, then rows not provably decided are redone in float64.

    Args:
        x: ``(N, D)`` contiguous float32 (CUDA; or CPU under ``TRITON_INTERPRET=1``).
        codebook: ``(K, D)`` contiguous float32. code_sqnorm: ``(K,)`` float32.
        precision: ``"fp32"`` (IEEE products) or ``"tf32"``.

    Returns:
        ``(N,)`` int64 exact indices.
    """
    from pyrtok.quantize.triton_search import top2_scores_triton

    index, best, second = top2_scores_triton(x, codebook, code_sqnorm, precision)
    bound = score_error_bound(x.norm(dim=1), code_sqnorm.max().sqrt(), x.shape[1], precision)
    # NaN gaps (non-finite rows) are undecided too: the float64 path then raises
    undecided = (~(best - second > 2.0 * bound)).nonzero().squeeze(1)
    if undecided.numel() > 0:
        index[undecided] = window_search_torch(x[undecided], codebook, code_sqnorm, "fp64")
    return index

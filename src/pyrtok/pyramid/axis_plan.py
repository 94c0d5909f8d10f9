"""How one-axis REDUCE and EXPAND split into a blocked interior and two small edge matrices.

Along one axis both operators are banded matrices whose rows repeat with a period: REDUCE's
output ``j`` reads inputs ``2j - r ... 2j + r``; EXPAND's outputs ``2j`` and ``2j + 1`` read
coarse samples ``j - 1 ... j + 1`` (5 taps). Grouped into blocks of ``B`` outputs that advance
``S`` inputs, every interior block is the same small ``(B, K)`` matrix applied to a window of
``K`` inputs: a batched matrix product over windows that are strided views (no copy, no padded
input). Only the outputs whose taps reach past an edge differ (reflect-101 folds two taps onto
one sample, ``constant`` drops them, ``circular`` reads the other end); they form two small
dense matrices applied to the few input samples they read.

Everything here is plain Python on ints (no tensors), cached per size: a plan costs nothing
after the first call and traces as constants under ``torch.compile``. A matrix entry is a list of
``(tap index, factor)`` pairs, so the taps themselves (floats or a tensor, possibly one that
requires grad) are applied later by :mod:`.separable`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

Entry = tuple[tuple[int, float], ...]
"""A matrix entry as ``sum factor * taps[tap]`` over its ``(tap, factor)`` pairs."""


@dataclass(frozen=True, eq=False)
class EdgeRows:
    """Outputs ``rows`` computed densely from input samples ``cols``: ``(len(rows), len(cols))``
    entries, row-major."""

    rows: tuple[int, ...]
    cols: tuple[int, ...]
    entries: tuple[Entry, ...]


@dataclass(frozen=True, eq=False)
class AxisPlan:
    """One-axis operator ``n_in -> n_out`` as interior blocks plus edge rows.

    Interior block ``b`` (``0 <= b < blocks``) writes outputs ``out_start + B*b ... + B - 1``
    from inputs ``in_start + S*b ... + K - 1`` through the ``(B, K)`` matrix ``template``
    (row-major entries). ``low``/``high`` hold the outputs before/after the interior.
    Plans compare and hash by identity (:func:`axis_plan` returns one object per key), so
    they key caches cheaply.
    """

    n_in: int
    n_out: int
    block: int
    step: int
    window: int
    out_start: int
    in_start: int
    blocks: int
    template: tuple[Entry, ...]
    low: EdgeRows
    high: EdgeRows


def border_source(position: int, length: int, border: str) -> int | None:
    """Sample index that ``position`` reads under ``border`` (``None``: a zero), any length.

    Examples:
        >>> [border_source(p, 4, "reflect") for p in range(-3, 6)]
        [3, 2, 1, 0, 1, 2, 3, 2, 1]
        >>> border_source(-1, 4, "constant") is None
        True
    """
    if 0 <= position < length:
        return position
    if border == "reflect":
        if length == 1:
            return 0
        period = 2 * (length - 1)
        folded = position % period
        return period - folded if folded >= length else folded
    if border == "replicate":
        return min(max(position, 0), length - 1)
    if border == "circular":
        return position % length
    return None


def _reduce_row(j: int, n: int, length: int, border: str) -> list[tuple[int, int, float]]:
    """``(input, tap, factor)`` of REDUCE output ``j`` (input length ``n``)."""
    radius = length // 2
    row = []
    for k in range(length):
        source = border_source(2 * j + k - radius, n, border)
        if source is not None:
            row.append((source, k, 1.0))
    return row


def _expand_row(m: int, n: int, length: int, border: str) -> list[tuple[int, int, float]]:
    """``(input, tap, factor)`` of EXPAND output ``m`` to ``n`` fine samples (as ``expand_axis``:
    ``reflect`` reflects on the fine grid, the other borders on the coarse samples)."""
    radius, coarse = length // 2, (n + 1) // 2
    row = []
    for k in range(length):
        offset = m + k - radius
        if offset % 2:
            continue
        if border == "reflect":
            fine = border_source(offset, n, "reflect")
            source = None if fine is None else fine // 2
        else:
            source = border_source(offset // 2, coarse, border)
        if source is not None:
            row.append((source, k, 2.0))
    return row


def _entries(row: list[tuple[int, int, float]], cols: tuple[int, ...]) -> tuple[Entry, ...]:
    """Dense entries of ``row`` over ``cols`` (taps that fold onto one sample add up)."""
    by_col: dict[int, list[tuple[int, float]]] = {c: [] for c in cols}
    for source, tap, factor in row:
        by_col[source].append((tap, factor))
    return tuple(tuple(by_col[c]) for c in cols)


def _edge(rows: range, row_of: list[list[tuple[int, int, float]]]) -> EdgeRows:
    cols = tuple(sorted({source for m in rows for source, _, _ in row_of[m]}))
    entries = tuple(e for m in rows for e in _entries(row_of[m], cols))
    return EdgeRows(tuple(rows), cols, entries)


@functools.lru_cache(maxsize=512)
def axis_plan(kind: str, n: int, length: int, border: str, block: int) -> AxisPlan:
    """Plan of ``"reduce"`` (``n -> ceil(n/2)``) or ``"expand"`` (``ceil(n/2) -> n``).

    ``n`` is the fine length, ``length`` the (odd) number of taps, ``block`` the interior block
    in periods (a period is one REDUCE output or two EXPAND outputs).

    Examples:
        >>> plan = axis_plan("reduce", 512, 5, "reflect", 1)
        >>> plan.blocks, plan.low.rows, plan.high.rows
        (254, (0,), (255,))
    """
    coarse = (n + 1) // 2
    if kind == "reduce":
        n_in, n_out, per_out, per_in = n, coarse, 1, 2
        row_of = [_reduce_row(j, n, length, border) for j in range(n_out)]
    else:
        n_in, n_out, per_out, per_in = coarse, n, 2, 1
        row_of = [_expand_row(m, n, length, border) for m in range(n_out)]
    size, step = per_out * block, per_in * block
    # Unfolded positions: REDUCE output j reads 2j + k - r; EXPAND output 2j + p reads
    # j + (p + k - r) // 2. A block is interior when no position leaves [0, n_in).
    radius = length // 2
    lo = -radius if kind == "reduce" else -(radius // 2)
    window = step - per_in + (2 * radius if kind == "reduce" else radius) + 1
    first = -(lo // step) if lo < 0 else 0  # first block whose window starts at >= 0
    count = n_out // size
    last = min(count, (n_in - window - lo) // step + 1) if n_in - window - lo >= 0 else 0
    blocks = max(0, last - first)
    if blocks == 0:
        everything = _edge(range(n_out), row_of)
        empty = EdgeRows((), (), ())
        return AxisPlan(n_in, n_out, size, step, window, 0, 0, 0, (), everything, empty)
    out_start, in_start = size * first, step * first + lo
    template = tuple(
        e
        for m in range(out_start, out_start + size)
        for e in _entries(row_of[m], tuple(range(in_start, in_start + window)))
    )
    out_end = out_start + size * blocks
    return AxisPlan(
        n_in,
        n_out,
        size,
        step,
        window,
        out_start,
        in_start,
        blocks,
        template,
        _edge(range(out_start), row_of),
        _edge(range(out_end, n_out), row_of),
    )

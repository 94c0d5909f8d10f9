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

from pyrtok.pyramid.borders import border_source

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


Row = list[tuple[int, int, float]]
"""One output of an operator: its ``(input, tap, factor)`` terms."""

ADJOINT = {
    "reduce": "reduce_adjoint",
    "reduce_adjoint": "reduce",
    "expand": "expand_adjoint",
    "expand_adjoint": "expand",
}
"""The kind whose matrix is the transpose of each kind's (the backward pass)."""


def operator_rows(kind: str, n: int, length: int, border: str) -> tuple[list[Row], int, int, int]:
    """Rows of the ``kind`` operator for fine length ``n``, its input length, and its period:
    ``per_out`` outputs advance ``per_in`` inputs. The one place the border rules become
    matrix entries (the Triton path's adjoint tables are built from these rows too).

    Examples:
        >>> rows, n_in, _, _ = operator_rows("reduce", 3, 3, "reflect")
        >>> rows, n_in  # (input, tap, factor): reflect-101 folds tap 0 of output 0 onto input 1
        ([[(1, 0, 1.0), (0, 1, 1.0), (1, 2, 1.0)], [(1, 0, 1.0), (2, 1, 1.0), (1, 2, 1.0)]], 3)
    """
    coarse = (n + 1) // 2
    source_kind = kind.removesuffix("_adjoint")
    if kind not in ADJOINT:
        raise ValueError(f"kind: expected one of {sorted(ADJOINT)}, got {kind!r}")
    if source_kind == "reduce":
        forward = [_reduce_row(j, n, length, border) for j in range(coarse)]
        shape = (coarse, n)
    else:
        forward = [_expand_row(m, n, length, border) for m in range(n)]
        shape = (n, coarse)
    if kind.endswith("_adjoint"):
        transposed: list[Row] = [[] for _ in range(shape[1])]
        for out, row in enumerate(forward):
            for source, tap, factor in row:
                transposed[source].append((out, tap, factor))
        forward, shape = transposed, (shape[1], shape[0])
    per_out, per_in = (1, 2) if kind in ("reduce", "expand_adjoint") else (2, 1)
    return forward, shape[1], per_out, per_in


def _shifted(rows: list[Row], shift: int) -> list[list[tuple[int, int, float]]]:
    return [sorted((c - shift, tap, factor) for c, tap, factor in row) for row in rows]


@functools.lru_cache(maxsize=512)
def axis_plan(kind: str, n: int, length: int, border: str, block: int) -> AxisPlan:
    """Plan of a one-axis operator between fine length ``n`` and coarse length ``ceil(n/2)``.

    ``kind`` is ``"reduce"`` (``n -> ceil(n/2)``), ``"expand"`` (``ceil(n/2) -> n``) or the
    transpose of either (``"reduce_adjoint"``, ``"expand_adjoint"``: their backward passes);
    ``length`` is the (odd) number of taps and ``block`` the periods per interior block (a
    period is one REDUCE output or two EXPAND outputs). The interior is found, not assumed:
    the periods whose rows are the middle period's rows shifted, with every input in range.

    Examples:
        >>> plan = axis_plan("reduce", 512, 5, "reflect", 1)
        >>> plan.blocks, plan.low.rows, plan.high.rows
        (254, (0,), (255,))
        >>> axis_plan("reduce_adjoint", 512, 5, "reflect", 1).blocks  # its backward
        253
    """
    row_of, n_in, per_out, per_in = operator_rows(kind, n, length, border)
    n_out = len(row_of)
    size, step = per_out * block, per_in * block
    periods = n_out // per_out
    middle = periods // 2
    pattern = _shifted(row_of[per_out * middle : per_out * (middle + 1)], per_in * middle)
    columns = [c for row in pattern for c, _, _ in row]
    lo, hi = (min(columns), max(columns)) if columns else (0, 0)

    def regular(p: int) -> bool:
        rows = row_of[per_out * p : per_out * (p + 1)]
        inside = per_in * p + lo >= 0 and per_in * p + hi < n_in
        return inside and _shifted(rows, per_in * p) == pattern

    first = middle
    while first > 0 and regular(first - 1):
        first -= 1
    last = middle
    while last + 1 < periods and regular(last + 1):
        last += 1
    blocks = (last - first + 1) // block if periods > 0 and regular(middle) else 0
    window = per_in * (block - 1) + hi - lo + 1
    if blocks == 0:
        everything = _edge(range(n_out), row_of)
        empty = EdgeRows((), (), ())
        return AxisPlan(n_in, n_out, size, step, window, 0, 0, 0, (), everything, empty)
    out_start, in_start = per_out * first, per_in * first + lo
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

# mypy: ignore-errors
# (Triton reads the parameter annotations of @triton.jit functions itself: `tl.constexpr` marks
# compile-time constants, and Python type hints there would change how arguments specialise.)
"""Triton kernels: the fused pyramid level step, fused EXPAND(+add), and a separable gather.

Layout: every tensor is ``(Z, H, W)`` contiguous (``Z`` = all leading dims flattened). A program
owns a strip of ``BW`` coarse columns (``2 * BW`` fine columns) and ``RB`` coarse rows, and walks
down its rows one coarse row per loop iteration, keeping the rows the 5-tap stencils still need
in registers. Vertical neighbours therefore come from registers; horizontal neighbours come from
loads at five column shifts of the same row, which the L1 cache serves after the first. Fine
rows are read as their even and odd columns (the polyphase planes) in one 1-D layout, so no
zero-stuffed intermediate exists and no value changes layout (no shared-memory round trips).

Taps are symmetric, length <= 5 (``W0, W1, W2, W1, W0``; shorter kernels have ``W0 = 0``, and
zero taps are skipped at compile time so they never read a sample). The border is reflect-101.

The coarse halo: EXPAND reads coarse samples ``-1`` and ``ceil(n/2)``, which reflect-101 maps
(on the fine grid, as ``pyrUp``) to real coarse samples. With symmetric taps, REDUCE evaluated at
such a virtual coarse position from reflected fine samples gives exactly the value of the coarse
sample it maps to (the reflected fine signal is even about the border), so the kernels compute
the halo in place instead of fetching it from another program.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _reflect(i, n):
    """Reflect-101 index into ``[0, n)`` for any integer ``i`` (repeated folding, ``n >= 1``)."""
    period = tl.maximum(2 * (n - 1), 1)
    folded = ((i % period) + period) % period
    return tl.where(folded >= n, period - folded, folded)


@triton.jit
def _reflect_row(i, n, FOLD_ONCE: tl.constexpr):
    """:func:`_reflect` for a row index; with ``FOLD_ONCE`` (``n >= 8``: rows overshoot the
    edges by at most 4) one fold suffices, which saves the loop two integer divisions a row."""
    if FOLD_ONCE:
        i = tl.where(i < 0, -i, i)
        return tl.where(i >= n, 2 * (n - 1) - i, i)
    return _reflect(i, n)


@triton.jit
def _down(
    far_a, near_a, center, near_b, far_b, W0: tl.constexpr, W1: tl.constexpr, W2: tl.constexpr
):
    """One REDUCE output: ``W0*far_a + W1*near_a + W2*center + W1*near_b + W0*far_b``."""
    acc = W2 * center
    if W1 != 0.0:
        acc += W1 * (near_a + near_b)
    if W0 != 0.0:
        acc += W0 * (far_a + far_b)
    return acc


@triton.jit
def _up(prev, cur, nxt, W0: tl.constexpr, W1: tl.constexpr, W2: tl.constexpr):
    """EXPAND along one axis at coarse position ``j``: the fine values at ``2j`` and ``2j+1``."""
    even = (2.0 * W2) * cur
    if W0 != 0.0:
        even += (2.0 * W0) * (prev + nxt)
    if W1 != 0.0:  # noqa: SIM108 (a static branch on a compile-time constant)
        odd = (2.0 * W1) * (cur + nxt)
    else:
        odd = tl.zeros_like(cur)
    return even, odd


@triton.jit
def _row_reduce(
    row,
    em2,
    om2,
    em1,
    om1,
    e0,
    o0,
    ep1,
    op1,
    ep2,
    W0: tl.constexpr,
    W1: tl.constexpr,
    W2: tl.constexpr,
):
    """Horizontal REDUCE of one fine row at coarse columns ``i-1, i, i+1``.

    ``e<s>``/``o<s>`` are the reflected fine column offsets ``2(i+s)`` and ``2(i+s)+1`` for
    ``s = -2..2``. Returns the three reduced vectors and the row's samples at ``2i, 2i+1``.
    """
    x_em2 = tl.load(row + em2).to(tl.float32)
    x_om2 = tl.load(row + om2).to(tl.float32)
    x_em1 = tl.load(row + em1).to(tl.float32)
    x_om1 = tl.load(row + om1).to(tl.float32)
    x_e0 = tl.load(row + e0).to(tl.float32)
    x_o0 = tl.load(row + o0).to(tl.float32)
    x_ep1 = tl.load(row + ep1).to(tl.float32)
    x_op1 = tl.load(row + op1).to(tl.float32)
    x_ep2 = tl.load(row + ep2).to(tl.float32)
    h_m1 = _down(x_em2, x_om2, x_em1, x_om1, x_e0, W0, W1, W2)
    h_0 = _down(x_em1, x_om1, x_e0, x_o0, x_ep1, W0, W1, W2)
    h_p1 = _down(x_e0, x_o0, x_ep1, x_op1, x_ep2, W0, W1, W2)
    return h_m1, h_0, h_p1, x_e0, x_o0


@triton.jit
def _seg_add(v1, s1, v2, s2):
    """Combine of a segmented sum scan: a set start flag ``s2`` restarts the sum."""
    return tl.where(s2 != 0, v2, v1 + v2), s1 | s2


@triton.jit
def _flush_energy(e_row, acc, col0, ncols, group, N: tl.constexpr):
    """Add one patch row's energy: sum ``acc`` (``N`` columns from ``col0``) in groups of ``group``
    columns (one group per patch) and atomically add each group sum to ``e_row[col // group]``."""
    pos = tl.arange(0, N)
    cols = col0 + pos
    start = (cols % group == 0).to(tl.int32)
    end = ((cols + 1) % group == 0) | (pos == N - 1) | (cols == ncols - 1)
    sums, _ = tl.associative_scan((acc, start), 0, _seg_add)
    tl.atomic_add(e_row + cols // group, sums, mask=end & (cols < ncols), sem="relaxed")


@triton.jit
def level_step_kernel(
    g_ptr,
    band_ptr,
    coarse_ptr,
    energy_ptr,
    NH,
    NW,
    MH,
    MW,
    n_col_blocks,
    n_row_blocks,
    channels,
    e_batch_stride,
    e_fine_offset,
    e_coarse_offset,
    PW,
    group_fine,
    group_coarse,
    W0: tl.constexpr,
    W1: tl.constexpr,
    W2: tl.constexpr,
    BW: tl.constexpr,
    RB: tl.constexpr,
    FOLD_ONCE: tl.constexpr,
    WRITE_BAND: tl.constexpr,
    ENERGY_FINE: tl.constexpr,
    ENERGY_COARSE: tl.constexpr,
):
    """One level: ``coarse = REDUCE(g)`` and (if ``WRITE_BAND``) ``band = g - EXPAND(coarse)``.

    ``g``/``band``: ``(Z, NH, NW)``; ``coarse``: ``(Z, MH, MW)``. The coarse values EXPAND reads
    are rounded to the coarse dtype first, as if read back from memory, so ``band`` is exactly
    what reconstruction from the stored ``coarse`` needs. With ``ENERGY_FINE``/``ENERGY_COARSE``
    the squared band/coarse values are also summed per patch (``group`` coefficients per patch
    side) into ``energy[z // channels]`` (float32, atomically).
    """
    pid = tl.program_id(0)
    cb = pid % n_col_blocks
    rb = (pid // n_col_blocks) % n_row_blocks
    z = (pid // (n_col_blocks * n_row_blocks)).to(tl.int64)
    i0 = cb * BW
    j0 = rb * RB
    g = g_ptr + z * NH * NW
    band = band_ptr + z * NH * NW
    coarse = coarse_ptr + z * MH * MW
    e_batch = energy_ptr + (z // channels) * e_batch_stride

    # Reflected fine column offsets 2(i+s) (even) and 2(i+s)+1 (odd), coarse shifts s = -2..2.
    col = i0 + tl.arange(0, BW)
    em2 = _reflect(2 * col - 4, NW)
    om2 = _reflect(2 * col - 3, NW)
    em1 = _reflect(2 * col - 2, NW)
    om1 = _reflect(2 * col - 1, NW)
    e0 = _reflect(2 * col, NW)
    o0 = _reflect(2 * col + 1, NW)
    ep1 = _reflect(2 * col + 2, NW)
    op1 = _reflect(2 * col + 3, NW)
    ep2 = _reflect(2 * col + 4, NW)
    even_col_ok = 2 * col < NW
    odd_col_ok = 2 * col + 1 < NW
    coarse_ok = col < MW
    row_end = tl.minimum(j0 + RB, MH)

    # Rolling window: fine rows 2q-2 (a), 2q-1 (b), 2q (c), each reduced at coarse columns
    # i-1, i, i+1 (_m1, _0, _p1) plus its own even/odd samples (_e, _o).
    q0 = j0 - 1 if WRITE_BAND else j0
    a_m1, a_0, a_p1, a_e, a_o = _row_reduce(
        g + _reflect_row(2 * q0 - 2, NH, FOLD_ONCE) * NW,
        em2,
        om2,
        em1,
        om1,
        e0,
        o0,
        ep1,
        op1,
        ep2,
        W0,
        W1,
        W2,
    )
    b_m1, b_0, b_p1, b_e, b_o = _row_reduce(
        g + _reflect_row(2 * q0 - 1, NH, FOLD_ONCE) * NW,
        em2,
        om2,
        em1,
        om1,
        e0,
        o0,
        ep1,
        op1,
        ep2,
        W0,
        W1,
        W2,
    )
    c_m1, c_0, c_p1, c_e, c_o = _row_reduce(
        g + _reflect_row(2 * q0, NH, FOLD_ONCE) * NW,
        em2,
        om2,
        em1,
        om1,
        e0,
        o0,
        ep1,
        op1,
        ep2,
        W0,
        W1,
        W2,
    )
    # Coarse rows q-2 (p_*) and q-1 (r_*) at three column shifts: EXPAND needs them with row q.
    p_m1 = tl.zeros_like(a_0)
    p_0 = tl.zeros_like(a_0)
    p_p1 = tl.zeros_like(a_0)
    r_m1 = tl.zeros_like(a_0)
    r_0 = tl.zeros_like(a_0)
    r_p1 = tl.zeros_like(a_0)
    acc_e = tl.zeros_like(a_0)  # band energy of the current patch row, even / odd columns
    acc_o = tl.zeros_like(a_0)
    acc_c = tl.zeros_like(a_0)  # coarse-level energy of the current patch row
    cur_f = (2 * j0) // group_fine
    cur_c = j0 // group_coarse
    q_stop = row_end + 1 if WRITE_BAND else row_end
    for q in range(q0, q_stop):
        d_m1, d_0, d_p1, d_e, d_o = _row_reduce(
            g + _reflect_row(2 * q + 1, NH, FOLD_ONCE) * NW,
            em2,
            om2,
            em1,
            om1,
            e0,
            o0,
            ep1,
            op1,
            ep2,
            W0,
            W1,
            W2,
        )
        f_m1, f_0, f_p1, f_e, f_o = _row_reduce(
            g + _reflect_row(2 * q + 2, NH, FOLD_ONCE) * NW,
            em2,
            om2,
            em1,
            om1,
            e0,
            o0,
            ep1,
            op1,
            ep2,
            W0,
            W1,
            W2,
        )
        # Coarse row q, rounded to the stored dtype.
        ty = coarse_ptr.dtype.element_ty
        s_m1 = _down(a_m1, b_m1, c_m1, d_m1, f_m1, W0, W1, W2).to(ty).to(tl.float32)
        s_0 = _down(a_0, b_0, c_0, d_0, f_0, W0, W1, W2).to(ty).to(tl.float32)
        s_p1 = _down(a_p1, b_p1, c_p1, d_p1, f_p1, W0, W1, W2).to(ty).to(tl.float32)
        coarse_row_ok = (q >= j0) & (q < row_end)
        tl.store(coarse + q * MW + col, s_0, mask=coarse_ok & coarse_row_ok)
        if ENERGY_COARSE:
            if coarse_row_ok & (q // group_coarse != cur_c):
                _flush_energy(
                    e_batch + e_coarse_offset + cur_c * PW, acc_c, i0, MW, group_coarse, BW
                )
                acc_c = tl.zeros_like(acc_c)
                cur_c = q // group_coarse
            acc_c += tl.where(coarse_ok & coarse_row_ok, s_0 * s_0, 0.0)
        if WRITE_BAND:
            # Band rows 2p (fine row a) and 2p+1 (fine row b), p = q-1, minus EXPAND of coarse
            # rows q-2 (p_*), q-1 (r_*) and q (s_*): first along rows, then along columns.
            p = q - 1
            ve_m1, vo_m1 = _up(p_m1, r_m1, s_m1, W0, W1, W2)
            ve_0, vo_0 = _up(p_0, r_0, s_0, W0, W1, W2)
            ve_p1, vo_p1 = _up(p_p1, r_p1, s_p1, W0, W1, W2)
            x_ee, x_eo = _up(ve_m1, ve_0, ve_p1, W0, W1, W2)
            x_oe, x_oo = _up(vo_m1, vo_0, vo_p1, W0, W1, W2)
            band_ty = band_ptr.dtype.element_ty
            l_ee = (a_e - x_ee).to(band_ty)
            l_eo = (a_o - x_eo).to(band_ty)
            l_oe = (b_e - x_oe).to(band_ty)
            l_oo = (b_o - x_oo).to(band_ty)
            p_ok = p >= j0
            even_row_ok = p_ok & (2 * p < NH)
            odd_row_ok = p_ok & (2 * p + 1 < NH)
            even_row = band + (2 * p) * NW
            odd_row = band + (2 * p + 1) * NW
            tl.store(even_row + 2 * col, l_ee, mask=even_row_ok & even_col_ok)
            tl.store(even_row + 2 * col + 1, l_eo, mask=even_row_ok & odd_col_ok)
            tl.store(odd_row + 2 * col, l_oe, mask=odd_row_ok & even_col_ok)
            tl.store(odd_row + 2 * col + 1, l_oo, mask=odd_row_ok & odd_col_ok)
            if ENERGY_FINE:
                if even_row_ok & ((2 * p) // group_fine != cur_f):
                    _flush_energy(
                        e_batch + e_fine_offset + cur_f * PW,
                        tl.reshape(tl.join(acc_e, acc_o), [2 * BW]),
                        2 * i0,
                        NW,
                        group_fine,
                        2 * BW,
                    )
                    acc_e = tl.zeros_like(acc_e)
                    acc_o = tl.zeros_like(acc_o)
                    cur_f = (2 * p) // group_fine
                acc_e += _square(l_ee, even_row_ok & even_col_ok)
                acc_o += _square(l_eo, even_row_ok & odd_col_ok)
                if odd_row_ok & ((2 * p + 1) // group_fine != cur_f):
                    _flush_energy(
                        e_batch + e_fine_offset + cur_f * PW,
                        tl.reshape(tl.join(acc_e, acc_o), [2 * BW]),
                        2 * i0,
                        NW,
                        group_fine,
                        2 * BW,
                    )
                    acc_e = tl.zeros_like(acc_e)
                    acc_o = tl.zeros_like(acc_o)
                    cur_f = (2 * p + 1) // group_fine
                acc_e += _square(l_oe, odd_row_ok & even_col_ok)
                acc_o += _square(l_oo, odd_row_ok & odd_col_ok)
            p_m1, p_0, p_p1 = r_m1, r_0, r_p1
            r_m1, r_0, r_p1 = s_m1, s_0, s_p1
        a_m1, a_0, a_p1, a_e, a_o = c_m1, c_0, c_p1, c_e, c_o
        b_m1, b_0, b_p1, b_e, b_o = d_m1, d_0, d_p1, d_e, d_o
        c_m1, c_0, c_p1, c_e, c_o = f_m1, f_0, f_p1, f_e, f_o
    if ENERGY_FINE:
        _flush_energy(
            e_batch + e_fine_offset + cur_f * PW,
            tl.reshape(tl.join(acc_e, acc_o), [2 * BW]),
            2 * i0,
            NW,
            group_fine,
            2 * BW,
        )
    if ENERGY_COARSE:
        _flush_energy(e_batch + e_coarse_offset + cur_c * PW, acc_c, i0, MW, group_coarse, BW)


@triton.jit
def _square(value, ok):
    """``value**2`` in float32 where ``ok``, else 0."""
    v = value.to(tl.float32)
    return tl.where(ok, v * v, 0.0)


@triton.jit
def expand_kernel(
    coarse_ptr,
    band_ptr,
    out_ptr,
    NH,
    NW,
    MH,
    MW,
    n_col_blocks,
    n_row_blocks,
    W0: tl.constexpr,
    W1: tl.constexpr,
    W2: tl.constexpr,
    BW: tl.constexpr,
    RB: tl.constexpr,
    FOLD_ONCE: tl.constexpr,
    HAS_BAND: tl.constexpr,
):
    """``out = EXPAND(coarse)`` (+ ``band`` if ``HAS_BAND``): one reconstruction level, fused.

    ``coarse``: ``(Z, MH, MW)``; ``band``/``out``: ``(Z, NH, NW)``. Coarse samples beyond the
    edge are fetched at their reflect-101 images (reflected on the fine grid, as ``pyrUp``).
    """
    pid = tl.program_id(0)
    cb = pid % n_col_blocks
    rb = (pid // n_col_blocks) % n_row_blocks
    z = (pid // (n_col_blocks * n_row_blocks)).to(tl.int64)
    i0 = cb * BW
    j0 = rb * RB
    coarse = coarse_ptr + z * MH * MW
    band = band_ptr + z * NH * NW
    out = out_ptr + z * NH * NW

    col = i0 + tl.arange(0, BW)
    even_col_ok = 2 * col < NW
    odd_col_ok = 2 * col + 1 < NW
    c_m1 = _reflect(2 * (col - 1), NW) // 2
    c_0 = _reflect(2 * col, NW) // 2
    c_p1 = _reflect(2 * (col + 1), NW) // 2
    row = coarse + (_reflect_row(2 * (j0 - 1), NH, FOLD_ONCE) // 2) * MW
    a_m1 = tl.load(row + c_m1).to(tl.float32)
    a_0 = tl.load(row + c_0).to(tl.float32)
    a_p1 = tl.load(row + c_p1).to(tl.float32)
    row = coarse + (_reflect_row(2 * j0, NH, FOLD_ONCE) // 2) * MW
    b_m1 = tl.load(row + c_m1).to(tl.float32)
    b_0 = tl.load(row + c_0).to(tl.float32)
    b_p1 = tl.load(row + c_p1).to(tl.float32)
    out_ty = out_ptr.dtype.element_ty
    for q in range(j0 + 1, tl.minimum(j0 + RB, MH) + 1):
        row = coarse + (_reflect_row(2 * q, NH, FOLD_ONCE) // 2) * MW
        s_m1 = tl.load(row + c_m1).to(tl.float32)
        s_0 = tl.load(row + c_0).to(tl.float32)
        s_p1 = tl.load(row + c_p1).to(tl.float32)
        p = q - 1
        ve_m1, vo_m1 = _up(a_m1, b_m1, s_m1, W0, W1, W2)
        ve_0, vo_0 = _up(a_0, b_0, s_0, W0, W1, W2)
        ve_p1, vo_p1 = _up(a_p1, b_p1, s_p1, W0, W1, W2)
        x_ee, x_eo = _up(ve_m1, ve_0, ve_p1, W0, W1, W2)
        x_oe, x_oo = _up(vo_m1, vo_0, vo_p1, W0, W1, W2)
        even_row_ok = 2 * p < NH
        odd_row_ok = 2 * p + 1 < NH
        ok_ee = even_row_ok & even_col_ok
        ok_eo = even_row_ok & odd_col_ok
        ok_oe = odd_row_ok & even_col_ok
        ok_oo = odd_row_ok & odd_col_ok
        even_off = (2 * p) * NW + 2 * col
        odd_off = (2 * p + 1) * NW + 2 * col
        if HAS_BAND:
            x_ee += tl.load(band + even_off, mask=ok_ee, other=0.0).to(tl.float32)
            x_eo += tl.load(band + even_off + 1, mask=ok_eo, other=0.0).to(tl.float32)
            x_oe += tl.load(band + odd_off, mask=ok_oe, other=0.0).to(tl.float32)
            x_oo += tl.load(band + odd_off + 1, mask=ok_oo, other=0.0).to(tl.float32)
        tl.store(out + even_off, x_ee.to(out_ty), mask=ok_ee)
        tl.store(out + even_off + 1, x_eo.to(out_ty), mask=ok_eo)
        tl.store(out + odd_off, x_oe.to(out_ty), mask=ok_oe)
        tl.store(out + odd_off + 1, x_oo.to(out_ty), mask=ok_oo)
        a_m1, a_0, a_p1 = b_m1, b_0, b_p1
        b_m1, b_0, b_p1 = s_m1, s_0, s_p1


@triton.jit
def separable_gather_kernel(
    src_ptr,
    add_ptr,
    out_ptr,
    row_index,
    row_weight,
    col_index,
    col_weight,
    H_in,
    W_in,
    H_out,
    W_out,
    n_col_blocks,
    n_row_blocks,
    scale,
    A: tl.constexpr,
    B: tl.constexpr,
    BH: tl.constexpr,
    BC: tl.constexpr,
    HAS_ADD: tl.constexpr,
):
    """``out = add + scale * (R (x) C) src`` for sparse one-axis matrices given as gather tables.

    ``src``: ``(Z, H_in, W_in)``; ``add``/``out``: ``(Z, H_out, W_out)``; ``R``: ``(H_out, A)``
    index/weight tables; ``C``: ``(W_out, B)``. Index ``-1`` marks padding (never read).
    """
    pid = tl.program_id(0)
    cb = pid % n_col_blocks
    rb = (pid // n_col_blocks) % n_row_blocks
    z = (pid // (n_col_blocks * n_row_blocks)).to(tl.int64)
    rows = rb * BH + tl.arange(0, BH)[:, None]  # (BH, 1): tables load straight into the
    cols = cb * BC + tl.arange(0, BC)[None, :]  # tile's layout, no conversions
    row_ok = rows < H_out
    col_ok = cols < W_out
    src = src_ptr + z * H_in * W_in
    acc = tl.zeros([BH, BC], tl.float32)
    for a in tl.static_range(A):
        ri = tl.load(row_index + rows * A + a, mask=row_ok, other=-1)
        rw = tl.load(row_weight + rows * A + a, mask=row_ok, other=0.0)
        part = tl.zeros([BH, BC], tl.float32)
        for b in tl.static_range(B):
            ci = tl.load(col_index + cols * B + b, mask=col_ok, other=-1)
            cw = tl.load(col_weight + cols * B + b, mask=col_ok, other=0.0)
            x = tl.load(src + ri * W_in + ci, mask=(ri >= 0) & (ci >= 0), other=0.0)
            part += cw * x.to(tl.float32)
        acc += rw * part
    acc = acc * scale
    offs = z * H_out * W_out + rows * W_out + cols
    ok = row_ok & col_ok
    if HAS_ADD:
        acc += tl.load(add_ptr + offs, mask=ok, other=0.0).to(tl.float32)
    tl.store(out_ptr + offs, acc.to(out_ptr.dtype.element_ty), mask=ok)

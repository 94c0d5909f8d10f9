"""Multi-scale residual visual tokens: coarse tokens plus ``fine - upsample(coarser)`` per level."""

from __future__ import annotations

import itertools

import torch
from einops import repeat
from torch import Tensor


def residual_grids(grids: list[Tensor]) -> list[Tensor]:
    """Coarse grid unchanged, then each finer grid minus its parent grid upsampled 2x (nearest:
    a token minus the token of the region that contains it).

    Args:
        grids: ``L`` feature grids, coarsest first; grid ``s`` is ``(B, h * 2**s, w * 2**s, D)``.

    Returns:
        ``L`` grids of the same shapes: ``[G_0, G_1 - up(G_0), ..., G_{L-1} - up(G_{L-2})]``.

    Examples:
        >>> coarse, fine = torch.ones(1, 1, 1, 2), torch.arange(8.0).reshape(1, 2, 2, 2)
        >>> residual_grids([coarse, fine])[1][0, :, :, 0]
        tensor([[-1.,  1.],
                [ 3.,  5.]])
    """
    out = [grids[0]]
    for coarser, finer in itertools.pairwise(grids):
        if finer.shape[1:3] != (2 * coarser.shape[1], 2 * coarser.shape[2]):
            raise ValueError(
                f"grids: each grid must be twice the size of the previous one, got "
                f"{tuple(coarser.shape[1:3])} then {tuple(finer.shape[1:3])}"
            )
        out.append(finer - repeat(coarser, "b h w d -> b (h 2) (w 2) d"))
    return out


def gather_tokens(
    grids: list[Tensor], keep: list[Tensor], prefix: Tensor | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """Flatten the kept tokens of every scale into one padded sequence per image, coarse first.

    Args:
        grids: ``L`` grids ``(B, h_s, w_s, D)``, coarsest first.
        keep: ``L`` bool maps ``(B, h_s, w_s)``.
        prefix: optional ``(B, P, D)`` tokens put first (scale 0), e.g. the coarse CLS.

    Returns:
        ``tokens (B, N, D)`` (each row's kept tokens first, zeros after), ``mask (B, N)`` and
        ``scales (B, N)`` int64 (scale of each token; 0 on padding), ``N`` = most kept tokens.

    Examples:
        >>> grids = [torch.ones(2, 1, 1, 3), torch.zeros(2, 2, 2, 3)]
        >>> keep = [torch.ones(2, 1, 1, dtype=torch.bool), torch.tensor([[[1, 0], [0, 0]],
        ...     [[1, 1], [1, 1]]]).bool()]
        >>> tokens, mask, scales = gather_tokens(grids, keep)
        >>> mask.sum(1).tolist(), scales[1].tolist()
        ([2, 5], [0, 1, 1, 1, 1])
    """
    flat = [g.flatten(1, 2) for g in grids]
    flat_keep = [k.flatten(1) for k in keep]
    scale_ids = [torch.full_like(k, s, dtype=torch.long) for s, k in enumerate(flat_keep)]
    if prefix is not None and prefix.shape[1] > 0:
        flat.insert(0, prefix)
        flat_keep.insert(0, torch.ones(prefix.shape[:2], dtype=torch.bool, device=prefix.device))
        scale_ids.insert(0, torch.zeros(prefix.shape[:2], dtype=torch.long, device=prefix.device))
    values = torch.cat(flat, dim=1)
    kept = torch.cat(flat_keep, dim=1)
    tokens, mask = compact(values, kept)
    scales, _ = compact(torch.cat(scale_ids, dim=1), kept)
    return tokens, mask, scales


def compact(values: Tensor, mask: Tensor, left_pad: bool = False) -> tuple[Tensor, Tensor]:
    """Move each row's masked entries together (order kept), padding after (or before).

    Args:
        values: ``(B, T, ...)``.
        mask: ``(B, T)`` bool.
        left_pad: pad on the left instead of the right.

    Returns:
        ``(B, N, ...)`` with zeros on padding, and the ``(B, N)`` mask, ``N = max row count``.

    Examples:
        >>> keep = torch.tensor([[0, 1, 1], [1, 0, 0]]).bool()
        >>> v, m = compact(torch.tensor([[1, 2, 3], [4, 5, 6]]), keep)
        >>> v.tolist(), m.tolist()
        ([[2, 3], [4, 0]], [[True, True], [True, False]])
    """
    counts = mask.sum(dim=1)
    width = int(counts.max()) if counts.numel() else 0
    rank = mask.long().cumsum(dim=1) - 1
    if left_pad:
        rank = rank + (width - counts)[:, None]
    rows, cols = mask.nonzero(as_tuple=True)
    out = values.new_zeros((values.shape[0], width, *values.shape[2:]))
    out = out.index_put((rows, rank[rows, cols]), values[rows, cols])
    positions = torch.arange(width, device=mask.device)[None, :]
    start = (width - counts)[:, None] if left_pad else torch.zeros_like(counts)[:, None]
    new_mask = (positions >= start) & (positions < start + counts[:, None])
    return out, new_mask

"""LapLoss: a multiscale image loss over Laplacian-pyramid bands."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal, overload

import torch
from torch import Tensor, nn

from pyrtok.pyramid.borders import check_border
from pyrtok.pyramid.checks import check_image
from pyrtok.pyramid.functional import gaussian_pyramid, laplacian_pyramid
from pyrtok.pyramid.kernels import KernelLike, resolve_kernel, taps_as_tensor

DISTANCES = ("l1", "l2", "charbonnier")
REDUCTIONS = ("mean", "sum", "none")


def _level_weights(levels: int, weights: Sequence[float] | None) -> tuple[float, ...]:
    if isinstance(levels, bool) or not isinstance(levels, int) or levels < 1:
        raise ValueError(f"levels: expected an int >= 1, got {levels!r}")
    if weights is None:
        return tuple(0.5**k for k in range(levels))
    values = tuple(float(w) for w in weights)
    if len(values) != levels:
        raise ValueError(
            f"weights: need one weight per pyramid level ({levels}, the last for the low-pass "
            f"residual), got {len(values)}: {values}"
        )
    return values


def _distance(difference: Tensor, distance: str, eps: float) -> Tensor:
    if distance == "l1":
        return difference.abs()
    if distance == "l2":
        return difference.square()
    return (difference.square() + eps * eps).sqrt()


def _check_options(distance: str, reduction: str, border: str) -> None:
    if distance not in DISTANCES:
        raise ValueError(f"distance: unknown name {distance!r}; valid names are {list(DISTANCES)}")
    if reduction not in REDUCTIONS:
        raise ValueError(
            f"reduction: unknown name {reduction!r}; valid names are {list(REDUCTIONS)}"
        )
    check_border(border)


def _check_inputs(input: Tensor, target: Tensor, mask: Tensor | None, reduction: str) -> None:
    check_image(input, "input")
    check_image(target, "target")
    if input.shape != target.shape:
        raise ValueError(
            f"target: expected the shape of input {tuple(input.shape)}, got {tuple(target.shape)}"
        )
    if reduction == "none" and input.ndim < 3:
        raise ValueError(
            f"reduction: 'none' returns one loss per sample along dim 0 and needs input of shape "
            f"(B, ..., H, W) with at least 3 dims, got {tuple(input.shape)}"
        )
    if mask is not None:
        if not isinstance(mask, Tensor):
            raise TypeError(f"mask: expected a tensor or None, got {type(mask).__name__}")
        fits = mask.ndim <= input.ndim and all(
            m in (1, n) for m, n in zip(reversed(mask.shape), reversed(input.shape), strict=False)
        )
        if not fits:
            raise ValueError(
                f"mask: shape {tuple(mask.shape)} does not broadcast to input shape "
                f"{tuple(input.shape)}"
            )


@overload
def lap_loss(
    input: Tensor,
    target: Tensor,
    levels: int = ...,
    weights: Sequence[float] | None = ...,
    distance: str = ...,
    include_residual: bool = ...,
    reduction: str = ...,
    mask: Tensor | None = ...,
    eps: float = ...,
    kernel: KernelLike = ...,
    border: str = ...,
    *,
    return_terms: Literal[False] = ...,
) -> Tensor: ...
@overload
def lap_loss(
    input: Tensor,
    target: Tensor,
    levels: int = ...,
    weights: Sequence[float] | None = ...,
    distance: str = ...,
    include_residual: bool = ...,
    reduction: str = ...,
    mask: Tensor | None = ...,
    eps: float = ...,
    kernel: KernelLike = ...,
    border: str = ...,
    *,
    return_terms: Literal[True],
) -> tuple[Tensor, Tensor]: ...
def lap_loss(
    input: Tensor,
    target: Tensor,
    levels: int = 4,
    weights: Sequence[float] | None = None,
    distance: str = "l1",
    include_residual: bool = True,
    reduction: str = "mean",
    mask: Tensor | None = None,
    eps: float = 1e-3,
    kernel: KernelLike = "binom5",
    border: str = "reflect",
    *,
    return_terms: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """Weighted sum over pyramid levels of a distance between Laplacian bands.

    ``sum_k weights[k] * D(L_k(input), L_k(target))`` with ``D`` the mean (or sum) of ``|d|``,
    ``d**2`` or ``sqrt(d**2 + eps**2)``. The target's pyramid carries no gradient. Since the
    pyramid is linear, one pyramid of ``input - target`` is built instead of two.

    Args:
        input: ``(..., H, W)`` prediction.
        target: same shape as ``input``.
        levels: pyramid levels (bands + low-pass residual).
        weights: one per level, finest first; default ``0.5**k``, i.e.
            ``(1.0, 0.5, 0.25, 0.125)`` at 4 levels.
        distance: ``"l1"``, ``"l2"`` (squared error) or ``"charbonnier"``.
        include_residual: count the low-pass residual (the last level) or only the bands.
        reduction: ``"mean"`` (per-level mean), ``"sum"`` (per-level sum) or ``"none"``
            (per-level mean for each sample along dim 0).
        mask: optional weights in [0, 1] broadcastable to ``input`` (e.g. ``(B, 1, H, W)``);
            level ``k`` uses the mask's own Gaussian level ``k``. Masked-out pixels still
            influence the bands of nearby pixels through the filter's support.
        eps: Charbonnier's smoothing constant.
        kernel: as in :func:`~pyrtok.pyr_down`.
        border: as in :func:`~pyrtok.pyr_down`.
        return_terms: also return the unweighted per-level terms, for logging.

    Returns:
        The loss: a scalar, or ``(B,)`` for ``reduction="none"``. With ``return_terms``, also the
        terms: ``(T,)`` or ``(B, T)``, ``T = levels`` (``levels - 1`` without the residual).

    Examples:
        >>> pred, target = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
        >>> loss, terms = lap_loss(pred, target, return_terms=True)
        >>> loss.shape, terms.shape
        (torch.Size([]), torch.Size([4]))
    """
    level_weights = _level_weights(levels, weights)
    _check_options(distance, reduction, border)
    _check_inputs(input, target, mask, reduction)
    resolve_kernel(kernel)
    bands = laplacian_pyramid(input - target.detach(), levels, kernel, border)
    masks = None
    if mask is not None:
        full_mask = mask.to(torch.float32).expand(input.shape)
        masks = gaussian_pyramid(full_mask, levels, kernel, border)
    count = levels if include_residual else levels - 1
    first_dim = 1 if reduction == "none" else 0
    terms = []
    for k in range(count):
        band = bands[k].to(torch.promote_types(bands[k].dtype, torch.float32))
        per_element = _distance(band, distance, eps)
        dims = tuple(range(first_dim, per_element.ndim))
        if masks is None:
            total = per_element.sum(dim=dims)
            if reduction != "sum":
                total = total / math.prod(per_element.shape[first_dim:])
        else:
            weight = masks[k].to(per_element.dtype)
            total = (per_element * weight).sum(dim=dims)
            if reduction != "sum":
                total = total / weight.sum(dim=dims).clamp(min=1e-12)
        terms.append(total)
    stacked = torch.stack(terms, dim=-1)
    loss = (stacked * stacked.new_tensor(level_weights[:count])).sum(dim=-1)
    return (loss, stacked) if return_terms else loss


class LapLoss(nn.Module):
    """Module twin of :func:`lap_loss` (the seed's ``pyramid_loss``).

    Shapes:
        ``input, target: (..., H, W)``, ``mask`` broadcastable to them -> scalar
        (``(B,)`` for ``reduction="none"``); with ``return_terms`` also the per-level terms.

    Examples:
        >>> criterion = LapLoss(levels=4, distance="charbonnier")
        >>> pred = torch.rand(2, 3, 64, 64, requires_grad=True)
        >>> loss, terms = criterion(pred, torch.rand(2, 3, 64, 64), return_terms=True)
        >>> loss.backward()
        >>> pred.grad.shape, terms.shape
        (torch.Size([2, 3, 64, 64]), torch.Size([4]))
    """

    taps: Tensor

    def __init__(
        self,
        levels: int = 4,
        weights: Sequence[float] | None = None,
        distance: str = "l1",
        include_residual: bool = True,
        reduction: str = "mean",
        eps: float = 1e-3,
        kernel: KernelLike = "binom5",
        border: str = "reflect",
    ) -> None:
        super().__init__()
        self.weights = _level_weights(levels, weights)
        _check_options(distance, reduction, border)
        self.levels = levels
        self.distance = distance
        self.include_residual = include_residual
        self.reduction = reduction
        self.eps = eps
        self.border = border
        self.register_buffer("taps", taps_as_tensor(kernel), persistent=False)

    def forward(
        self,
        input: Tensor,
        target: Tensor,
        mask: Tensor | None = None,
        return_terms: bool = False,
    ) -> Tensor | tuple[Tensor, Tensor]:
        """The loss (and the unweighted per-level terms); see :func:`lap_loss`."""
        loss, terms = lap_loss(
            input,
            target,
            self.levels,
            self.weights,
            self.distance,
            self.include_residual,
            self.reduction,
            mask,
            self.eps,
            self.taps,
            self.border,
            return_terms=True,
        )
        return (loss, terms) if return_terms else loss

    def extra_repr(self) -> str:
        return (
            f"levels={self.levels}, weights={self.weights}, distance={self.distance!r}, "
            f"include_residual={self.include_residual}, reduction={self.reduction!r}"
        )

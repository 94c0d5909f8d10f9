"""Gradient estimators through the non-differentiable code lookup: STE and rotation trick.

Both return a tensor whose forward value is *exactly* ``codes`` (``codes + (t - t) == codes``
bit for bit), so ``q`` always equals the selected code, and route the gradient to ``z``.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

Estimator = Literal["ste", "rotation"]


def straight_through(z: Tensor, codes: Tensor) -> Tensor:
    """Straight-through estimator: value ``codes``, gradient copied to ``z`` unchanged.

    Args:
        z: ``(N, D)`` encoder vectors. codes: ``(N, D)`` selected codes.

    Returns:
        ``(N, D)``: equal to ``codes``; ``d out / d z = I``; no gradient to ``codes``.

    Examples:
        >>> z = torch.tensor([[1.0, 2.0]], requires_grad=True)
        >>> out = straight_through(z, torch.tensor([[0.5, 0.5]]))
        >>> out.sum().backward(); out.detach(), z.grad
        (tensor([[0.5000, 0.5000]]), tensor([[1., 1.]]))
    """
    return codes.detach() + (z - z.detach())


def rotation_trick(z: Tensor, codes: Tensor, eps: float = 1e-12) -> Tensor:
    """Rotation trick (Fifty et al. 2024, arXiv 2410.06424): value ``codes``, gradient rotated.

    ``out = lambda * R z`` with ``R`` the rotation taking ``z/|z|`` to ``codes/|codes|`` (in the
    Householder form ``I - 2 r r^T + 2 c z^T``, ``r`` the normalised bisector) and
    ``lambda = |codes| / |z|``, both treated as constants. The gradient reaching ``z`` is
    ``lambda R^T g``: it keeps the angle between the code and its gradient.

    Args:
        z: ``(N, D)`` encoder vectors. codes: ``(N, D)`` selected codes.
        eps: guard for zero-norm vectors.

    Returns:
        ``(N, D)`` equal to ``codes``; no gradient to ``codes``.

    Examples:
        >>> z = torch.tensor([[2.0, 0.0]], requires_grad=True)
        >>> out = rotation_trick(z, torch.tensor([[0.0, 1.0]]))
        >>> out[0, 1].backward(); out.detach(), z.grad.round(decimals=4)
        (tensor([[0., 1.]]), tensor([[0.5000, 0.0000]]))
    """
    with torch.no_grad():
        z_norm = z.norm(dim=-1, keepdim=True).clamp_min(eps)
        c_norm = codes.norm(dim=-1, keepdim=True)
        z_hat = z / z_norm
        c_hat = codes / c_norm.clamp_min(eps)
        r = z_hat + c_hat
        r = r / r.norm(dim=-1, keepdim=True).clamp_min(eps)
        scale = c_norm / z_norm
    rz = (z * r).sum(dim=-1, keepdim=True)
    zz = (z * z_hat).sum(dim=-1, keepdim=True)
    rotated: Tensor = scale * (z - 2.0 * rz * r + 2.0 * zz * c_hat)
    return codes.detach() + (rotated - rotated.detach())


def apply_estimator(kind: Estimator, z: Tensor, codes: Tensor) -> Tensor:
    """Dispatch to :func:`straight_through` (``"ste"``) or :func:`rotation_trick`."""
    return straight_through(z, codes) if kind == "ste" else rotation_trick(z, codes)

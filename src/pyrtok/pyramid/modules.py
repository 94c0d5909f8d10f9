"""``nn.Module`` twins of the pyramid functions, holding their filter taps as a buffer."""

from __future__ import annotations

from torch import Tensor, nn

from pyrtok.pyramid.borders import check_border
from pyrtok.pyramid.functional import Levels, gaussian_pyramid, laplacian_pyramid, reconstruct
from pyrtok.pyramid.kernels import KernelLike, taps_as_tensor


class _Pyramid(nn.Module):
    taps: Tensor

    def __init__(
        self, levels: Levels = "auto", kernel: KernelLike = "binom5", border: str = "reflect"
    ) -> None:
        super().__init__()
        check_border(border)
        if levels != "auto" and (isinstance(levels, bool) or not isinstance(levels, int)):
            raise TypeError(f"levels: expected an int >= 1 or 'auto', got {levels!r}")
        if isinstance(levels, int) and levels < 1:
            raise ValueError(f"levels: must be >= 1, got {levels}")
        self.levels: Levels = levels
        self.border = border
        self.register_buffer("taps", taps_as_tensor(kernel), persistent=False)

    def extra_repr(self) -> str:
        return f"levels={self.levels!r}, kernel_size={self.taps.shape[0]}, border={self.border!r}"


class GaussianPyramid(_Pyramid):
    """Module twin of :func:`~pyrtok.gaussian_pyramid`.

    The taps live in the ``taps`` buffer, so ``.to(device)`` moves them with the module.

    Shapes:
        ``(..., H, W)`` -> list of ``(..., ceil(H / 2**k), ceil(W / 2**k))``

    Examples:
        >>> import torch
        >>> pyramid = GaussianPyramid(levels=3)
        >>> [tuple(g.shape) for g in pyramid(torch.rand(1, 3, 32, 32))]
        [(1, 3, 32, 32), (1, 3, 16, 16), (1, 3, 8, 8)]
    """

    def forward(self, x: Tensor) -> list[Tensor]:
        return gaussian_pyramid(x, self.levels, self.taps, self.border)


class LaplacianPyramid(_Pyramid):
    """Module twin of :func:`~pyrtok.laplacian_pyramid` with its exact :meth:`inverse`.

    Shapes:
        forward: ``(..., H, W)`` -> ``[L0, ..., G_{L-1}]``; inverse: that list -> ``(..., H, W)``

    Examples:
        >>> import torch
        >>> pyramid = LaplacianPyramid(levels=4)
        >>> x = torch.rand(2, 3, 45, 30)
        >>> bool(torch.allclose(pyramid.inverse(pyramid(x)), x, atol=1e-6))
        True
    """

    def forward(self, x: Tensor) -> list[Tensor]:
        return laplacian_pyramid(x, self.levels, self.taps, self.border)

    def inverse(self, pyramid: list[Tensor] | tuple[Tensor, ...]) -> Tensor:
        return reconstruct(pyramid, self.taps, self.border)

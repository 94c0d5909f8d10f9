"""The projector from vision features into the language model's embedding space."""

from __future__ import annotations

from torch import Tensor, nn


class MLPProjector(nn.Module):
    """LLaVA's projector: ``Linear -> GELU -> Linear``.

    Args:
        in_dim: vision feature size ``D_v``.
        out_dim: the language model's hidden size ``D``.
        hidden_dim: width of the middle layer (default ``out_dim``, as LLaVA).

    Shapes:
        ``(..., D_v) -> (..., D)``.

    Examples:
        >>> import torch
        >>> MLPProjector(32, 64)(torch.randn(2, 5, 32)).shape
        torch.Size([2, 5, 64])
    """

    def __init__(self, in_dim: int, out_dim: int, hidden_dim: int | None = None) -> None:
        super().__init__()
        for name, value in (("in_dim", in_dim), ("out_dim", out_dim)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected a positive int, got {value!r}")
        hidden = out_dim if hidden_dim is None else hidden_dim
        self.linear_1 = nn.Linear(in_dim, hidden)
        self.act = nn.GELU()
        self.linear_2 = nn.Linear(hidden, out_dim)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.linear_2(self.act(self.linear_1(x)))
        return out

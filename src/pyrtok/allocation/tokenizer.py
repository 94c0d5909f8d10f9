"""Mixed-resolution tokens: read each leaf from its Gaussian level, and paint tokens back.

A leaf ``(y, x, size)`` with ``size = min_patch * 2**k`` is the ``min_patch`` x ``min_patch``
patch of Gaussian pyramid level ``k`` at ``(y / 2**k, x / 2**k)``: no resizing, so every token
has ``C * min_patch**2`` values. :func:`detokenize` decodes a token as the pyramid does, with
``k`` EXPAND steps (:func:`~pyrtok.pyr_up`) of the patch alone, and paints it over its box; a
level-0 token is the image patch itself, so full detail gives the image back exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import overload

import torch
from einops import rearrange
from torch import Tensor, nn

from pyrtok.allocation.allocation import Allocation
from pyrtok.allocation.cell_pyramid import cell_pyramid, check_cell_pyramid
from pyrtok.allocation.image_lists import (
    allocation_groups,
    check_allocation_list,
    check_image_list,
    for_image,
    group_by_shape,
)
from pyrtok.allocation.quadtree import check_images
from pyrtok.allocation.scorers import Pyramid
from pyrtok.pyramid import pyr_up

_PATCH_GRID = "b c (rows p) (cols q) -> b rows cols c p q"
"""An image ``(B, C, H, W)`` as its grid of ``p x q`` patches ``(B, rows, cols, C, p, q)``: a
view of a contiguous image, which :func:`tokenize` reads and :func:`detokenize` paints."""


@dataclass(frozen=True, eq=False)
class PackedTokens:
    """Tokens of a batch concatenated, for variable-length attention (``flash_attn_varlen``).

    Attributes:
        tokens: ``(T, C * p * p)``, image after image (``T = lengths.sum()``).
        positions: ``(T, 3)`` as in :class:`TokenizedImages`.
        cu_seqlens: ``(B + 1,)`` int32 offsets: image ``b`` is ``tokens[cu[b]:cu[b + 1]]``.
        max_seqlen: the longest image's token count.
    """

    tokens: Tensor
    positions: Tensor
    cu_seqlens: Tensor
    max_seqlen: int

    def unpack(self) -> tuple[Tensor, Tensor, Tensor]:
        """Back to padded ``tokens (B, N, D)``, ``positions (B, N, 3)``, ``mask (B, N)``."""
        lengths = self.cu_seqlens.diff().long()
        count = self.max_seqlen
        mask = torch.arange(count, device=lengths.device)[None, :] < lengths[:, None]
        tokens = self.tokens.new_zeros((lengths.shape[0], count, self.tokens.shape[-1]))
        positions = self.positions.new_zeros((lengths.shape[0], count, 3))
        tokens[mask] = self.tokens
        positions[mask] = self.positions
        return tokens, positions, mask


@dataclass(frozen=True, eq=False)
class TokenizedImages:
    """Padded token batch.

    Attributes:
        tokens: ``(B, N, C * p * p)``, ``p = min_patch``; each token flattened ``(C, p, p)``.
        positions: ``(B, N, 3)``: centre ``y / H`` and centre ``x / W`` of the box clipped to
            the image, and side ``size / max(H, W)`` (``H, W`` the image size): all in
            ``[0, 1]``; zeros where masked.
        mask: ``(B, N)`` bool, False on padding.
    """

    tokens: Tensor
    positions: Tensor
    mask: Tensor

    def pack(self) -> PackedTokens:
        """Drop the padding: concatenated tokens plus ``cu_seqlens``.

        Examples:
            >>> from pyrtok.allocation import allocate
            >>> x = torch.rand(2, 3, 64, 64)
            >>> packed = tokenize(x, allocate(x, 7, min_patch=16, max_patch=32)).pack()
            >>> packed.tokens.shape, packed.cu_seqlens.tolist()
            (torch.Size([14, 768]), [0, 7, 14])
        """
        lengths = self.mask.sum(dim=1)
        cu_seqlens = torch.zeros(lengths.shape[0] + 1, dtype=torch.int32, device=lengths.device)
        cu_seqlens[1:] = lengths.cumsum(0)
        return PackedTokens(
            tokens=self.tokens[self.mask],
            positions=self.positions[self.mask],
            cu_seqlens=cu_seqlens,
            max_seqlen=int(lengths.max()),
        )


def _check_pair(images: Tensor, allocation: Allocation) -> None:
    if not isinstance(allocation, Allocation):
        raise TypeError(f"allocation: expected an Allocation, got {type(allocation).__name__}")
    check_images(images)
    height, width = allocation.image_size
    if tuple(images.shape[-2:]) != (height, width):
        raise ValueError(
            f"images: the allocation was made for {height}x{width} images, got "
            f"{images.shape[-2]}x{images.shape[-1]}; allocate again for this size"
        )
    if images.shape[0] != allocation.batch_size:
        raise ValueError(
            f"images: the allocation holds {allocation.batch_size} images, got a batch of "
            f"{images.shape[0]}"
        )
    if images.device != allocation.device:
        raise ValueError(
            f"images: on {images.device} but the allocation is on {allocation.device}; use "
            f"allocation.to(images.device)"
        )


def _leaf_index(allocation: Allocation, level: int) -> tuple[Tensor, Tensor]:
    image, slot = ((allocation.leaf_level == level) & allocation.mask).nonzero(as_tuple=True)
    return image, slot


def token_positions(allocation: Allocation) -> Tensor:
    """``(B, N, 3)`` normalised centre ``(y, x)`` of each leaf's box clipped to the image, and
    its side (see :class:`TokenizedImages`).

    Examples:
        >>> from pyrtok.allocation import allocate
        >>> a = allocate(torch.rand(1, 3, 40, 32), budget=6, min_patch=16, max_patch=16)
        >>> [round(v, 4) for v in token_positions(a)[0, -1].tolist()]  # rows 32..39 of 40
        [0.9, 0.75, 0.4]
    """
    height, width = allocation.image_size
    boxes = allocation.boxes.to(torch.float32)
    size = boxes[..., 2]
    bottom = torch.clamp(boxes[..., 0] + size, max=height)
    right = torch.clamp(boxes[..., 1] + size, max=width)
    positions = torch.stack(
        [
            (boxes[..., 0] + bottom) / (2 * height),
            (boxes[..., 1] + right) / (2 * width),
            size / max(height, width),
        ],
        dim=-1,
    )
    return positions * allocation.mask[..., None]


def tokenize(
    images: Tensor | list[Tensor] | tuple[Tensor, ...],
    allocation: Allocation | list[Allocation] | tuple[Allocation, ...],
    pyramid: Pyramid = None,
) -> TokenizedImages:
    """Read every leaf of ``allocation`` from the Gaussian pyramid of ``images``.

    Differentiable with respect to ``images`` (through ``pyramid`` when given).

    Args:
        images: ``(B, C, H, W)``, the size (and batch, device) the allocation was made for;
            or a list of ``(C, H, W)`` images of different sizes.
        allocation: from :func:`~pyrtok.allocation.allocate` (for a list: its list of
            per-image allocations).
        pyramid: the images' :func:`~pyrtok.allocation.cell_pyramid`, if already built (e.g.
            for the allocator): read instead of building a new one (not for a list).

    Returns:
        :class:`TokenizedImages` with ``tokens (B, N, C * p * p)`` in the dtype of ``images``.

    Examples:
        >>> from pyrtok.allocation import allocate
        >>> x = torch.rand(2, 3, 128, 96)
        >>> out = tokenize(x, allocate(x, budget=24, min_patch=16, max_patch=64))
        >>> out.tokens.shape, out.positions.shape
        (torch.Size([2, 24, 768]), torch.Size([2, 24, 3]))
        >>> xs = [torch.rand(3, 64, 128), torch.rand(3, 128, 64)]
        >>> packed = tokenize(xs, allocate(xs, budget=[5, 8])).pack()  # padded to 8, then packed
        >>> packed.tokens.shape, packed.cu_seqlens.tolist()
        (torch.Size([13, 768]), [0, 5, 13])
    """
    if isinstance(images, (list, tuple)) or isinstance(allocation, (list, tuple)):
        if pyramid is not None:
            raise ValueError(
                "pyramid: not supported for a list of images (built per size), got one"
            )
        return _tokenize_list(images, allocation)
    _check_pair(images, allocation)
    geometry = allocation.geometry
    p = geometry.min_patch
    batch, channels = images.shape[:2]
    if pyramid is None:
        pyramid = cell_pyramid(images, geometry)
    pyramid = check_cell_pyramid(pyramid, geometry, batch, channels)
    tokens = pyramid[0].new_zeros((batch, allocation.boxes.shape[1], channels, p, p))
    for k, level in enumerate(pyramid):
        image, slot = _leaf_index(allocation, k)
        if image.numel() == 0:
            continue
        corner = allocation.boxes[image, slot, :2] // (p << k)
        patches = rearrange(level, _PATCH_GRID, p=p, q=p)
        tokens[image, slot] = patches[image, corner[:, 0], corner[:, 1]]
    return TokenizedImages(
        tokens=rearrange(tokens, "b n c p q -> b n (c p q)").to(images.dtype),
        positions=token_positions(allocation),
        mask=allocation.mask,
    )


def _tokenize_list(images: object, allocations: object) -> TokenizedImages:
    """:func:`tokenize` of a list: one batch per size, padded to the longest image."""
    if not isinstance(images, (list, tuple)) or not isinstance(allocations, (list, tuple)):
        raise TypeError(
            f"allocation: a list of images needs a list of allocations and the other way round, "
            f"got {type(images).__name__} and {type(allocations).__name__}"
        )
    checked = check_image_list(images)
    allocated = check_allocation_list(allocations, len(checked))
    parts = []
    for group in group_by_shape(checked):
        try:
            part = tokenize(group.images, Allocation.cat([allocated[r] for r in group.rows]))
        except ValueError as error:
            raise for_image(error, group) from error
        parts.append((group.rows, part))
    return stack_token_groups(parts, len(checked))


def stack_token_groups(
    parts: Sequence[tuple[list[int], TokenizedImages]], batch: int
) -> TokenizedImages:
    """One padded :class:`TokenizedImages` of ``batch`` rows from per-group token batches:
    ``(rows, tokens)`` pairs, each group's row ``i`` going to row ``rows[i]``; padded to the
    longest group with zeros (mask False)."""
    first = parts[0][1]
    count = max(part.tokens.shape[1] for _, part in parts)
    tokens = first.tokens.new_zeros((batch, count, first.tokens.shape[-1]))
    positions = first.positions.new_zeros((batch, count, 3))
    mask = first.mask.new_zeros((batch, count))
    for rows, part in parts:
        width = part.tokens.shape[1]
        tokens[rows, :width] = part.tokens
        positions[rows, :width] = part.positions
        mask[rows, :width] = part.mask
    return TokenizedImages(tokens=tokens, positions=positions, mask=mask)


@overload
def detokenize(tokens: Tensor, allocation: Allocation) -> Tensor: ...


@overload
def detokenize(
    tokens: Tensor, allocation: list[Allocation] | tuple[Allocation, ...]
) -> list[Tensor]: ...


def detokenize(
    tokens: Tensor, allocation: Allocation | list[Allocation] | tuple[Allocation, ...]
) -> Tensor | list[Tensor]:
    """Paint tokens back into an image of the original size.

    A level-``k`` token is expanded ``k`` times with :func:`~pyrtok.pyr_up` (reflect border at
    the patch edge) to its box size and written over its box; the reflect padding is cropped.

    Args:
        tokens: ``(B, N, C * p * p)`` as returned by :func:`tokenize` (or a model's prediction).
        allocation: the allocation the tokens follow, or a list of one per image (images of
            different sizes; ``N`` at least the longest image's count).

    Returns:
        ``(B, C, H, W)`` in the dtype of ``tokens``; for a list of allocations, a list of
        ``(C, H, W)`` images, each at its own size.

    Examples:
        >>> from pyrtok.allocation import allocate
        >>> x = torch.rand(1, 3, 64, 64)
        >>> full = allocate(x, budget=16, min_patch=16, max_patch=32)
        >>> torch.equal(detokenize(tokenize(x, full).tokens, full), x)
        True
        >>> xs = [torch.rand(3, 64, 96), torch.rand(3, 32, 32)]
        >>> each = allocate(xs, budget=[24, 4], min_patch=16, max_patch=32)  # full detail
        >>> back = detokenize(tokenize(xs, each).tokens, each)
        >>> [tuple(b.shape) for b in back], all(map(torch.equal, back, xs))
        ([(3, 64, 96), (3, 32, 32)], True)
    """
    if isinstance(allocation, (list, tuple)):
        return _detokenize_list(tokens, allocation)
    if not isinstance(allocation, Allocation):
        raise TypeError(f"allocation: expected an Allocation, got {type(allocation).__name__}")
    geometry = allocation.geometry
    p = geometry.min_patch
    batch, count = allocation.batch_size, allocation.boxes.shape[1]
    if (
        not isinstance(tokens, Tensor)
        or tokens.ndim != 3
        or tuple(tokens.shape[:2]) != (batch, count)
        or tokens.shape[2] % (p * p)
    ):
        shape = tuple(tokens.shape) if isinstance(tokens, Tensor) else type(tokens).__name__
        raise ValueError(
            f"tokens: expected shape ({batch}, {count}, C * {p * p}) for this allocation, got "
            f"{shape}"
        )
    if not tokens.is_floating_point():
        raise TypeError(f"tokens: expected a floating dtype, got {tokens.dtype}")
    channels = tokens.shape[2] // (p * p)
    height, width = geometry.padded_size
    canvas = tokens.new_zeros((batch, channels, height, width))
    patches = rearrange(tokens, "b n (c p q) -> b n c p q", p=p, q=p)
    for k in range(geometry.depth + 1):
        image, slot = _leaf_index(allocation, k)
        if image.numel() == 0:
            continue
        decoded = patches[image, slot]
        for _ in range(k):
            decoded = pyr_up(decoded)
        size = p << k
        blocks = rearrange(canvas, _PATCH_GRID, p=size, q=size)  # a view: writes land in canvas
        corner = allocation.boxes[image, slot, :2] // size
        blocks[image, corner[:, 0], corner[:, 1]] = decoded
    return canvas[..., : geometry.height, : geometry.width]


def _detokenize_list(tokens: Tensor, allocations: Sequence[object]) -> list[Tensor]:
    """:func:`detokenize` of a list of allocations: one batch per geometry."""
    allocated = check_allocation_list(allocations, len(allocations))
    if len(allocated) == 0:
        raise ValueError("allocation: expected at least one Allocation, got an empty list")
    count = max(int(a.boxes.shape[1]) for a in allocated)
    if (
        not isinstance(tokens, Tensor)
        or tokens.ndim != 3
        or tokens.shape[0] != len(allocated)
        or tokens.shape[1] < count
    ):
        shape = tuple(tokens.shape) if isinstance(tokens, Tensor) else type(tokens).__name__
        raise ValueError(
            f"tokens: expected shape ({len(allocated)}, >= {count}, C * p * p) for these "
            f"allocations, got {shape}"
        )
    images: list[Tensor] = [tokens] * len(allocated)  # each row is replaced below
    for rows, batch in allocation_groups(allocated):
        painted = detokenize(tokens[rows, : batch.boxes.shape[1]], batch)
        for position, row in enumerate(rows):
            images[row] = painted[position]
    return images


class MixedResolutionTokenizer(nn.Module):
    """Module twin of :func:`tokenize` / :func:`detokenize`.

    Shapes:
        forward: images ``(B, C, H, W)`` + allocation -> :class:`TokenizedImages`
        ``(B, N, C * p * p)``; detokenize: tokens ``(B, N, C * p * p)`` -> ``(B, C, H, W)``.
        A list of ``(C, H, W)`` images with its list of allocations gives padded tokens, and
        detokenize then gives a list of images at their own sizes (see :func:`tokenize`).

    Examples:
        >>> from pyrtok.allocation import FrequencyAwareAllocator
        >>> x = torch.rand(2, 3, 128, 128)
        >>> allocation = FrequencyAwareAllocator(budget=28, max_patch=64)(x)
        >>> tokenizer = MixedResolutionTokenizer()
        >>> tokenizer.detokenize(tokenizer(x, allocation).tokens, allocation).shape
        torch.Size([2, 3, 128, 128])
    """

    def forward(
        self,
        images: Tensor | list[Tensor] | tuple[Tensor, ...],
        allocation: Allocation | list[Allocation] | tuple[Allocation, ...],
        pyramid: Pyramid = None,
    ) -> TokenizedImages:
        return tokenize(images, allocation, pyramid)

    @overload
    def detokenize(self, tokens: Tensor, allocation: Allocation) -> Tensor: ...

    @overload
    def detokenize(
        self, tokens: Tensor, allocation: list[Allocation] | tuple[Allocation, ...]
    ) -> list[Tensor]: ...

    def detokenize(
        self, tokens: Tensor, allocation: Allocation | list[Allocation] | tuple[Allocation, ...]
    ) -> Tensor | list[Tensor]:
        return detokenize(tokens, allocation)

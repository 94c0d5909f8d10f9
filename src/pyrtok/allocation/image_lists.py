"""Lists of images of different sizes: group them by shape and run the batch path per group.

An :class:`~pyrtok.allocation.Allocation` has one image size, so a list of ``(C, H, W)``
images of different sizes gets a list of per-image allocations (batch 1, each trimmed to its
own length, in the list's order). The work is batched: images of one shape are stacked and
scored, tokenized and painted back as one batch; the per-image allocations are only views of
that batch's result. Tokens of a list come back as one padded
:class:`~pyrtok.allocation.TokenizedImages` (``.pack()`` gives ``cu_seqlens``), and
:func:`~pyrtok.allocation.detokenize` gives a list of images, each at its own size.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TypeVar

import torch
from torch import Tensor

from pyrtok.allocation.allocation import Allocation

T = TypeVar("T")


@dataclass(frozen=True)
class ShapeGroup:
    """Images of one shape: their positions in the list and the stacked ``(G, C, H, W)``."""

    rows: list[int]
    images: Tensor


def check_image_list(images: Sequence[object], name: str = "images") -> list[Tensor]:
    """Validate a non-empty list of ``(C, H, W)`` tensors with one channel count."""
    if len(images) == 0:
        raise ValueError(f"{name}: expected at least one (C, H, W) image, got an empty list")
    checked: list[Tensor] = []
    for index, image in enumerate(images):
        if not isinstance(image, Tensor):
            raise TypeError(f"{name}[{index}]: expected a torch.Tensor, got {type(image).__name__}")
        if image.ndim != 3:
            raise ValueError(f"{name}[{index}]: expected shape (C, H, W), got {tuple(image.shape)}")
        if checked and image.shape[0] != checked[0].shape[0]:
            raise ValueError(
                f"{name}[{index}]: expected {checked[0].shape[0]} channels like {name}[0], got "
                f"{image.shape[0]}"
            )
        checked.append(image)
    return checked


def group_by_shape(images: list[Tensor]) -> list[ShapeGroup]:
    """The images stacked per distinct ``(H, W)``, groups in order of first appearance."""
    rows_of: dict[tuple[int, ...], list[int]] = {}
    for index, image in enumerate(images):
        rows_of.setdefault(tuple(image.shape), []).append(index)
    return [ShapeGroup(rows, torch.stack([images[r] for r in rows])) for rows in rows_of.values()]


def group_budget(budget: T | Sequence[T], rows: list[int], count: int) -> T | list[T]:
    """One group's share of ``budget``: the number itself, or its rows of a per-image list."""
    if isinstance(budget, (str, bytes)) or not isinstance(budget, Sequence):
        return budget
    if len(budget) != count:
        raise ValueError(
            f"budget: expected one number or one per image ({count}), got {len(budget)} values"
        )
    return [budget[r] for r in rows]


def trimmed(allocation: Allocation) -> Allocation:
    """A batch-1 allocation without padding slots (as if it had been allocated alone)."""
    count = int(allocation.lengths.max())
    return replace(
        allocation,
        boxes=allocation.boxes[:, :count],
        leaf_level=allocation.leaf_level[:, :count],
        mask=allocation.mask[:, :count],
    )


def for_image(error: ValueError, group: ShapeGroup, name: str = "images") -> ValueError:
    """``error`` naming the group's first image (``images[i]`` instead of ``images``)."""
    message, index = str(error), group.rows[0]
    if message.startswith(f"{name}:"):
        return ValueError(f"{name}[{index}]:{message[len(name) + 1 :]}")
    height, width = group.images.shape[-2:]
    return ValueError(f"{message} ({name}[{index}], {height}x{width})")


def allocate_list(
    images: Sequence[Tensor], budget: T | Sequence[T], batch_fn: Callable[..., Allocation]
) -> list[Allocation]:
    """``batch_fn(batch, budget)`` once per shape group; one trimmed allocation per image."""
    checked = check_image_list(images)
    result: list[Allocation] = [None] * len(checked)  # type: ignore[list-item]
    for group in group_by_shape(checked):
        share = group_budget(budget, group.rows, len(checked))
        try:
            allocation = batch_fn(group.images, share)
        except ValueError as error:
            raise for_image(error, group) from error
        for position, row in enumerate(group.rows):
            result[row] = trimmed(allocation[position])
    return result


def check_allocation_list(allocations: Sequence[object], count: int) -> list[Allocation]:
    """Validate one :class:`Allocation` of batch 1 per image."""
    if len(allocations) != count:
        raise ValueError(
            f"allocation: expected one Allocation per image ({count}), got {len(allocations)}"
        )
    for index, allocation in enumerate(allocations):
        if not isinstance(allocation, Allocation) or allocation.batch_size != 1:
            got = (
                f"a batch of {allocation.batch_size}"
                if isinstance(allocation, Allocation)
                else type(allocation).__name__
            )
            raise ValueError(f"allocation[{index}]: expected an Allocation of 1 image, got {got}")
    return list(allocations)  # type: ignore[arg-type]


def allocation_groups(allocations: list[Allocation]) -> list[tuple[list[int], Allocation]]:
    """The allocations stacked per distinct geometry and order: ``(rows, Allocation)``."""
    rows_of: dict[object, list[int]] = {}
    for index, allocation in enumerate(allocations):
        rows_of.setdefault((allocation.geometry, allocation.order), []).append(index)
    return [(rows, Allocation.cat([allocations[r] for r in rows])) for rows in rows_of.values()]

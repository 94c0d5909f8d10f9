"""Evaluation items: ``(image, prompt, answer)``, checked one by one with their index."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True, eq=False)
class Sample:
    """One evaluation item.

    Attributes:
        image: ``(3, H, W)`` float in ``[0, 1]``.
        prompt: ``(T,)`` int64 token ids with the image placeholder(s).
        answer: ``(A,)`` int64 ids the greedy answer must reproduce exactly.
    """

    image: Tensor
    prompt: Tensor
    answer: Tensor


def as_sample(item: object, index: int) -> Sample:
    """An item as a :class:`Sample`: a ``(image, prompt, answer)`` tuple or a mapping with
    those keys; the answer an int or a 1D tensor/sequence of ids.

    Examples:
        >>> as_sample((torch.zeros(3, 8, 8), torch.tensor([1, 63]), 5), 0).answer.tolist()
        [5]
    """
    if isinstance(item, Mapping):
        values = tuple(item.get(key) for key in ("image", "prompt", "answer"))
    elif isinstance(item, tuple | list):
        values = tuple(item) + (None,) * (3 - len(item))
    else:
        raise TypeError(
            f"dataset: item {index} is a {type(item).__name__}; expected (image, prompt, answer) "
            f"or a mapping with those keys"
        )
    image, prompt, answer = values[:3]
    if answer is None:
        raise ValueError(
            f"dataset: item {index} has no answer; expected (image, prompt, answer) with the "
            f"answer as token ids"
        )
    if not isinstance(image, Tensor) or image.ndim != 3 or not image.is_floating_point():
        raise ValueError(f"dataset: item {index}'s image must be a float (3, H, W) tensor")
    if not isinstance(prompt, Tensor) or prompt.ndim != 1:
        raise ValueError(f"dataset: item {index}'s prompt must be a 1D tensor of token ids")
    ids = torch.as_tensor(answer, dtype=torch.long).reshape(-1)
    if ids.numel() == 0:
        raise ValueError(f"dataset: item {index} has an empty answer")
    return Sample(image, prompt.long(), ids)

"""The Selector protocol: built-ins and custom selectors satisfy it, ``selector=`` replaces the
deprecated ``allocator=``, and a selector that breaks the contract is refused by name."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import Tensor, nn

from pyrtok.allocation import FrequencyAwareAllocator
from pyrtok.vlm import (
    AllSelector,
    FrequencySelector,
    HierarchicalVLM,
    ProgressiveVLM,
    QuerySelector,
    Selector,
)
from pyrtok.vlm.testing import tiny_llava

from .helpers import hierarchical, images, prompts


class CentreSelector(nn.Module):
    """Keeps the coarse tokens and, at each finer scale, only the central 2 x 2 residuals."""

    def forward(
        self, images: Tensor, grids: list[Tensor], query: Tensor | None, patch_size: int
    ) -> list[Tensor]:
        keep = []
        for s, g in enumerate(grids):
            k = torch.zeros(g.shape[:3], dtype=torch.bool, device=g.device)
            if s == 0:
                k[:] = True
            else:
                h, w = g.shape[1] // 2, g.shape[2] // 2
                k[:, h - 1 : h + 1, w - 1 : w + 1] = True
            keep.append(k)
        return keep


class Returning(nn.Module):
    """A selector returning fixed keep maps (to break the contract on purpose)."""

    def __init__(self, keep: object) -> None:
        super().__init__()
        self.keep = keep

    def forward(
        self, images: Tensor, grids: list[Tensor], query: Tensor | None, patch_size: int
    ) -> object:
        return self.keep


def test_builtins_and_a_custom_class_satisfy_the_protocol() -> None:
    for selector in (AllSelector(), FrequencySelector(), QuerySelector(8, 4), CentreSelector()):
        assert isinstance(selector, Selector)
    assert not isinstance("all", Selector)


def test_a_custom_selector_decides_what_the_lm_reads() -> None:
    vlm = hierarchical(levels=3, selector=CentreSelector())
    assert isinstance(vlm.selector, CentreSelector)
    visual = vlm.encode_images(images(2))
    assert visual.counts.tolist() == [4 + 4 + 4] * 2  # 2x2 coarse, then 2x2 per finer scale
    assert visual.scales[0].tolist() == [0] * 4 + [1] * 4 + [2] * 4
    ids, mask = prompts(2)
    assert vlm(images(2), ids, mask).visual_counts.tolist() == [12, 12]


def test_a_plain_function_is_a_selector_and_a_query_is_given_when_asked_for() -> None:
    seen: list[Tensor | None] = []

    def coarse_only(
        images: Tensor, grids: list[Tensor], query: Tensor | None, patch_size: int
    ) -> list[Tensor]:
        seen.append(query)
        return [torch.full(g.shape[:3], s == 0) for s, g in enumerate(grids)]

    vlm = hierarchical(levels=2, selector=coarse_only)
    ids, mask = prompts(2)
    assert vlm(images(2), ids, mask).visual_counts.tolist() == [16, 16]  # 4x4 coarse tokens
    assert seen == [None]
    coarse_only.needs_query = True  # type: ignore[attr-defined]
    vlm(images(2), ids, mask)
    assert seen[-1] is not None
    assert seen[-1].shape == (2, vlm.hidden_size)


def test_allocator_is_deprecated_and_gives_the_same_logits() -> None:
    x, (ids, mask) = images(2), prompts(2)
    for value in ("all", FrequencySelector(detail=0.25)):
        with pytest.warns(DeprecationWarning, match="allocator= is deprecated.*selector="):
            old = hierarchical(levels=3, allocator=value)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            new = hierarchical(levels=3, selector=value)
        assert type(old.selector) is type(new.selector)
        torch.testing.assert_close(old(x, ids, mask).logits, new(x, ids, mask).logits)
    allocator = FrequencyAwareAllocator(16, 8, 32)  # 4 cells + 4 splits
    with pytest.warns(DeprecationWarning, match="selector="):
        old = hierarchical(levels=3, allocator=allocator)
    new = hierarchical(levels=3, selector=allocator)
    torch.testing.assert_close(old(x, ids, mask).logits, new(x, ids, mask).logits)


def test_from_llava_takes_selector_and_deprecates_allocator() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert isinstance(HierarchicalVLM.from_llava(tiny_llava()).selector, AllSelector)
        frequency = HierarchicalVLM.from_llava(tiny_llava(), levels=2, selector="frequency")
        assert isinstance(frequency.selector, FrequencySelector)
        progressive = ProgressiveVLM.from_llava(tiny_llava(), levels=2, selector="query")
        assert isinstance(progressive.selector, QuerySelector)
    with pytest.warns(DeprecationWarning, match="allocator= is deprecated.*selector="):
        query = HierarchicalVLM.from_llava(tiny_llava(), levels=2, allocator="query")
    assert isinstance(query.selector, QuerySelector)


def test_both_names_given_is_an_error() -> None:
    with pytest.raises(TypeError, match="selector, allocator: got both"):
        hierarchical(levels=2, selector="all", allocator="all")
    with pytest.raises(TypeError, match="selector, allocator: got both"):
        HierarchicalVLM.from_llava(tiny_llava(), selector="all", allocator="all")
    with pytest.raises(ValueError, match=r"selector: expected None/'frequency', 'all', 'query'"):
        hierarchical(levels=2, selector="everything")


@pytest.mark.parametrize(
    ("keep", "message"),
    [
        (
            [torch.ones(2, 2, 2, dtype=torch.bool)],
            r"selector: Returning returned 1 keep maps, expected 3 \(a list with one per scale",
        ),
        (
            torch.ones(2, 2, 2, dtype=torch.bool),
            r"selector: Returning returned a Tensor keep maps, expected 3",
        ),
        (
            [torch.ones(2, 2, 2, dtype=torch.bool)] * 3,
            r"selector: Returning returned a keep map of shape \(2, 2, 2\) for scale 1, expected "
            r"\(2, 4, 4\) \(B, h_s, w_s\)",
        ),
        (
            [torch.ones(2, 2, 2), torch.ones(2, 4, 4), torch.ones(2, 8, 8)],
            r"selector: Returning returned a torch.float32 keep map for scale 0, expected "
            r"torch.bool",
        ),
        (
            [torch.ones(2, 2, 2, dtype=torch.bool), None, None],
            r"selector: Returning returned a NoneType for scale 1, expected a bool tensor of "
            r"shape \(2, 4, 4\)",
        ),
    ],
)
def test_a_selector_breaking_the_contract_is_refused_by_name(keep: object, message: str) -> None:
    vlm = hierarchical(levels=3, selector=Returning(keep))
    ids, mask = prompts(2)
    with pytest.raises(ValueError, match=message):
        vlm(images(2), ids, mask)

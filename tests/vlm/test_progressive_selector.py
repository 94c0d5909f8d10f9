"""ProgressiveVLM takes ``selector=`` like HierarchicalVLM; ``allocator=`` is deprecated there
too, and its warning points at the caller."""

from __future__ import annotations

import warnings

import pytest
import torch

from pyrtok.vlm import AllSelector, FrequencySelector

from .helpers import images, progressive, prompts


def test_progressive_takes_selector_and_deprecates_allocator() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        new = progressive(selector="all")
        assert isinstance(new.selector, AllSelector)
        assert isinstance(progressive().selector, FrequencySelector)
    with pytest.warns(DeprecationWarning, match="allocator= is deprecated.*selector=") as caught:
        old = progressive(allocator="all")
    assert caught[0].filename.endswith("helpers.py")  # the caller, not pyrtok
    assert isinstance(old.selector, AllSelector)
    x, (ids, mask) = images(2), prompts(2)
    a, b = new.progressive_generate(x, ids, mask), old.progressive_generate(x, ids, mask)
    torch.testing.assert_close(a.logits, b.logits)
    with pytest.raises(TypeError, match="selector, allocator: got both"):
        progressive(selector="all", allocator="all")

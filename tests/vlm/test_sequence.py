"""Placeholder merge, padding, masks and positions with unequal visual-token counts."""

from __future__ import annotations

import pytest
import torch

from pyrtok.vlm import merge_sequence, split_at_image
from pyrtok.vlm.residual import compact

from .helpers import IMAGE, prompts


def _visual(counts: list[int], dim: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    n = max(counts)
    mask = torch.arange(n)[None, :] < torch.tensor(counts)[:, None]
    values = torch.arange(1, len(counts) * n * dim + 1, dtype=torch.float32).view(
        len(counts), n, dim
    )
    return values * mask[..., None], mask


@pytest.mark.parametrize("side", ["left", "right"])
def test_merge_places_each_rows_tokens_and_pads(side: str) -> None:
    ids, mask = prompts()
    text = torch.randn(*ids.shape, 4)
    visual, vmask = _visual([2, 5, 3])
    labels = torch.where(mask.bool(), ids, -100)
    merged = merge_sequence(text, ids, mask, visual, vmask, IMAGE, labels, padding_side=side)
    lengths = [5 + 2, 3 + 5, 4 + 3]
    assert merged.attention_mask.sum(1).tolist() == lengths
    assert merged.inputs_embeds.shape == (3, max(lengths), 4)
    for b in range(3):
        real = merged.attention_mask[b].bool()
        row = merged.inputs_embeds[b, real]
        row_ids = ids[b, mask[b].bool()].tolist()
        at = row_ids.index(IMAGE)
        count = int(vmask[b].sum())
        expected = torch.cat(
            [text[b, mask[b].bool()][:at], visual[b, :count], text[b, mask[b].bool()][at + 1 :]]
        )
        torch.testing.assert_close(row, expected, rtol=0, atol=0)
        assert merged.position_ids[b, real].tolist() == list(range(lengths[b]))
        row_labels = merged.labels[b, real].tolist()  # type: ignore[index]
        assert row_labels == row_ids[:at] + [-100] * count + row_ids[at + 1 :]
        pads = (~real).nonzero().flatten().tolist()
        if pads:
            assert (pads[0] == 0) == (side == "left")
        assert (merged.labels[b, ~real] == -100).all()  # type: ignore[index]


def test_expanded_placeholders_equal_masked_scatter() -> None:
    ids = torch.tensor([[1, IMAGE, IMAGE, IMAGE, 4]])
    text = torch.randn(1, 5, 4)
    visual = torch.randn(1, 3, 4)
    merged = merge_sequence(text, ids, None, visual, torch.ones(1, 3, dtype=torch.bool), IMAGE)
    expected = text.masked_scatter((ids == IMAGE)[..., None].expand_as(text), visual)
    torch.testing.assert_close(merged.inputs_embeds, expected, rtol=0, atol=0)


def test_split_errors() -> None:
    counts = torch.tensor([3, 3])
    with pytest.raises(ValueError, match="row 1 has no image token"):
        split_at_image(torch.tensor([[1, IMAGE], [1, 2]]), None, IMAGE, counts)
    with pytest.raises(ValueError, match="row 0 has 2 image tokens; expected 1"):
        split_at_image(torch.tensor([[IMAGE, IMAGE], [1, IMAGE]]), None, IMAGE, counts)
    with pytest.raises(ValueError, match="not contiguous"):
        split_at_image(torch.tensor([[IMAGE, 1, IMAGE, IMAGE]]), None, IMAGE, torch.tensor([3]))
    with pytest.raises(ValueError, match="labels: expected one label per input token"):
        merge_sequence(
            torch.zeros(1, 2, 4),
            torch.tensor([[1, IMAGE]]),
            None,
            torch.zeros(1, 1, 4),
            torch.ones(1, 1, dtype=torch.bool),
            IMAGE,
            labels=torch.zeros(1, 3, dtype=torch.long),
        )


def test_compact_left_and_right() -> None:
    values = torch.tensor([[1, 2, 3, 4], [5, 6, 7, 8]])
    mask = torch.tensor([[1, 0, 1, 0], [0, 0, 0, 1]]).bool()
    out, m = compact(values, mask, left_pad=True)
    assert out.tolist() == [[1, 3], [0, 8]]
    assert m.tolist() == [[True, True], [False, True]]

"""Selectors that send new tokens: a Selection's extra tokens reach the projector after each
image's kept tokens, rows may differ, and malformed extras are refused by name."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from pyrtok.vlm.encoders import encode_pyramid
from pyrtok.vlm.residual import residual_grids
from pyrtok.vlm.selection import Selection, check_keep

from .helpers import hierarchical, images, prompts


class Extra(nn.Module):
    """Keeps the coarse tokens and the first residual token of row 0 only; sends as extra
    tokens the mean of each scale's grid (one per scale), row ``b`` the first ``b + 1`` of
    them (``masked``) or all of them."""

    def __init__(self, masked: bool = True, as_tuple: bool = False) -> None:
        super().__init__()
        self.masked, self.as_tuple = masked, as_tuple

    def forward(
        self, images: Tensor, grids: list[Tensor], query: Tensor | None, patch_size: int
    ) -> object:
        keep = [torch.zeros(g.shape[:3], dtype=torch.bool) for g in grids]
        keep[0][:] = True
        keep[1][0, 0, 0] = True
        extra = torch.stack([g.mean(dim=(1, 2)) for g in grids], dim=1)
        batch, count = extra.shape[:2]
        mask = torch.arange(count)[None] <= torch.arange(batch)[:, None]
        if self.as_tuple:
            return (keep, extra)
        return Selection(keep, extra, mask if self.masked else None)


def test_extra_tokens_follow_the_kept_ones_before_the_projector() -> None:
    vlm = hierarchical(levels=2, selector=Extra())
    pixels = images(2, size=32)
    visual = vlm.encode_images(pixels)
    # 2x2 coarse tokens kept everywhere, one residual token in row 0, extras: 1 and 2
    assert visual.counts.tolist() == [4 + 1 + 1, 4 + 0 + 2]
    assert visual.scales.tolist() == [[0, 0, 0, 0, 1, 0], [0, 0, 0, 0, 0, 0]]
    grids = residual_grids([f.grid for f in encode_pyramid(vlm.vision_encoder, pixels, 2)])
    extra = torch.stack([g.mean(dim=(1, 2)) for g in grids], dim=1)
    rows = [
        torch.cat([grids[0][0].flatten(0, 1), grids[1][0, :1, 0], extra[0, :1]]),
        torch.cat([grids[0][1].flatten(0, 1), extra[1]]),
    ]
    for row, tokens in enumerate(rows):
        torch.testing.assert_close(visual.embeds[row], vlm.projector(tokens), rtol=0, atol=0)


def test_a_plain_tuple_with_extra_tokens_is_accepted() -> None:
    vlm = hierarchical(levels=2, selector=Extra(as_tuple=True))
    ids, mask = prompts(2)
    out = vlm(images(2, size=32), ids, mask)
    assert out.visual_counts.tolist() == [4 + 1 + 2, 4 + 0 + 2]


GRIDS = [torch.zeros(2, 2, 2, 4), torch.zeros(2, 4, 4, 4)]
KEEP = [torch.ones(g.shape[:3], dtype=torch.bool) for g in GRIDS]


@pytest.mark.parametrize(
    ("returned", "message"),
    [
        ((KEEP, None, None, None), r"returned a tuple of 4 entries, expected keep maps or"),
        ((KEEP, [1.0]), r"returned extra tokens as a list, expected a tensor \(B, M, D_v\)"),
        (
            (KEEP, torch.zeros(2, 3)),
            r"returned extra tokens of shape \(2, 3\), expected \(2, M, 4\) \(B, M, D_v\)",
        ),
        (
            (KEEP, torch.zeros(3, 1, 4)),
            r"returned extra tokens of shape \(3, 1, 4\), expected \(2, M, 4\)",
        ),
        (
            (KEEP, torch.zeros(2, 1, 4, dtype=torch.float64)),
            r"returned extra tokens as torch.float64 on cpu, expected torch.float32 on cpu",
        ),
        (
            (KEEP, torch.zeros(2, 3, 4), torch.ones(2, 2, dtype=torch.bool)),
            r"returned an extra_mask as torch.bool \(2, 2\) on cpu, expected torch.bool "
            r"\(2, 3\) \(B, M\)",
        ),
        (
            (KEEP, torch.zeros(2, 3, 4), torch.ones(2, 3)),
            r"returned an extra_mask as torch.float32 \(2, 3\)",
        ),
        (
            (KEEP, None, torch.ones(2, 3, dtype=torch.bool)),
            r"returned an extra_mask but no extra tokens",
        ),
        (([KEEP[0]], torch.zeros(2, 1, 4)), r"returned 1 keep maps, expected 2"),
    ],
)
def test_malformed_extra_tokens_are_refused_by_name(returned: object, message: str) -> None:
    with pytest.raises(ValueError, match="selector: Extra " + message):
        check_keep(returned, GRIDS, Extra())


def test_bare_keep_maps_and_selections_check_to_one_form() -> None:
    bare = check_keep(KEEP, GRIDS, Extra())
    assert bare.extra is None
    assert bare.extra_mask is None
    assert len(bare.keep) == 2
    extra = torch.zeros(2, 3, 4)
    checked = check_keep((KEEP, extra), GRIDS, Extra())
    assert checked.extra is extra
    assert checked.extra_mask is None

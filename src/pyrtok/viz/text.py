"""Text drawn into figures (titles, captions, colour keys) in Pillow's built-in font."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

from pyrtok.viz.layout import side_by_side

CAPTION_SIZE, TITLE_SIZE = 14, 18
"""Font sizes in px (Pillow < 10.1 or without FreeType: its one fixed-size bitmap font)."""

_PADDING = 4
"""White margin around a text, in px."""


@cache
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    font = ImageFont.load_default()
    return font.font_variant(size=size) if isinstance(font, ImageFont.FreeTypeFont) else font


def text_image(text: str, size: int = CAPTION_SIZE) -> Tensor:
    """Black ``text`` (lines split at ``\\n``) on white, with a 4 px margin.

    The height depends only on the number of lines, so captions of one size line up.

    Returns:
        ``(3, h, w)`` float32 in ``[0, 1]``.

    Examples:
        >>> a, b = text_image("L0 band"), text_image("G3 residual, 64x64")
        >>> a.shape[-2] == b.shape[-2], a.shape[-1] < b.shape[-1]
        (True, True)
    """
    font, lines = _font(size), text.count("\n") + 1
    measure = ImageDraw.Draw(Image.new("L", (1, 1)))
    width = measure.multiline_textbbox((0, 0), text, font=font)[2]
    height = measure.multiline_textbbox((0, 0), "\n".join(["Ag|"] * lines), font=font)[3]
    canvas = Image.new("L", (int(width) + 2 * _PADDING, int(height) + 2 * _PADDING), 255)
    ImageDraw.Draw(canvas).multiline_text((_PADDING, _PADDING), text, fill=0, font=font)
    return torch.from_numpy(np.asarray(canvas, dtype=np.float32) / 255).expand(3, -1, -1)


def titled(image: Tensor, title: str, size: int = TITLE_SIZE) -> Tensor:
    """``title`` above ``image`` (left-aligned, white; widened if the text is wider).

    Args:
        image: ``(3, H, W)``, ``(1, H, W)`` or ``(H, W)`` in ``[0, 1]``.
        title: the text; ``\\n`` starts a new line.
        size: font size in px.

    Returns:
        ``(3, h + H, max(w, W))`` float32, ``(h, w)`` the text's size.

    Examples:
        >>> titled(torch.rand(3, 100, 300), "a title").shape[-1]
        300
    """
    return side_by_side([text_image(title, size).to(image.device), image], gap=0, vertical=True)


def colour_key(entries: Sequence[tuple[str, tuple[float, float, float]]], gap: int = 16) -> Tensor:
    """A row of colour swatches, each followed by its name.

    Args:
        entries: ``(name, (r, g, b))`` pairs, colours in ``[0, 1]``.
        gap: px between entries.

    Returns:
        ``(3, h, w)`` float32 in ``[0, 1]``.

    Examples:
        >>> key = colour_key([("red", (1.0, 0.0, 0.0)), ("blue", (0.0, 0.0, 1.0))])
        >>> key[:, 8, 8].tolist()  # inside the first swatch
        [1.0, 0.0, 0.0]
    """
    if not entries:
        raise ValueError("entries: expected at least one (name, colour) pair")
    items = []
    for name, rgb in entries:
        label = text_image(name)
        side = label.shape[-2] - 2 * _PADDING
        swatch = torch.tensor(rgb, dtype=torch.float32).view(3, 1, 1).expand(3, side, side)
        items.append(side_by_side([F.pad(swatch, (_PADDING,) * 4, value=1.0), label], gap=0))
    return side_by_side(items, gap=gap)

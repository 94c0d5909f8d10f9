"""Tiny models and inputs shared by the VLM tests (random weights, no downloads)."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from transformers import (
    CLIPVisionConfig,
    CLIPVisionModel,
    Dinov2Config,
    Dinov2Model,
    SiglipVisionConfig,
    SiglipVisionModel,
    ViTConfig,
    ViTModel,
)

from pyrtok.vlm import HierarchicalVLM, ProgressiveVLM
from pyrtok.vlm.testing import tiny_clip, tiny_llama

IMAGE = 63

VISION_MODELS = ("clip", "siglip", "vit", "dinov2")
_VISION_SIZES = dict(
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=2,
    image_size=32,
    patch_size=8,
)


def vision_model(name: str) -> nn.Module:
    """A tiny random-weight HF vision model (32 px, 8 px patches, width 32), in eval mode."""
    torch.manual_seed(0)
    builders = {
        "clip": lambda: CLIPVisionModel(CLIPVisionConfig(**_VISION_SIZES)),
        "siglip": lambda: SiglipVisionModel(SiglipVisionConfig(**_VISION_SIZES)),
        "vit": lambda: ViTModel(ViTConfig(**_VISION_SIZES), add_pooling_layer=False),
        "dinov2": lambda: Dinov2Model(Dinov2Config(**_VISION_SIZES)),
    }
    model: nn.Module = builders[name]().eval()
    return model


def images(batch: int = 3, size: int = 64, seed: int = 0) -> Tensor:
    """Row 0 smooth, the others increasingly textured: different allocations per row."""
    g = torch.Generator().manual_seed(seed)
    y = torch.linspace(0, 1, size)
    smooth = (y[:, None] * y[None, :]).expand(3, size, size)
    out = []
    for b in range(batch):
        noise = torch.rand(3, size, size, generator=g)
        mask = torch.zeros(size, size)
        mask[: size // 2 * min(b, 2) // 2 + (size // 4 if b else 0), : size // 2] = 1.0
        out.append(smooth + mask * noise * b)
    return torch.stack(out)


def prompts(batch: int = 3) -> tuple[Tensor, Tensor]:
    """Left-padded prompts of different lengths: system text, image, question."""
    rows = [[1, 2, IMAGE, 5, 6, 7], [1, IMAGE, 8, 9], [3, 4, 2, IMAGE, 10]][:batch]
    width = max(map(len, rows))
    ids = torch.zeros(batch, width, dtype=torch.long)
    mask = torch.zeros(batch, width, dtype=torch.long)
    for b, row in enumerate(rows):
        ids[b, width - len(row) :] = torch.tensor(row)
        mask[b, width - len(row) :] = 1
    return ids, mask


class RowSelector(torch.nn.Module):
    """Row ``b`` keeps the first ``(b + first_row) * 3`` residual tokens of each finer scale."""

    first_row = 0

    def forward(
        self, images: Tensor, grids: list[Tensor], query: Tensor | None, patch_size: int
    ) -> list[Tensor]:
        keep = []
        for s, g in enumerate(grids):
            flat = (
                torch.arange(g.shape[1] * g.shape[2])[None, :]
                < (torch.arange(g.shape[0])[:, None] + self.first_row) * 3
            )
            keep.append(
                torch.ones(g.shape[:3], dtype=torch.bool) if s == 0 else flat.view(g.shape[:3])
            )
        return keep


def hierarchical(levels: int = 3, selector: object = None, **kwargs: object) -> HierarchicalVLM:
    torch.manual_seed(0)
    return HierarchicalVLM(
        tiny_clip(),
        tiny_llama(),
        levels=levels,
        selector=selector,
        image_token_id=IMAGE,
        **kwargs,
    ).eval()


def progressive(**kwargs: object) -> ProgressiveVLM:
    torch.manual_seed(0)
    return ProgressiveVLM(
        tiny_clip(), tiny_llama(), levels=3, image_token_id=IMAGE, **kwargs
    ).eval()


def unpadded(ids: Tensor, mask: Tensor, row: int) -> Tensor:
    return ids[row : row + 1, mask[row].bool()]

"""Mixed-resolution tokens through pretrained HF ViT-family encoders (CLIP, SigLIP, ViT, DINOv2)."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from pyrtok.allocation import TokenizedImages, allocate, tokenize
from pyrtok.vlm import (
    MixedResolutionEncoder,
    encode_mixed_resolution,
    sample_position_embeddings,
)
from tests.vlm.helpers import VISION_MODELS, vision_model


def _raster(features: Tensor, positions: Tensor, side: int) -> Tensor:
    """Reorder ``(B, N, D)`` token features into raster order of a ``side`` x ``side`` grid."""
    cell = (positions[..., :2] * side - 0.5).round().long()
    order = (cell[..., 0] * side + cell[..., 1]).argsort(dim=1)
    return torch.gather(features, 1, order[..., None].expand_as(features))


@pytest.mark.parametrize("name", VISION_MODELS)
@pytest.mark.parametrize("feature_layer", [None, -2])
def test_level0_grid_is_the_models_forward(name: str, feature_layer: int | None) -> None:
    model = vision_model(name)
    x = torch.rand(2, 3, 32, 32)
    tokens = tokenize(x, allocate(x, budget=16, min_patch=8, max_patch=16))
    assert tokens.mask.all()
    assert bool((tokens.positions[..., 2] == 0.25).all())
    out = encode_mixed_resolution(model, tokens, feature_layer=feature_layer)
    reference = model(x, output_hidden_states=True)
    expected = (
        reference.last_hidden_state
        if feature_layer is None
        else reference.hidden_states[feature_layer]
    )
    prefix = out.prefix.shape[1]
    assert prefix == (0 if name == "siglip" else 1)
    torch.testing.assert_close(out.prefix, expected[:, :prefix], atol=1e-5, rtol=0)
    torch.testing.assert_close(
        _raster(out.tokens, tokens.positions, 4), expected[:, prefix:], atol=1e-5, rtol=0
    )


@pytest.mark.parametrize("name", VISION_MODELS)
def test_padding_does_not_change_real_tokens(name: str) -> None:
    model = vision_model(name)
    x = torch.rand(2, 3, 64, 64)
    short = tokenize(x[:1], allocate(x[:1], budget=10, min_patch=8, max_patch=32))
    long = tokenize(x[1:], allocate(x[1:], budget=22, min_patch=8, max_patch=32))
    assert not bool((short.positions[..., 2] == short.positions[0, 0, 2]).all())  # mixed sizes
    garbage = torch.randn(1, 12, short.tokens.shape[-1]) * 100
    batch = TokenizedImages(
        tokens=torch.cat([torch.cat([short.tokens, garbage], 1), long.tokens]),
        positions=torch.cat(
            [torch.cat([short.positions, torch.rand(1, 12, 3)], 1), long.positions]
        ),
        mask=torch.cat(
            [torch.cat([short.mask, torch.zeros(1, 12, dtype=torch.bool)], 1), long.mask]
        ),
    )
    alone = encode_mixed_resolution(model, short)
    together = encode_mixed_resolution(model, batch)
    torch.testing.assert_close(together.tokens[:1, :10], alone.tokens, atol=1e-5, rtol=0)
    torch.testing.assert_close(together.prefix[:1], alone.prefix, atol=1e-5, rtol=0)
    assert bool((together.tokens[0, 10:] == 0).all())
    torch.testing.assert_close(
        together.tokens[1:], encode_mixed_resolution(model, long).tokens, atol=1e-5, rtol=0
    )


class _NoMaskLayer(nn.Module):
    """A layer that takes no attention mask (as ViT/DINOv2 layers in transformers 4.5x)."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, hidden_states: Tensor) -> Tensor:
        out = self.layer(hidden_states, None)
        return out[0] if isinstance(out, tuple) else out


def test_layers_without_mask_run_each_image_alone() -> None:
    model = vision_model("siglip")
    x = torch.rand(2, 3, 64, 64)
    short = tokenize(x[:1], allocate(x[:1], budget=10, min_patch=8, max_patch=32))
    long = tokenize(x[1:], allocate(x[1:], budget=22, min_patch=8, max_patch=32))
    batch = TokenizedImages(
        tokens=torch.cat(
            [torch.nn.functional.pad(short.tokens, (0, 0, 0, 12), value=9.0), long.tokens]
        ),
        positions=torch.cat(
            [torch.nn.functional.pad(short.positions, (0, 0, 0, 12)), long.positions]
        ),
        mask=torch.cat([torch.nn.functional.pad(short.mask, (0, 12)), long.mask]),
    )
    masked = encode_mixed_resolution(model, batch)
    encoder = getattr(model, "vision_model", model).encoder
    encoder.layers = nn.ModuleList(_NoMaskLayer(layer) for layer in encoder.layers)
    alone = encode_mixed_resolution(model, batch)
    torch.testing.assert_close(alone.tokens, masked.tokens, atol=1e-5, rtol=0)


def test_position_sampling_at_grid_centres_is_the_grid() -> None:
    grid = torch.randn(3, 5, 7)
    rows, cols = torch.meshgrid(torch.arange(3), torch.arange(5), indexing="ij")
    centres = torch.stack([(rows + 0.5) / 3, (cols + 0.5) / 5], -1).reshape(1, 15, 2)
    sampled = sample_position_embeddings(grid, centres)
    torch.testing.assert_close(sampled, grid.reshape(1, 15, 7), atol=1e-6, rtol=0)
    between = sample_position_embeddings(grid, torch.tensor([[[0.5, 0.4]]]))  # cells 1, (1, 2)
    torch.testing.assert_close(between[0, 0], (grid[1, 1] + grid[1, 2]) / 2, atol=1e-6, rtol=0)


def test_module_matches_function_and_is_differentiable() -> None:
    model = vision_model("clip")
    x = torch.rand(2, 3, 64, 64, requires_grad=True)
    allocation = allocate(x.detach(), budget=16, min_patch=8, max_patch=32)
    out = MixedResolutionEncoder(model, feature_layer=-1)(x, allocation)
    expected = encode_mixed_resolution(model, tokenize(x, allocation), feature_layer=-1)
    torch.testing.assert_close(out.tokens, expected.tokens)
    out.tokens.sum().backward()
    assert x.grad is not None
    assert bool(x.grad.abs().sum() > 0)


def test_bad_input_raises_clear_errors() -> None:
    model = vision_model("vit")
    x = torch.rand(1, 3, 64, 64)
    coarse = allocate(x, budget=4, min_patch=16, max_patch=32)
    with pytest.raises(ValueError, match="patch size 8"):
        encode_mixed_resolution(model, tokenize(x, coarse))
    with pytest.raises(ValueError, match="min_patch must equal the model's patch size 8"):
        MixedResolutionEncoder(model)(x, coarse)
    with pytest.raises(TypeError, match="ViT-family vision model"):
        MixedResolutionEncoder(nn.Linear(3, 3))
    with pytest.raises(TypeError, match="tokens: expected TokenizedImages"):
        encode_mixed_resolution(model, torch.rand(1, 4, 192))  # type: ignore[arg-type]
    fine = tokenize(x, allocate(x, budget=64, min_patch=8, max_patch=32))
    with pytest.raises(ValueError, match="feature_layer"):
        encode_mixed_resolution(model, fine, feature_layer=5)
    with pytest.raises(ValueError, match="positions: expected"):
        sample_position_embeddings(torch.rand(2, 2, 4), torch.rand(1, 3))

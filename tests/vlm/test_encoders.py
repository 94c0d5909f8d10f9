"""Encoder adapters on CLIP, SigLIP, ViT, DINOv2 and a plain module, at several pyramid levels."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from pyrtok.vlm import VisionEncoder, encode_pyramid
from tests.vlm.helpers import VISION_MODELS, vision_model


@pytest.mark.parametrize("name", VISION_MODELS)
def test_hf_encoders_at_pyramid_levels(name: str) -> None:
    model = vision_model(name)
    encoder = VisionEncoder(model, feature_layer=-2, keep_prefix=True)
    x = torch.rand(2, 3, 64, 128)
    feats = encode_pyramid(encoder, x, levels=3)
    assert [tuple(f.grid.shape) for f in feats] == [(2, 2, 4, 32), (2, 4, 8, 32), (2, 8, 16, 32)]
    assert feats[0].prefix.shape[1] == (0 if name == "siglip" else 1)
    # the finest level is the plain model on the image (hidden_states[-2], prefix split off)
    kwargs = {} if name == "dinov2" else {"interpolate_pos_encoding": True}
    ref = model(x, output_hidden_states=True, **kwargs).hidden_states[-2]
    torch.testing.assert_close(feats[2].grid.flatten(1, 2), ref[:, ref.shape[1] - 128 :])


def test_plain_module_and_errors() -> None:
    class Patchify(nn.Module):
        def forward(self, x: Tensor) -> Tensor:
            return nn.functional.avg_pool2d(x, 4).flatten(2).transpose(1, 2)

    encoder = VisionEncoder(Patchify(), patch_size=4, hidden_size=3)
    assert encoder(torch.rand(1, 3, 16, 8)).grid.shape == (1, 4, 2, 3)
    with pytest.raises(ValueError, match="patch_size: expected a positive int"):
        VisionEncoder(Patchify())
    with pytest.raises(
        ValueError, match="multiples of patch_size \\* 2\\*\\*\\(levels - 1\\) = 4 \\* 4 = 16"
    ):
        encode_pyramid(encoder, torch.rand(1, 3, 24, 16), levels=3)

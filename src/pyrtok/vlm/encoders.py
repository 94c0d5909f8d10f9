"""Vision encoder adapters: one encoder run at every pyramid level of the image.

:class:`VisionEncoder` turns a Hugging Face vision model (CLIP, SigLIP, ViT, DINOv2, ... — any
model whose output has ``last_hidden_state`` / ``hidden_states``) or any module
``(B, 3, H, W) -> (B, N, D)`` into a grid encoder ``(B, 3, H, W) -> (B, H/p, W/p, D)`` plus the
prefix tokens (CLS, registers) the model puts before its patch tokens. Images whose size differs
from the size the model was trained at are encoded with interpolated position embeddings
(``interpolate_pos_encoding=True`` where the model takes it; DINOv2 always interpolates).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from pyrtok.pyramid import gaussian_pyramid


@dataclass(frozen=True, eq=False)
class GridFeatures:
    """Patch features of one image scale.

    Attributes:
        grid: ``(B, h, w, D)`` patch tokens in raster order (``h = H / p``, ``w = W / p``).
        prefix: ``(B, P, D)`` tokens before the patches (CLS, registers); ``P`` may be 0.
    """

    grid: Tensor
    prefix: Tensor


def _config_value(module: nn.Module, name: str) -> Any:
    config = getattr(module, "config", None)
    value = getattr(config, name, None)
    if value is None:
        vision_config = getattr(config, "vision_config", None)
        value = getattr(vision_config, name, None)
    return value


class VisionEncoder(nn.Module):
    """Adapter from a vision backbone to patch-grid features.

    Args:
        model: a Hugging Face vision model (``CLIPVisionModel``, ``SiglipVisionModel``,
            ``ViTModel``, ``Dinov2Model``, ...) or any module ``(B, 3, H, W) -> (B, N, D)``
            (or returning an object with ``last_hidden_state``).
        feature_layer: ``None`` for ``last_hidden_state``; an int picks
            ``hidden_states[feature_layer]`` (LLaVA uses ``-2``).
        keep_prefix: keep the CLS/register tokens (returned as ``prefix``) instead of dropping
            them.
        patch_size: read from ``model.config`` for HF models; required otherwise.
        hidden_size: read from ``model.config`` for HF models; required otherwise.

    Shapes:
        ``images (B, 3, H, W)`` with ``H, W`` multiples of ``patch_size`` ->
        :class:`GridFeatures` ``grid (B, H/p, W/p, D)``, ``prefix (B, P, D)``.

    Examples:
        >>> import torch
        >>> from transformers import CLIPVisionConfig, CLIPVisionModel
        >>> config = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        ...     num_attention_heads=2, image_size=32, patch_size=8)
        >>> encoder = VisionEncoder(CLIPVisionModel(config), feature_layer=-2)
        >>> features = encoder(torch.rand(2, 3, 64, 32))  # not the training size: interpolated
        >>> features.grid.shape, features.prefix.shape
        (torch.Size([2, 8, 4, 32]), torch.Size([2, 0, 32]))
    """

    def __init__(
        self,
        model: nn.Module,
        feature_layer: int | None = None,
        keep_prefix: bool = False,
        patch_size: int | None = None,
        hidden_size: int | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(model, nn.Module):
            raise TypeError(f"model: expected an nn.Module, got {type(model).__name__}")
        self.model = model
        self.feature_layer = feature_layer
        self.keep_prefix = keep_prefix
        found_patch = patch_size if patch_size is not None else _config_value(model, "patch_size")
        found_hidden = (
            hidden_size if hidden_size is not None else _config_value(model, "hidden_size")
        )
        for name, value in (("patch_size", found_patch), ("hidden_size", found_hidden)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(
                    f"{name}: expected a positive int (read from model.config for Hugging Face "
                    f"models, to be given for other modules), got {value!r}"
                )
        self.patch_size: int = found_patch
        self.hidden_size: int = found_hidden
        self.image_size = _config_value(model, "image_size")
        parameters = inspect.signature(model.forward).parameters
        self._takes_interpolate = "interpolate_pos_encoding" in parameters
        self._takes_hidden = "output_hidden_states" in parameters or any(
            p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()
        )

    def _run(self, images: Tensor) -> Tensor:
        kwargs: dict[str, Any] = {}
        if self._takes_interpolate:
            size = self.image_size
            trained = (size, size) if isinstance(size, int) else tuple(size or ())
            kwargs["interpolate_pos_encoding"] = tuple(images.shape[-2:]) != trained
        if self.feature_layer is not None:
            if not self._takes_hidden:
                raise ValueError(
                    f"feature_layer: {self.feature_layer} needs a model that returns "
                    f"hidden_states; {type(self.model).__name__} does not take "
                    f"output_hidden_states"
                )
            kwargs["output_hidden_states"] = True
        out = self.model(images, **kwargs)
        if isinstance(out, Tensor):
            if self.feature_layer is not None:
                raise ValueError("feature_layer: the model returns a tensor, not hidden_states")
            return out
        if self.feature_layer is not None:
            return out.hidden_states[self.feature_layer]  # type: ignore[no-any-return]
        return out.last_hidden_state  # type: ignore[no-any-return]

    def forward(self, images: Tensor) -> GridFeatures:
        if not isinstance(images, Tensor) or images.ndim != 4:
            shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
            raise ValueError(f"images: expected (B, 3, H, W), got {shape}")
        batch, _, height, width = images.shape
        p = self.patch_size
        if height % p or width % p:
            raise ValueError(
                f"images: height and width must be multiples of the encoder's patch size {p}, "
                f"got {height}x{width}"
            )
        tokens = self._run(images)
        rows, cols = height // p, width // p
        if tokens.ndim != 3 or tokens.shape[0] != batch or tokens.shape[1] < rows * cols:
            raise ValueError(
                f"model: expected (B, N >= {rows * cols}, D) tokens for {height}x{width} images "
                f"with patch size {p}, got {tuple(tokens.shape)}"
            )
        prefix_count = tokens.shape[1] - rows * cols
        prefix = tokens[:, :prefix_count] if self.keep_prefix else tokens[:, :0]
        grid = tokens[:, prefix_count:].reshape(batch, rows, cols, tokens.shape[-1])
        return GridFeatures(grid=grid, prefix=prefix)


def encode_pyramid(encoder: VisionEncoder, images: Tensor, levels: int) -> list[GridFeatures]:
    """Encode every Gaussian pyramid level of ``images`` with one encoder, coarsest first.

    Args:
        encoder: the adapter.
        images: ``(B, 3, H, W)``; ``H`` and ``W`` multiples of ``patch_size * 2**(levels - 1)``.
        levels: pyramid levels ``L >= 1``.

    Returns:
        ``L`` :class:`GridFeatures`; entry ``s`` (scale ``s``, 0 = coarsest) has a
        ``(B, H / (p * 2**(L-1-s)), W / (p * 2**(L-1-s)), D)`` grid.

    Examples:
        >>> import torch
        >>> from transformers import ViTConfig, ViTModel
        >>> config = ViTConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        ...     num_attention_heads=2, image_size=32, patch_size=8)
        >>> encoder = VisionEncoder(ViTModel(config, add_pooling_layer=False))
        >>> [f.grid.shape[1:3] for f in encode_pyramid(encoder, torch.rand(1, 3, 64, 64), 3)]
        [torch.Size([2, 2]), torch.Size([4, 4]), torch.Size([8, 8])]
    """
    check_image_size(images, encoder.patch_size, levels)
    pyramid = gaussian_pyramid(images, levels=levels)
    return [encoder(level) for level in reversed(pyramid)]


def check_image_size(images: Tensor, patch_size: int, levels: int) -> None:
    """ValueError unless ``images`` is ``(B, 3, H, W)`` float with ``H, W`` multiples of
    ``patch_size * 2**(levels - 1)`` (no silent resize: resize or pad the images first)."""
    if not isinstance(images, Tensor) or images.ndim != 4:
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"pixel_values: expected (B, 3, H, W), got {shape}")
    if not images.is_floating_point():
        raise TypeError(f"pixel_values: expected a floating dtype, got {images.dtype}")
    multiple = patch_size * 2 ** (levels - 1)
    height, width = images.shape[-2:]
    if height % multiple or width % multiple:
        raise ValueError(
            f"pixel_values: height and width must be multiples of patch_size * "
            f"2**(levels - 1) = {patch_size} * {2 ** (levels - 1)} = {multiple} so that every "
            f"pyramid level tiles into whole patches, got {height}x{width}; resize or pad the "
            f"images first"
        )

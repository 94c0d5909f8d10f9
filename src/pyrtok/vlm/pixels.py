"""Pixels in ``[0, 1]`` for the allocator, normalised tokens for the vision model.

Allocators score raw ``[0, 1]`` pixels (the ``entropy`` scorer bins values on ``[0, 1]``;
band energies scale with contrast), so pyrtok's VLMs take ``[0, 1]`` images and normalise
inside, after allocating. The Gaussian pyramid is linear and keeps constants, so normalising
the tokens equals tokenizing normalised images.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from einops import rearrange
from torch import Tensor, nn

from pyrtok.allocation import TokenizedImages

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HALF = (0.5, 0.5, 0.5)

PROCESSOR_DEFAULTS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "clip_vision_model": (CLIP_MEAN, CLIP_STD),
    "siglip_vision_model": (HALF, HALF),
    "vit": (HALF, HALF),
    "dinov2": (IMAGENET_MEAN, IMAGENET_STD),
}
"""Mean and std of each vision model type's Hugging Face image processor."""


def check_unit_range(pixel_values: object) -> Tensor:
    """Raise unless ``pixel_values`` is a floating ``(B, C, H, W)`` tensor in ``[0, 1]``.

    Examples:
        >>> import torch
        >>> try:
        ...     check_unit_range(torch.full((1, 3, 8, 8), -1.5))
        ... except ValueError as error:
        ...     print(str(error)[:61])
        pixel_values: expected images in [0, 1] (the allocator scores
    """
    if not isinstance(pixel_values, Tensor):
        raise TypeError(f"pixel_values: expected a torch.Tensor, got {type(pixel_values).__name__}")
    if pixel_values.ndim != 4 or not pixel_values.is_floating_point():
        raise ValueError(
            f"pixel_values: expected floating (B, C, H, W) images, got {pixel_values.dtype} "
            f"{tuple(pixel_values.shape)}"
        )
    low, high = (float(v) for v in torch.aminmax(pixel_values.detach()))
    if not (low >= 0.0 and high <= 1.0):  # also False for NaN
        raise ValueError(
            f"pixel_values: expected images in [0, 1] (the allocator scores raw pixels; the "
            f"model's mean/std normalisation happens inside), got values in [{low:.4g}, "
            f"{high:.4g}]; pass x / 255 for 8-bit images, or undo a processor's normalisation"
        )
    return pixel_values


def _model_default(models: Iterable[nn.Module]) -> tuple[Sequence[float], Sequence[float]]:
    for model in models:
        config = getattr(model, "config", None)
        mean, std = getattr(config, "image_mean", None), getattr(config, "image_std", None)
        if mean is not None and std is not None:
            return mean, std
    for model in models:
        config = getattr(model, "config", None)
        for candidate in (config, getattr(config, "vision_config", None)):
            kind = getattr(candidate, "model_type", None)
            if kind in PROCESSOR_DEFAULTS:
                return PROCESSOR_DEFAULTS[kind]
    return CLIP_MEAN, CLIP_STD


def normalisation_for(
    models: Sequence[nn.Module],
    image_mean: Sequence[float] | None = None,
    image_std: Sequence[float] | None = None,
) -> tuple[Tensor, Tensor]:
    """``(C, 1)`` float32 mean and std: as given, else from the models (see
    :data:`PROCESSOR_DEFAULTS`), else CLIP's."""
    default_mean, default_std = _model_default(models)
    mean = torch.tensor(default_mean if image_mean is None else image_mean, dtype=torch.float32)
    std = torch.tensor(default_std if image_std is None else image_std, dtype=torch.float32)
    if mean.ndim != 1 or mean.shape != std.shape or not bool((std > 0).all()):
        raise ValueError(
            f"image_mean, image_std: expected one value per channel each, std > 0, got "
            f"{mean.tolist()} and {std.tolist()}"
        )
    return mean[:, None], std[:, None]


def normalise_tokens(tokens: TokenizedImages, mean: Tensor, std: Tensor) -> TokenizedImages:
    """``(token - mean) / std`` per channel of flattened ``(C, p, p)`` tokens; padding stays 0."""
    values = tokens.tokens
    width = values.shape[-1]
    channels = mean.shape[0]
    if width % channels:
        raise ValueError(
            f"image_mean: has {channels} channels but tokens hold {width} values (not C * p * p "
            f"for C = {channels})"
        )
    per_channel = rearrange(values, "b n (c pixels) -> b n c pixels", c=channels)
    normalised = (per_channel - mean.to(values.dtype)) / std.to(values.dtype)
    normalised = rearrange(normalised, "b n c pixels -> b n (c pixels)") * tokens.mask[..., None]
    return TokenizedImages(tokens=normalised, positions=tokens.positions, mask=tokens.mask)

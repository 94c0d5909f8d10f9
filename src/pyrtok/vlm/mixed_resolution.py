"""Mixed-resolution tokens through a pretrained Hugging Face ViT (APT / Quadformer style).

:func:`encode_mixed_resolution` runs the tokens of
:class:`~pyrtok.allocation.MixedResolutionTokenizer` (each a ``p`` x ``p`` patch read from its
Gaussian level) through a pretrained ViT-family vision model (``CLIPVisionModel``,
``SiglipVisionModel``, ``ViTModel``, ``Dinov2Model``) with no new weights:

1. each token's pixels go through the model's own patch embedding (its ``p`` x ``p`` conv
   applied to the token alone: ``p`` must equal the model's patch size);
2. the model's pretrained position-embedding grid is sampled bilinearly at each token's box
   centre (:func:`sample_position_embeddings`) and added; the CLS token (where the model has
   one) gets its own embedding, as in the model;
3. the model's pre-norm (CLIP), transformer layers and final norm (SigLIP, ViT, DINOv2; CLIP
   applies its ``post_layernorm`` to the pooled CLS only, so it is skipped here) run with an
   additive attention mask that hides padded tokens.

With every leaf at level 0 on the model's own grid, this is the model's forward exactly. Pixel
normalisation (the model's processor mean/std) is the caller's job: tokenize normalised images.
Layers that take no ``attention_mask`` (ViT and DINOv2 in transformers 4.5x) are run one image
at a time on its real tokens instead, which is exact and slower.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pyrtok.allocation import Allocation, TokenizedImages, tokenize


@dataclass(frozen=True, eq=False)
class MixedResolutionFeatures:
    """Features of mixed-resolution tokens.

    Attributes:
        tokens: ``(B, N, D)`` one feature per token, in the tokenizer's order; zeros on padding.
        prefix: ``(B, P, D)`` tokens the model puts first (CLS: ``P = 1``; SigLIP: ``P = 0``).
        mask: ``(B, N)`` bool, False on padding (the tokenizer's mask).
    """

    tokens: Tensor
    prefix: Tensor
    mask: Tensor


@dataclass(frozen=True, eq=False)
class _ViTParts:
    patch_weight: Tensor
    patch_bias: Tensor | None
    grid: Tensor
    cls: Tensor | None
    cls_position: Tensor | None
    pre_norm: nn.Module | None
    layers: list[nn.Module]
    final_norm: nn.Module | None
    dropout: nn.Module | None


def _layers(root: nn.Module) -> list[nn.Module] | None:
    encoder = getattr(root, "encoder", None)
    for owner, name in ((encoder, "layers"), (encoder, "layer"), (root, "layers")):
        found = getattr(owner, name, None)
        if isinstance(found, nn.ModuleList):
            return list(found)
    return None


def _vit_parts(model: nn.Module) -> _ViTParts:
    """The pieces of a ViT-family vision model, for transformers 4.5x and 5.x layouts."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected an nn.Module, got {type(model).__name__}")
    root = getattr(model, "vision_model", model)
    embeddings = getattr(root, "embeddings", None)
    conv = getattr(embeddings, "patch_embedding", None)
    if conv is None:
        conv = getattr(getattr(embeddings, "patch_embeddings", None), "projection", None)
    layers = _layers(root)
    table = getattr(embeddings, "position_embedding", None)
    positions = table.weight if isinstance(table, nn.Embedding) else None
    if positions is None:
        parameter = getattr(embeddings, "position_embeddings", None)
        positions = parameter[0] if isinstance(parameter, Tensor) else None
    if not isinstance(conv, nn.Conv2d) or layers is None or positions is None:
        raise TypeError(
            f"model: expected a Hugging Face ViT-family vision model (CLIPVisionModel, "
            f"SiglipVisionModel, ViTModel, Dinov2Model) with a patch-embedding conv, learned "
            f"position embeddings and encoder layers, got {type(model).__name__}"
        )
    if getattr(embeddings, "register_tokens", None) is not None:
        raise TypeError(f"model: {type(model).__name__} has register tokens; not supported")
    if conv.kernel_size != conv.stride or conv.kernel_size[0] != conv.kernel_size[1]:
        raise TypeError(
            f"model: expected a square patch embedding with stride = kernel, got kernel "
            f"{conv.kernel_size} stride {conv.stride}"
        )
    cls = getattr(embeddings, "class_embedding", None)
    if cls is None:
        cls = getattr(embeddings, "cls_token", None)
    count = positions.shape[0] - (cls is not None)
    side = round(count**0.5)
    if side * side != count:
        raise TypeError(
            f"model: expected a square position-embedding grid, got {count} patch positions"
        )
    clip_style = getattr(root, "pre_layrnorm", None)
    final = None if clip_style is not None else getattr(root, "post_layernorm", None)
    return _ViTParts(
        patch_weight=conv.weight,
        patch_bias=conv.bias,
        grid=positions[positions.shape[0] - count :].reshape(side, side, -1),
        cls=None if cls is None else cls.reshape(1, 1, -1),
        cls_position=None if cls is None else positions[:1],
        pre_norm=clip_style,
        layers=layers,
        final_norm=final if final is not None else getattr(root, "layernorm", None),
        dropout=getattr(embeddings, "dropout", None),
    )


def vit_patch_size(model: nn.Module) -> int:
    """Patch size of a ViT-family vision model (its patch-embedding conv's kernel).

    Examples:
        >>> from pyrtok.vlm.testing import tiny_clip
        >>> vit_patch_size(tiny_clip())
        8
    """
    return int(_vit_parts(model).patch_weight.shape[-1])


def vit_hidden_size(model: nn.Module) -> int:
    """Feature width of a ViT-family vision model (its patch embedding's output channels).

    Examples:
        >>> from pyrtok.vlm.testing import tiny_clip
        >>> vit_hidden_size(tiny_clip())
        32
    """
    return int(_vit_parts(model).patch_weight.shape[0])


def sample_position_embeddings(grid: Tensor, positions: Tensor) -> Tensor:
    """Bilinear samples of a position-embedding grid at normalised token centres.

    The grid covers the image: cell ``(i, j)`` of an ``h`` x ``w`` grid is centred at
    ``((i + 0.5) / h, (j + 0.5) / w)``; outside the cell centres the border value is held.

    Args:
        grid: ``(h, w, D)`` position embeddings in raster order.
        positions: ``(B, N, 2+)`` centre ``y``, ``x`` in ``[0, 1]`` (further columns ignored).

    Returns:
        ``(B, N, D)`` in the dtype of ``grid``.

    Examples:
        >>> grid = torch.arange(8.0).reshape(2, 2, 2)
        >>> sample_position_embeddings(grid, torch.tensor([[[0.25, 0.75], [0.5, 0.5]]]))
        tensor([[[2., 3.],
                 [3., 4.]]])
    """
    if not isinstance(grid, Tensor) or grid.ndim != 3:
        shape = tuple(grid.shape) if isinstance(grid, Tensor) else type(grid).__name__
        raise ValueError(f"grid: expected (h, w, D), got {shape}")
    if not isinstance(positions, Tensor) or positions.ndim != 3 or positions.shape[-1] < 2:
        shape = tuple(positions.shape) if isinstance(positions, Tensor) else "not a tensor"
        raise ValueError(f"positions: expected (B, N, 2+) centres y, x, got {shape}")
    batch, count = positions.shape[:2]
    xy = positions[..., [1, 0]].to(torch.float32) * 2 - 1
    image = grid.permute(2, 0, 1)[None].to(torch.float32).expand(batch, -1, -1, -1)
    sampled = F.grid_sample(
        image, xy[:, :, None], mode="bilinear", padding_mode="border", align_corners=False
    )
    return sampled[..., 0].transpose(1, 2).reshape(batch, count, -1).to(grid.dtype)


def _additive_mask(mask: Tensor, dtype: torch.dtype) -> Tensor:
    """``(B, 1, N, N)`` 0 / dtype-min key mask from a ``(B, N)`` bool mask."""
    hidden = torch.zeros(mask.shape, dtype=dtype, device=mask.device)
    hidden.masked_fill_(~mask, torch.finfo(dtype).min)
    return hidden[:, None, None, :].expand(-1, 1, mask.shape[1], -1)


def _run_layers(parts: _ViTParts, hidden: Tensor, mask: Tensor) -> list[Tensor]:
    """Hidden states ``[input, after layer 1, ...]`` with padded keys hidden from attention."""
    takes = inspect.signature(parts.layers[0].forward).parameters
    padded = not bool(mask.all())
    if padded and "attention_mask" not in takes:  # no mask argument: each image on its own
        states = [torch.zeros_like(hidden) for _ in range(len(parts.layers) + 1)]
        for b in range(hidden.shape[0]):
            real = mask[b]
            alone = _run_layers(parts, hidden[b : b + 1, real], real[real][None])
            for state, row in zip(states, alone, strict=True):
                state[b, real] = row[0]
        return states
    kwargs: dict[str, Tensor | None] = {}
    if "attention_mask" in takes:
        kwargs["attention_mask"] = _additive_mask(mask, hidden.dtype) if padded else None
    if "causal_attention_mask" in takes:
        kwargs["causal_attention_mask"] = None
    states = [hidden]
    for layer in parts.layers:
        out = layer(hidden, **kwargs)
        hidden = out[0] if isinstance(out, tuple) else out
        states.append(hidden)
    return states


def encode_mixed_resolution(
    model: nn.Module, tokens: TokenizedImages, feature_layer: int | None = None
) -> MixedResolutionFeatures:
    """Run mixed-resolution tokens through a pretrained ViT-family vision model.

    See the module docstring for the steps. Gradients flow to the model and the tokens.

    Args:
        model: ``CLIPVisionModel``, ``SiglipVisionModel``, ``ViTModel`` or ``Dinov2Model``
            (eager or SDPA attention; not flash attention, which takes no additive mask).
        tokens: from :func:`~pyrtok.allocation.tokenize` with ``min_patch`` equal to the model's
            patch size, of images normalised as the model expects.
        feature_layer: ``None`` for the last hidden state (after the model's final norm where
            it applies one to every token); an int picks ``hidden_states[feature_layer]`` as
            Hugging Face counts them (0 = embeddings; LLaVA uses ``-2``), without final norm.

    Returns:
        :class:`MixedResolutionFeatures` ``tokens (B, N, D)``, ``prefix (B, P, D)``, ``mask``.

    Examples:
        >>> from pyrtok.allocation import allocate
        >>> from pyrtok.vlm.testing import tiny_clip
        >>> x = torch.rand(2, 3, 64, 64)
        >>> tokens = tokenize(x, allocate(x, budget=16, min_patch=8, max_patch=32))
        >>> out = encode_mixed_resolution(tiny_clip(), tokens, feature_layer=-2)
        >>> out.tokens.shape, out.prefix.shape
        (torch.Size([2, 16, 32]), torch.Size([2, 1, 32]))
    """
    parts = _vit_parts(model)
    if not isinstance(tokens, TokenizedImages):
        raise TypeError(f"tokens: expected TokenizedImages, got {type(tokens).__name__}")
    weight = parts.patch_weight
    width = weight[0].numel()
    if tokens.tokens.shape[-1] != width:
        raise ValueError(
            f"tokens: expected {width} values per token (C * p * p = {weight.shape[1]} * "
            f"{weight.shape[2]} * {weight.shape[3]}: the tokenizer's min_patch must equal the "
            f"model's patch size {weight.shape[-1]}), got {tokens.tokens.shape[-1]}"
        )
    mask = tokens.mask
    hidden = F.linear(tokens.tokens.to(weight.dtype), weight.flatten(1), parts.patch_bias)
    hidden = hidden + sample_position_embeddings(parts.grid, tokens.positions)
    if parts.cls is not None and parts.cls_position is not None:
        cls = (parts.cls + parts.cls_position).expand(hidden.shape[0], -1, -1)
        hidden = torch.cat([cls, hidden], dim=1)
        mask = torch.cat([mask.new_ones((mask.shape[0], 1)), mask], dim=1)
    if parts.dropout is not None:
        hidden = parts.dropout(hidden)
    if parts.pre_norm is not None:
        hidden = parts.pre_norm(hidden)
    states = _run_layers(parts, hidden, mask)
    if feature_layer is None:
        hidden = states[-1] if parts.final_norm is None else parts.final_norm(states[-1])
    else:
        if not -len(states) <= feature_layer < len(states):
            raise ValueError(
                f"feature_layer: expected an index into {len(states)} hidden states, got "
                f"{feature_layer}"
            )
        hidden = states[feature_layer]
    prefix = hidden.shape[1] - tokens.mask.shape[1]
    return MixedResolutionFeatures(
        tokens=hidden[:, prefix:] * tokens.mask[..., None],
        prefix=hidden[:, :prefix],
        mask=tokens.mask,
    )


class MixedResolutionEncoder(nn.Module):
    """Module twin of :func:`encode_mixed_resolution`, from images and an allocation.

    Args:
        model: a Hugging Face ViT-family vision model (see :func:`encode_mixed_resolution`).
        feature_layer: as :func:`encode_mixed_resolution`.

    Shapes:
        ``images (B, 3, H, W)`` (normalised as the model expects) + an allocation with
        ``min_patch`` = the model's patch size -> :class:`MixedResolutionFeatures`
        ``tokens (B, N, D)``, ``prefix (B, P, D)``, ``mask (B, N)``.

    Examples:
        >>> from pyrtok.allocation import FrequencyAwareAllocator
        >>> from pyrtok.vlm.testing import tiny_clip
        >>> encoder = MixedResolutionEncoder(tiny_clip())
        >>> x = torch.rand(2, 3, 64, 64)
        >>> allocation = FrequencyAwareAllocator(budget=22, min_patch=8, max_patch=32)(x)
        >>> encoder(x, allocation).tokens.shape
        torch.Size([2, 22, 32])
    """

    def __init__(self, model: nn.Module, feature_layer: int | None = None) -> None:
        super().__init__()
        self.patch_size = vit_patch_size(model)
        self.model = model
        self.feature_layer = feature_layer

    def forward(self, images: Tensor, allocation: Allocation) -> MixedResolutionFeatures:
        if not isinstance(allocation, Allocation):
            raise TypeError(f"allocation: expected an Allocation, got {type(allocation).__name__}")
        if allocation.geometry.min_patch != self.patch_size:
            raise ValueError(
                f"allocation: min_patch must equal the model's patch size {self.patch_size}, "
                f"got {allocation.geometry.min_patch}; allocate with min_patch="
                f"{self.patch_size}"
            )
        return encode_mixed_resolution(self.model, tokenize(images, allocation), self.feature_layer)

"""The parts every pyrtok VLM wires the same way: projector, placeholder id, freezing, text."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import Tensor, nn

from pyrtok.vlm._hf import call_lm, input_embeddings
from pyrtok.vlm.projector import MLPProjector
from pyrtok.vlm.sequence import MergedSequence


def resolve_projector(
    projector: nn.Module | str | None, feature_dim: int, hidden: int
) -> nn.Module:
    """``None`` -> :class:`~pyrtok.vlm.MLPProjector`, ``"identity"`` (needs equal sizes), or the
    module as given."""
    if projector is None:
        return MLPProjector(feature_dim, hidden)
    if projector == "identity":
        if feature_dim != hidden:
            raise ValueError(
                f"projector: 'identity' needs the vision hidden size to equal the LM's, got "
                f"{feature_dim} vs {hidden}; use projector=None (an MLP) instead"
            )
        return nn.Identity()
    if not isinstance(projector, nn.Module):
        raise TypeError(f"projector: expected None, 'identity' or an nn.Module, got {projector!r}")
    return projector


def resolve_image_token(image_token_id: int | None, language_model: nn.Module) -> int:
    """The placeholder id: as given, else the LM config's ``image_token_id``."""
    if image_token_id is None:
        config = getattr(language_model, "config", None)
        image_token_id = getattr(config, "image_token_id", None)
    if isinstance(image_token_id, bool) or not isinstance(image_token_id, int):
        raise ValueError(
            f"image_token_id: expected the int id of the image placeholder in input_ids "
            f"(none on language_model.config), got {image_token_id!r}"
        )
    return image_token_id


def freeze_parts(parts: Mapping[str, nn.Module], freeze: tuple[str, ...]) -> None:
    """Stop gradients of the named ``parts``. A wrapped LLaVA's ``language_model`` holds its
    vision tower and projector too: freezing the LM leaves those to their own names."""
    unknown = set(freeze) - set(parts)
    if unknown:
        raise ValueError(f"freeze: expected names from {list(parts)}, got {sorted(unknown)}")
    others = {
        id(p) for name, part in parts.items() if name != "language_model" for p in part.parameters()
    }
    for name in freeze:
        for parameter in parts[name].parameters():
            if name != "language_model" or id(parameter) not in others:
                parameter.requires_grad_(False)


def embed_text(language_model: nn.Module, input_ids: Tensor, image_token_id: int) -> Tensor:
    """``(B, T)`` ids -> ``(B, T, D)`` LM input embeddings (placeholders embedded as id 0)."""
    ids = input_ids.masked_fill(input_ids == image_token_id, 0)
    embeds: Tensor = input_embeddings(language_model)(ids)
    return embeds


def check_projected(embeds: Tensor, hidden: int) -> Tensor:
    """Raise when a projector's output is not the LM's hidden size."""
    if embeds.shape[-1] != hidden:
        raise ValueError(
            f"projector: produced features of size {embeds.shape[-1]} but the language "
            f"model's hidden size is {hidden}; give a projector to {hidden} (or "
            f"projector=None for the default MLP)"
        )
    return embeds


def check_one_image_per_row(pixel_values: Tensor | Sequence[Tensor], input_ids: Tensor) -> None:
    """Raise unless there is one image per prompt row (a batch or a list of images)."""
    if len(pixel_values) != input_ids.shape[0]:
        raise ValueError(
            f"pixel_values: expected one image per input_ids row ({input_ids.shape[0]}), got "
            f"{len(pixel_values)}"
        )


def lm_forward(language_model: nn.Module, merged: MergedSequence) -> Any:
    """The LM's output on a merged sequence (loss when it carries labels)."""
    return call_lm(
        language_model,
        merged.inputs_embeds,
        merged.attention_mask,
        merged.position_ids,
        labels=merged.labels,
    )


def lm_generate(language_model: nn.Module, merged: MergedSequence, **kwargs: Any) -> Tensor:
    """``language_model.generate`` on a merged, left-padded sequence: ``(B, T_new)`` new ids
    (HF returns only new tokens when given ``inputs_embeds``)."""
    generate = getattr(language_model, "generate", None)
    if generate is None:
        raise TypeError(
            f"language_model: {type(language_model).__name__} has no generate(); use a "
            f"Hugging Face causal LM"
        )
    out: Tensor = generate(
        inputs_embeds=merged.inputs_embeds, attention_mask=merged.attention_mask, **kwargs
    )
    return out

"""The typed output of pyrtok's VLM forwards (a ``transformers`` ``ModelOutput``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from transformers.utils.generic import ModelOutput

from pyrtok.allocation import Allocation
from pyrtok.vlm._hf import output_cache


@dataclass
class VLMOutput(ModelOutput):
    """What :class:`~pyrtok.vlm.MixedResolutionVLM` and :class:`~pyrtok.vlm.HierarchicalVLM`
    return: the LM's outputs plus what pyrtok decided about the image.

    Attributes:
        loss: LM loss (plus the quantizer's weighted loss) when ``labels`` were given.
        logits: ``(B, S, V)`` over the merged sequence.
        cache: the LM's KV cache when it returned one (its ``cache`` or ``past_key_values``).
        allocation: the quadtree allocation the visual tokens follow (a list of one per image
            for a list of images; ``None`` where the model does not allocate, e.g.
            ``HierarchicalVLM`` selects residual tokens).
        visual_counts: ``(B,)`` int64 visual tokens that entered the LM per row.
        vq_loss: the quantizer's loss, when a quantizer is used.
    """

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    cache: Any = None
    allocation: Allocation | list[Allocation] | None = None
    visual_counts: torch.Tensor | None = None
    vq_loss: torch.Tensor | None = None


def vlm_output(
    lm_output: Any,
    visual_counts: torch.Tensor,
    allocation: Allocation | list[Allocation] | None = None,
    vq_loss: torch.Tensor | None = None,
    vq_weight: float = 1.0,
) -> VLMOutput:
    """Wrap an LM output; ``vq_weight * vq_loss`` is added to the loss where both exist."""
    loss = getattr(lm_output, "loss", None)
    if loss is not None and vq_loss is not None:
        loss = loss + vq_weight * vq_loss
    cache = output_cache(lm_output)
    return VLMOutput(
        loss=loss,
        logits=lm_output.logits,
        cache=cache,
        allocation=allocation,
        visual_counts=visual_counts,
        vq_loss=vq_loss,
    )

"""Hierarchical and progressive VLMs on Hugging Face models: encoder adapters, multi-scale
residual visual tokens, per-region selection, confidence functions, mixed-resolution tokens
through pretrained ViT encoders."""

from pyrtok.vlm._hf import call_lm
from pyrtok.vlm.baselines import (
    ClsAttentionSelector,
    DivPruneSelector,
    DownsampleSelector,
    RandomSelector,
)
from pyrtok.vlm.confidence import (
    CONFIDENCES,
    ConfidenceFn,
    first_token_prob,
    margin,
    mean_token_prob,
    resolve_confidence,
)
from pyrtok.vlm.encoders import GridFeatures, VisionEncoder, encode_pyramid
from pyrtok.vlm.hierarchical import HierarchicalVLM, VisualTokens
from pyrtok.vlm.inllm_pruning import InLLMPruning, fastv, pyramid_drop
from pyrtok.vlm.mixed_resolution import (
    MixedResolutionEncoder,
    MixedResolutionFeatures,
    encode_mixed_resolution,
    sample_position_embeddings,
    vit_patch_size,
)
from pyrtok.vlm.mixed_resolution_vlm import MixedResolutionVLM
from pyrtok.vlm.output import VLMOutput
from pyrtok.vlm.progressive import ProgressiveOutput, ProgressiveVLM
from pyrtok.vlm.projector import MLPProjector
from pyrtok.vlm.residual import compact, gather_tokens, residual_grids
from pyrtok.vlm.selection import (
    AllSelector,
    FrequencySelector,
    QuerySelector,
    Selection,
    Selector,
)
from pyrtok.vlm.sequence import MergedSequence, merge_sequence, split_at_image

__all__ = [
    "CONFIDENCES",
    "AllSelector",
    "ClsAttentionSelector",
    "ConfidenceFn",
    "DivPruneSelector",
    "DownsampleSelector",
    "FrequencySelector",
    "GridFeatures",
    "HierarchicalVLM",
    "InLLMPruning",
    "MLPProjector",
    "MergedSequence",
    "MixedResolutionEncoder",
    "MixedResolutionFeatures",
    "MixedResolutionVLM",
    "ProgressiveOutput",
    "ProgressiveVLM",
    "QuerySelector",
    "RandomSelector",
    "Selection",
    "Selector",
    "VLMOutput",
    "VisionEncoder",
    "VisualTokens",
    "call_lm",
    "compact",
    "encode_mixed_resolution",
    "encode_pyramid",
    "fastv",
    "first_token_prob",
    "gather_tokens",
    "margin",
    "mean_token_prob",
    "merge_sequence",
    "pyramid_drop",
    "residual_grids",
    "resolve_confidence",
    "sample_position_embeddings",
    "split_at_image",
    "vit_patch_size",
]

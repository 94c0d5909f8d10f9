"""The needle model: a small ViT + a small Llama in a HierarchicalVLM, and its token budgets.

Geometry: 256 x 256 scenes, patch 16, 3 pyramid levels. Scale 0 is the 64 x 64 image (16
coarse tokens); scales 1 and 2 give residual tokens on 8 x 8 and 16 x 16 grids. The quadtree has
16 cells of 64 px; each split adds the 4 residual tokens under it, so a budget of ``s`` splits is
``16 + 4 s`` visual tokens (``s <= 80``: 336 tokens, everything).

Allocators (all greedy on the quadtree, so they differ only in which nodes they split):
``laplacian``, ``entropy``, ``blur`` (pyrtok's scorers) and ``uniform``: a content-blind order
(shallower nodes first, then an ordered-dither spread over the image), which is exactly the
regular grid at 16, 80 and 336 tokens and spreads its splits evenly in between.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from transformers import LlamaConfig, LlamaForCausalLM, ViTConfig, ViTModel

from pyrtok.allocation import allocate
from pyrtok.allocation.scorers import Scorer
from pyrtok.vlm import HierarchicalVLM, ProgressiveVLM

PATCH = 16
LEVELS = 3
MAX_PATCH = PATCH * 2 ** (LEVELS - 1)
CELLS = 16
MAX_SPLITS = CELLS * (4 ** (LEVELS - 1) - 1) // 3
ALLOCATORS = ("uniform", "laplacian", "entropy", "blur")
PAD, BOS, EOS, IMAGE, WHICH, DIGIT, QUESTION_MARK = range(7)
FIRST_DIGIT = 7
PROMPT = (BOS, IMAGE, WHICH, DIGIT, QUESTION_MARK)
MEAN, STD = 0.5, 0.25


def visual_tokens(splits: int) -> int:
    """Visual tokens the LM sees for ``splits`` quadtree splits (coarse tokens included)."""
    return CELLS + 4 * splits


def _bayer(side: int) -> Tensor:
    """``(side, side)`` ordered-dither ranks in ``[0, 1)``: any prefix of the order is spread."""
    ranks = torch.zeros(1, 1)
    while ranks.shape[0] < side:
        ranks = torch.cat(
            [torch.cat([4 * ranks, 4 * ranks + 2], 1), torch.cat([4 * ranks + 3, 4 * ranks + 1], 1)]
        )
    return ranks / ranks.numel()


def uniform_scores(images: Tensor, min_patch: int, max_patch: int) -> list[Tensor]:
    """Content-blind scores: every node of depth ``d`` beats every node of depth ``d + 1``."""
    rows, cols = (side // max_patch for side in images.shape[-2:])
    depth = (max_patch // min_patch).bit_length() - 1
    maps = []
    for d in range(depth):
        side = max(rows, cols) << d
        rank = _bayer(1 << (side - 1).bit_length())[: rows << d, : cols << d]
        maps.append((depth - d - rank).expand(images.shape[0], -1, -1).to(images.device))
    return maps


def scorer_for(allocator: str) -> str | Scorer:
    """The quadtree scorer of one of :data:`ALLOCATORS`."""
    if allocator not in ALLOCATORS:
        raise ValueError(f"allocator: expected one of {ALLOCATORS}, got {allocator!r}")
    return uniform_scores if allocator == "uniform" else allocator


class BudgetSelector(nn.Module):
    """A selector whose budget (``splits``) and deepest scale are set before each batch.

    Args:
        allocator: one of :data:`ALLOCATORS`.
    """

    def __init__(self, allocator: str) -> None:
        super().__init__()
        self.scorer = scorer_for(allocator)
        self.allocator = allocator
        self.splits = MAX_SPLITS
        self.max_scale = LEVELS - 1

    def forward(
        self, images: Tensor, grids: list[Tensor], query: Tensor | None, patch_size: int
    ) -> list[Tensor]:
        budget = CELLS + 3 * self.splits
        # The model sees normalised pixels; the scorers read [0, 1] ones (entropy bins them).
        pixels = (images * STD + MEAN).clamp(0, 1)
        allocation = allocate(pixels, budget, patch_size, MAX_PATCH, "greedy", self.scorer)
        keep = allocation.nodes()
        return [k if s <= self.max_scale else torch.zeros_like(k) for s, k in enumerate(keep)]


class ConvStem(nn.Sequential):
    """Four 3 x 3 stride-2 convolutions (patch 16) in place of the ViT's 16 x 16 projection:
    early convolutions make ViTs train much faster (Xiao et al., 2021)."""

    def __init__(self, width: int, channels: tuple[int, ...] = (8, 16, 32)) -> None:
        layers: list[nn.Module] = []
        for c_in, c_out in zip((3, *channels), channels, strict=False):
            layers += [nn.Conv2d(c_in, c_out, 3, 2, 1), nn.BatchNorm2d(c_out), nn.GELU()]
        layers.append(nn.Conv2d(channels[-1], width, 3, 2, 1))
        super().__init__(*layers)

    @property
    def weight(self) -> Tensor:  # read by ViTModel.forward for the input dtype
        return self[-1].weight


def build(
    allocator: str,
    seed: int,
    progressive: bool = False,
    width: int = 128,
    freeze: tuple[str, ...] = ("encoder",),
) -> nn.Module:
    """A randomly initialised needle VLM: conv-stem ViT (0.47M parameters) + Llama (0.34M) +
    projector, 0.84M in all; the encoder frozen by default, as in stage 2."""
    torch.manual_seed(seed)
    vision = ViTModel(
        ViTConfig(
            hidden_size=width,
            intermediate_size=2 * width,
            num_hidden_layers=3,
            num_attention_heads=4,
            image_size=256,
            patch_size=PATCH,
            attn_implementation="sdpa",
        ),
        add_pooling_layer=False,
    )
    vision.embeddings.patch_embeddings.projection = ConvStem(width)
    lm = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=32,
            hidden_size=width,
            intermediate_size=2 * width,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=4,
            max_position_embeddings=512,
            bos_token_id=BOS,
            eos_token_id=EOS,
            pad_token_id=PAD,
            attn_implementation="sdpa",
        )
    )
    cls = ProgressiveVLM if progressive else HierarchicalVLM
    kwargs = {"confidence": "first_token"} if progressive else {}
    return cls(
        vision,
        lm,
        levels=LEVELS,
        freeze=freeze,
        selector=BudgetSelector(allocator),
        image_token_id=IMAGE,
        **kwargs,
    )


def normalise(images: Tensor) -> Tensor:
    """uint8 ``(B, 3, H, W)`` -> float32 pixel values for the model."""
    return (images.float() / 255 - MEAN) / STD


def prompts(labels: Tensor) -> tuple[Tensor, Tensor]:
    """``input_ids`` (prompt + answer digit + EOS) and ``labels`` (-100 but the answer)."""
    batch = labels.shape[0]
    prompt = torch.tensor(PROMPT, device=labels.device).expand(batch, -1)
    answer = (labels + FIRST_DIGIT)[:, None]
    ids = torch.cat([prompt, answer, torch.full_like(answer, EOS)], 1)
    targets = torch.full_like(ids, -100)
    targets[:, len(PROMPT)] = answer[:, 0]
    return ids, targets


def set_budget(vlm: nn.Module, splits: int, max_scale: int = LEVELS - 1) -> None:
    selector = vlm.selector
    assert isinstance(selector, BudgetSelector)
    selector.splits = splits
    selector.max_scale = max_scale


@torch.no_grad()
def predict(vlm: nn.Module, images: Tensor) -> tuple[Tensor, Tensor]:
    """Predicted digits ``(B,)`` and the visual tokens each image got ``(B,)``."""
    batch = images.shape[0]
    ids = torch.tensor(PROMPT, device=images.device).expand(batch, -1)
    merged, visual = vlm.merge(normalise(images), ids)
    logits = vlm.language_model(
        inputs_embeds=merged.inputs_embeds,
        attention_mask=merged.attention_mask,
        position_ids=merged.position_ids,
    ).logits
    last = merged.attention_mask.sum(1) - 1
    step = logits[torch.arange(batch, device=logits.device), last, FIRST_DIGIT : FIRST_DIGIT + 10]
    return step.argmax(-1), visual.counts

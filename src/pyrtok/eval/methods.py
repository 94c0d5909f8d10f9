"""The contenders of a sweep on one LLaVA-style model, each at a token budget.

- ``"full"``: every ViT token (the reference; the budget is ignored);
- the pre-LLM baselines of :data:`pyrtok.vlm.baselines.BASELINES` (``"random"``,
  ``"downsample"``, ``"cls_attention"``, ``"mean_attention"``, ``"divprune"``,
  ``"visionzip"``): a :class:`~pyrtok.vlm.HierarchicalVLM` with ``levels=1`` (LLaVA's own
  full-image encoding) whose selector sends ``budget`` tokens per image (kept grid tokens,
  plus VisionZip's merged contextual tokens; ``"downsample"``: the pooled grid, only at the
  budgets ``(h / s) * (w / s)``, other budgets are skipped with the feasible ones named);
- ``"fastv"`` and ``"pyramid_drop"``: every token enters the LM and is pruned inside
  (:mod:`pyrtok.vlm.inllm_pruning`) so that the equivalent tokens match the budget;
- ``"pyrtok_<scorer>"`` (e.g. ``"pyrtok_laplacian"``, ``"pyrtok_entropy"``): pyrtok's
  frequency-aware quadtree through :class:`~pyrtok.vlm.MixedResolutionVLM` (the encoder runs
  on the allocated tokens only), ``budget_mode="at_most"``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from pyrtok.vlm import HierarchicalVLM, MixedResolutionVLM
from pyrtok.vlm.baselines import BASELINES, baseline_selector
from pyrtok.vlm.inllm_pruning import InLLMPruning, decoder_layers, fastv, pyramid_drop
from pyrtok.vlm.llava import llava_parts
from pyrtok.vlm.pixels import normalisation_for
from pyrtok.vlm.selection import AllSelector
from pyrtok.vlm.sequence import MergedSequence, split_at_image

IN_LLM = ("fastv", "pyramid_drop")


@dataclass(frozen=True, eq=False)
class Prepared:
    """A batch ready for the LM (left-padded) and what it cost before the LM.

    Attributes:
        merged: the LM inputs.
        image_mask: ``(B, S)`` bool, True at the visual tokens.
        visual: ``(B,)`` visual tokens entering the LM.
        encoder_tokens: tokens the vision encoder ran on per image (prefix included).
        pruning: in-LLM pruning to arm around the LM calls, or ``None``.
    """

    merged: MergedSequence
    image_mask: Tensor
    visual: Tensor
    encoder_tokens: int
    pruning: InLLMPruning | None


Method = Callable[[Tensor, Tensor, Tensor], Prepared]
"""``method(images [0, 1] (B, 3, H, W), input_ids (B, T), attention_mask (B, T)) -> Prepared``."""


def image_mask(
    merged: MergedSequence,
    input_ids: Tensor,
    attention_mask: Tensor,
    image_token_id: int,
    visual: Tensor,
) -> Tensor:
    """``(B, S)`` positions of the visual tokens in a left-padded merged sequence."""
    before = split_at_image(input_ids, attention_mask, image_token_id, visual)[0].sum(1)
    real = merged.attention_mask.bool()
    start = real.shape[1] - real.sum(1) + before
    column = torch.arange(real.shape[1], device=real.device)[None]
    return (column >= start[:, None]) & (column < (start + visual.to(start.device))[:, None])


class SweepModel:
    """One LLaVA model under every contender (the weights are shared, never copied).

    Args:
        llava: a ``LlavaForConditionalGeneration`` (e.g. :func:`pyrtok.vlm.testing.tiny_llava`).
        fastv_layer: FastV's ``K`` (default 2, the paper's; clipped to ``L - 1``).
        seed: seed of the random baseline.

    Examples:
        >>> from pyrtok.vlm.testing import tiny_llava
        >>> model = SweepModel(tiny_llava())
        >>> prepared = model.method("divprune", 4)(torch.rand(1, 3, 32, 32),
        ...     torch.tensor([[1, 63, 5]]), torch.ones(1, 3, dtype=torch.long))
        >>> prepared.visual.tolist(), prepared.image_mask.int().tolist()
        ([4], [[0, 1, 1, 1, 1, 0]])
    """

    def __init__(self, llava: nn.Module, fastv_layer: int = 2, seed: int = 0) -> None:
        parts = llava_parts(llava)
        self.llava = llava
        self.tower = parts.vision_tower
        self.image_token_id = parts.image_token_id
        mean, std = normalisation_for((parts.vision_tower, llava), None, None)
        self.route: HierarchicalVLM = HierarchicalVLM.from_llava(
            llava,
            levels=1,
            selector="all",
            image_mean=mean.flatten().tolist(),
            image_std=std.flatten().tolist(),
        )
        self.layers = len(decoder_layers(llava))
        self.fastv_layer = min(fastv_layer, self.layers - 1)
        self.seed = seed
        embeddings = getattr(getattr(self.tower, "vision_model", self.tower), "embeddings", None)
        self.prefix = int(getattr(embeddings, "class_embedding", None) is not None)
        self._mixed: dict[str, MixedResolutionVLM] = {}
        self._built: list[nn.Module] = []

    def release(self) -> None:
        """Remove the hooks the selectors built so far put on the encoder."""
        for selector in self._built:
            remove = getattr(selector, "remove_hook", None)
            if remove is not None:
                remove()
        self._built.clear()

    def names(self) -> list[str]:
        """Every built-in contender (``pyrtok_<scorer>`` takes any registered scorer)."""
        return ["full", *sorted(BASELINES), *IN_LLM, "pyrtok_laplacian", "pyrtok_entropy"]

    def method(self, name: str, budget: int) -> Method:
        """The contender ``name`` at ``budget`` (visual tokens, or equivalent tokens for the
        in-LLM methods)."""
        if name == "full":
            return self._route(AllSelector(), None)
        if name in BASELINES:
            selector = baseline_selector(name, self.tower, budget, self.seed)
            self._built.append(selector)
            return self._route(selector, None)
        if name in IN_LLM:
            return self._route(AllSelector(), lambda visual: self.pruning(name, budget, visual))
        if name.startswith("pyrtok_"):
            return self._mixed_method(name.removeprefix("pyrtok_"), budget)
        raise ValueError(f"name: no method {name!r}; expected one of {self.names()}")

    def pruning(self, name: str, budget: float, visual: int) -> InLLMPruning:
        """FastV / PyramidDrop whose equivalent tokens come closest to ``budget`` for
        ``visual`` image tokens; a ValueError when the budget is out of its reach."""
        layers, k = self.layers, self.fastv_layer
        if name == "fastv":
            floor = k * visual / layers
            if not floor <= budget <= visual:
                raise ValueError(
                    f"budget: FastV (K={k}) spans {floor:g}..{visual} equivalent tokens here, got "
                    f"{budget}"
                )
            return fastv(self.llava, k, (budget * layers - k * visual) / ((layers - k) * visual))
        low, high = 0.0, 1.0
        for _ in range(40):  # the equivalent tokens grow with the ratio
            ratio = (low + high) / 2
            equivalent = sum(pyramid_drop(self.llava, ratio=ratio).visual_per_layer(visual))
            low, high = (ratio, high) if equivalent / layers < budget else (low, ratio)
        pruning = pyramid_drop(self.llava, ratio=high)
        floor = sum(pyramid_drop(self.llava, ratio=0.0).visual_per_layer(visual)) / layers
        if budget < floor or budget > visual:
            raise ValueError(
                f"budget: PyramidDrop spans {floor:g}..{visual} equivalent tokens here, got "
                f"{budget}"
            )
        return pruning

    def _route(self, selector: nn.Module, pruning: Callable[[int], InLLMPruning] | None) -> Method:
        def run(images: Tensor, input_ids: Tensor, attention_mask: Tensor) -> Prepared:
            self.route.selector = selector
            merged, visual = self.route.merge(images, input_ids, attention_mask, None, "left")
            counts = visual.counts
            mask = image_mask(merged, input_ids, attention_mask, self.image_token_id, counts)
            grid = (images.shape[-2] // self.route.vision_encoder.patch_size) * (
                images.shape[-1] // self.route.vision_encoder.patch_size
            )
            prune = None if pruning is None else pruning(int(counts[0]))
            return Prepared(merged, mask, counts, grid + self.prefix, prune)

        return run

    def _mixed_method(self, scorer: str, budget: int) -> Method:
        if scorer not in self._mixed:
            self._mixed[scorer] = MixedResolutionVLM.from_llava(
                self.llava, budget_mode="at_most", scorer=scorer
            )
        vlm = self._mixed[scorer]

        def run(images: Tensor, input_ids: Tensor, attention_mask: Tensor) -> Prepared:
            merged, counts, _, _ = vlm.merge(
                images, input_ids, attention_mask, None, None, budget, "left"
            )
            mask = image_mask(merged, input_ids, attention_mask, self.image_token_id, counts)
            return Prepared(merged, mask, counts, int(counts.max()) + self.prefix, None)

        return run

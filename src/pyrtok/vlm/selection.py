"""Per-region selection of residual tokens: which finer-level tokens each image gets.

A selector (the :class:`Selector` protocol) maps ``(images, residual grids, query, patch_size)``
to one bool keep map per scale ``(B, h_s, w_s)``; scale 0 (the coarse tokens) is kept in full.
It may also return new tokens (a :class:`Selection` with ``extra``): VisionZip's merged
contextual tokens, a pooled grid. :func:`check_keep` checks what a selector returns;
:func:`selected_tokens` gathers the kept and the extra tokens into one sequence per image.

- :class:`FrequencySelector` (default): a quadtree allocation by
  :func:`~pyrtok.allocation.allocate` with ``min_patch = p`` and ``max_patch = p * 2**(L-1)``.
  Quadtree depth ``d`` is VLM scale ``s = d``, so the keep map of scale ``s`` is the allocation's
  tree at that depth (:meth:`~pyrtok.allocation.Allocation.nodes`): the residual tokens of a
  region are kept where its node exists, i.e. under every split. Each split costs 4 residual
  tokens.
- :class:`AllSelector`: every residual token.
- :class:`QuerySelector`: query-conditioned (the seed's ``query_needs_detail``): a gate on the
  question decides whether the image gets any residual tokens; a bilinear score of question
  and residual token picks the top ``detail`` fraction per level.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from pyrtok.allocation import (
    Allocation,
    FrequencyAwareAllocator,
    QuadtreeGeometry,
    Scorer,
    Strategy,
    allocate,
)
from pyrtok.vlm.residual import compact, gather_tokens


class Selection(NamedTuple):
    """What a selector may return instead of bare keep maps: keep maps plus extra tokens.

    Attributes:
        keep: ``L`` bool keep maps ``(B, h_s, w_s)``, coarsest first (as the bare form).
        extra: ``(B, M, D_v)`` new visual tokens in the grids' feature space (dtype and
            device of the grids), appended after each image's kept tokens, before the
            projector; ``None``: none.
        extra_mask: ``(B, M)`` bool, True on the real extra tokens of each row, when rows
            differ in how many they have; ``None``: all ``M`` are real.

    A plain tuple ``(keep, extra)`` or ``(keep, extra, extra_mask)`` is the same (this is a
    ``NamedTuple``). The extra tokens get scale 0.

    Examples:
        >>> grids = [torch.zeros(2, 4, 4, 8)]
        >>> none = torch.zeros(2, 4, 4, dtype=torch.bool)
        >>> selection = Selection([none], torch.ones(2, 3, 8))
        >>> tokens, mask, scales = selected_tokens(grids, selection)
        >>> tokens.shape, mask.sum(1).tolist()
        (torch.Size([2, 3, 8]), [3, 3])
    """

    keep: list[Tensor]
    extra: Tensor | None = None
    extra_mask: Tensor | None = None


@runtime_checkable
class Selector(Protocol):
    """Which tokens of each scale an image sends to the LM: the contract of ``selector=`` in
    :class:`~pyrtok.vlm.HierarchicalVLM` and :class:`~pyrtok.vlm.ProgressiveVLM`.

    A selector is any callable (usually an ``nn.Module``, so its parameters train and move
    with the model) ``selector(images, grids, query, patch_size) -> keep`` with

    - ``images``: ``(B, 3, H, W)``, the pixel values the VLM was given;
    - ``grids``: ``L`` residual feature grids, coarsest first (scale ``s = 0`` is the
      coarsest), grid ``s`` of shape ``(B, h * 2**s, w * 2**s, D_v)``
      (:func:`~pyrtok.vlm.residual_grids`);
    - ``query``: ``(B, D)`` pooled question embedding when the selector has a true
      ``needs_query`` attribute (as :class:`QuerySelector` does), else ``None``;
    - ``patch_size``: the vision encoder's patch size ``p`` in pixels;
    - ``keep``: a list of ``L`` bool tensors, entry ``s`` of shape ``(B, h_s, w_s)`` (grid
      ``s`` without its feature dim), on the grids' device: True where the token is sent;
      or a :class:`Selection` (any tuple ``(keep, extra)`` or ``(keep, extra, extra_mask)``
      whose first entry is that list) to also send ``extra (B, M, D_v)`` new tokens, in the
      grids' feature space, after each image's kept tokens and before the projector
      (VisionZip's contextual tokens, a pooled grid).

    Scale 0 holds the coarse tokens, which every built-in selector keeps in full (the
    residual tokens of finer scales refine them); a selector that also drops some of them (a
    pruning baseline) is not refused. The VLMs check ``keep`` with :func:`check_keep`: a
    wrong number of maps, or a map of the wrong shape, dtype or device, raises a ValueError
    that names the selector and the scale; so do extra tokens of the wrong shape, dtype or
    device.

    Examples:
        >>> class EveryOtherRow(nn.Module):
        ...     def forward(self, images, grids, query, patch_size):
        ...         keep = [torch.ones(g.shape[:3], dtype=torch.bool) for g in grids]
        ...         for k in keep[1:]:
        ...             k[:, 1::2] = False
        ...         return keep
        >>> isinstance(EveryOtherRow(), Selector), isinstance(AllSelector(), Selector)
        (True, True)
    """

    def __call__(
        self, images: Tensor | None, grids: list[Tensor], query: Tensor | None, patch_size: int
    ) -> list[Tensor] | Selection: ...


def selector_name(selector: object) -> str:
    """The selector's class name (its ``__name__`` for a function), for messages."""
    return str(getattr(selector, "__name__", type(selector).__name__))


def check_keep(keep: object, grids: list[Tensor], selector: object) -> Selection:
    """Check what a selector returned against the grids it was given.

    Args:
        keep: what ``selector`` returned: ``L`` keep maps, or a :class:`Selection` (a tuple
            ``(keep, extra)`` or ``(keep, extra, extra_mask)``).
        grids: the ``L`` grids ``(B, h_s, w_s, D)`` it was given.
        selector: the selector, named in the messages.

    Returns:
        a :class:`Selection`: ``L`` bool keep maps ``(B, h_s, w_s)``, and the extra tokens
        ``(B, M, D)`` and their mask ``(B, M)`` or ``None``.

    Examples:
        >>> grids = [torch.zeros(2, 1, 1, 4), torch.zeros(2, 2, 2, 4)]
        >>> try:
        ...     check_keep([torch.ones(2, 1, 1, dtype=torch.bool)] * 2, grids, AllSelector())
        ... except ValueError as error:
        ...     print(error)
        selector: AllSelector returned a keep map of shape (2, 1, 1) for scale 1, expected (2, 2, \
2) (B, h_s, w_s)
        >>> keep = [torch.ones(2, 1, 1, dtype=torch.bool), torch.ones(2, 2, 2, dtype=torch.bool)]
        >>> try:
        ...     check_keep((keep, torch.zeros(2, 3, 5)), grids, AllSelector())
        ... except ValueError as error:
        ...     print(error)
        selector: AllSelector returned extra tokens of shape (2, 3, 5), expected (2, M, 4) (B, \
M, D_v)
    """
    name = selector_name(selector)
    if isinstance(keep, tuple) and keep and isinstance(keep[0], (list, tuple)):
        if len(keep) not in (2, 3):
            raise ValueError(
                f"selector: {name} returned a tuple of {len(keep)} entries, expected keep maps "
                f"or (keep, extra) or (keep, extra, extra_mask)"
            )
        maps = _check_maps(keep[0], grids, name)
        extra, extra_mask = _check_extra(keep[1], keep[2] if len(keep) == 3 else None, grids, name)
        return Selection(maps, extra, extra_mask)
    return Selection(_check_maps(keep, grids, name))


def _check_maps(keep: object, grids: list[Tensor], name: str) -> list[Tensor]:
    if not isinstance(keep, (list, tuple)) or len(keep) != len(grids):
        got = f"{len(keep)}" if isinstance(keep, (list, tuple)) else f"a {type(keep).__name__}"
        raise ValueError(
            f"selector: {name} returned {got} keep maps, expected {len(grids)} (a list with one "
            f"per scale, coarsest first)"
        )
    for s, (k, grid) in enumerate(zip(keep, grids, strict=True)):
        expected = tuple(grid.shape[:3])
        if not isinstance(k, Tensor):
            raise ValueError(
                f"selector: {name} returned a {type(k).__name__} for scale {s}, expected a bool "
                f"tensor of shape {expected} (B, h_s, w_s)"
            )
        if tuple(k.shape) != expected:
            raise ValueError(
                f"selector: {name} returned a keep map of shape {tuple(k.shape)} for scale {s}, "
                f"expected {expected} (B, h_s, w_s)"
            )
        if k.dtype != torch.bool:
            raise ValueError(
                f"selector: {name} returned a {k.dtype} keep map for scale {s}, expected torch.bool"
            )
        if k.device != grid.device:
            raise ValueError(
                f"selector: {name} returned a keep map on {k.device} for scale {s}, expected "
                f"{grid.device} (the grids' device)"
            )
    return list(keep)


def _check_extra(
    extra: object, extra_mask: object, grids: list[Tensor], name: str
) -> tuple[Tensor | None, Tensor | None]:
    grid = grids[0]
    batch, dim = grid.shape[0], grid.shape[-1]
    if extra is None:
        if extra_mask is not None:
            raise ValueError(f"selector: {name} returned an extra_mask but no extra tokens")
        return None, None
    if not isinstance(extra, Tensor):
        raise ValueError(
            f"selector: {name} returned extra tokens as a {type(extra).__name__}, expected a "
            f"tensor (B, M, D_v) or None"
        )
    if extra.ndim != 3 or extra.shape[0] != batch or extra.shape[2] != dim:
        raise ValueError(
            f"selector: {name} returned extra tokens of shape {tuple(extra.shape)}, expected "
            f"({batch}, M, {dim}) (B, M, D_v)"
        )
    if extra.dtype != grid.dtype or extra.device != grid.device:
        raise ValueError(
            f"selector: {name} returned extra tokens as {extra.dtype} on {extra.device}, "
            f"expected {grid.dtype} on {grid.device} (the grids' dtype and device)"
        )
    if extra_mask is None:
        return extra, None
    expected = tuple(extra.shape[:2])
    if (
        not isinstance(extra_mask, Tensor)
        or tuple(extra_mask.shape) != expected
        or extra_mask.dtype != torch.bool
        or extra_mask.device != grid.device
    ):
        got = (
            f"{extra_mask.dtype} {tuple(extra_mask.shape)} on {extra_mask.device}"
            if isinstance(extra_mask, Tensor)
            else f"a {type(extra_mask).__name__}"
        )
        raise ValueError(
            f"selector: {name} returned an extra_mask as {got}, expected torch.bool {expected} "
            f"(B, M) on {grid.device}, or None"
        )
    return extra, extra_mask


def selected_tokens(
    grids: list[Tensor], selection: Selection, prefix: Tensor | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """The kept tokens of every scale (:func:`~pyrtok.vlm.gather_tokens`), then the extra
    tokens, as one padded sequence per image.

    Args:
        grids: ``L`` grids ``(B, h_s, w_s, D)``, coarsest first.
        selection: a checked :class:`Selection` (:func:`check_keep`).
        prefix: optional ``(B, P, D)`` tokens put first (scale 0), e.g. the CLS.

    Returns:
        ``tokens (B, N, D)`` (each row's tokens first, zeros after), ``mask (B, N)``,
        ``scales (B, N)`` int64 (extra tokens: 0), ``N`` = the longest row.

    Examples:
        >>> grids = [torch.ones(2, 2, 2, 1)]
        >>> keep = [torch.tensor([[[1, 0], [0, 0]], [[1, 1], [0, 0]]]).bool()]
        >>> extra, extra_mask = torch.full((2, 2, 1), 5.0), torch.tensor([[1, 0], [1, 1]]).bool()
        >>> tokens, mask, _ = selected_tokens(grids, Selection(keep, extra, extra_mask))
        >>> tokens[..., 0].tolist(), mask.sum(1).tolist()
        ([[1.0, 5.0, 0.0, 0.0], [1.0, 1.0, 5.0, 5.0]], [2, 4])
    """
    tokens, mask, scales = gather_tokens(grids, selection.keep, prefix)
    if selection.extra is None:
        return tokens, mask, scales
    extra = selection.extra
    extra_mask = selection.extra_mask
    if extra_mask is None:
        extra_mask = torch.ones(extra.shape[:2], dtype=torch.bool, device=extra.device)
    kept = torch.cat([mask, extra_mask], dim=1)
    tokens, new_mask = compact(torch.cat([tokens, extra], dim=1), kept)
    extra_scales = torch.zeros(extra.shape[:2], dtype=scales.dtype, device=scales.device)
    scales, _ = compact(torch.cat([scales, extra_scales], dim=1), kept)
    return tokens, new_mask, scales


def _all_keep(grids: list[Tensor]) -> list[Tensor]:
    return [torch.ones(g.shape[:3], dtype=torch.bool, device=g.device) for g in grids]


def _check_detail(detail: float) -> float:
    if isinstance(detail, bool) or not isinstance(detail, int | float) or not 0 <= detail <= 1:
        raise ValueError(f"detail: expected a fraction in [0, 1], got {detail!r}")
    return float(detail)


class AllSelector(nn.Module):
    """Keep every token of every scale.

    Examples:
        >>> [k.all().item() for k in AllSelector()(None, [torch.zeros(1, 1, 1, 4)], None, 8)]
        [True]
    """

    def forward(
        self, images: Tensor | None, grids: list[Tensor], query: Tensor | None, patch_size: int
    ) -> list[Tensor]:
        return _all_keep(grids)


class FrequencySelector(nn.Module):
    """Residual tokens where the image has high-frequency content (quadtree allocation).

    Args:
        detail: fraction of the possible quadtree splits to make (0: coarse tokens only,
            1: every residual token); the budget is ``min_budget + 3 * round(detail * max_splits)``
            of the images' :class:`~pyrtok.allocation.QuadtreeGeometry`.
        strategy: as :func:`~pyrtok.allocation.allocate`.
        scorer: as :func:`~pyrtok.allocation.allocate`.
        allocator: a :class:`~pyrtok.allocation.FrequencyAwareAllocator` to use instead (its
            fixed budget; ``min_patch`` must be the encoder patch size and ``max_patch``
            ``patch_size * 2**(levels - 1)``).

    Shapes:
        ``images (B, C, H, W)`` -> ``L`` bool maps ``(B, h_s, w_s)``.

    Examples:
        >>> grids = [torch.zeros(2, 2, 2, 4), torch.zeros(2, 4, 4, 4)]
        >>> keep = FrequencySelector(detail=0.5)(torch.rand(2, 3, 32, 32), grids, None, 8)
        >>> [k.sum(dim=(1, 2)).tolist() for k in keep]
        [[4, 4], [8, 8]]
    """

    def __init__(
        self,
        detail: float = 0.5,
        strategy: str | Strategy = "greedy",
        scorer: str | Scorer = "laplacian",
        allocator: FrequencyAwareAllocator | None = None,
    ) -> None:
        super().__init__()
        self.detail = _check_detail(detail)
        self.strategy = strategy
        self.scorer = scorer
        if allocator is not None and not isinstance(allocator, FrequencyAwareAllocator):
            raise TypeError(
                f"allocator: expected a FrequencyAwareAllocator, got {type(allocator).__name__}"
            )
        self.allocator = allocator

    def forward(
        self, images: Tensor, grids: list[Tensor], query: Tensor | None, patch_size: int
    ) -> list[Tensor]:
        levels = len(grids)
        if levels == 1:
            return _all_keep(grids)
        max_patch = patch_size * 2 ** (levels - 1)
        if self.allocator is not None:
            if (self.allocator.min_patch, self.allocator.max_patch) != (patch_size, max_patch):
                raise ValueError(
                    f"allocator: expected min_patch={patch_size} and max_patch={max_patch} "
                    f"(encoder patch size and levels), got min_patch={self.allocator.min_patch} "
                    f"and max_patch={self.allocator.max_patch}"
                )
            allocation: Allocation = self.allocator(images)
        else:
            g = QuadtreeGeometry.create(images.shape[-2], images.shape[-1], patch_size, max_patch)
            budget = g.min_budget + 3 * round(self.detail * g.max_splits)
            allocation = allocate(images, budget, patch_size, max_patch, self.strategy, self.scorer)
        return allocation.nodes()


class QuerySelector(nn.Module):
    """Query-conditioned selection (the seed's ``query_needs_detail``).

    A gate ``sigmoid(w . q) > 0.5`` on the pooled question embedding decides whether an image
    gets residual tokens at all; if it does, each finer scale keeps its ``ceil(detail * n_s)``
    residual tokens with the highest score ``(W_q q) . (W_k r) / sqrt(d)``. Selection is hard
    (not differentiable); train the scorer on its own target, or use it untrained as a gate.
    ``needs_query = True``: the VLM gives it the pooled question embedding.

    Args:
        query_dim: size of the pooled question embedding (the LM's hidden size).
        feature_dim: vision feature size.
        detail: fraction of each finer scale's tokens to keep.
        score_dim: width ``d`` of the bilinear score.

    Shapes:
        ``query (B, query_dim)``, grids ``(B, h_s, w_s, feature_dim)`` -> bool ``(B, h_s, w_s)``.

    Examples:
        >>> selector = QuerySelector(query_dim=16, feature_dim=4, detail=0.25)
        >>> keep = selector(None, [torch.zeros(1, 1, 1, 4), torch.randn(1, 4, 4, 4)],
        ...     torch.randn(1, 16), 8)
        >>> keep[1].sum().item() in (0, 4)
        True
    """

    needs_query = True

    def __init__(
        self, query_dim: int, feature_dim: int, detail: float = 0.5, score_dim: int = 64
    ) -> None:
        super().__init__()
        self.detail = _check_detail(detail)
        self.gate = nn.Linear(query_dim, 1)
        self.query_proj = nn.Linear(query_dim, score_dim)
        self.key_proj = nn.Linear(feature_dim, score_dim)

    def forward(
        self, images: Tensor | None, grids: list[Tensor], query: Tensor | None, patch_size: int
    ) -> list[Tensor]:
        if query is None:
            raise ValueError("query: QuerySelector needs the pooled question embedding, got None")
        keep = _all_keep(grids)
        needs_detail = torch.sigmoid(self.gate(query.float()))[:, 0] > 0.5
        q = self.query_proj(query.float())
        for s in range(1, len(grids)):
            scores = torch.einsum("bd,bhwd->bhw", q, self.key_proj(grids[s].float()))
            flat = scores.flatten(1) / math.sqrt(q.shape[-1])
            count = math.ceil(self.detail * flat.shape[1])
            chosen = torch.zeros_like(flat, dtype=torch.bool)
            chosen.scatter_(1, flat.topk(count, dim=1).indices, True)
            keep[s] = (chosen & needs_detail[:, None]).view_as(keep[s])
        return keep

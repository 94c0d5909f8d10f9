"""Split strategies by name, the contract a strategy meets, and the check of what it returns.

A strategy decides which internal quadtree nodes to split so that every image gets exactly its
budget of leaves. It is a callable ``strategy(request) -> split maps``:

- ``request`` is a :class:`SplitRequest`: the images ``(B, C, H, W)``, their
  :class:`~pyrtok.allocation.QuadtreeGeometry`, the number of splits ``s`` every image must get
  (``budget = geometry.min_budget + 3 * s``), and the node scores (``request.scores``),
  computed by the allocator's scorer on first use only, so a strategy that does not read them
  costs no scoring.
- It returns ``depth`` bool split maps, entry ``d`` of shape ``(B, rows_d, cols_d)`` (the node
  grid of quadtree depth ``d``, ``geometry.grid(d)``), on the images' device, with exactly ``s``
  existing nodes (``geometry.node_exists(d)``) set per image, forming valid trees: a node is
  split only if its parent is. The forced splits (``geometry.forced_splits(d)``, nodes reaching
  past the image) count as split whether set or not; a node outside the image must not be set.

:func:`~pyrtok.allocation.allocate` checks every strategy's output with :func:`check_splits` and
refuses one that breaks the contract. :data:`STRATEGIES` maps the built-in names to their
strategies; :func:`resolve_strategy` takes a name or a callable, as
:func:`~pyrtok.allocation.scorers.resolve_scorer` does for scorers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import torch
from torch import Tensor

from pyrtok.allocation.optimal import optimal_splits
from pyrtok.allocation.quadtree import QuadtreeGeometry, children
from pyrtok.allocation.scorers import (
    Pyramid,
    Scorer,
    resolve_scorer,
    score_nodes,
    threshold_weights,
)
from pyrtok.allocation.strategies import (
    greedy_splits,
    node_masks,
    proportional_splits,
    uniform_splits,
)


@dataclass(frozen=True, eq=False)
class SplitRequest:
    """What a strategy is asked: ``splits`` splits per image on ``geometry``'s quadtree.

    Attributes:
        images: ``(B, C, H, W)`` the images being allocated.
        geometry: their quadtree geometry.
        splits: splits every image must get (``budget = geometry.min_budget + 3 * splits``).
        scorer: the node scorer, a name of :data:`~pyrtok.allocation.SCORERS` or a callable.
        pyramid: the images' :func:`~pyrtok.allocation.cell_pyramid` when already built (the
            scorer then reads it).

    Examples:
        >>> from pyrtok.allocation import QuadtreeGeometry
        >>> x = torch.rand(2, 3, 64, 64)
        >>> request = SplitRequest(x, QuadtreeGeometry.create(64, 64, 16, 32), splits=3)
        >>> request.budget, [tuple(s.shape) for s in request.scores]
        (13, [(2, 2, 2)])
    """

    images: Tensor
    geometry: QuadtreeGeometry
    splits: int
    scorer: str | Scorer = "laplacian"
    pyramid: Pyramid = None

    @cached_property
    def scores(self) -> list[Tensor]:
        """Node scores, computed on first use (once): ``depth`` maps ``(B, rows_d, cols_d)``,
        higher = split first."""
        return score_nodes(resolve_scorer(self.scorer), self.images, self.geometry, self.pyramid)

    @property
    def scored(self) -> bool:
        """Whether :attr:`scores` has been computed (by this request or one of its subsets)."""
        return "scores" in vars(self)

    @property
    def budget(self) -> int:
        """Leaves per image: ``geometry.min_budget + 3 * splits``."""
        return self.geometry.min_budget + 3 * self.splits

    def subset(self, rows: Tensor, splits: int) -> SplitRequest:
        """The request for the images ``rows`` (a 1-D index) with ``splits`` splits each; its
        scores are this request's rows (the batch is scored once, on first use).

        Examples:
            >>> from pyrtok.allocation import QuadtreeGeometry
            >>> geometry = QuadtreeGeometry.create(64, 64, 16, 32)
            >>> whole = SplitRequest(torch.rand(3, 3, 64, 64), geometry, splits=1)
            >>> part = whole.subset(torch.tensor([0, 2]), splits=2)
            >>> part.budget, torch.equal(part.scores[0], whole.scores[0][[0, 2]])
            (10, True)
        """
        pyramid = None if self.pyramid is None else [level[rows] for level in self.pyramid]
        return _Subset(self.images[rows], self.geometry, splits, self.scorer, pyramid, self, rows)


@dataclass(frozen=True, eq=False)
class _Subset(SplitRequest):
    """Some rows of a parent request, which scores the whole batch once."""

    parent: SplitRequest | None = None
    rows: Tensor | None = None

    @cached_property
    def scores(self) -> list[Tensor]:
        if self.parent is None or self.rows is None:
            return super().scores
        return [score[self.rows] for score in self.parent.scores]


Strategy = Callable[[SplitRequest], list[Tensor]]
"""``strategy(request: SplitRequest) -> [(B, rows_d, cols_d) bool for d in range(depth)]``, with
exactly ``request.splits`` nodes set per image, forming valid trees."""


def _on_scores(
    select: Callable[[list[Tensor], QuadtreeGeometry, int], list[Tensor]],
) -> Strategy:
    """The strategy that calls ``select(scores, geometry, splits)``."""

    def strategy(request: SplitRequest) -> list[Tensor]:
        return select(request.scores, request.geometry, request.splits)

    strategy.__name__ = strategy.__qualname__ = select.__name__
    strategy.__doc__ = select.__doc__
    return strategy


def threshold_strategy(request: SplitRequest) -> list[Tensor]:
    """:func:`~pyrtok.allocation.strategies.proportional_splits` with the seed's literal
    5%/1% rule (:func:`~pyrtok.allocation.threshold_weights`) as cell weights."""
    g = request.geometry
    weights = threshold_weights(request.images, g.min_patch, g.max_patch)
    return proportional_splits(request.scores, g, request.splits, weights)


def uniform_strategy(request: SplitRequest) -> list[Tensor]:
    """A regular grid of equal tokens; reads no scores. The budget must be ``cells * 4**d``
    (otherwise a ValueError naming the nearest such budgets)."""
    depth = request.geometry.uniform_depth(request.budget)
    images = request.images
    return uniform_splits(images.shape[0], request.geometry, depth, images.device)


STRATEGIES: dict[str, Strategy] = {
    "greedy": _on_scores(greedy_splits),
    "optimal": _on_scores(optimal_splits),
    "proportional": _on_scores(proportional_splits),
    "threshold": threshold_strategy,
    "uniform": uniform_strategy,
}
"""The built-in strategies by name (iterating gives the names); see
:func:`~pyrtok.allocation.allocate` for what each does."""


def resolve_strategy(strategy: str | Strategy) -> Strategy:
    """A strategy by name (a key of :data:`STRATEGIES`) or a callable as is.

    Examples:
        >>> resolve_strategy("greedy").__name__
        'greedy_splits'
        >>> try:
        ...     resolve_strategy("best")
        ... except ValueError as error:
        ...     print(error)
        strategy: unknown name 'best'; valid names are ['greedy', 'optimal', 'proportional', \
'threshold', 'uniform']
    """
    if isinstance(strategy, str):
        if strategy not in STRATEGIES:
            raise ValueError(
                f"strategy: unknown name {strategy!r}; valid names are {list(STRATEGIES)}"
            )
        return STRATEGIES[strategy]
    if callable(strategy):
        return strategy
    raise TypeError(f"strategy: expected a name {list(STRATEGIES)} or a callable, got {strategy!r}")


def name_of(entry: object) -> str:
    """A strategy's or scorer's name for messages: the name as given, else the callable's
    ``__name__`` (its class name for a callable object)."""
    if isinstance(entry, str):
        return entry
    return str(getattr(entry, "__name__", type(entry).__name__))


def check_splits(
    maps: object,
    geometry: QuadtreeGeometry,
    batch: int,
    splits: int,
    device: torch.device,
    name: str = "custom",
) -> list[Tensor]:
    """Check a strategy's output against the contract, or raise a ValueError that says how it
    breaks it.

    Args:
        maps: what the strategy returned.
        geometry: the quadtree geometry.
        batch: images in the batch ``B``.
        splits: splits every image must get.
        device: the images' device.
        name: the strategy's name, for the messages.

    Returns:
        ``depth`` bool tensors ``(B, rows_d, cols_d)``: ``maps`` with the forced splits set.

    Examples:
        >>> from pyrtok.allocation import QuadtreeGeometry
        >>> g = QuadtreeGeometry.create(16, 16, 4, 16)
        >>> orphan = [torch.tensor([[[False]]]), torch.tensor([[[True, False], [False, False]]])]
        >>> try:
        ...     check_splits(orphan, g, 1, 1, torch.device("cpu"), "mine")
        ... except ValueError as error:
        ...     print(error)
        strategy 'mine': not a valid tree: image 0 splits node (0, 0) at depth 1 but not its \
parent (0, 0) at depth 0
    """
    label = f"strategy {name!r}"
    depth = geometry.depth
    if not isinstance(maps, (list, tuple)) or len(maps) != depth:
        length = f" of length {len(maps)}" if isinstance(maps, (list, tuple)) else ""
        raise ValueError(
            f"{label}: expected a list of {depth} bool split maps (one per quadtree depth), got "
            f"{type(maps).__name__}{length}"
        )
    for d, split in enumerate(maps):
        expected = (batch, *geometry.grid(d))
        if (
            not isinstance(split, Tensor)
            or split.dtype != torch.bool
            or tuple(split.shape) != expected
        ):
            got = (
                f"{split.dtype} {tuple(split.shape)}"
                if isinstance(split, Tensor)
                else type(split).__name__
            )
            raise ValueError(
                f"{label}: split map {d} must be a bool tensor of shape {expected} (B, rows, "
                f"cols at depth {d}), got {got}"
            )
        if split.device != device:
            raise ValueError(
                f"{label}: split map {d} is on {split.device}, expected {device} (the images')"
            )
    if depth == 0:
        return list(maps)
    masks = node_masks(geometry, device)
    outside = [
        split & ~(exists | forced) for split, (exists, forced) in zip(maps, masks, strict=True)
    ]
    checked = [split | forced for split, (_, forced) in zip(maps, masks, strict=True)]
    counts = torch.stack(
        [
            (split & exists).flatten(1).sum(dim=1)
            for split, (exists, _) in zip(maps, masks, strict=True)
        ]
    ).sum(dim=0)
    orphans = [checked[d] & ~children(checked[d - 1]) for d in range(1, depth)]
    broken = (counts != splits).any()
    for bad in orphans + outside:
        broken = broken | bad.any()
    if not bool(broken):  # one device sync; the details only on failure
        return checked
    for d, bad in enumerate(outside):
        if bool(bad.any()):
            b, row, col = (int(v) for v in bad.nonzero()[0])
            raise ValueError(
                f"{label}: image {b} splits node ({row}, {col}) at depth {d}, which lies outside "
                f"the {geometry.height}x{geometry.width} image; split only where "
                f"geometry.node_exists(d)"
            )
    wrong = (counts != splits).nonzero().flatten()
    if wrong.numel():
        b = int(wrong[0])
        raise ValueError(
            f"{label}: image {b} has {int(counts[b])} splits, expected exactly {splits} (a "
            f"budget of {geometry.min_budget + 3 * splits} tokens)"
        )
    d, orphan = next((d, o) for d, o in enumerate(orphans, start=1) if bool(o.any()))
    b, row, col = (int(v) for v in orphan.nonzero()[0])
    raise ValueError(
        f"{label}: not a valid tree: image {b} splits node ({row}, {col}) at depth {d} but not "
        f"its parent ({row // 2}, {col // 2}) at depth {d - 1}"
    )

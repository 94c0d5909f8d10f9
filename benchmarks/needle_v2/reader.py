"""The frozen local token reader: a small CNN that reads one 16 x 16 token view.

Every quadtree node of a scene has a *view*: its square of Gaussian pyramid level ``k`` (the
level its leaf token reads; depth ``d`` = level ``2 - d``), 16 x 16 px. The reader maps one view
to 11 classes (digits 0-9, 10 = no readable digit); its receptive field is that one view, so a
token's reading depends on nothing outside the token. :func:`read_nodes` runs it once on all
336 nodes of each scene (16 cells, 64 half-, 256 full-resolution nodes; the digit-like ones
again on their label-preserving :func:`symmetries`) and the answer for any allocation is then a
lookup, :func:`answer`: by default the digit of highest probability over the nodes the
allocation has (``Allocation.nodes()``: its leaves and the nodes they subdivide, whose coarse
view the leaves determine -- up to the 1 px ring the pyramid's 5-tap kernel draws from outside
the node, as every token already does); a :class:`LearnedRule` also weighs each node's parent
(visible whenever the node is).

Training views (:func:`training_views`): each node that contains the whole digit is labelled
with the digit, at every level (the reader learns what each resolution allows); nodes that do
not touch the digit, and fragments of a large digit, are labelled 10.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from einops import rearrange
from torch import Tensor, nn

from pyrtok.allocation import QuadtreeGeometry, cell_pyramid

from .scenes import MAX_PATCH, PATCH, SIZE, CanvasBatch, SceneBatch

GEOMETRY = QuadtreeGeometry.create(SIZE, SIZE, PATCH, MAX_PATCH)
DEPTHS = GEOMETRY.depth + 1
NODES = GEOMETRY.num_cells * (4**DEPTHS - 1) // 3
NONE = 10


def node_views(images: Tensor) -> list[Tensor]:
    """Views of every node: ``images`` ``(B, 3, 256, 256)`` uint8 -> entry ``d``
    ``(B, 4 * 2**d, 4 * 2**d, 3, 16, 16)`` float32 in ``[0, 1]`` (level ``2 - d``).

    Examples:
        >>> [tuple(v.shape[:3]) for v in node_views(torch.zeros(1, 3, 256, 256, dtype=torch.uint8))]
        [(1, 4, 4), (1, 8, 8), (1, 16, 16)]
    """
    levels = cell_pyramid(images.float() / 255, GEOMETRY)
    return [
        rearrange(levels[DEPTHS - 1 - d], "b c (r p) (s q) -> b r s c p q", p=PATCH, q=PATCH)
        for d in range(DEPTHS)
    ]


def contains(boxes: Tensor, depth: int) -> tuple[Tensor, Tensor]:
    """Which nodes of ``depth`` contain the whole digit box, and which overlap it:
    ``boxes`` ``(B, 3)`` ``(top, left, side)`` -> two bool ``(B, n, n)``, ``n = 4 * 2**depth``."""
    side = MAX_PATCH >> depth
    n = SIZE // side
    start = torch.arange(n, device=boxes.device) * side
    top, left, size = (boxes[:, i, None] for i in range(3))

    def span(lo: Tensor) -> tuple[Tensor, Tensor]:
        inside = (start <= lo) & (lo + size <= start + side)
        overlap = (start < lo + size) & (lo < start + side)
        return inside, overlap

    rows_in, rows_over = span(top)
    cols_in, cols_over = span(left)
    return rows_in[:, :, None] & cols_in[:, None, :], rows_over[:, :, None] & cols_over[:, None, :]


def _digits(batch: SceneBatch | CanvasBatch) -> tuple[Tensor, Tensor]:
    """Labels ``(B, K)`` (-1: no digit in that slot) and boxes ``(B, K, 3)`` of any batch."""
    if batch.labels.ndim == 1:
        return batch.labels[:, None], batch.boxes[:, None]
    return batch.labels, batch.boxes


def _node_kinds(batch: SceneBatch | CanvasBatch, depth: int) -> tuple[Tensor, Tensor]:
    """Per node of ``depth``: the digit it holds whole (else 10) and whether it touches one."""
    labels, boxes = _digits(batch)
    n = 4 << depth
    label = torch.full((labels.shape[0], n, n), NONE, dtype=torch.int64)
    touched = torch.zeros(labels.shape[0], n, n, dtype=torch.bool)
    for slot in range(labels.shape[1]):
        present = (labels[:, slot] >= 0)[:, None, None]
        inside, overlap = contains(boxes[:, slot], depth)
        label = torch.where(inside & present, labels[:, slot, None, None], label)
        touched |= overlap & present
    return label, touched


def node_labels(batch: SceneBatch | CanvasBatch) -> list[Tensor]:
    """Per depth ``(B, n, n)`` int64: the digit where the node holds a whole digit, else 10."""
    return [_node_kinds(batch, d)[0] for d in range(DEPTHS)]


DIGIT, FRAGMENT, OTHER = 0, 1, 2
"""Kinds of training view: the whole digit, part of it (label ``NONE``), no digit at all."""


def training_views(
    batch: SceneBatch | CanvasBatch,
    others: int,
    generator: torch.Generator,
    suspicion: Callable[[Tensor], Tensor] | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Every digit-holding and fragment view of ``batch`` plus ``others`` other views per scene:
    ``(M, 3, 16, 16)`` float32, ``(M,)`` labels and ``(M,)`` kinds (``DIGIT``/``FRAGMENT``/
    ``OTHER``). The other views are drawn at random, ``others`` per scene on average; given
    ``suspicion`` (views -> ``(M,)`` score, e.g. the reader's digit probability), four times as
    many are drawn, a random quarter kept, and of the rest the quarter it finds most
    suspicious (hard negatives): ``others`` random plus ``others`` hard views per scene."""
    views, labels, kinds = [], [], []
    pool = 4 if suspicion is not None else 1
    for d, view in enumerate(node_views(batch.images)):
        label, touched = _node_kinds(batch, d)
        kind = torch.where(label != NONE, DIGIT, torch.where(touched, FRAGMENT, OTHER))
        draw = torch.rand(label.shape, generator=generator)
        wanted = (kind != OTHER) | (draw < pool * others / NODES)
        views.append(view[wanted])
        labels.append(label[wanted])
        kinds.append(kind[wanted])
    view, label, kind = torch.cat(views), torch.cat(labels), torch.cat(kinds)
    if suspicion is None:
        return view, label, kind
    candidates = (kind == OTHER).nonzero().flatten()
    order = candidates[torch.randperm(len(candidates), generator=generator)]
    quarter = len(order) // 4
    hard = order[quarter:][suspicion(view[order[quarter:]]).argsort(descending=True)[:quarter]]
    keep = torch.cat([(kind != OTHER).nonzero().flatten(), order[:quarter], hard])
    return view[keep], label[keep], kind[keep]


class Reader(nn.Sequential):
    """``(N, 3, 16, 16)`` views in ``[0, 1]`` -> ``(N, 11)`` float32 logits; two 3 x 3
    convolutions at full resolution (strokes are 1-2 px), two at 8 x 8, one at 4 x 4; at
    ``width`` 48 0.32M parameters and 16M multiply-adds per view, at 96 (the run's) 1.25M and 64M.

    With ``bf16`` the convolutions run under bfloat16 autocast, channels-last (on a CPU with
    AMX, width 96 trains at 0.48 s per 256-view step on one core, width 48 in float32 at 0.60 s).

    Examples:
        >>> Reader()(torch.rand(2, 3, 16, 16)).shape
        torch.Size([2, 11])
        >>> Reader(16, bf16=True)(torch.rand(2, 3, 16, 16)).dtype
        torch.float32
    """

    def __init__(self, width: int = 32, bf16: bool = False) -> None:
        def block(c_in: int, c_out: int) -> list[nn.Module]:
            return [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.GELU()]

        super().__init__(
            *block(3, width),
            *block(width, width),
            nn.MaxPool2d(2),
            *block(width, 2 * width),
            *block(2 * width, 2 * width),
            nn.MaxPool2d(2),
            *block(2 * width, 4 * width),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(4 * width, NONE + 1),
        )
        self.bf16 = bf16
        self.to(memory_format=torch.channels_last)

    def forward(self, views: Tensor) -> Tensor:
        x = views - views.mean(dim=(2, 3), keepdim=True)
        x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            for layer in self:
                x = layer(x)
        return x.float()


SHARES = (0.5, 0.25, 0.25)
"""Minibatch shares of digit, fragment and other views (digit views are ~15 % of the data;
unbalanced batches left the reader at ~60 % on full-resolution digits, and fragments of large
digits, rare among the other views, were read as confident wrong digits)."""

TUNE_SHARES = (0.4, 0.15, 0.45)
"""Shares of the hard-negative phase: after the first phase, ~85 % of the errors at full detail
were a view with no digit read as one (0.3-0.4 % of such views above 0.5, ~330 per scene)."""


def _augment(x: Tensor, generator: torch.Generator) -> Tensor:
    """Per view: a random permutation of the colour channels and a contrast factor in
    ``[0.8, 1.25]`` about the view's mean (the ink is a grey offset of the local colour, so
    both keep the label)."""
    order = torch.rand(x.shape[0], 3, generator=generator).argsort(1).to(x.device)
    x = x.gather(1, order[:, :, None, None].expand_as(x))
    factor = torch.empty(x.shape[0], 1, 1, 1).uniform_(0.8, 1.25, generator=generator)
    mean = x.mean(dim=(2, 3), keepdim=True)
    return mean + (x - mean) * factor.to(x.device)


Views = tuple[Tensor, Tensor, Tensor]
"""Training views ``(M, 3, 16, 16)``, their labels ``(M,)`` and kinds ``(M,)``."""

REFRESH, KEEP = 8, 4
""":func:`train_reader` renders a new chunk every ``REFRESH`` steps and pools the last ``KEEP``."""


def chunks_rendered(steps: int, refresh: int = REFRESH, keep: int = KEEP) -> int:
    """How many chunks :func:`train_reader` renders in ``steps`` steps.

    Examples:
        >>> chunks_rendered(4000), chunks_rendered(1)
        (503, 4)
    """
    return keep + (steps - 1) // refresh


def _save_progress(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically (an interrupted write leaves the previous file)."""
    partial = path.with_name(path.name + ".partial")
    torch.save(state, partial)
    os.replace(partial, path)


def train_reader(
    reader: Reader,
    render: Callable[[int, Reader], Views],
    steps: int,
    batch: int,
    lr: float,
    seed: int,
    refresh: int = REFRESH,
    keep: int = KEEP,
    shares: tuple[float, float, float] = SHARES,
    progress: Path | None = None,
    every: int = 200,
    generators: Sequence[torch.Generator] = (),
) -> float:
    """AdamW, one-cycle schedule, minibatches drawn by kind in ``shares``, augmented by
    :func:`_augment`, from a pool of freshly rendered views: ``render(chunk, reader)`` gives the
    views of chunk ``chunk`` (the reader as it is then, for hard negatives); the pool holds the
    last ``keep`` chunks and takes a new one every ``refresh`` steps, so the reader sees new
    scenes throughout (a fixed pool of 6000 scenes overfit: 97 % training accuracy, worse on
    test photos). Returns the training accuracy of the last 100 steps.

    Given a ``progress`` file, the whole training state (weights, optimiser, schedule, the view
    pool, the random generators: its own and ``generators``, e.g. the one ``render`` draws
    from) is written there every ``every`` steps and at the end, and a call that finds the file
    resumes from it: an interrupted run continues where it was and ends with the same weights,
    bit for bit, as one never interrupted; a finished one only restores its end state. The file
    also keeps ``seconds``, the training time of every run that got it there."""
    started = time.perf_counter()
    generator = torch.Generator().manual_seed(seed)
    device = next(reader.parameters()).device
    sizes = [round(share * batch) for share in shares]
    optimiser = torch.optim.AdamW(reader.parameters(), lr=lr, weight_decay=0.05)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, lr, total_steps=steps)
    randomness = [generator, *generators]
    reader.eval()
    if progress is not None and progress.exists():
        # on the CPU: generator states must be, views are (load_state_dict moves the rest)
        state = torch.load(progress, map_location="cpu", weights_only=True)
        reader.load_state_dict(state["reader"])
        optimiser.load_state_dict(state["optimiser"])
        schedule.load_state_dict(state["schedule"])
        for g, saved in zip(randomness, state["generators"], strict=True):
            g.set_state(saved)
        chunks = deque((tuple(views) for views in state["chunks"]), maxlen=keep)
        first, rendered, correct, seen = state["step"], state["rendered"], *state["counts"]
        started -= state["seconds"]
    else:
        chunks = deque((render(c, reader) for c in range(keep)), maxlen=keep)
        first, rendered, correct, seen = 0, keep, 0, 0

    def pooled() -> tuple[Tensor, Tensor, list[Tensor]]:
        views, labels, kinds = (torch.cat(column) for column in zip(*chunks, strict=True))
        return views, labels, [(kinds == k).nonzero().flatten() for k in (DIGIT, FRAGMENT, OTHER)]

    def save(step: int) -> None:
        if progress is not None:
            state = {
                "reader": reader.state_dict(),
                "optimiser": optimiser.state_dict(),
                "schedule": schedule.state_dict(),
                "generators": [g.get_state() for g in randomness],
                "chunks": [list(views) for views in chunks],
                "step": step,
                "rendered": rendered,
                "counts": [correct, seen],
                "seconds": time.perf_counter() - started,
            }
            _save_progress(progress, state)

    if first < steps and first % refresh != 0:  # resumed between two refreshes
        views, labels, pools = pooled()
        reader.train()
    for step in range(first, steps):
        if step % refresh == 0:
            if step > 0:
                reader.eval()
                chunks.append(render(rendered, reader))
                rendered += 1
            views, labels, pools = pooled()
            reader.train()
        pick = torch.cat(
            [
                p[torch.randint(len(p), (n,), generator=generator)]
                for p, n in zip(pools, sizes, strict=True)
            ]
        )
        x, y = _augment(views[pick], generator).to(device), labels[pick].to(device)
        logits = reader(x)
        loss = nn.functional.cross_entropy(logits, y, label_smoothing=0.05)
        optimiser.zero_grad(set_to_none=True)
        torch.autograd.backward(loss)
        optimiser.step()
        schedule.step()
        if (step + 1) % 100 == 0:
            print(f"  reader step {step + 1}/{steps}, loss {loss.item():.3f}", flush=True)
        if step >= steps - 100:
            correct += int((logits.argmax(-1) == y).sum())
            seen += len(y)
        if (step + 1) % every == 0 or step + 1 == steps:
            save(step + 1)
    reader.eval()
    return correct / max(seen, 1)


REREAD = 0.3
""":func:`read_nodes` reads a node again, under :func:`symmetries`, where its first reading gives
a digit at least this probability (~30 of the 336 nodes of a test-photo scene, so reading costs
~1.2x a single pass; below ~0.05 every node would qualify: the label smoothing keeps P(no digit)
under ~0.96)."""


def symmetries(views: Tensor) -> list[Tensor]:
    """The label-preserving copies of ``views`` ``(N, 3, h, w)`` the reader is read on: as is
    and with its polarity inverted (``-views``: the reader subtracts each view's mean first, and
    the ink is darker than its surround in 80 % of digits, lighter in 20 %).

    The 6 orders of the colour channels (which :func:`_augment` permutes in training) were
    read too in the eighth session, 12 copies in all: on the development set (test photos,
    scene seed 3000, 300 scenes per variant, the ``reduced`` reader) they added nothing to the
    polarity's gain (``max`` 84.3 / 85.0 % with the 12, 84.7 / 84.0 % with these 2; the
    :class:`LearnedRule` 88.7 / 87.7 and 89.0 / 86.7 %), at 6x the re-reading cost.

    Examples:
        >>> x = torch.rand(2, 3, 4, 4)
        >>> copies = symmetries(x)
        >>> len(copies), torch.equal(copies[0], x), torch.equal(copies[1], -x)
        (2, True, True)
    """
    return [views, -views]


@torch.no_grad()
def read_nodes(
    reader: Reader, images: Tensor, chunk: int = 16, reread: float = REREAD
) -> list[Tensor]:
    """The reader's digit probabilities on every node, computed once per scene: entry ``d``
    ``(B, n, n, 10)`` float32 (class 10 dropped after the softmax). A node whose digit
    probability (1 - P(no digit)) reaches ``reread`` is read again on its
    :func:`symmetries` and takes their mean (test-time augmentation; ``reread > 1``: never).
    Either way a node's reading depends on its own view only.

    On a development set (test photos, scene seed 3000, 300 scenes per variant; the
    ``reduced`` reader of 2026-12-02, eighth session), full detail: the ``max`` rule read 80.3 /
    79.7 % from single readings and 84.7 / 84.0 % from these (the polarity is what helps: the
    6 colour orders alone gave 80.3 / 79.7 %, with the polarity 84.3 / 85.0 %)."""
    device = next(reader.parameters()).device
    parts: list[list[Tensor]] = [[] for _ in range(DEPTHS)]
    for start in range(0, images.shape[0], chunk):
        for d, view in enumerate(node_views(images[start : start + chunk].to(device))):
            flat = view.flatten(0, 2)
            probs = reader(flat).softmax(-1)
            again = probs[:, NONE] <= 1 - reread
            if bool(again.any()):
                copies = symmetries(flat[again])
                probs[again] = torch.stack([reader(c).softmax(-1) for c in copies]).mean(0)
            parts[d].append(probs[:, :NONE].reshape(*view.shape[:3], NONE).cpu())
    return [torch.cat(p) for p in parts]


def _max(p: Tensor, v: Tensor) -> Tensor:
    return (p * v[..., None]).amax(1)


def _sum(p: Tensor, v: Tensor) -> Tensor:
    return (p * v[..., None]).sum(1)


def _confident(p: Tensor, v: Tensor) -> Tensor:
    sure = v & (p.sum(-1) >= 0.5)
    return _sum(p, sure) + 1e-3 * _max(p, v)


def _surest(p: Tensor, v: Tensor) -> Tensor:
    pick = (p.sum(-1) * v).argmax(1)
    return p[torch.arange(len(p)), pick]


RULES = {"max": _max, "sum": _sum, "confident": _confident, "surest": _surest}
"""How node readings combine into one answer (``(B, nodes, 10)`` digit probabilities and
``(B, nodes)`` visibility -> ``(B, 10)`` evidence): ``max`` the most probable digit on any node;
``sum`` the expected number of visible nodes that hold each digit; ``confident`` that sum over
the nodes whose digit probability (1 - P(no digit)) is >= 0.5 (``max`` breaks ties where there is
none); ``surest`` the reading of the node most sure it holds a whole digit. The run picks one on
held-out training scenes before any test scene is read (:func:`run.choose_rule`)."""


def _stacked(probabilities: list[Tensor], visible: list[Tensor]) -> tuple[Tensor, Tensor]:
    p = torch.cat([q.flatten(1, 2) for q in probabilities], 1)
    return p, torch.cat([m.flatten(1, 2) for m in visible], 1).to(p.device)


_FLOOR = 1e-6
"""Smallest probability :func:`node_features` takes the log of."""

FEATURES = (
    "log p",
    "log p(none)",
    "parent log p",
    "parent log p(none)",
    *(f"depth {d}" for d in range(DEPTHS)),
)
"""What :class:`LearnedRule` weighs per (node, digit): the node's log probability of the digit
and of no digit, the same of its parent (0 for the coarsest nodes, which have none; a node's
parent is visible whenever it is) and the node's depth, one-hot."""


def _feature_columns(probabilities: list[Tensor]) -> list[list[Tensor]]:
    """Per depth, the :data:`FEATURES` in order, each broadcastable to that depth's
    ``(B, n, n, 10)`` (the depth one-hot and the coarsest nodes' parent as 0-dim tensors)."""

    def logs(p: Tensor) -> Tensor:
        none = (1 - p.sum(-1, keepdim=True)).clamp_min(_FLOOR)
        return torch.cat([p.clamp_min(_FLOOR), none], -1).log()

    columns = []
    for d, p in enumerate(probabilities):
        own = logs(p)
        if d == 0:
            parent = [own.new_zeros(())] * 2
        else:
            up = logs(probabilities[d - 1]).repeat_interleave(2, 1).repeat_interleave(2, 2)
            parent = [up[..., :NONE], up[..., NONE:]]
        depth = [own.new_tensor(float(k == d)) for k in range(DEPTHS)]
        columns.append([own[..., :NONE], own[..., NONE:], *parent, *depth])
    return columns


def node_features(probabilities: list[Tensor]) -> Tensor:
    """Per (node, digit) the :data:`FEATURES`: ``probabilities`` as :func:`read_nodes` gives
    them -> ``(B, nodes, 10, len(FEATURES))``, nodes stacked coarse to fine as in
    :func:`answer`.

    Examples:
        >>> p = [torch.full((1, 1, 1, 10), 0.05), torch.full((1, 2, 2, 10), 0.01)]
        >>> f = node_features(p)
        >>> tuple(f.shape), [round(x, 3) for x in f[0, 1, 0, :4].tolist()]
        ((1, 5, 10, 7), [-4.605, -0.105, -2.996, -0.693])
    """
    rows = [
        torch.stack([c.expand(p.shape) for c in columns], -1).flatten(1, 2)
        for p, columns in zip(probabilities, _feature_columns(probabilities), strict=True)
    ]
    return torch.cat(rows, 1)


@dataclass(frozen=True)
class LearnedRule:
    """A combination rule fit to data: the answer is the digit of the visible (node, digit) of
    highest ``weights . features`` (:func:`node_features`); ``weights`` ``(1, 0, ..., 0)`` is
    ``max`` on log probabilities. Fit by :func:`fit_rule`.

    Examples:
        >>> p = [torch.zeros(1, 1, 1, 10), torch.zeros(1, 2, 2, 10)]
        >>> p[0][0, 0, 0, 3], p[1][0, 1, 1, 7] = 0.6, 0.9
        >>> seen = [torch.ones(1, 1, 1, dtype=torch.bool), torch.ones(1, 2, 2, dtype=torch.bool)]
        >>> as_max = LearnedRule((1, 0, 0, 0, 0, 0, 0))
        >>> coarse_first = LearnedRule((1, 0, 0, 0, 2, 0, 0))  # + 2 on depth 0
        >>> answer(p, seen, as_max).item(), answer(p, seen, coarse_first).item()
        (7, 3)
    """

    weights: tuple[float, ...]

    def evidence(self, probabilities: list[Tensor], visible: list[Tensor]) -> Tensor:
        """``(B, 10)``: per digit, its best score over the visible nodes."""
        # the weighted sum column by column: no (B, nodes, 10, features) tensor per call
        per_depth = [
            sum((w * c for w, c in zip(self.weights, columns, strict=True)), p.new_zeros(p.shape))
            for p, columns in zip(probabilities, _feature_columns(probabilities), strict=True)
        ]
        scores = torch.cat([s.flatten(1, 2) for s in per_depth], 1)
        seen = torch.cat([m.flatten(1, 2) for m in visible], 1).to(scores.device)
        return scores.masked_fill(~seen[..., None], -torch.inf).amax(1)


def fit_rule(probabilities: list[Tensor], labels: list[Tensor], steps: int = 200) -> LearnedRule:
    """The :class:`LearnedRule` that best picks, at full detail, the nodes holding the digit:
    ``labels`` per depth ``(B, n, n)`` (:func:`node_labels`); minimises, per scene with a
    readable digit, the negative log of the softmax mass (over every node and digit) on the
    nodes that hold it with its label (L-BFGS, ``1e-3`` L2 on the weights).

    Examples:
        >>> p = [torch.zeros(2, 1, 1, 10), torch.zeros(2, 2, 2, 10)]
        >>> p[0][:, 0, 0, 3], p[1][:, 1, 1, 7] = 0.6, 0.9
        >>> labels = [torch.full((2, 1, 1), 3), torch.full((2, 2, 2), NONE)]
        >>> every = [torch.ones(2, 1, 1, dtype=torch.bool), torch.ones(2, 2, 2, dtype=torch.bool)]
        >>> answer(p, every, fit_rule(p, labels)).tolist()
        [3, 3]
    """
    features = node_features(probabilities)
    held = torch.cat([m.flatten(1, 2) for m in labels], 1)
    target = nn.functional.one_hot(held, NONE + 1)[..., :NONE].bool()
    readable = target.flatten(1).any(1)  # scenes with a node that holds the digit
    features, target = features[readable].flatten(1, 2), target[readable].flatten(1)
    weights = torch.zeros(len(FEATURES), dtype=features.dtype)
    weights[0] = 1
    weights.requires_grad_(True)
    optimiser = torch.optim.LBFGS([weights], max_iter=steps, line_search_fn="strong_wolfe")

    def loss() -> Tensor:
        optimiser.zero_grad()
        scores = features @ weights
        held_mass = scores.masked_fill(~target, -torch.inf).logsumexp(1)
        value = (scores.logsumexp(1) - held_mass).mean() + 1e-3 * weights.square().sum()
        torch.autograd.backward(value)
        return value

    with torch.enable_grad():  # callers read under no_grad
        optimiser.step(loss)  # type: ignore[no-untyped-call]
    return LearnedRule(tuple(weights.detach().tolist()))


Rule = str | LearnedRule
"""A key of :data:`RULES` or a :class:`LearnedRule`."""


def answer(probabilities: list[Tensor], visible: list[Tensor], rule: Rule = "max") -> Tensor:
    """The digit read from the ``visible`` nodes (``Allocation.nodes()``, bool ``(B, n, n)``
    per depth) by the combination ``rule`` (a key of :data:`RULES` or a
    :class:`LearnedRule`): ``(B,)`` int64.

    Examples:
        >>> p = [torch.zeros(1, 1, 1, 10), torch.zeros(1, 2, 2, 10)]
        >>> p[0][0, 0, 0, 3], p[1][0, 1, 1, 7] = 0.4, 0.9
        >>> p[1][0, 0, 0, 3] = p[1][0, 0, 1, 3] = 0.3
        >>> seen = [torch.ones(1, 1, 1, dtype=torch.bool), torch.zeros(1, 2, 2, dtype=torch.bool)]
        >>> answer(p, seen).tolist(), answer(p, [seen[0], ~seen[1]]).tolist()
        ([3], [7])
        >>> answer(p, [seen[0], ~seen[1]], "sum").tolist()
        [3]
    """
    if isinstance(rule, LearnedRule):
        return rule.evidence(probabilities, visible).argmax(-1)
    if rule not in RULES:
        raise ValueError(f"rule: expected one of {sorted(RULES)}, got {rule!r}")
    return RULES[rule](*_stacked(probabilities, visible)).argmax(-1)


def confidence(probabilities: list[Tensor], visible: list[Tensor], digits: Tensor) -> Tensor:
    """How sure the reading is of ``digits`` ``(B,)``: the highest probability any visible node
    gives it, ``(B,)`` in ``[0, 1]`` (the stopping test of progressive refinement).

    Examples:
        >>> p = [torch.zeros(1, 1, 1, 10), torch.zeros(1, 2, 2, 10)]
        >>> p[0][0, 0, 0, 3], p[1][0, 1, 1, 3] = 0.4, 0.9
        >>> seen = [torch.ones(1, 1, 1, dtype=torch.bool), torch.zeros(1, 2, 2, dtype=torch.bool)]
        >>> confidence(p, seen, torch.tensor([3])).tolist()
        [0.4000000059604645]
    """
    p, v = _stacked(probabilities, visible)
    on_digit = p.gather(2, digits.to(p.device)[:, None, None].expand(-1, p.shape[1], 1))[..., 0]
    return (on_digit * v).amax(1)

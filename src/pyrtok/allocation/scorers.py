"""Node scorers: how much each quadtree node wants to be split.

A scorer maps images ``(B, C, H, W)`` to one score map per split level: a list of ``depth``
tensors, entry ``d`` of shape ``(B, cell_rows * 2**d, cell_cols * 2**d)`` (see
:class:`~pyrtok.allocation.quadtree.QuadtreeGeometry`), one score per internal node, higher =
split first. All of them work on the whole batch at once. Only the nodes wholly inside the
image are ever split (see :class:`~pyrtok.allocation.QuadtreeGeometry`), so the reflect padding
that completes partial cells never enters a score that is read.

- ``laplacian``: the band energy a split recovers (pyrtok's scorer; variants in
  :class:`~pyrtok.allocation.LaplacianScorer`).
- ``entropy``: grayscale histogram entropy of the node (APT's scorer).
- ``blur``: ``sqrt(MSE * size)`` between the node and its down/up-sampled copy (Quadformer's
  pixel-blur scorer).

Any callable ``scorer(images, min_patch, max_patch) -> list[Tensor]`` with these shapes can be
passed to :func:`~pyrtok.allocation.allocate` instead of a name. A scorer that also takes a
keyword ``pyramid`` is given the allocator's :func:`~pyrtok.allocation.cell_pyramid` (as the
built-in ones are), so the image is filtered once for scoring and tokenizing.

Pixel range: images in ``[0, 1]``. ``laplacian`` and ``blur`` rank nodes the same after any
map ``a * x + b`` with one ``a`` for all channels, so pixels normalised with one mean and std
give the same allocation (with per-channel stds, such as ImageNet's, the channels' energies are
re-weighted by ``1 / std**2``: slightly different scores); ``entropy`` bins ``[0, 1]`` and raises
a ValueError for images outside it (un-normalise first: ``x * std + mean``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from pyrtok.allocation.laplacian_scorer import LaplacianScorer, laplacian_scores
from pyrtok.allocation.node_scoring import (
    Pyramid,
    Scorer,
    check_scores,
    on_cell_pyramid,
    score_nodes,
)
from pyrtok.allocation.quadtree import QuadtreeGeometry, geometry_for, sum_pool
from pyrtok.pyramid import laplacian_energy

__all__ = [
    "SCORERS",
    "LaplacianScorer",
    "Pyramid",
    "Scorer",
    "blur_scores",
    "check_scores",
    "entropy_scores",
    "laplacian_scores",
    "resolve_scorer",
    "score_nodes",
    "threshold_weights",
]

_LUMA = (0.2989, 0.5870, 0.1140)
_RANGE_TOLERANCE = 1e-3
"""How far outside ``[0, 1]`` the entropy scorer lets pixel values be (resampling overshoot)."""


def _grayscale(x: Tensor) -> Tensor:
    if x.shape[1] == 3:
        return _LUMA[0] * x[:, 0] + _LUMA[1] * x[:, 1] + _LUMA[2] * x[:, 2]
    return x.mean(dim=1)


def _histograms(bin_index: Tensor, bins: int, rows: int, cols: int, node: int) -> Tensor:
    """``(B, bins, rows, cols)`` counts of ``bin_index`` ``(B, H, W)`` per ``node``-px block;
    index ``bins`` marks pixels that are not counted."""
    batch = bin_index.shape[0]
    row_id = torch.arange(rows * node, device=bin_index.device) // node
    col_id = torch.arange(cols * node, device=bin_index.device) // node
    node_id = row_id[:, None] * cols + col_id[None, :]
    image_id = torch.arange(batch, device=bin_index.device)[:, None, None]
    key = (image_id * (bins + 1) + bin_index) * (rows * cols) + node_id
    counts = torch.bincount(key.flatten(), minlength=batch * (bins + 1) * rows * cols)
    return counts.reshape(batch, bins + 1, rows, cols)[:, :bins]


def entropy_scores(
    images: Tensor,
    min_patch: int = 16,
    max_patch: int = 64,
    bins: int = 512,
    *,
    pyramid: Pyramid = None,
) -> list[Tensor]:
    """Shannon entropy (bits) of each node's grayscale histogram, as in APT.

    Grayscale is ITU-R 601 luma for 3 channels, the channel mean otherwise. Values are binned on
    ``[0, 1]`` into ``bins`` bins; images outside ``[0, 1]`` (beyond a rounding tolerance of
    ``1e-3``) are a ValueError. Histograms are counted once at the finest split level and
    summed up the tree.

    Args:
        images: ``(B, C, H, W)`` floating images in ``[0, 1]``, each side ``>= max_patch``.
        min_patch: smallest leaf side in pixels (a level-0 token).
        max_patch: cell side in pixels, ``min_patch * 2**depth``.
        bins: histogram bins (APT uses 512).
        pyramid: the images' :func:`~pyrtok.allocation.cell_pyramid`, if already built.

    Returns:
        ``depth`` maps as in :func:`laplacian_scores`, float32 (float64 for float64 input).

    Examples:
        >>> flat = torch.full((1, 1, 64, 64), 0.5)
        >>> entropy_scores(flat, 16, 64)[0]
        tensor([[[0.]]])
    """
    geometry = geometry_for(images, min_patch, max_patch)
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 2:
        raise ValueError(f"bins: expected an int >= 2, got {bins!r}")
    low, high = (float(v) for v in torch.aminmax(images.detach()))
    if low < -_RANGE_TOLERANCE or high > 1 + _RANGE_TOLERANCE:
        raise ValueError(
            f"images: the entropy scorer bins pixel values in [0, 1], got values in "
            f"[{low:.3g}, {high:.3g}]; un-normalise first (x * std + mean), or divide 8-bit "
            f"pixels by 255"
        )
    if geometry.depth == 0:
        return []
    return on_cell_pyramid(lambda part, g: _entropy(part[0], g, bins), images, geometry, pyramid, 1)


def _entropy(x: Tensor, geometry: QuadtreeGeometry, bins: int) -> list[Tensor]:
    depth = geometry.depth
    bin_index = (_grayscale(x) * bins).floor().clamp(0, bins - 1).long()
    rows, cols = geometry.grid(depth - 1)
    # Bound the (B, bins, rows, cols) count tensor: chunk the batch.
    chunk = max(1, (1 << 24) // ((bins + 1) * rows * cols))
    counts = torch.cat(
        [
            _histograms(part, bins, rows, cols, geometry.node_size(depth - 1))
            for part in torch.split(bin_index, chunk)
        ]
    )
    dtype = x.dtype
    scores = []
    for d in reversed(range(depth)):
        if d < depth - 1:
            counts = sum_pool(counts, 2)
        total = counts.sum(dim=1, keepdim=True).clamp(min=1).to(dtype)
        p = counts.to(dtype) / total
        scores.append((0.0 - torch.special.xlogy(p, p).sum(dim=1)) / math.log(2))
    return scores[::-1]


def blur_scores(
    images: Tensor, min_patch: int = 16, max_patch: int = 64, *, pyramid: Pyramid = None
) -> list[Tensor]:
    """Quadformer's pixel-blur score ``sqrt(MSE * size)`` of each node.

    A node of side ``s`` is compared with the image resized by ``min_patch / s`` (bilinear,
    antialiased) and back (bilinear): the error of representing it with ``min_patch`` x
    ``min_patch`` samples. MSE is over channels and the node's pixels.

    Args:
        images: ``(B, C, H, W)`` floating images, each side ``>= max_patch``.
        min_patch: smallest leaf side in pixels (a level-0 token).
        max_patch: cell side in pixels, ``min_patch * 2**depth``.
        pyramid: the images' :func:`~pyrtok.allocation.cell_pyramid`, if already built.

    Returns:
        ``depth`` maps as in :func:`laplacian_scores`, float32 (float64 for float64 input).

    Examples:
        >>> scores = blur_scores(torch.rand(1, 3, 64, 64), 16, 64)
        >>> [tuple(s.shape) for s in scores]
        [(1, 1, 1), (1, 2, 2)]
    """
    geometry = geometry_for(images, min_patch, max_patch)
    return on_cell_pyramid(lambda part, g: _blur(part[0], g), images, geometry, pyramid, 1)


def _blur(x: Tensor, geometry: QuadtreeGeometry) -> list[Tensor]:
    depth, min_patch = geometry.depth, geometry.min_patch
    height, width = geometry.padded_size
    scores = []
    for d in range(depth):
        size = geometry.node_size(d)
        factor = size // min_patch
        small = F.interpolate(
            x, size=(height // factor, width // factor), mode="bilinear", antialias=True
        )
        blurry = F.interpolate(small, size=(height, width), mode="bilinear")
        error = (blurry - x).square().mean(dim=1)
        mse = sum_pool(error, size) / (size * size)
        scores.append((mse * size).sqrt())
    return scores


def threshold_weights(images: Tensor, min_patch: int = 16, max_patch: int = 64) -> Tensor:
    """The seed's literal per-patch rule, applied to each cell: weight 0.05 ("5% of the
    budget") if ``E0 + E1 > 2 * (E2 + E3)`` for the energies of a 4-level Laplacian pyramid
    (three bands and the low-pass residual) inside the cell, else 0.01.

    Returns:
        ``(B, cell_rows, cell_cols)`` weights in :func:`work_dtype` of the images.

    Examples:
        >>> x = torch.full((1, 1, 64, 128), 0.5)
        >>> x[..., 64:] = torch.rand(64, 64)  # noise: mostly fine-band energy
        >>> threshold_weights(x, 16, 64)
        tensor([[[0.0100, 0.0500]]])
    """
    geometry = geometry_for(images, min_patch, max_patch)
    return on_cell_pyramid(lambda part, g: [_threshold(part[0], g)], images, geometry, None, 1)[0]


def _threshold(x: Tensor, geometry: QuadtreeGeometry) -> Tensor:
    _, energy = laplacian_energy(x, geometry.max_patch, 4, check_finite=False, keep_pyramid=False)
    high = energy[:, 0] + energy[:, 1]
    low = energy[:, 2] + energy[:, 3]
    return torch.where(high > 2 * low, 0.05, 0.01).to(x.dtype)


SCORERS: dict[str, Scorer] = {
    "laplacian": laplacian_scores,
    "entropy": entropy_scores,
    "blur": blur_scores,
}


def checks_pixels(scorer: Scorer) -> bool:
    """Whether ``scorer`` raises ``"images: contains NaN or Inf values"`` by itself, before its
    scores could depend on such pixels: the built-in scorers (the laplacian ones read them off
    the energy pass they make anyway, without a pass of their own).
    :func:`~pyrtok.allocation.allocate` then leaves the check to the scorer when it runs.

    Examples:
        >>> checks_pixels(laplacian_scores), checks_pixels(LaplacianScorer(log=True))
        (True, True)
        >>> checks_pixels(lambda images, min_patch, max_patch: [])
        False
    """
    return isinstance(scorer, LaplacianScorer) or any(scorer is s for s in SCORERS.values())


def resolve_scorer(scorer: str | Scorer) -> Scorer:
    """A scorer by name (``"laplacian"``, ``"entropy"``, ``"blur"``) or a callable as is."""
    if isinstance(scorer, str):
        if scorer not in SCORERS:
            raise ValueError(f"scorer: unknown name {scorer!r}; valid names are {list(SCORERS)}")
        return SCORERS[scorer]
    if callable(scorer):
        return scorer
    raise TypeError(f"scorer: expected a name {list(SCORERS)} or a callable, got {scorer!r}")

"""Node scorers: how much each quadtree node wants to be split.

A scorer maps images ``(B, C, H, W)`` to one score map per split level: a list of ``depth``
tensors, entry ``d`` of shape ``(B, cell_rows * 2**d, cell_cols * 2**d)`` (see
:class:`~pyrtok.allocation.quadtree.QuadtreeGeometry`), one score per internal node, higher =
split first. All of them work on the whole batch at once and give no weight to the reflect
padding that completes partial cells.

- ``laplacian``: the band energy a split recovers (pyrtok's scorer).
- ``entropy``: grayscale histogram entropy of the node (APT's scorer).
- ``blur``: ``sqrt(MSE * size)`` between the node and its down/up-sampled copy (Quadformer's
  pixel-blur scorer).

Any callable ``scorer(images, min_patch, max_patch) -> list[Tensor]`` with these shapes can be
passed to :func:`~pyrtok.allocation.allocate` instead of a name. A scorer that also takes a
keyword ``pyramid`` is given the allocator's :func:`~pyrtok.allocation.cell_pyramid` (as the
built-in ones are), so the image is filtered once for scoring and tokenizing.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from pyrtok.allocation.cell_pyramid import cell_pyramid, check_cell_pyramid
from pyrtok.allocation.quadtree import (
    QuadtreeGeometry,
    geometry_for,
    sum_pool,
    valid_weight,
    work_dtype,
)
from pyrtok.pyramid import (
    band_energy,
    laplacian_energy,
    laplacian_from_gaussian,
    laplacian_pyramid,
)

Scorer = Callable[..., list[Tensor]]
"""``scorer(images (B, C, H, W), min_patch, max_patch[, pyramid=...]) -> [(B, rows_d, cols_d)
for each d]``."""

Pyramid = Sequence[Tensor] | None
"""A precomputed :func:`~pyrtok.allocation.cell_pyramid` of the images, or ``None``."""

_LUMA = (0.2989, 0.5870, 0.1140)


def _valid_pixels(geometry: QuadtreeGeometry, device: torch.device) -> Tensor | None:
    return valid_weight(geometry, 1, device)


_CHUNK_VALUES = 1 << 20
"""Scorers process the batch in blocks of about this many input values (4 MB of float32; at
least one image). The pyramid's temporaries then stay small enough to be reused from the
allocator's free lists instead of being mapped (and page-faulted) afresh: on a 2-core CPU this
halves the time for a batch of 512x512 images, and it bounds the peak memory."""


def _chunked(
    score: Callable[[list[Tensor], QuadtreeGeometry], list[Tensor]],
    images: Tensor,
    geometry: QuadtreeGeometry,
    pyramid: Pyramid,
    levels: int,
) -> list[Tensor]:
    """``score`` over batch chunks, given the first ``levels`` levels of each chunk's cell
    pyramid: sliced from ``pyramid`` when given, else built per chunk."""
    if pyramid is not None:
        pyramid = check_cell_pyramid(pyramid, geometry, images.shape[0], images.shape[1])[:levels]

    def chunk_levels(start: int, stop: int) -> list[Tensor]:
        if pyramid is None:
            return cell_pyramid(images[start:stop], geometry, levels)
        return [level[start:stop] for level in pyramid]

    return _by_chunk(lambda start, stop: score(chunk_levels(start, stop), geometry), images)


def _by_chunk(score: Callable[[int, int], list[Tensor]], images: Tensor) -> list[Tensor]:
    """``score(start, stop)`` over batch chunks of about ``_CHUNK_VALUES`` values, joined."""
    batch = images.shape[0]
    size = max(1, _CHUNK_VALUES // max(1, images[0].numel()))
    parts = [score(start, min(batch, start + size)) for start in range(0, batch, size)]
    if len(parts) == 1:
        return parts[0]
    return [torch.cat(maps) for maps in zip(*parts, strict=True)]


def laplacian_scores(
    images: Tensor, min_patch: int = 16, max_patch: int = 64, *, pyramid: Pyramid = None
) -> list[Tensor]:
    """Band energy a split recovers, in pixel units.

    A leaf of side ``s = min_patch * 2**k`` is read from Gaussian level ``k``, so it drops the
    Laplacian bands ``L_0 .. L_{k-1}``. Splitting it gives children at level ``k - 1``, which
    recover band ``L_{k-1}`` inside the node. The score of a node at level ``k`` is therefore
    ``4**(k-1) * E_{k-1}(node)``, with ``E_j`` from :func:`~pyrtok.band_energy`; ``4**j`` turns
    level-``j`` coefficient energy into pixel energy, as each coefficient stands for
    ``2**j x 2**j`` pixels. Summed over the splits, this models the squared error of
    :func:`~pyrtok.allocation.detokenize` as the pixel energy of the bands each leaf drops.

    With ``pyramid`` given, its Gaussian levels are read (no new build). Without it, images
    whose sides are whole cells go through :func:`~pyrtok.laplacian_energy` (bands and energy
    in one fused pass on CUDA); partial cells are reflect-padded and weighted first.

    Args:
        images: ``(B, C, H, W)`` floating images, each side ``>= max_patch``.
        min_patch: smallest leaf side in pixels (a level-0 token).
        max_patch: cell side in pixels, ``min_patch * 2**depth``.
        pyramid: the images' :func:`~pyrtok.allocation.cell_pyramid`, if already built.

    Returns:
        ``depth`` maps, entry ``d`` ``(B, cell_rows * 2**d, cell_cols * 2**d)``, float32
        (float64 for float64 input).

    Examples:
        >>> scores = laplacian_scores(torch.rand(2, 3, 96, 128), min_patch=16, max_patch=64)
        >>> [tuple(s.shape) for s in scores]
        [(2, 2, 2), (2, 4, 4)]
    """
    geometry = geometry_for(images, min_patch, max_patch)
    depth = geometry.depth
    if depth == 0:
        return []
    if pyramid is None and geometry.padded_size == (geometry.height, geometry.width):
        # Nothing to pad or weigh: bands and energy in one pass (fused kernels on CUDA).
        work = images.to(work_dtype(images))

        def fused(start: int, stop: int) -> list[Tensor]:
            energy = laplacian_energy(work[start:stop], min_patch, depth + 1, check_finite=False)
            return _split_scores(energy[1], geometry)

        return _by_chunk(fused, images)
    return _chunked(_laplacian, images, geometry, pyramid, depth + 1)


def _laplacian(gaussians: list[Tensor], geometry: QuadtreeGeometry) -> list[Tensor]:
    depth, min_patch = geometry.depth, geometry.min_patch
    bands = laplacian_from_gaussian(gaussians)[:depth]
    weighted = []
    for j, band in enumerate(bands):
        share = valid_weight(geometry, 2**j, band.device)
        weighted.append(band if share is None else band * share.to(band.dtype).sqrt())
    return _split_scores(band_energy(weighted, min_patch, check_finite=False), geometry)


def _split_scores(energy: Tensor, geometry: QuadtreeGeometry) -> list[Tensor]:
    """Node scores from ``(B, >= depth, rows, cols)`` band energy per ``min_patch`` patch."""
    depth = geometry.depth
    scores = []
    for d in range(depth):
        j = depth - d - 1
        scores.append(sum_pool(energy[:, j], 2 ** (depth - d)) * 4**j)
    return scores


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
    ``[0, 1]`` into ``bins`` bins (values outside land in the end bins); padded pixels are not
    counted. Histograms are counted once at the finest split level and summed up the tree.

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
    if geometry.depth == 0:
        return []
    return _chunked(lambda part, g: _entropy(part[0], g, bins), images, geometry, pyramid, 1)


def _entropy(x: Tensor, geometry: QuadtreeGeometry, bins: int) -> list[Tensor]:
    depth = geometry.depth
    bin_index = (_grayscale(x) * bins).floor().clamp(0, bins - 1).long()
    valid = _valid_pixels(geometry, x.device)
    if valid is not None:
        bin_index = torch.where(valid > 0, bin_index, bins)
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
    ``min_patch`` samples. MSE is over channels and the node's unpadded pixels.

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
    return _chunked(lambda part, g: _blur(part[0], g), images, geometry, pyramid, 1)


def _blur(x: Tensor, geometry: QuadtreeGeometry) -> list[Tensor]:
    depth, min_patch = geometry.depth, geometry.min_patch
    height, width = geometry.padded_size
    valid = _valid_pixels(geometry, x.device)
    scores = []
    for d in range(depth):
        size = geometry.node_size(d)
        factor = size // min_patch
        small = F.interpolate(
            x, size=(height // factor, width // factor), mode="bilinear", antialias=True
        )
        blurry = F.interpolate(small, size=(height, width), mode="bilinear")
        error = (blurry - x).square().mean(dim=1)
        if valid is None:
            mse = sum_pool(error, size) / (size * size)
        else:
            weight = valid.to(error.dtype)
            mse = sum_pool(error * weight, size) / sum_pool(weight, size).clamp(min=1)
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
    return _chunked(lambda part, g: [_threshold(part[0], g)], images, geometry, None, 1)[0]


def _threshold(x: Tensor, geometry: QuadtreeGeometry) -> Tensor:
    pyramid = laplacian_pyramid(x, levels=4)
    weighted = []
    for k, level in enumerate(pyramid):
        share = valid_weight(geometry, 2**k, x.device)
        weighted.append(level if share is None else level * share.to(level.dtype).sqrt())
    energy = band_energy(weighted, geometry.max_patch, check_finite=False)
    high = energy[:, 0] + energy[:, 1]
    low = energy[:, 2] + energy[:, 3]
    return torch.where(high > 2 * low, 0.05, 0.01).to(x.dtype)


SCORERS: dict[str, Scorer] = {
    "laplacian": laplacian_scores,
    "entropy": entropy_scores,
    "blur": blur_scores,
}


def resolve_scorer(scorer: str | Scorer) -> Scorer:
    """A scorer by name (``"laplacian"``, ``"entropy"``, ``"blur"``) or a callable as is."""
    if isinstance(scorer, str):
        if scorer not in SCORERS:
            raise ValueError(f"scorer: unknown name {scorer!r}; valid names are {list(SCORERS)}")
        return SCORERS[scorer]
    if callable(scorer):
        return scorer
    raise TypeError(f"scorer: expected a name {list(SCORERS)} or a callable, got {scorer!r}")


def _takes_pyramid(scorer: Scorer) -> bool:
    try:
        parameters = inspect.signature(scorer).parameters
    except (TypeError, ValueError):  # builtins without a signature
        return False
    return "pyramid" in parameters or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()
    )


def score_nodes(
    scorer: Scorer, images: Tensor, geometry: QuadtreeGeometry, pyramid: Pyramid = None
) -> list[Tensor]:
    """Run ``scorer`` (with ``pyramid`` where it takes one) and check its output."""
    kwargs = {"pyramid": pyramid} if pyramid is not None and _takes_pyramid(scorer) else {}
    raw = scorer(images, geometry.min_patch, geometry.max_patch, **kwargs)
    return check_scores(raw, geometry, images.shape[0])


def check_scores(scores: object, geometry: QuadtreeGeometry, batch: int) -> list[Tensor]:
    """Check a scorer's output: ``depth`` finite tensors of the node-grid shapes."""
    if not isinstance(scores, (list, tuple)) or len(scores) != geometry.depth:
        length = len(scores) if isinstance(scores, (list, tuple)) else "?"
        raise ValueError(
            f"scorer: expected a list of {geometry.depth} score maps (one per split level), got "
            f"{type(scores).__name__} of length {length}"
        )
    checked = []
    for d, score in enumerate(scores):
        expected = (batch, *geometry.grid(d))
        if not isinstance(score, Tensor) or tuple(score.shape) != expected:
            shape = tuple(score.shape) if isinstance(score, Tensor) else type(score).__name__
            raise ValueError(f"scorer: score map {d} must have shape {expected}, got {shape}")
        if not bool(score.isfinite().all()):
            raise ValueError(f"scorer: score map {d} has NaN or Inf values")
        checked.append(score)
    return checked

"""Lloyd's k-means for codebook initialisation, optionally over all ranks' vectors."""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import Tensor

from pyrtok.quantize.distributed import all_reduce_sum, sample_rows
from pyrtok.quantize.search import nearest_code


def kmeans(
    x: Tensor,
    num_clusters: int,
    iters: int = 10,
    *,
    cosine: bool = False,
    sync: bool = False,
) -> tuple[Tensor, Tensor] | None:
    """Cluster the rows of ``x`` (pooled over ranks when ``sync``) into ``num_clusters``.

    Centroids start at ``num_clusters`` distinct rows drawn uniformly (over all ranks); each
    iteration assigns rows with :func:`~pyrtok.quantize.search.nearest_code` (exact, chunked —
    no ``N x K`` matrix) and recomputes centroids from ``index_add_`` sums all-reduced over ranks,
    so every rank ends with the same centroids. A cluster that loses all its rows keeps its
    previous centroid. With ``cosine`` the centroids are re-normalised (spherical k-means; pass
    unit-norm ``x``).

    Args:
        x: ``(n, D)`` float vectors on this rank (``n`` may be 0 on some ranks).
        num_clusters: ``K >= 1``.
        iters: Lloyd iterations (``>= 0``).
        cosine: l2-normalise centroids after each update.
        sync: pool over ``torch.distributed`` ranks (every rank must call).

    Returns:
        ``(centroids (K, D) float32, counts (K,) float32)`` — counts are the rows assigned to
        each centroid by the last assignment — or ``None`` after a warning when the ranks hold
        fewer than ``K`` rows together (the caller keeps its current codebook).

    Examples:
        >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
        <torch._C.Generator object at ...>
        >>> x = torch.cat([torch.randn(50, 2) * 0.1, torch.randn(50, 2) * 0.1 + 5])
        >>> centroids, counts = kmeans(x, 2)
        >>> sorted(counts.tolist()), sorted(centroids.round().sum(1).tolist())
        ([50.0, 50.0], [0.0, 10.0])
    """
    if num_clusters < 1:
        raise ValueError(f"num_clusters: expected >= 1, got {num_clusters}")
    if iters < 0:
        raise ValueError(f"iters: expected >= 0, got {iters}")
    x = x.detach().float()
    (total,) = all_reduce_sum([torch.tensor([float(x.shape[0])], device=x.device)], sync)
    if int(total.item()) < num_clusters:
        warnings.warn(
            f"k-means init: {int(total.item())} vectors for {num_clusters} codes; need at "
            "least as many vectors as codes. Keeping the current codebook (random init); "
            "feed a larger first batch or enable dead-code restarts.",
            RuntimeWarning,
            stacklevel=3,
        )
        return None
    centroids = sample_rows(x, num_clusters, sync)
    assert centroids is not None  # total >= num_clusters >= 1
    counts = torch.zeros(num_clusters, device=x.device)
    for _ in range(iters):
        index = nearest_code(x, centroids)
        sums = torch.zeros_like(centroids).index_add_(0, index, x)
        counts = torch.bincount(index, minlength=num_clusters).float()
        sums, counts = all_reduce_sum([sums, counts], sync)
        updated = sums / counts.clamp_min(1.0)[:, None]
        if cosine:
            updated = F.normalize(updated, dim=1)
        centroids = torch.where(counts[:, None] > 0, updated, centroids)
    if iters == 0:
        counts = torch.bincount(nearest_code(x, centroids), minlength=num_clusters).float()
        (counts,) = all_reduce_sum([counts], sync)
    return centroids, counts

"""The ``laplacian`` scorer and its variants: which bands count, log-energy, centre-surround.

The default (:func:`laplacian_scores`) scores a split by the band energy it recovers; the
variants of :class:`LaplacianScorer` change what counts, for tasks where that is not the point
(a small, low-contrast object among bright texture). ``docs/benchmarks.md`` measures each on
reconstruction PSNR and on the needle hit rate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from pyrtok.allocation.node_scoring import Pyramid, by_chunk, on_cell_pyramid
from pyrtok.allocation.quadtree import (
    QuadtreeGeometry,
    check_images,
    geometry_for,
    pad_to_cells,
    sum_pool,
)
from pyrtok.pyramid import band_energy, laplacian_energy, laplacian_from_gaussian
from pyrtok.pyramid.checks import check_finite_energy

_EPS_SHARE = 0.01
"""Floor of the log and of the centre-surround ratio: 1% of the image's mean detail energy per
pixel, times the node's area, so flat regions stay at the bottom and the scores do not depend
on the intensity scale."""

_ENERGY_CHUNK_VALUES = 1 << 24
"""Chunk of the scorer's :func:`~pyrtok.laplacian_energy` pass: 21 images of 512 x 512 RGB.
Larger than the scorers' default because on the CPU's one-pass path (no pyramid kept: a chunk
costs its padded copy and little more) the planes of a chunk are shared among threads: on the
2-core CPU, 256 such images took 0.29 s in chunks of 5 and 0.25 s in chunks of 21; the torch
path, which does build each chunk's pyramid, went from 1.34 s to 1.01 s."""


@dataclass(frozen=True)
class LaplacianScorer:
    """Band-energy scorer with options (a :data:`~pyrtok.allocation.scorers.Scorer`).

    A leaf of side ``min_patch * 2**k`` reads Gaussian level ``k``, so it lacks the Laplacian
    bands ``L_0 .. L_{k-1}``. ``E_j(node)`` is band ``j``'s energy inside the node in pixel
    units (``4**j`` times its coefficient energy, :func:`~pyrtok.band_energy`).

    Args:
        bands: what a node's energy is. ``"recovered"`` (default): ``E_{k-1}``, the band its
            split recovers, so the scores sum to the squared error that
            :func:`~pyrtok.allocation.detokenize` avoids. ``"all"``: ``sum_j E_j``, all its
            detail. A sequence of weights ``w_0, w_1, ...`` (finest band first, missing weights
            0): ``sum_j w_j E_j`` for every node, e.g. ``(1,)`` the finest band only, ``(0, 1)``
            the second (mid) band only.
        log: score ``log(energy + eps)`` instead of the energy. Under the ``greedy`` strategy
            this changes nothing (it splits by rank, and the log keeps ranks); it changes the
            strategies that add scores (``optimal``, ``proportional``).
        surround: exponent ``g`` of centre-surround normalisation: the energy is multiplied by
            ``((E + eps) / (S + eps))**g``, where ``S`` is the mean energy of the node and its 8
            neighbours at the same depth (those inside the image). An isolated detail (``E``
            up to ``9 S``) then beats extended texture (``E ~ S``) of the same energy; ``0``
            (default) is off.

    ``eps`` is 1% of the image's mean detail energy per pixel times the node's area, so the
    scores rank the same under any intensity map ``a * x + b``.

    Examples:
        >>> x = torch.rand(2, 3, 128, 128)
        >>> [tuple(s.shape) for s in LaplacianScorer(bands=(0, 1), surround=1.0)(x, 16, 64)]
        [(2, 2, 2), (2, 4, 4)]
        >>> LaplacianScorer(log=True).__name__
        'laplacian(log=True)'
    """

    bands: str | Sequence[float] = "recovered"
    log: bool = False
    surround: float = 0.0

    def __post_init__(self) -> None:
        if isinstance(self.bands, str):
            if self.bands not in ("recovered", "all"):
                raise ValueError(
                    f"bands: expected 'recovered', 'all' or a sequence of band weights (finest "
                    f"first), got {self.bands!r}"
                )
        else:
            weights = tuple(self.bands)
            if not all(
                isinstance(w, (int, float)) and not isinstance(w, bool) and w >= 0 for w in weights
            ) or not any(weights):
                raise ValueError(
                    f"bands: band weights must be numbers >= 0, one of them > 0, got {self.bands!r}"
                )
            object.__setattr__(self, "bands", weights)
        if isinstance(self.surround, bool) or not isinstance(self.surround, (int, float)):
            raise ValueError(f"surround: expected an exponent >= 0, got {self.surround!r}")
        if self.surround < 0:
            raise ValueError(f"surround: expected an exponent >= 0, got {self.surround}")

    @property
    def __name__(self) -> str:
        """The scorer's name in messages and tables."""
        options = [
            f"{name}={value!r}"
            for name, value, default in (
                ("bands", self.bands, "recovered"),
                ("log", self.log, False),
                ("surround", self.surround, 0.0),
            )
            if value != default
        ]
        return f"laplacian({', '.join(options)})"

    def __call__(
        self, images: Tensor, min_patch: int = 16, max_patch: int = 64, *, pyramid: Pyramid = None
    ) -> list[Tensor]:
        """Node scores, ``depth`` maps ``(B, cell_rows * 2**d, cell_cols * 2**d)``, float32
        (float64 for float64 input).

        Without ``pyramid`` the bands and their energy come from one pass of
        :func:`~pyrtok.laplacian_energy` (fused on CUDA) over the images padded to whole cells;
        with it, its Gaussian levels are read.
        """
        # NaN / Inf pixels make their energy NaN / Inf, checked once at the end (a pass over
        # the input cost ~0.1 s on 256 images of 512 x 512 on a 2-core CPU; one check per
        # chunk would sync with a GPU per chunk); only then are the pixels themselves read
        geometry = geometry_for(images, min_patch, max_patch, values=False)
        if geometry.depth == 0:
            check_images(images)
            return []
        largest: list[Tensor] = []  # per chunk, its largest energy (NaN / Inf if any is)

        def scored(energy: Tensor) -> list[Tensor]:
            largest.append(energy.amax())
            return self._scores(energy, geometry)

        if pyramid is None:

            def fused(start: int, stop: int) -> list[Tensor]:
                padded = pad_to_cells(images[start:stop], geometry)  # per chunk: bounded memory
                _, energy = laplacian_energy(
                    padded, min_patch, geometry.depth + 1, check_finite=False, keep_pyramid=False
                )
                return scored(energy)

            scores = by_chunk(fused, images, _ENERGY_CHUNK_VALUES)
        else:

            def shared(gaussians: list[Tensor], geometry: QuadtreeGeometry) -> list[Tensor]:
                bands = laplacian_from_gaussian(gaussians)
                return scored(band_energy(bands, geometry.min_patch, check_finite=False))

            scores = on_cell_pyramid(shared, images, geometry, pyramid, geometry.depth + 1)
        try:
            check_finite_energy(torch.stack(largest))
        except ValueError:
            check_images(images)  # names the pixels when they are the cause, not an overflow
            raise
        return scores

    def _scores(self, energy: Tensor, geometry: QuadtreeGeometry) -> list[Tensor]:
        """Scores from ``(B, depth + 1, rows, cols)`` coefficient energy per ``min_patch``
        patch (the last entry, the low-pass residual, is not detail and is not read)."""
        depth = geometry.depth
        pixel = torch.stack([energy[:, j] * 4**j for j in range(depth)], dim=1)
        if self.bands == "recovered":
            per_depth = [pixel[:, depth - d - 1] for d in range(depth)]
        else:
            weights = [1.0] * depth if self.bands == "all" else list(self.bands)[:depth]
            weights += [0.0] * (depth - len(weights))
            mixed = torch.einsum("bjhw,j->bhw", pixel, pixel.new_tensor(weights))
            per_depth = [mixed] * depth
        if not self.log and not self.surround:
            return [sum_pool(e, 2 ** (depth - d)) for d, e in enumerate(per_depth)]
        total = pixel.sum(dim=(1, 2, 3))
        density = total / (geometry.padded_size[0] * geometry.padded_size[1])
        scores = []
        for d, e in enumerate(per_depth):
            node = sum_pool(e, 2 ** (depth - d))
            eps = (_EPS_SHARE * density * geometry.node_size(d) ** 2)[:, None, None]
            score = torch.log(node + eps) if self.log else node
            if self.surround:
                ratio = (node + eps) / (self._surround(node, geometry, d) + eps)
                score = (
                    score + self.surround * ratio.log()
                    if self.log
                    else score * ratio**self.surround
                )
            scores.append(score)
        return scores

    @staticmethod
    def _surround(node: Tensor, geometry: QuadtreeGeometry, d: int) -> Tensor:
        """Mean of ``node`` ``(B, rows, cols)`` over each 3x3 neighbourhood of existing nodes."""
        inside = geometry.node_exists(d, node.device).to(node.dtype)
        total = F.avg_pool2d((node * inside)[:, None], 3, 1, 1, divisor_override=1)[:, 0]
        count = F.avg_pool2d(inside[None, None], 3, 1, 1, divisor_override=1)[:, 0]
        return total / count.clamp(min=1)


_DEFAULT = LaplacianScorer()


def laplacian_scores(
    images: Tensor, min_patch: int = 16, max_patch: int = 64, *, pyramid: Pyramid = None
) -> list[Tensor]:
    """The default ``laplacian`` scorer: the band energy a split recovers, in pixel units.

    A leaf of side ``s = min_patch * 2**k`` is read from Gaussian level ``k``, so it drops the
    Laplacian bands ``L_0 .. L_{k-1}``; its split gives children at level ``k - 1``, which
    recover band ``L_{k-1}`` inside the node. The score of a node at level ``k`` is
    ``4**(k-1) * E_{k-1}(node)`` (``4**j`` turns level-``j`` coefficient energy into pixel
    energy). Summed over the splits, this models the squared error of
    :func:`~pyrtok.allocation.detokenize` as the pixel energy of the bands each leaf drops.
    ``LaplacianScorer()``; see :class:`LaplacianScorer` for the variants and the arguments.

    Examples:
        >>> scores = laplacian_scores(torch.rand(2, 3, 96, 128), min_patch=16, max_patch=64)
        >>> [tuple(s.shape) for s in scores]
        [(2, 2, 2), (2, 4, 4)]
    """
    return _DEFAULT(images, min_patch, max_patch, pyramid=pyramid)

"""The quantiser settings every VQ benchmark compares at, in one place.

EMA decay 0.99, commitment 0.25, straight-through estimator (no rotation trick), for pyrtok's
``VectorQuantizer`` and vector-quantize-pytorch's ``VectorQuantize`` alike.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported by the caller, after it measured its own baseline
    from torch import nn

IMPLEMENTATIONS = ("pyrtok", "vector-quantize-pytorch")


def matched_quantizer(
    impl: str,
    dim: int,
    codebook_size: int,
    kmeans: bool = False,
    dead_code_threshold: float = 0.0,
    search_precision: str = "auto",
) -> nn.Module:
    """``impl``'s quantiser at the matched settings (``search_precision`` is pyrtok's only)."""
    if impl == "pyrtok":
        from pyrtok.quantize import VectorQuantizer

        return VectorQuantizer(
            dim,
            codebook_size,
            decay=0.99,
            beta=0.25,
            estimator="ste",
            kmeans_init=kmeans,
            dead_code_threshold=dead_code_threshold,
            search_precision=search_precision,  # type: ignore[arg-type]
        )
    from vector_quantize_pytorch import VectorQuantize

    module: nn.Module = VectorQuantize(
        dim=dim,
        codebook_size=codebook_size,
        decay=0.99,
        commitment_weight=0.25,
        rotation_trick=False,
        kmeans_init=kmeans,
        threshold_ema_dead_code=dead_code_threshold,
    )
    return module

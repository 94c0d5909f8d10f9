"""VAR's next-scale residual quantiser (Tian et al. 2024); EMA or gradient codebooks, any scales.

For scales ``(h_1, w_1), ..., (h_S, w_S) = (H, W)``: the residual is area-downsampled to the
scale, quantised, the codes are upsampled back to ``(H, W)`` (bicubic), refined by ``Phi``
(``(1 - r) h + r conv3x3(h)``), added to ``f_hat`` and subtracted from the residual. Works with or
without ``torch.distributed`` (codebook statistics are synced only when a process group exists).
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pyrtok.quantize.distributed import raise_if_nonfinite, sync_active
from pyrtok.quantize.estimators import straight_through
from pyrtok.quantize.search import Precision
from pyrtok.quantize.stats import CodebookStats, usage_stats
from pyrtok.quantize.vector_quantizer import CodebookUpdate, VectorQuantizer

Scale = int | tuple[int, int]
Mode = Literal["var", "per_scale_ste"]

VAR_SCALES: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 8, 10, 13, 16)


class MSQOutput(NamedTuple):
    """``(f_hat, indices, loss)`` returned by :class:`MultiScaleResidualQuantizer`."""

    f_hat: Tensor
    """``(B, C, H, W)``, dtype of the input; equals ``from_indices(indices)`` in value."""
    indices: list[Tensor]
    """One int64 ``(B, h_k, w_k)`` tensor per scale."""
    loss: Tensor
    """float32 scalar, averaged over scales."""


class Phi(nn.Module):
    """VAR's refinement ``h -> (1 - ratio) h + ratio conv3x3(h)`` on ``(B, C, H, W)``."""

    def __init__(self, dim: int, ratio: float) -> None:
        super().__init__()
        self.ratio = ratio
        self.conv = nn.Conv2d(dim, dim, kernel_size=3, padding=1)

    def forward(self, h: Tensor) -> Tensor:
        out: Tensor = h * (1.0 - self.ratio) + self.conv(h) * self.ratio
        return out


def _as_pair(scale: Scale) -> tuple[int, int]:
    pair = (scale, scale) if isinstance(scale, int) else tuple(scale)
    if len(pair) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in pair):
        raise ValueError(f"scales: expected ints or (h, w) int pairs, got {scale!r}")
    if min(pair) < 1:
        raise ValueError(f"scales: expected sizes >= 1, got {scale!r}")
    return (pair[0], pair[1])


class MultiScaleResidualQuantizer(nn.Module):
    """Next-scale residual quantisation: ``f_hat, indices, loss = msq(f)`` for ``f (B, C, H, W)``.

    Args:
        dim: channels ``C``.
        codebook_size: codes per codebook (VAR: 4096).
        scales: ints (square) or ``(h, w)`` pairs; the last must equal the input's ``(H, W)``.
        shared_codebook: one codebook for all scales (VAR) or one per scale.
        num_phi: ``Phi`` convs: 0 = none (identity), 1 = shared, ``len(scales)`` = one per scale,
            otherwise VAR's partial sharing (scale ``k`` uses the conv whose tick in
            ``linspace(1/(3n), 1 - 1/(3n), n)`` is nearest ``k / (S - 1)``). Default
            ``min(4, len(scales))`` (VAR: 4).
        phi_ratio: ``r`` in ``Phi`` (VAR's ``quant_resi``, 0.5).
        mode: ``"var"`` — VAR-faithful: the residual is detached, per-scale loss
            ``beta * |sg(f_hat) - f|^2 + |f_hat - sg(f)|^2`` on the running ``f_hat``, one STE at
            the end (``Phi`` and a ``"grad"`` codebook learn from the second term).
            ``"per_scale_ste"`` — each scale's codes pass an STE, the residual keeps its graph,
            the loss is each scale's :meth:`VectorQuantizer.loss`.
        upsample: ``"bicubic"`` (VAR) or ``"bilinear"``, codes to ``(H, W)``.
        beta: commitment weight.
        codebook_update: ``"ema"`` or ``"grad"``, as :class:`VectorQuantizer`.
        decay: EMA decay, as :class:`VectorQuantizer`.
        eps: Laplace smoothing, as :class:`VectorQuantizer`.
        kmeans_init: k-means init on the first training batch, run on the full-resolution
            vectors ``f`` (shared codebook) or on the full-resolution residual entering each
            scale (per-scale codebooks) — never on the 1x1 scale.
        kmeans_iters: Lloyd iterations of that init.
        dead_code_threshold: dead-code restarts, as :class:`VectorQuantizer`.
        sync: ``torch.distributed`` sync, as :class:`VectorQuantizer` (no process group
            needed).
        search_precision: nearest-code search speed hint, as :class:`VectorQuantizer`.
        check_finite: raise on NaN/Inf inputs before touching the codebook.

    Attributes:
        quantizers: the :class:`VectorQuantizer` (one, or one per scale).
        phis: the ``Phi`` modules.
        stats: per-scale :class:`~pyrtok.quantize.stats.CodebookStats` of the last forward.

    Examples:
        >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
        <torch._C.Generator object at ...>
        >>> msq = MultiScaleResidualQuantizer(8, 32, scales=(1, 2, (3, 4)))
        >>> f = torch.randn(2, 8, 3, 4)
        >>> f_hat, indices, loss = msq(f)
        >>> tuple(tuple(i.shape) for i in indices)
        ((2, 1, 1), (2, 2, 2), (2, 3, 4))
        >>> _ = msq.eval()
        >>> torch.equal(msq(f).f_hat, msq.from_indices(msq.to_indices(f)))
        True
        >>> msq.teacher_forcing_input(indices).shape  # 4 + 12 positions after the 1x1 scale
        torch.Size([2, 16, 8])
    """

    def __init__(
        self,
        dim: int,
        codebook_size: int,
        scales: tuple[Scale, ...] = VAR_SCALES,
        *,
        shared_codebook: bool = True,
        num_phi: int | None = None,
        phi_ratio: float = 0.5,
        mode: Mode = "var",
        upsample: Literal["bicubic", "bilinear"] = "bicubic",
        beta: float = 0.25,
        codebook_update: CodebookUpdate = "ema",
        decay: float = 0.99,
        eps: float = 1e-5,
        kmeans_init: bool = False,
        kmeans_iters: int = 10,
        dead_code_threshold: float = 0.0,
        sync: bool | None = None,
        check_finite: bool = True,
        search_precision: Precision = "auto",
    ) -> None:
        super().__init__()
        if not isinstance(scales, tuple | list) or len(scales) == 0:
            raise ValueError(f"scales: expected a non-empty tuple, got {scales!r}")
        self.scales = [_as_pair(s) for s in scales]
        n = len(self.scales)
        num_phi = min(4, n) if num_phi is None else num_phi
        if isinstance(num_phi, bool) or not isinstance(num_phi, int) or not 0 <= num_phi <= n:
            raise ValueError(f"num_phi: expected an int in [0, {n}], got {num_phi!r}")
        if mode not in ("var", "per_scale_ste"):
            raise ValueError(f"mode: expected 'var' or 'per_scale_ste', got {mode!r}")
        if upsample not in ("bicubic", "bilinear"):
            raise ValueError(f"upsample: expected 'bicubic' or 'bilinear', got {upsample!r}")
        if not 0.0 <= phi_ratio <= 1.0:
            raise ValueError(f"phi_ratio: expected a number in [0, 1], got {phi_ratio!r}")
        self.dim, self.codebook_size, self.mode, self.upsample = dim, codebook_size, mode, upsample
        self.beta, self.sync, self.check_finite = float(beta), sync, check_finite
        self.quantizers = nn.ModuleList(
            VectorQuantizer(
                dim,
                codebook_size,
                codebook_update=codebook_update,
                decay=decay,
                eps=eps,
                beta=beta,
                kmeans_init=kmeans_init,
                kmeans_iters=kmeans_iters,
                dead_code_threshold=dead_code_threshold,
                sync=sync,
                check_finite=False,
                search_precision=search_precision,
            )
            for _ in range(1 if shared_codebook else n)
        )
        self.phis = nn.ModuleList(Phi(dim, phi_ratio) for _ in range(num_phi))
        self.stats: list[CodebookStats] | None = None

    @property
    def shared_codebook(self) -> bool:
        return len(self.quantizers) == 1

    def quantizer(self, k: int) -> VectorQuantizer:
        """The :class:`VectorQuantizer` used at scale ``k``."""
        vq = self.quantizers[0 if self.shared_codebook else k]
        assert isinstance(vq, VectorQuantizer)
        return vq

    def phi(self, k: int) -> nn.Module:
        """The ``Phi`` used at scale ``k`` (``nn.Identity`` when ``num_phi == 0``)."""
        n_phi, n = len(self.phis), len(self.scales)
        if n_phi == 0:
            return nn.Identity()
        if n_phi == n:
            return self.phis[k]
        ticks = torch.linspace(1 / (3 * n_phi), 1 - 1 / (3 * n_phi), n_phi, dtype=torch.float64)
        at = k / (n - 1) if n > 1 else 0.0
        return self.phis[int((ticks - at).abs().argmin())]

    # ------------------------------------------------------------------ forward
    def forward(self, f: Tensor) -> MSQOutput:
        """Quantise ``f (B, C, H, W)``; see the class docstring.

        Raises:
            TypeError: ``f`` not a floating tensor.
            ValueError: wrong shape, last scale != ``(H, W)``, NaN/Inf in ``f``.
        """
        self._check_input(f, "f")
        sync = self.training and sync_active(self.sync)
        if self.check_finite:
            raise_if_nonfinite(f, "f", sync)
        with torch.autocast(device_type=f.device.type, enabled=False):
            f_hat, indices, loss, counts = self._run(f.float(), self.training, sync)
        self.stats = [
            usage_stats(cnt, self.quantizer(k).ema_count, self.quantizer(k).dead_threshold)
            for k, cnt in enumerate(counts)
        ]
        return MSQOutput(f_hat.to(f.dtype), indices, loss)

    def _run(
        self, f: Tensor, update: bool, sync: bool
    ) -> tuple[Tensor, list[Tensor], Tensor, list[Tensor]]:
        """The scale loop; ``update`` records statistics. Returns per-scale hit counts too."""
        b, _, height, width = f.shape
        var = self.mode == "var"
        if update and self.shared_codebook:
            self.quantizer(0).begin_step(_flat(f.detach()), sync)
        f_rest = f.detach().clone() if var else f
        f_hat = torch.zeros_like(f)
        losses, indices, counts = [], [], []
        for k, (h, w) in enumerate(self.scales):
            vq = self.quantizer(k)
            if update and not self.shared_codebook:
                vq.begin_step(_flat(f_rest.detach()), sync)
            r = f_rest if (h, w) == (height, width) else F.interpolate(f_rest, (h, w), mode="area")
            r_flat = _flat(r)
            codes, index = vq.lookup(r_flat.detach())
            q = codes if var else straight_through(r_flat, codes)
            step = self._expand(q, k, b, height, width)
            f_hat = f_hat + step
            f_rest = f_rest - (step.detach() if var else step)
            if var:
                losses.append(
                    self.beta * F.mse_loss(f_hat.detach(), f) + F.mse_loss(f_hat, f.detach())
                )
            else:
                losses.append(vq.loss(r_flat, codes))
            if update:
                counts.append(vq.record(r_flat.detach(), index))
                if not self.shared_codebook:
                    vq.end_step(sync)
            else:
                counts.append(torch.bincount(index, minlength=self.codebook_size).float())
            indices.append(index.view(b, h, w))
        if update and self.shared_codebook:
            (counts_t,) = self.quantizer(0).end_step(sync, [torch.stack(counts)])
            counts = list(counts_t.unbind(0))
        if var:
            f_hat = f_hat.detach() + (f - f.detach())
        return f_hat, indices, torch.stack(losses).mean(), counts

    def _expand(self, codes: Tensor, k: int, batch: int, height: int, width: int) -> Tensor:
        """Scale ``k``'s codes ``(B*h*w, C)`` -> ``Phi(upsample(codes))`` ``(B, C, H, W)``."""
        h, w = self.scales[k]
        grid = codes.view(batch, h, w, self.dim).permute(0, 3, 1, 2)
        if (h, w) != (height, width):
            grid = F.interpolate(grid, size=(height, width), mode=self.upsample)
        out: Tensor = self.phi(k)(grid.contiguous())
        return out

    # ---------------------------------------------------------- indices round trip
    @torch.no_grad()
    def to_indices(self, f: Tensor) -> list[Tensor]:
        """Per-scale indices of ``f (B, C, H, W)``: ``[(B, h_k, w_k)]``. No state changes."""
        self._check_input(f, "f")
        with torch.autocast(device_type=f.device.type, enabled=False):
            return self._run(f.float(), update=False, sync=False)[1]

    def _cumulative(self, indices: list[Tensor]) -> list[Tensor]:
        """``f_hat`` after each scale (float32 ``(B, C, H, W)``), from per-scale indices."""
        if not isinstance(indices, list | tuple) or not 1 <= len(indices) <= len(self.scales):
            raise ValueError(
                f"indices: expected a list of 1 to {len(self.scales)} tensors (the first scales), "
                f"got {type(indices).__name__} of length {len(indices)}"
            )
        batch = indices[0].shape[0] if indices[0].ndim == 3 else -1
        for k, (idx, (h, w)) in enumerate(zip(indices, self.scales[: len(indices)], strict=True)):
            if idx.ndim != 3 or idx.shape[1:] != (h, w) or idx.shape[0] != batch:
                raise ValueError(
                    f"indices[{k}]: expected shape ({batch}, {h}, {w}), got {tuple(idx.shape)}"
                )
        height, width = self.scales[-1]
        f_hat = torch.zeros(
            batch, self.dim, height, width, device=indices[0].device, dtype=torch.float32
        )
        out = []
        with torch.autocast(device_type=f_hat.device.type, enabled=False):
            for k, idx in enumerate(indices):
                codes = self.quantizer(k).get_codes(idx).reshape(-1, self.dim)
                f_hat = f_hat + self._expand(codes, k, batch, height, width)
                out.append(f_hat)
        return out

    def from_indices(self, indices: list[Tensor]) -> Tensor:
        """``f_hat (B, C, H, W)`` float32 from the indices of the first ``k`` scales.

        With all scales it equals the forward's ``f_hat`` (bit for bit on the same device);
        with fewer it is the coarse reconstruction after ``k`` scales (progressive decoding).
        An index of ``-1`` is a zero code (before upsampling and ``Phi``).
        """
        return self._cumulative(indices)[-1]

    def teacher_forcing_input(self, indices: list[Tensor]) -> Tensor:
        """VAR's transformer input for teacher forcing: ``(B, sum_{k>=2} h_k w_k, C)``.

        Position block ``k`` (``k >= 2``) is ``f_hat`` after scales ``1..k-1`` area-downsampled
        to scale ``k`` and flattened row-major — what predicts scale ``k``'s tokens. The 1x1
        start token is the class/condition embedding and is not included.
        """
        if not isinstance(indices, list | tuple) or len(indices) != len(self.scales):
            raise ValueError(
                f"indices: expected a list of {len(self.scales)} tensors (one per scale), "
                f"got {type(indices).__name__} of length {len(indices)}"
            )
        cumulative = self._cumulative(indices)
        blocks = [
            F.interpolate(cumulative[k - 1], size=(h, w), mode="area").flatten(2).transpose(1, 2)
            for k, (h, w) in enumerate(self.scales)
            if k > 0
        ]
        if not blocks:
            return cumulative[0].new_zeros(cumulative[0].shape[0], 0, self.dim)
        return torch.cat(blocks, dim=1)

    def _check_input(self, f: Tensor, name: str) -> None:
        if not isinstance(f, Tensor):
            raise TypeError(f"{name}: expected a torch.Tensor, got {type(f).__name__}")
        if not f.is_floating_point():
            raise TypeError(f"{name}: expected a floating dtype, got {f.dtype}")
        if f.ndim != 4 or f.shape[1] != self.dim:
            raise ValueError(
                f"{name}: expected shape (B, {self.dim}, H, W), got shape {tuple(f.shape)}"
            )
        if tuple(f.shape[2:]) != self.scales[-1]:
            raise ValueError(
                f"{name}: expected spatial size {self.scales[-1]} (the last of scales), got "
                f"{tuple(f.shape[2:])}; pass scales ending in (H, W)"
            )
        for h, w in self.scales:
            if h > f.shape[2] or w > f.shape[3]:
                raise ValueError(f"scales: ({h}, {w}) exceeds the input size {tuple(f.shape[2:])}")


def _flat(x: Tensor) -> Tensor:
    """``(B, C, h, w)`` -> ``(B*h*w, C)``."""
    return x.permute(0, 2, 3, 1).reshape(-1, x.shape[1])

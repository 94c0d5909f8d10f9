"""``VectorQuantizer``: discrete codes with STE or rotation trick, EMA or gradient codebook.

**When the codebook changes.** A training forward quantises with the codebook as it is, then
*records* the step's statistics (hit counts and, for EMA, per-code sums of the inputs, summed over
ranks). The EMA update is applied at the start of the *next* training forward (or by
:meth:`VectorQuantizer.apply_update`), followed by k-means init (first step only) and dead-code
restarts from that forward's inputs. So ``q``, ``indices`` and ``get_codes(indices)`` agree until
the next training step — the codebook is never rewritten under a forward's outputs. The sequence
of codebooks used by successive forwards is the usual one (update after every step).

**Precision.** Projections run under the caller's autocast; the search, loss, EMA and k-means
run in float32. **Memory.** No ``N x K`` matrix anywhere: chunked / fused search, lookups by
indexing, EMA sums by ``index_add_``.
"""

from __future__ import annotations

import math
from typing import Any, Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pyrtok.pyramid.checks import sync_checks_enabled
from pyrtok.quantize.distributed import (
    all_reduce_sum,
    broadcast_,
    raise_if_nonfinite,
    sample_rows,
    sync_active,
)
from pyrtok.quantize.estimators import Estimator, apply_estimator
from pyrtok.quantize.kmeans import kmeans
from pyrtok.quantize.search import Precision, nearest_code
from pyrtok.quantize.stats import CodebookStats, usage_stats

CodebookUpdate = Literal["ema", "grad"]

_DEAD_WHEN_NO_RESTARTS = 1e-3


class VQOutput(NamedTuple):
    """``(quantized, indices, loss)`` returned by :class:`VectorQuantizer`."""

    quantized: Tensor
    """Same shape and dtype as ``x``; equals ``embed(indices)`` (zeros at padded tokens)."""
    indices: Tensor
    """int64, ``x``'s shape without the channel dim; ``-1`` at padded tokens."""
    loss: Tensor
    """float32 scalar: ``beta * commitment`` (+ codebook term in ``"grad"`` mode)."""


def _check_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name}: expected one of {', '.join(map(repr, choices))}, got {value!r}")


def _check_number(name: str, value: float, low: float, high: float | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name}: expected a number, got {type(value).__name__}")
    if value < low or (high is not None and value >= high):
        upper = f" and < {high}" if high is not None else ""
        raise ValueError(f"{name}: expected >= {low}{upper}, got {value}")


class VectorQuantizer(nn.Module):
    """Vector quantiser: ``q, indices, loss = vq(x)``.

    Args:
        dim: channel size ``D`` of ``x``.
        codebook_size: number of codes ``K >= 2``.
        codebook_dim: codes live in this dimension (``Linear`` projections in and out) when it
            differs from ``dim``; default ``dim`` (no projection).
        estimator: ``"ste"`` (straight-through) or ``"rotation"`` (rotation trick). Either way
            the forward value is exactly the selected code.
        codebook_update: ``"ema"`` (codebook is a buffer updated by exponential moving
            averages) or ``"grad"`` (an ``nn.Parameter`` trained by the codebook loss term).
        decay: EMA decay of the hit counts and sums (``"ema"``) / of the usage counts.
        eps: Laplace smoothing of the EMA counts.
        beta: weight of the commitment term ``||z - sg(e)||^2``. In ``"grad"`` mode the loss
            is ``||sg(z) - e||^2 + beta ||z - sg(e)||^2`` (VQ-VAE; beta on commitment, not on
            the codebook term).
        cosine: l2-normalise inputs and codes (search by cosine similarity).
        kmeans_init: initialise the codebook by k-means on the first training batch (all ranks).
            With fewer vectors than codes: a ``RuntimeWarning`` and the random init is kept.
        kmeans_iters: Lloyd iterations of that init.
        dead_code_threshold: at each training step, codes whose EMA hit count (hits per step)
            fell below this are re-seeded with random current inputs; 0 disables.
        channel_first: ``x`` is ``(B, dim, *spatial)`` (e.g. ``(B, C, H, W)`` feature maps)
            instead of ``(..., dim)``; ``indices``/``mask`` are ``(B, *spatial)``.
        sync: sync codebook statistics over ``torch.distributed`` ranks: ``None`` (default)
            whenever a process group of > 1 rank is initialised at forward time.
        check_finite: raise on NaN/Inf inputs before touching the codebook (one device sync).
        search_precision: speed hint for the nearest-code search (``"auto"``, ``"fp32"``,
            ``"tf32"``, ``"bf16"``); the indices are exact for every choice, see
            :func:`~pyrtok.quantize.search.nearest_code`.

    Shapes:
        ``x (..., dim)`` -> ``quantized (..., dim)``, ``indices (...)`` int64, ``loss ()``;
        ``mask (...)`` bool, True = real token. Padded tokens get index ``-1`` and zero output,
        are excluded from the loss, statistics, EMA, k-means and restarts.

    Attributes:
        codebook: ``(K, codebook_dim)`` float32 codes (buffer or parameter), initialised
            ``N(0, 1 / codebook_dim)`` (norm ~1) until k-means replaces them.
        ema_count: ``(K,)`` EMA of hits per step. ema_sum: ``(K, codebook_dim)`` (``"ema"``).
        stats: :class:`~pyrtok.quantize.stats.CodebookStats` of the last forward, or ``None``.

    Examples:
        >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
        <torch._C.Generator object at ...>
        >>> vq = VectorQuantizer(dim=8, codebook_size=16, kmeans_init=True)
        >>> x = torch.randn(2, 50, 8, requires_grad=True)
        >>> q, indices, loss = vq(x)
        >>> q.shape, indices.shape, loss.shape
        (torch.Size([2, 50, 8]), torch.Size([2, 50]), torch.Size([]))
        >>> torch.equal(q, vq.embed(indices))
        True
        >>> (q.sum() + loss).backward(); x.grad.shape
        torch.Size([2, 50, 8])
    """

    codebook: Tensor
    ema_count: Tensor
    ema_sum: Tensor | None
    pending_count: Tensor
    pending_sum: Tensor | None

    def __init__(
        self,
        dim: int,
        codebook_size: int,
        *,
        codebook_dim: int | None = None,
        estimator: Estimator = "ste",
        codebook_update: CodebookUpdate = "ema",
        decay: float = 0.99,
        eps: float = 1e-5,
        beta: float = 0.25,
        cosine: bool = False,
        kmeans_init: bool = False,
        kmeans_iters: int = 10,
        dead_code_threshold: float = 0.0,
        channel_first: bool = False,
        sync: bool | None = None,
        check_finite: bool = True,
        search_precision: Precision = "auto",
    ) -> None:
        super().__init__()
        for name, value in (("dim", dim), ("codebook_size", codebook_size)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name}: expected an int, got {type(value).__name__}")
        if dim < 1:
            raise ValueError(f"dim: expected >= 1, got {dim}")
        if codebook_size < 2:
            raise ValueError(f"codebook_size: expected >= 2 codes, got {codebook_size}")
        codebook_dim = dim if codebook_dim is None else codebook_dim
        if isinstance(codebook_dim, bool) or not isinstance(codebook_dim, int) or codebook_dim < 1:
            raise ValueError(f"codebook_dim: expected an int >= 1 or None, got {codebook_dim!r}")
        _check_choice("estimator", estimator, ("ste", "rotation"))
        _check_choice("codebook_update", codebook_update, ("ema", "grad"))
        _check_choice("search_precision", search_precision, ("auto", "fp32", "tf32", "bf16"))
        _check_number("decay", decay, 0.0, 1.0)
        _check_number("eps", eps, 0.0)
        _check_number("beta", beta, 0.0)
        _check_number("kmeans_iters", kmeans_iters, 0)
        _check_number("dead_code_threshold", dead_code_threshold, 0.0)
        if sync not in (None, True, False):
            raise ValueError(f"sync: expected None, True or False, got {sync!r}")

        self.dim, self.codebook_size, self.codebook_dim = dim, codebook_size, codebook_dim
        self.estimator: Estimator = estimator
        self.codebook_update: CodebookUpdate = codebook_update
        self.decay, self.eps, self.beta = float(decay), float(eps), float(beta)
        self.cosine, self.kmeans_init, self.kmeans_iters = cosine, kmeans_init, int(kmeans_iters)
        self.dead_code_threshold = float(dead_code_threshold)
        self.channel_first, self.sync, self.check_finite = channel_first, sync, check_finite
        self.search_precision: Precision = search_precision

        projected = codebook_dim != dim
        self.project_in: nn.Module = nn.Linear(dim, codebook_dim) if projected else nn.Identity()
        self.project_out: nn.Module = nn.Linear(codebook_dim, dim) if projected else nn.Identity()

        init = torch.randn(codebook_size, codebook_dim) / math.sqrt(codebook_dim)
        if cosine:
            init = F.normalize(init, dim=1)
        ema = codebook_update == "ema"
        if ema:
            self.register_buffer("codebook", init)
        else:
            self.codebook = nn.Parameter(init)
        self.register_buffer("ema_count", torch.ones(codebook_size))
        self.register_buffer("ema_sum", init.clone() if ema else None)
        self.register_buffer("pending_count", torch.zeros(codebook_size))
        self.register_buffer("pending_sum", torch.zeros_like(init) if ema else None)
        self._initialized = False
        self._pending = False
        self._acc: list[Tensor] = []
        self.stats: CodebookStats | None = None

    # ------------------------------------------------------------------ state
    def get_extra_state(self) -> dict[str, bool]:
        return {"initialized": self._initialized, "pending": self._pending}

    def set_extra_state(self, state: Any) -> None:
        self._initialized = bool(state["initialized"])
        self._pending = bool(state["pending"])

    @property
    def dead_threshold(self) -> float:
        """EMA count below which a code counts as dead in :attr:`stats`."""
        return self.dead_code_threshold or _DEAD_WHEN_NO_RESTARTS

    # ------------------------------------------------------------------ forward
    def forward(self, x: Tensor, mask: Tensor | None = None) -> VQOutput:
        """Quantise ``x``; see the class docstring for shapes.

        Raises:
            TypeError: ``x`` not a floating tensor, ``mask`` not bool.
            ValueError: wrong channel size, wrong mask shape, NaN/Inf in ``x`` (the codebook
                is then untouched; under sync every rank raises, none hangs).
        """
        flat, valid_rows, lead = self._flatten(x, mask)
        sync = self.training and sync_active(self.sync)
        if self.check_finite:
            raise_if_nonfinite(x, "x", sync)
        z_all = self.to_code_space(flat)
        z = z_all if valid_rows is None else z_all[valid_rows]
        if self.training:
            self.begin_step(z, sync)
        codes, index = self.lookup(z)
        out = apply_estimator(self.estimator, z, codes)
        loss = self.loss(z, codes)
        if self.training:
            self.record(z, index)
            self.end_step(sync)
        else:
            counts = torch.bincount(index, minlength=self.codebook_size).float()
            self.stats = usage_stats(counts, self.ema_count, self.dead_threshold)

        n = flat.shape[0]
        if valid_rows is None:
            indices, q_code = index, out
        else:
            indices = index.new_full((n,), -1).index_put((valid_rows,), index)
            q_code = out.new_zeros((n, self.codebook_dim)).index_put((valid_rows,), out)
        quantized = self._decode(q_code.to(x.dtype), None if valid_rows is None else indices >= 0)
        return VQOutput(self._restore(quantized.to(x.dtype), lead), indices.view(lead), loss)

    def to_code_space(self, flat: Tensor) -> Tensor:
        """``(N, dim)`` -> ``(N, codebook_dim)`` float32: projection, then l2-norm if cosine."""
        z = self.project_in(flat)
        with torch.autocast(device_type=z.device.type, enabled=False):
            z = z.float()
            return F.normalize(z, dim=-1) if self.cosine else z

    def lookup(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """Nearest codes of ``z (n, codebook_dim)``: ``(codes (n, codebook_dim) fp32, index)``.

        ``codes`` is differentiable with respect to the codebook in ``"grad"`` mode.
        """
        index = nearest_code(z, self.codebook, precision=self.search_precision)
        return self.codebook[index].float(), index

    def loss(self, z: Tensor, codes: Tensor) -> Tensor:
        """Mean over valid tokens and channels: ``beta * ||z - sg(e)||^2`` (+ codebook term)."""
        denom = max(z.shape[0], 1) * self.codebook_dim
        loss = self.beta * (z - codes.detach()).square().sum() / denom
        if self.codebook_update == "grad":
            loss = loss + (z.detach() - codes).square().sum() / denom
        return loss

    # ------------------------------------------------------------- training step
    @torch.no_grad()
    def begin_step(self, z: Tensor, sync: bool) -> None:
        """Apply the pending EMA update, then k-means init (once) and dead-code restarts.

        Args:
            z: ``(n, codebook_dim)`` float32 valid vectors of this rank (``n`` may be 0).
            sync: issue collectives (every rank must call).
        """
        if self._pending:
            self.apply_update()
        if not self._initialized:
            self._initialize(z, sync)
        if self.dead_code_threshold > 0:
            self._restart_dead_codes(z, sync)
        self._acc = [torch.zeros_like(self.pending_count)]
        if self.pending_sum is not None:
            self._acc.append(torch.zeros_like(self.pending_sum))

    @torch.no_grad()
    def record(self, z: Tensor, index: Tensor) -> Tensor:
        """Add this rank's hits (and sums) of ``z (n, codebook_dim)`` to the step; local counts."""
        counts = torch.bincount(index, minlength=self.codebook_size).float()
        self._acc[0] += counts
        if len(self._acc) > 1:
            self._acc[1].index_add_(0, index, z.detach().float())
        return counts

    @torch.no_grad()
    def end_step(self, sync: bool, extra: list[Tensor] | None = None) -> list[Tensor]:
        """Sum the step's statistics (and ``extra``) over ranks in one collective; store them.

        Returns:
            ``extra`` summed over ranks (so callers can piggyback per-scale counts).
        """
        reduced = all_reduce_sum(self._acc + (extra or []), sync)
        n_own = len(self._acc)
        self.pending_count.copy_(reduced[0])
        if self.pending_sum is not None:
            self.pending_sum.copy_(reduced[1])
        self._pending = True
        self._acc = []
        projected = self.ema_count * self.decay + reduced[0] * (1.0 - self.decay)
        self.stats = usage_stats(reduced[0], projected, self.dead_threshold)
        return reduced[n_own:]

    @torch.no_grad()
    def apply_update(self) -> None:
        """Apply the statistics recorded by the last training forward now (local, no collective).

        A step in which no rank had any token leaves the EMA state unchanged.
        """
        if not self._pending:
            return
        total = self.pending_count.sum()
        decay = torch.where(total > 0, self.decay, 1.0)
        self.ema_count.mul_(decay).add_(self.pending_count * (1.0 - decay))
        if self.ema_sum is not None and self.pending_sum is not None:
            self.ema_sum.mul_(decay).add_(self.pending_sum * (1.0 - decay))
            n = self.ema_count.sum()
            smoothed = (self.ema_count + self.eps) / (n + self.codebook_size * self.eps) * n
            self._set_codes(self.ema_sum / smoothed.clamp_min(1e-30)[:, None])
        self._pending = False

    def _set_codes(self, codes: Tensor, where: Tensor | None = None) -> None:
        codes = F.normalize(codes, dim=-1) if self.cosine else codes
        if where is None:
            self.codebook.data.copy_(codes)
        else:
            self.codebook.data[where] = codes.to(self.codebook.dtype)

    def _initialize(self, z: Tensor, sync: bool) -> None:
        result = None
        if self.kmeans_init:
            result = kmeans(z, self.codebook_size, self.kmeans_iters, cosine=self.cosine, sync=sync)
        if result is not None:
            centroids, counts = result
            self._set_codes(centroids)
            self.ema_count.copy_(counts.clamp_min(1.0))
        else:
            for t in (self.codebook.data, self.ema_count):
                broadcast_(t, sync)
        if self.ema_sum is not None:
            self.ema_sum.copy_(self.codebook.float() * self.ema_count[:, None])
        self._initialized = True

    def _restart_dead_codes(self, z: Tensor, sync: bool) -> None:
        dead = self.ema_count < self.dead_code_threshold
        n_dead = int(dead.sum().item())
        if n_dead == 0:
            return
        samples = sample_rows(z.detach().float(), n_dead, sync)
        if samples is None:
            return
        self._set_codes(samples, dead)
        self.ema_count[dead] = self.dead_code_threshold
        if self.ema_sum is not None:
            self.ema_sum[dead] = self.codebook[dead].float() * self.dead_code_threshold

    # ------------------------------------------------------------- indices -> codes
    def get_codes(self, indices: Tensor) -> Tensor:
        """Codes for ``indices (...)`` in codebook space: ``(..., codebook_dim)``; -1 -> zeros.

        Raises:
            TypeError: ``indices`` not an integer tensor.
            ValueError: a value outside ``[-1, codebook_size - 1]``.
        """
        if not isinstance(indices, Tensor):
            raise TypeError(f"indices: expected a torch.Tensor, got {type(indices).__name__}")
        if indices.is_floating_point() or indices.is_complex() or indices.dtype == torch.bool:
            raise TypeError(f"indices: expected an integer dtype, got {indices.dtype}")
        if indices.numel() > 0 and sync_checks_enabled():
            low, high = int(indices.min().item()), int(indices.max().item())
            if low < -1 or high >= self.codebook_size:
                raise ValueError(
                    f"indices: expected values in [-1, {self.codebook_size - 1}] (-1 = padding), "
                    f"got min {low}, max {high}"
                )
        valid = indices >= 0
        codes = self.codebook[indices.clamp_min(0).long()].float()
        return torch.where(valid[..., None], codes, torch.zeros_like(codes))

    def embed(self, indices: Tensor) -> Tensor:
        """Quantised vectors for ``indices``: the inverse of ``forward`` (-1 -> zeros).

        Returns:
            ``(..., dim)``, or ``(B, dim, *spatial)`` with ``channel_first``; float32.
        """
        codes = self.get_codes(indices)
        lead = codes.shape[:-1]
        flat = codes.reshape(-1, self.codebook_dim)
        out = self._decode(flat, indices.reshape(-1) >= 0)
        return self._restore(out, lead)

    # ------------------------------------------------------------------ helpers
    def _decode(self, q_code: Tensor, valid: Tensor | None) -> Tensor:
        out: Tensor = self.project_out(q_code)
        if valid is not None and isinstance(self.project_out, nn.Linear):
            out = torch.where(valid[:, None], out, torch.zeros_like(out))
        return out

    def _restore(self, flat: Tensor, lead: torch.Size) -> Tensor:
        out = flat.reshape(*lead, self.dim)
        return out.movedim(-1, 1) if self.channel_first else out

    def _flatten(self, x: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor | None, torch.Size]:
        if not isinstance(x, Tensor):
            raise TypeError(f"x: expected a torch.Tensor, got {type(x).__name__}")
        if not x.is_floating_point():
            raise TypeError(f"x: expected a floating dtype, got {x.dtype}")
        if self.channel_first:
            if x.ndim < 2 or x.shape[1] != self.dim:
                raise ValueError(
                    f"x: expected shape (B, {self.dim}, *spatial) (channel_first=True), "
                    f"got shape {tuple(x.shape)}"
                )
            x = x.movedim(1, -1)
        elif x.ndim < 1 or x.shape[-1] != self.dim:
            raise ValueError(
                f"x: expected shape (..., {self.dim}) (last dim = dim), got shape {tuple(x.shape)}"
            )
        lead = x.shape[:-1]
        flat = x.reshape(-1, self.dim)
        if mask is None:
            return flat, None, lead
        if not isinstance(mask, Tensor):
            raise TypeError(f"mask: expected a bool torch.Tensor, got {type(mask).__name__}")
        if mask.dtype != torch.bool:
            raise TypeError(
                f"mask: expected dtype torch.bool (True = real token), got {mask.dtype}"
            )
        if mask.shape != lead:
            raise ValueError(
                f"mask: expected shape {tuple(lead)} (x's shape without the channel dim), "
                f"got {tuple(mask.shape)}"
            )
        if mask.device != x.device:
            raise ValueError(f"mask: expected device {x.device}, got {mask.device}")
        return flat, mask.reshape(-1).nonzero().squeeze(1), lead

    def extra_repr(self) -> str:
        return (
            f"dim={self.dim}, codebook_size={self.codebook_size}, "
            f"codebook_dim={self.codebook_dim}, estimator={self.estimator!r}, "
            f"codebook_update={self.codebook_update!r}, decay={self.decay}, beta={self.beta}, "
            f"cosine={self.cosine}, kmeans_init={self.kmeans_init}, "
            f"dead_code_threshold={self.dead_code_threshold}"
        )

"""Collectives that keep every rank's codebook identical, decided at call time.

Nothing here caches whether ``torch.distributed`` is initialised: :func:`sync_active` is asked at
every training forward, so a module built before ``init_process_group`` still syncs. Every
function takes ``enabled`` and is a no-op (no collective) when it is False, so the same code runs
in a single process without ``torch.distributed`` at all. Every collective is issued by every
rank whatever its token count (zero included), so uneven batches cannot hang.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor

from pyrtok.pyramid.checks import sync_checks_enabled


def sync_active(sync: bool | None) -> bool:
    """Whether to sync now: ``sync=None`` means "when a process group of > 1 rank exists".

    Args:
        sync: ``True`` (require a process group), ``False`` (never) or ``None`` (auto).

    Raises:
        RuntimeError: ``sync=True`` but ``torch.distributed`` is not initialised.

    Examples:
        >>> sync_active(None), sync_active(False)
        (False, False)
    """
    ready = dist.is_available() and dist.is_initialized()
    if sync is True and not ready:
        raise RuntimeError(
            "sync=True needs torch.distributed.init_process_group() before the forward"
        )
    return bool(sync is not False and ready and dist.get_world_size() > 1)


def all_reduce_sum(tensors: list[Tensor], enabled: bool) -> list[Tensor]:
    """Sum ``tensors`` over ranks with a single collective (packed into one float32 buffer).

    Args:
        tensors: tensors on one device (any shapes).
        enabled: when False, return ``tensors`` untouched.

    Returns:
        New float32 tensors with the original shapes (the inputs when ``enabled`` is False).
    """
    if not enabled or not tensors:
        return tensors
    flat = torch.cat([t.detach().float().reshape(-1) for t in tensors])
    dist.all_reduce(flat)
    parts = torch.split(flat, [t.numel() for t in tensors])
    return [part.view(t.shape) for part, t in zip(parts, tensors, strict=True)]


def any_rank(flag: bool, device: torch.device, enabled: bool) -> bool:
    """True when ``flag`` is True on any rank (one 1-element all-reduce when ``enabled``)."""
    if not enabled:
        return flag
    t = torch.tensor([float(flag)], device=device)
    dist.all_reduce(t)
    return bool(t.item() > 0)


def raise_if_nonfinite(x: Tensor, name: str, enabled: bool) -> None:
    """Raise ``ValueError`` on every rank when ``x`` holds NaN/Inf on any rank (no hang).

    One device sync, plus one 1-element all-reduce when ``enabled``; nothing at all when the
    host-sync checks are off (:func:`pyrtok.sync_checks`).
    """
    if not sync_checks_enabled():
        return
    bad = not bool(torch.isfinite(x).all().item())
    if any_rank(bad, x.device, enabled):
        where = "this rank's input" if bad else "another rank's input"
        raise ValueError(
            f"{name}: expected finite values, got NaN or Inf in {where}; the codebook was not "
            "updated (pass check_finite=False to skip this check)"
        )


def broadcast_(tensor: Tensor, enabled: bool, src: int = 0) -> Tensor:
    """Overwrite ``tensor`` in place with rank ``src``'s copy (no-op when not ``enabled``)."""
    if enabled:
        dist.broadcast(tensor, src=src)
    return tensor


def _local_sample(x: Tensor, num: int) -> Tensor:
    if num <= x.shape[0]:
        return x[torch.randperm(x.shape[0], device=x.device)[:num]]
    return x[torch.randint(0, x.shape[0], (num,), device=x.device)]


def sample_rows(x: Tensor, num: int, enabled: bool) -> Tensor | None:
    """Draw ``num`` rows uniformly from the union of every rank's ``x``; identical on all ranks.

    Without replacement when the ranks hold at least ``num`` rows together, with replacement
    otherwise. Rank 0 splits ``num`` over the ranks in proportion to their row counts (a uniform
    draw over the union) and broadcasts the split; each rank samples its share; one
    ``all_gather`` (padded to the largest share) assembles the result in rank order.

    Args:
        x: ``(n, D)`` this rank's candidate rows; ``n`` may be 0.
        num: rows wanted (``>= 1``).
        enabled: sync across ranks; otherwise sample from ``x`` alone.

    Returns:
        ``(num, D)``, or ``None`` when no rank has any row (the same answer on every rank).
    """
    if not enabled:
        return _local_sample(x, num) if x.shape[0] > 0 else None
    world = dist.get_world_size()
    sizes = [torch.zeros(1, dtype=torch.int64, device=x.device) for _ in range(world)]
    dist.all_gather(sizes, torch.tensor([x.shape[0]], dtype=torch.int64, device=x.device))
    size_t = torch.cat(sizes)
    total = int(size_t.sum().item())
    if total == 0:
        return None
    shares = torch.zeros(world, dtype=torch.int64, device=x.device)
    if dist.get_rank() == 0:
        picks = (
            torch.randperm(total, device=x.device)[:num]
            if total >= num
            else torch.randint(0, total, (num,), device=x.device)
        )
        owner = torch.bucketize(picks, size_t.cumsum(0), right=True)
        shares = torch.bincount(owner, minlength=world)
    dist.broadcast(shares, src=0)
    share_list = shares.tolist()
    width = max(share_list)
    mine = share_list[dist.get_rank()]
    local = x.new_zeros((width, x.shape[1]))
    if mine > 0:
        local[:mine] = _local_sample(x, mine)
    gathered = [torch.empty_like(local) for _ in range(world)]
    dist.all_gather(gathered, local.contiguous())
    return torch.cat([g[:s] for g, s in zip(gathered, share_list, strict=True)])

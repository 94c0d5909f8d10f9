"""MultiScaleResidualQuantizer: VAR's algorithm, idx <-> f_hat round trip, teacher forcing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pyrtok.quantize import MultiScaleResidualQuantizer
from tests.quantize.helpers import brute_force_nearest

SCALES = (1, 2, (2, 3), (4, 5))


def _msq(**kwargs: object) -> MultiScaleResidualQuantizer:
    torch.manual_seed(0)
    return MultiScaleResidualQuantizer(
        **{"dim": 3, "codebook_size": 16, "scales": SCALES, **kwargs}
    )  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", ["var", "per_scale_ste"])
@pytest.mark.parametrize("shared_codebook", [True, False])
@pytest.mark.parametrize("training", [True, False])
def test_f_hat_from_indices_equals_forward(
    mode: str, shared_codebook: bool, training: bool
) -> None:
    msq = _msq(mode=mode, shared_codebook=shared_codebook, kmeans_init=True, num_phi=2)
    msq.train(training)
    f = torch.randn(2, 3, 4, 5)
    f_hat, indices, loss = msq(f)
    assert [tuple(i.shape) for i in indices] == [(2, 1, 1), (2, 2, 2), (2, 2, 3), (2, 4, 5)]
    assert torch.equal(f_hat, msq.from_indices(indices))
    assert loss.ndim == 0
    assert torch.isfinite(loss)
    msq.eval()
    assert torch.equal(msq.to_indices(f)[-1], msq(f).indices[-1])


def test_two_scales_follow_the_var_recurrence() -> None:
    """f_hat = Phi(up(e[idx_1])) + Phi(e[idx_2]), idx_1 from area(f), idx_2 from the residual."""
    msq = MultiScaleResidualQuantizer(3, 16, scales=(2, 4), num_phi=0)
    msq.eval()
    f = torch.randn(2, 3, 4, 4)
    f_hat, (i1, i2), _ = msq(f)
    codebook = msq.quantizers[0].codebook

    def flat(t: torch.Tensor) -> torch.Tensor:
        return t.permute(0, 2, 3, 1).reshape(-1, 3)

    r1 = F.interpolate(f, size=(2, 2), mode="area")
    assert torch.equal(i1.flatten(), brute_force_nearest(flat(r1), codebook))
    h1 = codebook[i1].permute(0, 3, 1, 2)
    h1 = F.interpolate(h1, size=(4, 4), mode="bicubic")
    assert torch.equal(i2.flatten(), brute_force_nearest(flat(f - h1), codebook))
    expected = h1 + codebook[i2].permute(0, 3, 1, 2)
    torch.testing.assert_close(f_hat, expected, rtol=0, atol=1e-6)


def test_var_mode_gradients() -> None:
    msq = _msq(codebook_update="grad")
    f = torch.randn(2, 3, 4, 5, requires_grad=True)
    f_hat, _, loss = msq(f)
    g = torch.randn_like(f_hat)
    f_hat.backward(g, retain_graph=True)
    assert f.grad is not None
    assert torch.equal(f.grad, g)  # one STE at the end
    f.grad = None
    loss.backward()
    assert f.grad is not None
    assert f.grad.abs().sum() > 0  # commitment
    phi = msq.phis[0]
    assert isinstance(phi.conv, torch.nn.Conv2d)
    assert phi.conv.weight.grad is not None
    assert msq.quantizers[0].codebook.grad is not None


def test_per_scale_ste_gradients_reach_the_input() -> None:
    msq = _msq(mode="per_scale_ste")
    f = torch.randn(2, 3, 4, 5, requires_grad=True)
    f_hat, _, loss = msq(f)
    (f_hat.square().sum() + loss).backward()
    assert f.grad is not None
    assert f.grad.abs().sum() > 0


def test_teacher_forcing_input() -> None:
    msq = _msq()
    msq.eval()
    f = torch.randn(2, 3, 4, 5)
    indices = msq(f).indices
    tf = msq.teacher_forcing_input(indices)
    assert tf.shape == (2, 4 + 6 + 20, 3)
    # block for scale (2, 3): f_hat after scales 1 and 2, area-downsampled to (2, 3)
    expected = F.interpolate(msq.from_indices(indices[:2]), size=(2, 3), mode="area")
    torch.testing.assert_close(tf[:, 4:10], expected.flatten(2).transpose(1, 2))


def test_kmeans_init_uses_full_resolution_vectors() -> None:
    msq = MultiScaleResidualQuantizer(3, 32, scales=(1, 2, 8), kmeans_init=True)
    before = msq.quantizers[0].codebook.clone()
    f = torch.randn(2, 3, 8, 8)  # 2 vectors at 1x1, 128 at full resolution
    msq(f)  # no "fewer vectors than codes" warning (would be raised as error below)
    assert not torch.equal(msq.quantizers[0].codebook, before)
    full = f.permute(0, 2, 3, 1).reshape(-1, 3)
    # every k-means centroid is a mean of full-resolution vectors: inside their bounding box
    cb = msq.quantizers[0].codebook
    assert (cb >= full.min(0).values).all()
    assert (cb <= full.max(0).values).all()


def test_per_scale_stats() -> None:
    msq = _msq(shared_codebook=False)
    msq(torch.randn(2, 3, 4, 5))
    assert msq.stats is not None
    assert len(msq.stats) == 4
    assert [s.counts.sum().item() for s in msq.stats] == [2, 8, 12, 40]


def test_phi_sharing_matches_var_ticks() -> None:
    msq = MultiScaleResidualQuantizer(3, 8, num_phi=4)
    n = len(msq.scales)
    ticks = np.linspace(1 / 3 / 4, 1 - 1 / 3 / 4, 4)
    expected = [int(np.argmin(np.abs(ticks - k / (n - 1)))) for k in range(n)]
    got = [list(msq.phis).index(msq.phi(k)) for k in range(n)]
    assert got == expected
    assert isinstance(_msq(num_phi=0).phi(1), torch.nn.Identity)
    per_scale = _msq(num_phi=4)
    assert [list(per_scale.phis).index(per_scale.phi(k)) for k in range(4)] == [0, 1, 2, 3]


def test_sync_true_without_process_group_is_a_clear_error() -> None:
    with pytest.raises(RuntimeError, match=r"sync=True needs torch.distributed"):
        _msq(sync=True)(torch.randn(1, 3, 4, 5))


def test_bad_input() -> None:
    msq = _msq()
    with pytest.raises(ValueError, match=r"f: expected spatial size \(4, 5\)"):
        msq(torch.randn(1, 3, 4, 4))
    with pytest.raises(ValueError, match=r"f: expected shape \(B, 3, H, W\)"):
        msq(torch.randn(1, 2, 4, 5))
    with pytest.raises(TypeError, match="f: expected a floating dtype"):
        msq(torch.ones(1, 3, 4, 5, dtype=torch.int32))
    bad = torch.randn(1, 3, 4, 5)
    bad[0, 0, 0, 0] = float("inf")
    with pytest.raises(ValueError, match="f: expected finite values"):
        msq(bad)
    with pytest.raises(ValueError, match="indices: expected a list of 1 to 4 tensors"):
        msq.from_indices([])
    with pytest.raises(ValueError, match="indices: expected a list of 4 tensors"):
        msq.teacher_forcing_input([torch.zeros(1, 1, 1, dtype=torch.long)])
    idx = msq.to_indices(torch.randn(1, 3, 4, 5))
    idx[2] = torch.zeros(1, 3, 2, dtype=torch.long)
    with pytest.raises(ValueError, match=r"indices\[2\]: expected shape \(1, 2, 3\)"):
        msq.from_indices(idx)
    with pytest.raises(ValueError, match="num_phi: expected an int in"):
        MultiScaleResidualQuantizer(3, 8, scales=(1, 2), num_phi=3)
    with pytest.raises(ValueError, match="scales: expected sizes >= 1"):
        MultiScaleResidualQuantizer(3, 8, scales=(0, 2))

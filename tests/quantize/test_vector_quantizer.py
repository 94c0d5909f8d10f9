"""VectorQuantizer: values, gradients, EMA maths, masks, k-means, restarts, stats, round trips."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pyrtok.quantize import VectorQuantizer, nearest_code
from tests.quantize.helpers import brute_force_nearest


def _vq(**kwargs: object) -> VectorQuantizer:
    torch.manual_seed(0)
    return VectorQuantizer(**{"dim": 6, "codebook_size": 12, **kwargs})  # type: ignore[arg-type]


@pytest.mark.parametrize("estimator", ["ste", "rotation"])
@pytest.mark.parametrize("codebook_dim", [None, 3])
def test_forward_value_is_exactly_the_selected_code(
    estimator: str, codebook_dim: int | None
) -> None:
    vq = _vq(estimator=estimator, codebook_dim=codebook_dim, kmeans_init=True)
    x = torch.randn(4, 30, 6, requires_grad=True)
    q, indices, _ = vq(x)
    z = vq.to_code_space(x.reshape(-1, 6)).detach()
    assert torch.equal(indices.reshape(-1), brute_force_nearest(z, vq.codebook))
    assert torch.equal(q, vq.embed(indices))
    if codebook_dim is None:
        assert torch.equal(q, vq.codebook[indices])


def test_ste_gradient_is_the_identity() -> None:
    vq = _vq()
    x = torch.randn(40, 6, requires_grad=True)
    q, _, _ = vq(x)
    g = torch.randn_like(q)
    q.backward(g)
    assert x.grad is not None
    assert torch.equal(x.grad, g)


def test_rotation_trick_gradient_matches_the_rotation_formula() -> None:
    vq = _vq(estimator="rotation")
    x = torch.randn(20, 6, dtype=torch.float32, requires_grad=True)
    q, indices, _ = vq(x)
    g = torch.randn_like(q)
    q.backward(g)
    z, e, g64 = x.detach().double(), vq.codebook[indices].double(), g.double()
    z_hat = z / z.norm(dim=1, keepdim=True)
    e_hat = e / e.norm(dim=1, keepdim=True)
    r = (z_hat + e_hat) / (z_hat + e_hat).norm(dim=1, keepdim=True)
    eye = torch.eye(6, dtype=torch.float64)
    rot = eye - 2 * r[:, :, None] * r[:, None, :] + 2 * e_hat[:, :, None] * z_hat[:, None, :]
    scale = e.norm(dim=1) / z.norm(dim=1)
    expected = scale[:, None] * torch.einsum("nij,ni->nj", rot, g64)  # lambda R^T g
    assert x.grad is not None
    torch.testing.assert_close(x.grad.double(), expected, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(x.grad, g)  # differs from the STE


def test_gradients_reach_the_input_through_loss_and_projection() -> None:
    vq = _vq(codebook_dim=3, estimator="rotation")
    x = torch.randn(3, 10, 6, requires_grad=True)
    q, _, loss = vq(x)
    (q.square().mean() + loss).backward()
    assert x.grad is not None
    assert x.grad.abs().sum() > 0
    assert isinstance(vq.project_in, torch.nn.Linear)
    assert vq.project_in.weight.grad is not None


def test_ema_update_equals_hand_computed_reference() -> None:
    vq = VectorQuantizer(1, 2, decay=0.5, eps=0.0)
    vq.codebook.copy_(torch.tensor([[0.0], [10.0]]))
    x = torch.tensor([[1.0], [2.0], [9.0]])
    q, indices, loss = vq(x)
    assert indices.tolist() == [0, 0, 1]
    assert q.flatten().tolist() == [0.0, 0.0, 10.0]
    # loss: 0.25 * mean((1-0)^2, (2-0)^2, (9-10)^2)
    assert loss.item() == pytest.approx(0.25 * 6 / 3)
    # the update is deferred: the codebook that produced q is still in place
    assert vq.codebook.flatten().tolist() == [0.0, 10.0]
    assert vq.pending_count.tolist() == [2.0, 1.0]
    vq.apply_update()
    # counts: 0.5*[1, 1] + 0.5*[2, 1];  sums: 0.5*[0, 10] + 0.5*[3, 9]
    assert vq.ema_count.tolist() == [1.5, 1.0]
    assert vq.ema_sum is not None
    assert vq.ema_sum.flatten().tolist() == [1.5, 9.5]
    assert vq.codebook.flatten().tolist() == [1.0, 9.5]


def test_ema_laplace_smoothing() -> None:
    vq = VectorQuantizer(1, 2, decay=0.5, eps=0.1)
    vq.codebook.copy_(torch.tensor([[0.0], [10.0]]))
    vq(torch.tensor([[1.0], [2.0], [9.0]]))
    vq.apply_update()
    # n = 2.5; smoothed = (count + 0.1) / (2.5 + 0.2) * 2.5
    expected = [1.5 / (1.6 / 2.7 * 2.5), 9.5 / (1.1 / 2.7 * 2.5)]
    torch.testing.assert_close(vq.codebook.flatten(), torch.tensor(expected))


def test_next_training_forward_applies_the_pending_update() -> None:
    vq = VectorQuantizer(1, 2, decay=0.5, eps=0.0)
    vq.codebook.copy_(torch.tensor([[0.0], [10.0]]))
    vq(torch.tensor([[1.0], [2.0], [9.0]]))
    q, _, _ = vq(torch.tensor([[1.1]]))
    assert q.item() == 1.0
    assert vq.codebook.flatten().tolist() == [1.0, 9.5]
    vq.eval()
    vq(torch.tensor([[5.0]]))  # eval forwards never update
    assert vq.codebook.flatten().tolist() == [1.0, 9.5]


def test_gradient_codebook_places_beta_on_the_commitment_term() -> None:
    vq = VectorQuantizer(2, 3, codebook_update="grad", beta=0.25)
    assert isinstance(vq.codebook, torch.nn.Parameter)
    x = torch.randn(10, 2, requires_grad=True)
    _, indices, loss = vq(x)
    loss.backward()
    e = vq.codebook.detach()[indices]
    n = x.numel()
    assert x.grad is not None
    assert vq.codebook.grad is not None
    torch.testing.assert_close(x.grad, 0.25 * 2 * (x.detach() - e) / n)
    expected = torch.zeros(3, 2).index_add_(0, indices, 2 * (e - x.detach()) / n)
    torch.testing.assert_close(vq.codebook.grad, expected)


def test_mask_excludes_tokens_from_loss_stats_and_codebook() -> None:
    x = torch.randn(3, 7, 6)
    mask = torch.rand(3, 7) > 0.4
    masked, subset = _vq(kmeans_init=False), _vq(kmeans_init=False)
    x_nan = x.clone()
    x_nan[~mask] = 1e6  # padded garbage must not matter
    q, indices, loss = masked(x_nan, mask)
    q_ref, indices_ref, loss_ref = subset(x[mask])
    assert (indices[~mask] == -1).all()
    assert torch.equal(indices[mask], indices_ref)
    assert (q[~mask] == 0).all()
    assert torch.equal(q[mask], q_ref)
    assert loss.item() == pytest.approx(loss_ref.item())
    assert masked.stats is not None
    assert masked.stats.counts.sum() == mask.sum()
    masked.apply_update()
    subset.apply_update()
    assert torch.equal(masked.codebook, subset.codebook)
    assert torch.equal(masked.ema_count, subset.ema_count)


def test_kmeans_init_on_first_batch() -> None:
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])
    x = centres.repeat(50, 1) + 0.1 * torch.randn(200, 2)
    vq = VectorQuantizer(2, 4, kmeans_init=True)
    _, indices, _ = vq(x)
    got = vq.codebook[vq.codebook.sum(1).argsort(stable=True)]
    order = centres.sum(1).argsort(stable=True)
    torch.testing.assert_close(got[[0, 3]], centres[order][[0, 3]], atol=0.1, rtol=0)
    assert torch.bincount(indices, minlength=4).tolist() == [50, 50, 50, 50]
    assert vq.ema_count.tolist() == [50.0] * 4


def test_kmeans_with_fewer_vectors_than_codes_warns_and_keeps_random_init() -> None:
    vq = _vq(kmeans_init=True, codebook_size=16)
    before = vq.codebook.clone()
    with pytest.warns(RuntimeWarning, match="k-means init: 8 vectors for 16 codes"):
        vq(torch.randn(8, 6))
    assert torch.equal(vq.codebook, before)


def test_dead_codes_restart_from_current_inputs() -> None:
    vq = _vq(dead_code_threshold=0.5)
    vq(torch.randn(40, 6))
    vq.apply_update()
    vq.ema_count[[2, 5, 7]] = 0.1
    x = torch.randn(40, 6) + 5.0
    vq(x)
    for k in (2, 5, 7):
        assert (vq.codebook[k] == x).all(dim=1).any(), f"code {k} is not a current input"
        assert vq.ema_count[k] == 0.5
    assert len({tuple(vq.codebook[k].tolist()) for k in (2, 5, 7)}) == 3  # distinct inputs


def test_cosine_codes_and_outputs_are_unit_norm() -> None:
    vq = _vq(cosine=True, kmeans_init=True)
    x = torch.randn(60, 6) * 3
    q, indices, _ = vq(x)
    unit = torch.nn.functional.normalize(x, dim=1)
    assert torch.equal(indices, brute_force_nearest(unit, vq.codebook))
    torch.testing.assert_close(q.norm(dim=1), torch.ones(60))
    vq.apply_update()
    torch.testing.assert_close(vq.codebook.norm(dim=1), torch.ones(12))


def test_usage_stats_after_a_step() -> None:
    vq = VectorQuantizer(1, 4)  # no restarts: dead = EMA count below 1e-3
    vq.codebook.copy_(torch.tensor([[0.0], [1.0], [2.0], [3.0]]))
    vq.ema_count.copy_(torch.tensor([1.0, 1.0, 1.0, 1e-4]))
    vq(torch.tensor([[0.1], [0.0], [1.1], [0.9]]))
    stats = vq.stats
    assert stats is not None
    assert stats.counts.tolist() == [2.0, 2.0, 0.0, 0.0]
    assert stats.perplexity.item() == pytest.approx(2.0)
    assert stats.used_fraction.item() == 0.5
    assert stats.dead_count.item() == 1
    vq.eval()
    vq(torch.tensor([[3.0], [2.9], [3.1]]))  # eval: this batch's (local) usage
    assert vq.stats is not None
    assert vq.stats.counts.tolist() == [0.0, 0.0, 0.0, 3.0]
    assert vq.stats.perplexity.item() == pytest.approx(1.0)


def test_channel_first_feature_maps() -> None:
    a, b = _vq(), _vq(channel_first=True)
    b.load_state_dict(a.state_dict())
    a.eval(), b.eval()
    x = torch.randn(2, 6, 5, 3)
    q, indices, _loss = b(x)
    q_ref, indices_ref, _loss_ref = a(x.permute(0, 2, 3, 1))
    assert q.shape == (2, 6, 5, 3)
    assert indices.shape == (2, 5, 3)
    assert torch.equal(indices, indices_ref)
    assert torch.equal(q, q_ref.permute(0, 3, 1, 2))
    assert torch.equal(b.embed(indices), q)
    mask = torch.ones(2, 5, 3, dtype=torch.bool)
    assert torch.equal(b(x, mask).indices, indices)


def test_bf16_autocast_keeps_search_and_ema_in_float32() -> None:
    vq = _vq(codebook_dim=4, kmeans_init=True)
    x = torch.randn(64, 6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        q, indices, loss = vq(x)
        z = vq.project_in(x)
    assert z.dtype == torch.bfloat16
    assert q.dtype == torch.float32
    assert loss.dtype == torch.float32
    assert torch.equal(indices, nearest_code(z.float(), vq.codebook))
    vq.apply_update()
    assert vq.codebook.dtype == torch.float32
    assert torch.isfinite(vq.codebook).all()


def test_bf16_inputs() -> None:
    vq = _vq()
    x = torch.randn(50, 6).bfloat16()
    q, indices, loss = vq(x)
    assert q.dtype == torch.bfloat16
    assert loss.dtype == torch.float32
    assert torch.equal(indices, brute_force_nearest(x.float(), vq.codebook))
    assert torch.equal(q, vq.codebook[indices].bfloat16())


def test_state_dict_keeps_the_pending_update() -> None:
    a = _vq()
    a(torch.randn(30, 6))
    b = VectorQuantizer(6, 12)
    b.load_state_dict(a.state_dict())
    a.apply_update()
    b.apply_update()
    assert torch.equal(a.codebook, b.codebook)
    assert torch.equal(a.ema_count, b.ema_count)


def test_zero_tokens_leave_the_codebook_alone() -> None:
    vq = _vq()
    before = (vq.codebook.clone(), vq.ema_count.clone())
    q, indices, loss = vq(torch.randn(0, 6, requires_grad=True))
    assert q.shape == (0, 6)
    assert indices.shape == (0,)
    assert loss.item() == 0.0
    _, indices, loss = vq(torch.randn(2, 3, 6), torch.zeros(2, 3, dtype=torch.bool))
    assert (indices == -1).all()
    assert loss.item() == 0.0
    vq.apply_update()
    assert torch.equal(vq.codebook, before[0])
    assert torch.equal(vq.ema_count, before[1])


def test_get_codes_and_embed_round_trip_with_padding() -> None:
    vq = _vq(codebook_dim=3)
    indices = torch.tensor([[0, 11, -1], [5, -1, 2]])
    codes = vq.get_codes(indices)
    assert codes.shape == (2, 3, 3)
    assert (codes[indices == -1] == 0).all()
    assert torch.equal(codes[0, 1], vq.codebook[11])
    out = vq.embed(indices)
    assert out.shape == (2, 3, 6)
    assert (out[indices == -1] == 0).all()
    with pytest.raises(ValueError, match=r"indices: expected values in \[-1, 11\].*max 12"):
        vq.get_codes(torch.tensor([12]))
    with pytest.raises(ValueError, match="min -2"):
        vq.get_codes(torch.tensor([-2]))
    with pytest.raises(TypeError, match="indices: expected an integer dtype"):
        vq.get_codes(torch.tensor([1.0]))


@settings(max_examples=30, deadline=None)
@given(
    lead=st.lists(st.integers(0, 4), min_size=0, max_size=3),
    dim=st.integers(1, 5),
    k=st.integers(2, 9),
    masked=st.booleans(),
    seed=st.integers(0, 1000),
)
def test_shapes_and_round_trip(lead: list[int], dim: int, k: int, masked: bool, seed: int) -> None:
    torch.manual_seed(seed)
    vq = VectorQuantizer(dim, k)
    x = torch.randn((*lead, dim))
    mask = torch.rand(tuple(lead)) > 0.3 if masked else None
    q, indices, loss = vq(x, mask)
    assert q.shape == x.shape
    assert indices.shape == tuple(lead)
    assert loss.ndim == 0
    assert torch.equal(q, vq.embed(indices))
    if mask is not None:
        assert torch.equal(indices >= 0, mask)


def test_bad_input() -> None:
    vq = _vq()
    with pytest.raises(ValueError, match=r"x: expected shape \(\.\.\., 6\) .* got shape \(4, 5\)"):
        vq(torch.randn(4, 5))
    with pytest.raises(TypeError, match=r"x: expected a floating dtype, got torch.int64"):
        vq(torch.ones(4, 6, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"mask: expected shape \(4,\) .* got \(4, 1\)"):
        vq(torch.randn(4, 6), torch.ones(4, 1, dtype=torch.bool))
    with pytest.raises(TypeError, match=r"mask: expected dtype torch.bool"):
        vq(torch.randn(4, 6), torch.ones(4))
    with pytest.raises(ValueError, match=r"codebook_size: expected >= 2 codes, got 1"):
        VectorQuantizer(6, 1)
    with pytest.raises(ValueError, match=r"decay: expected >= 0.0 and < 1.0, got 1.5"):
        VectorQuantizer(6, 4, decay=1.5)
    with pytest.raises(ValueError, match="estimator: expected one of 'ste', 'rotation'"):
        VectorQuantizer(6, 4, estimator="gumbel")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"x: expected shape \(B, 6, \*spatial\)"):
        VectorQuantizer(6, 4, channel_first=True)(torch.randn(2, 3, 6))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_input_raises_and_leaves_the_codebook_untouched(bad: float) -> None:
    vq = _vq(kmeans_init=True, dead_code_threshold=1.0)
    vq(torch.randn(40, 6))  # leaves a pending update behind
    state = {k: v.clone() for k, v in vq.state_dict().items() if isinstance(v, torch.Tensor)}
    x = torch.randn(40, 6)
    x[3, 2] = bad
    with pytest.raises(ValueError, match="x: expected finite values, got NaN or Inf"):
        vq(x)
    for name, value in vq.state_dict().items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, state[name]), name

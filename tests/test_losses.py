"""LapLoss: equality with the seed's definition, options, masks, gradients, errors."""

import pytest
import torch
import torch.nn.functional as F

from pyrtok import LapLoss, lap_loss, laplacian_pyramid


def _reference(
    pred: torch.Tensor, target: torch.Tensor, levels: int, weights: list[float], distance
) -> torch.Tensor:  # type: ignore[no-untyped-def]
    """Two pyramids and per-level means, as the seed's pyramid_loss writes it."""
    pairs = zip(laplacian_pyramid(pred, levels), laplacian_pyramid(target, levels), strict=True)
    return sum(w * distance(a, b) for (a, b), w in zip(pairs, weights, strict=True))  # type: ignore[return-value]


@pytest.mark.parametrize(
    ("name", "distance"),
    [
        ("l1", F.l1_loss),
        ("l2", F.mse_loss),
        ("charbonnier", lambda a, b: ((a - b) ** 2 + 1e-6).sqrt().mean()),
    ],
)
def test_equals_seed_pyramid_loss(name: str, distance) -> None:  # type: ignore[no-untyped-def]
    pred, target = (
        torch.rand(2, 3, 37, 29, dtype=torch.float64),
        torch.rand(2, 3, 37, 29, dtype=torch.float64),
    )
    expected = _reference(pred, target, 4, [1.0, 0.5, 0.25, 0.125], distance)
    torch.testing.assert_close(lap_loss(pred, target, distance=name), expected)
    torch.testing.assert_close(LapLoss(distance=name)(pred, target), expected)


def test_terms_weights_and_residual() -> None:
    pred, target = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    loss, terms = lap_loss(pred, target, levels=3, weights=(2.0, 1.0, 4.0), return_terms=True)
    bands = laplacian_pyramid(pred - target, 3)
    torch.testing.assert_close(terms, torch.stack([b.abs().mean() for b in bands]))
    torch.testing.assert_close(loss, 2 * terms[0] + terms[1] + 4 * terms[2])
    no_residual, short = lap_loss(
        pred, target, 3, (2.0, 1.0, 4.0), include_residual=False, return_terms=True
    )
    torch.testing.assert_close(short, terms[:2])
    torch.testing.assert_close(no_residual, 2 * terms[0] + terms[1])


def test_reductions() -> None:
    pred, target = torch.rand(3, 2, 16, 16), torch.rand(3, 2, 16, 16)
    per_sample = lap_loss(pred, target, reduction="none")
    assert per_sample.shape == (3,)
    torch.testing.assert_close(per_sample.mean(), lap_loss(pred, target))
    torch.testing.assert_close(per_sample[1], lap_loss(pred[1:2], target[1:2]))
    summed, terms = lap_loss(
        pred, target, levels=2, weights=(1.0, 1.0), reduction="sum", return_terms=True
    )
    bands = laplacian_pyramid(pred - target, 2)
    torch.testing.assert_close(terms, torch.stack([b.abs().sum() for b in bands]))
    torch.testing.assert_close(summed, terms.sum())


def test_mask_ignores_masked_out_region() -> None:
    target = torch.rand(1, 3, 64, 64)
    pred = target.clone()
    pred[..., :, 40:] = torch.rand(1, 3, 64, 24)  # wrong only on the right
    mask = torch.zeros(1, 1, 64, 64)
    mask[..., :, :16] = 1  # keep the far left, away from the filter's reach of the error
    assert lap_loss(pred, target, mask=mask) < 1e-6
    assert lap_loss(pred, target) > 1e-2
    full = lap_loss(pred, target, mask=torch.ones(1, 1, 64, 64))
    torch.testing.assert_close(full, lap_loss(pred, target))


def test_gradients_reach_input_only() -> None:
    pred = torch.rand(1, 2, 12, 10, dtype=torch.float64, requires_grad=True)
    target = torch.rand(1, 2, 12, 10, dtype=torch.float64, requires_grad=True)
    lap_loss(pred, target).backward()
    assert pred.grad is not None
    assert pred.grad.abs().sum() > 0
    assert target.grad is None


@pytest.mark.parametrize("distance", ["l1", "l2", "charbonnier"])
def test_gradcheck(distance: str) -> None:
    pred = torch.rand(1, 2, 9, 7, dtype=torch.float64, requires_grad=True)
    target = torch.rand(1, 2, 9, 7, dtype=torch.float64)
    mask = torch.rand(1, 1, 9, 7, dtype=torch.float64)
    assert torch.autograd.gradcheck(
        lambda p: lap_loss(p, target, levels=3, weights=(1, 1, 1), distance=distance, mask=mask),
        (pred,),
    )


def test_bf16_input_gives_float32_loss() -> None:
    pred, target = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    low = lap_loss(pred.bfloat16(), target.bfloat16())
    assert low.dtype == torch.float32
    torch.testing.assert_close(low, lap_loss(pred, target), rtol=0.02, atol=1e-3)


def test_compiles_with_fullgraph() -> None:
    criterion = LapLoss(levels=3, distance="charbonnier")
    pred, target = torch.rand(2, 3, 20, 20), torch.rand(2, 3, 20, 20)
    compiled = torch.compile(criterion, fullgraph=True, backend="eager")
    torch.testing.assert_close(compiled(pred, target), criterion(pred, target))


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"weights": (1.0, 0.5)}, ValueError, r"weights: need one weight per pyramid level \(4"),
        ({"levels": 0}, ValueError, "levels: expected an int >= 1, got 0"),
        (
            {"distance": "huber"},
            ValueError,
            r"distance: unknown name 'huber'; valid names are \['l1'",
        ),
        ({"reduction": "max"}, ValueError, r"reduction: unknown name 'max'; valid names are"),
        ({"border": "wrap"}, ValueError, r"border: unknown name 'wrap'"),
    ],
)
def test_bad_options(kwargs: dict, error: type[Exception], message: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(error, match=message):
        LapLoss(**kwargs)
    with pytest.raises(error, match=message):
        lap_loss(torch.rand(1, 1, 16, 16), torch.rand(1, 1, 16, 16), **kwargs)


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match=r"target: expected the shape of input \(1, 3, 16, 16\)"):
        lap_loss(torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 15))
    with pytest.raises(ValueError, match=r"mask: shape \(1, 2, 16, 16\) does not broadcast"):
        lap_loss(torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16), mask=torch.ones(1, 2, 16, 16))
    with pytest.raises(ValueError, match="reduction: 'none' returns one loss per sample"):
        lap_loss(torch.rand(16, 16), torch.rand(16, 16), reduction="none")
    with pytest.raises(TypeError, match="input: expected a floating dtype"):
        lap_loss(torch.zeros(1, 16, 16, dtype=torch.uint8), torch.rand(1, 16, 16))

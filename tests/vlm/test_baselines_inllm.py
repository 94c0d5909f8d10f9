"""In-LLM pruning (FastV, PyramidDrop): exactness against eager attention and masking."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import torch
from torch import Tensor

from pyrtok.vlm.inllm_pruning import InLLMPruning, decoder_layers, fastv, pyramid_drop
from pyrtok.vlm.testing import tiny_llama

LENGTH, IMAGE = 12, slice(2, 10)  # 8 image tokens at positions 2..9


def _lm(attention: str = "eager") -> torch.nn.Module:
    lm = tiny_llama(layers=4)
    lm.config._attn_implementation = attention
    return lm


def _inputs(pad: int = 0) -> tuple[Tensor, Tensor, Tensor]:
    embeds = torch.randn(2, LENGTH, 32, generator=torch.Generator().manual_seed(0))
    mask = torch.ones(2, LENGTH, dtype=torch.long)
    mask[1, :pad] = 0
    image = torch.zeros(2, LENGTH, dtype=torch.bool)
    image[:, IMAGE] = True
    return embeds, mask, image


def _last_logits(lm: torch.nn.Module, embeds: Tensor, mask: Tensor) -> Tensor:
    positions = (mask.cumsum(1) - 1).clamp(min=0)
    out = lm(inputs_embeds=embeds, attention_mask=mask, position_ids=positions)
    return out.logits[:, -1]


@pytest.mark.parametrize(
    "pruning", [lambda lm: fastv(lm, layer=4, keep=0.25), lambda lm: fastv(lm, layer=1, keep=1.0)]
)
def test_fastv_without_a_drop_equals_no_pruning(pruning: object) -> None:
    lm = _lm()
    embeds, mask, image = _inputs(pad=2)
    expected = _last_logits(lm, embeds, mask)
    with pruning(lm).armed(image, mask):  # type: ignore[operator]
        got = _last_logits(lm, embeds, mask)
    torch.testing.assert_close(got, expected)


def test_fastv_keeps_the_eager_attention_top_k_of_layer_k_minus_1() -> None:
    lm = _lm()
    embeds, mask, image = _inputs(pad=2)
    positions = (mask.cumsum(1) - 1).clamp(min=0)
    weights = lm(
        inputs_embeds=embeds, attention_mask=mask, position_ids=positions, output_attentions=True
    ).attentions[1]  # layer K - 1 = 1
    row = weights[:, :, -1].mean(dim=1)[:, IMAGE]
    expected = (row.topk(3, dim=1).indices + IMAGE.start).sort(dim=1).values
    pruning = fastv(lm, layer=2, keep=3 / 8)
    with pruning.armed(image, mask):
        _last_logits(lm, embeds, mask)
    kept = pruning.kept_positions[2]
    assert torch.equal(kept[:, IMAGE.start : IMAGE.start + 3], expected)
    assert kept.shape == (2, LENGTH - 5)


def test_fastv_with_sdpa_equals_eager() -> None:
    eager, sdpa = _lm("eager"), _lm("sdpa")
    embeds, mask, image = _inputs(pad=3)
    outputs = []
    for lm in (eager, sdpa):
        with fastv(lm, layer=1, keep=0.5).armed(image, mask):
            outputs.append(_last_logits(lm, embeds, mask))
    torch.testing.assert_close(outputs[1], outputs[0], rtol=1e-4, atol=1e-5)


@contextmanager
def _hidden_from(lm: torch.nn.Module, layer: int, positions: Tensor) -> Iterator[None]:
    """Reference: no token is dropped, but from ``layer`` on no query sees the pruned ones."""
    dropped = torch.ones(positions.shape[0], LENGTH, dtype=torch.bool)
    dropped.scatter_(1, positions, False)

    def hook(module: object, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        mask = kwargs["attention_mask"].clone()
        columns = torch.zeros(mask.shape[0], mask.shape[-1], dtype=torch.bool)
        columns[:, :LENGTH] = dropped
        kwargs["attention_mask"] = mask.masked_fill(
            columns[:, None, None], torch.finfo(mask.dtype).min
        )
        return args, kwargs

    layers = decoder_layers(lm)
    handles = [
        layers[i].register_forward_pre_hook(hook, with_kwargs=True)
        for i in range(layer, len(layers))
    ]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


@pytest.mark.parametrize(
    "make",
    [
        lambda lm: fastv(lm, layer=2, keep=0.25),
        lambda lm: pyramid_drop(lm, layers=(1, 3), ratio=0.5),
    ],
)
def test_generate_with_the_pruned_cache_equals_masked_recomputation(make: object) -> None:
    lm = _lm()
    embeds, mask, image = _inputs()
    pruning: InLLMPruning = make(lm)  # type: ignore[operator]
    with pruning.armed(image, mask):
        tokens = lm.generate(
            inputs_embeds=embeds,
            attention_mask=mask,
            max_new_tokens=4,
            do_sample=False,
            pad_token_id=0,
        )
    first = pruning.stages[0][0]
    sequence = embeds
    reference = []
    for _ in range(4):
        full = torch.ones(sequence.shape[:2], dtype=torch.long)
        with _hidden_from(lm, first, pruning.kept_positions[first]):
            # later stages drop more: mask them from their own layer on
            contexts = [
                _hidden_from(lm, layer, pruning.kept_positions[layer])
                for layer, _ in pruning.stages[1:]
            ]
            for context in contexts:
                context.__enter__()
            step = _last_logits(lm, sequence, full).argmax(-1)
            for context in reversed(contexts):
                context.__exit__(None, None, None)
        reference.append(step)
        sequence = torch.cat([sequence, lm.get_input_embeddings()(step)[:, None]], 1)
    assert torch.equal(tokens[:, -4:], torch.stack(reference, 1))


def test_schedules_and_equivalent_layers() -> None:
    lm = _lm()
    assert fastv(lm, layer=1, keep=0.5).visual_per_layer(8) == [8, 4, 4, 4]
    assert pyramid_drop(lm, layers=(1, 2, 3)).visual_per_layer(8) == [8, 4, 2, 1]


def test_bad_input_is_refused() -> None:
    lm = _lm()
    with pytest.raises(ValueError, match=r"layer: expected an int in 1\.\.4"):
        fastv(lm, layer=5)
    with pytest.raises(ValueError, match=r"layer: expected an int in 1\.\.4"):
        fastv(lm, layer=0)
    with pytest.raises(ValueError, match="keep: expected fractions in"):
        InLLMPruning(lm, [(1, 0.5), (2, 0.75)])
    image = _inputs()[2]
    image[0, 2] = False
    with pytest.raises(ValueError, match="the same number of image tokens"), fastv(lm).armed(image):
        pass

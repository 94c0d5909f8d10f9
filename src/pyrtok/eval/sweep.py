"""The equal-budget sweep: every contender at every budget on one model and one dataset.

For each (method, budget) cell the dataset is run in batches: the method prepares the LM
inputs (pre-LLM selection or pyrtok's allocation), the LM prefills (with in-LLM pruning armed
where the method prunes inside) and decodes the answer greedily with its KV cache. Each sample
records whether the answer matched, its visual tokens, equivalent tokens
(:func:`~pyrtok.vlm.cost.equivalent_tokens`), analytic encoder and LM prefill FLOPs
(:mod:`pyrtok.vlm.cost`), and the measured prefill time (selection + encoder + LM prefill) and
decode time per token, each batch's time split evenly over its samples (the first batch of
each cell runs once untimed first, as a warm-up). Cells out of a
method's reach (FastV below ``K N / L`` equivalent tokens) are reported and skipped.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm  # type: ignore[import-untyped]  # a requirement of transformers

from pyrtok.eval.data import Sample, as_sample
from pyrtok.eval.methods import Prepared, SweepModel
from pyrtok.vlm._hf import call_lm, output_cache
from pyrtok.vlm.cost import encoder_flops, equivalent_tokens, lm_prefill_flops
from pyrtok.vlm.wiring import embed_text


@dataclass
class SweepResult:
    """What :func:`sweep` measured.

    Attributes:
        rows: one dict per (method, budget): ``accuracy``, ``visual_tokens``,
            ``equivalent_tokens``, ``encoder_gflops``, ``lm_prefill_gflops``, ``prefill_ms``,
            ``decode_ms_per_token`` (means over samples), ``samples``.
        samples: one dict per (method, budget, sample index): ``correct`` and the per-sample
            costs, paired across cells by ``index`` (McNemar, paired bootstrap).
        skipped: ``(method, budget, reason)`` of the cells out of a method's reach.
        config: the sweep's settings.
    """

    rows: list[dict[str, Any]] = field(default_factory=list)
    samples: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[tuple[str, int, str]] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)

    def paired(self, method: str, budget: int) -> list[bool]:
        """Per-sample correctness of one cell, in dataset order."""
        cell = [s for s in self.samples if s["method"] == method and s["budget"] == budget]
        return [bool(s["correct"]) for s in sorted(cell, key=lambda s: s["index"])]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _batch(samples: list[Sample], device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """Stacked images and left-padded prompts (pad id 0, masked)."""
    length = max(len(s.prompt) for s in samples)
    ids = torch.zeros(len(samples), length, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, sample in enumerate(samples):
        ids[row, length - len(sample.prompt) :] = sample.prompt
        mask[row, length - len(sample.prompt) :] = 1
    images = torch.stack([s.image for s in samples])
    return images.to(device), ids.to(device), mask.to(device)


def _greedy(
    model: SweepModel, prepared: Prepared, steps: int, device: torch.device
) -> tuple[Tensor, float, float]:
    """Greedy answer ``(B, steps)`` with the KV cache; seconds of prefill and of decoding."""
    merged, lm = prepared.merged, model.llava
    mask = merged.attention_mask
    out = call_lm(
        lm, merged.inputs_embeds, mask, merged.position_ids, use_cache=True, logits_to_keep=1
    )
    token = out.logits[:, -1].argmax(-1)
    _sync(device)
    prefilled = time.perf_counter()
    tokens, cache = [token], output_cache(out)
    position = merged.position_ids[:, -1]
    for _ in range(steps - 1):
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], 1)
        position = position + 1
        embeds = embed_text(lm, token[:, None], model.image_token_id)
        out = call_lm(
            lm, embeds, mask, position[:, None], cache=cache, use_cache=True, logits_to_keep=1
        )
        cache = output_cache(out)
        token = out.logits[:, -1].argmax(-1)
        tokens.append(token)
    _sync(device)
    return torch.stack(tokens, 1), prefilled, time.perf_counter() - prefilled


def _run_cell(
    model: SweepModel,
    name: str,
    budget: int,
    samples: list[Sample],
    batch_size: int,
    decode_tokens: int,
) -> list[dict[str, Any]]:
    device = next(model.llava.parameters()).device
    method = model.method(name, budget)
    records = []
    starts = list(range(0, len(samples), batch_size))
    for turn, start in enumerate(starts[:1] + starts):  # the first batch twice: a warm-up
        part = samples[start : start + batch_size]
        images, ids, mask = _batch(part, device)
        steps = max(decode_tokens, *(len(s.answer) for s in part))
        _sync(device)
        began = time.perf_counter()
        with torch.no_grad():
            prepared = method(images, ids, mask)
            pruning = prepared.pruning
            if pruning is None:
                answer, prefilled, decode = _greedy(model, prepared, steps, device)
            else:
                with pruning.armed(prepared.image_mask, prepared.merged.attention_mask):
                    answer, prefilled, decode = _greedy(model, prepared, steps, device)
        prefill = prefilled - began
        for row, sample in enumerate(part):
            visual = int(prepared.visual[row])
            per_layer = (
                [visual] * model.layers if pruning is None else pruning.visual_per_layer(visual)
            )
            text = int(prepared.merged.attention_mask[row].sum()) - visual
            want = sample.answer.to(answer.device)
            records.append(
                {
                    "method": name,
                    "budget": budget,
                    "index": start + row,
                    "correct": bool(torch.equal(answer[row, : len(want)], want)),
                    "visual_tokens": visual,
                    "equivalent_tokens": equivalent_tokens(per_layer),
                    "encoder_gflops": encoder_flops(
                        model.tower, prepared.encoder_tokens, model.route.projector, visual
                    )
                    / 1e9,
                    "lm_prefill_gflops": lm_prefill_flops(model.llava, text, per_layer) / 1e9,
                    "prefill_ms": 1e3 * prefill / len(part),
                    "decode_ms_per_token": 1e3 * decode / len(part) / max(steps - 1, 1),
                }
            )
        if turn == 0:  # the warm-up's records are not kept
            records.clear()
    return records


def sweep(
    model: SweepModel,
    dataset: Iterable[object],
    methods: Sequence[str],
    budgets: Sequence[int],
    batch_size: int = 8,
    seed: int = 0,
    progress: bool = True,
    decode_tokens: int = 4,
) -> SweepResult:
    """Every method at every budget on ``dataset``.

    Args:
        model: the :class:`~pyrtok.eval.SweepModel` (one LLaVA model, every contender).
        dataset: ``(image (3, H, W) in [0, 1], prompt ids (T,), answer ids)`` items (or
            mappings with those keys); images of one size per batch.
        methods: names from ``model.names()`` (``"full"`` runs once, at the first budget).
        budgets: visual tokens per image (equivalent tokens for the in-LLM methods).
        batch_size: samples per batch.
        seed: ``torch.manual_seed`` before each cell, and the random baseline's seed.
        progress: show a tqdm bar over the cells.
        decode_tokens: tokens decoded per sample at least (the decode time is measured on
            them; an answer is its first ``len(answer)`` tokens).

    Returns:
        :class:`SweepResult`; identical across runs with the same seed (but the times).

    Examples:
        >>> from pyrtok.vlm.testing import tiny_llava
        >>> data = [(torch.rand(3, 32, 32), torch.tensor([1, 63, 5]), 7)] * 2
        >>> result = sweep(SweepModel(tiny_llava()), data, ["random", "fastv"], [12],
        ...     progress=False)
        >>> [(r["method"], r["visual_tokens"], r["equivalent_tokens"]) for r in result.rows]
        [('random', 12.0, 12.0), ('fastv', 16.0, 12.0)]
    """
    samples = [as_sample(item, index) for index, item in enumerate(dataset)]
    for name in methods:
        if name not in model.names() and not name.startswith("pyrtok_"):
            raise ValueError(f"methods: no method {name!r}; expected names from {model.names()}")
    model.seed = seed
    cells = [(m, b) for m in methods for b in (budgets[:1] if m == "full" else budgets)]
    result = SweepResult(
        config={
            "methods": list(methods),
            "budgets": list(budgets),
            "batch_size": batch_size,
            "seed": seed,
            "samples": len(samples),
            "decode_tokens": decode_tokens,
        }
    )
    for name, budget in tqdm(cells, desc="sweep", disable=not progress):
        torch.manual_seed(seed)
        try:
            records = _run_cell(model, name, budget, samples, batch_size, decode_tokens)
        except ValueError as error:
            if not str(error).startswith("budget:"):
                raise
            result.skipped.append((name, budget, str(error)))
            continue
        finally:
            model.release()
        result.samples += records
        row: dict[str, Any] = {"method": name, "budget": budget, "samples": len(records)}
        row["accuracy"] = statistics.fmean(r["correct"] for r in records)
        for key in (
            "visual_tokens",
            "equivalent_tokens",
            "encoder_gflops",
            "lm_prefill_gflops",
            "prefill_ms",
            "decode_ms_per_token",
        ):
            row[key] = statistics.fmean(r[key] for r in records)
        result.rows.append(row)
    return result

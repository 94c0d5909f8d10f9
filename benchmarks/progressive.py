"""Progressive VLM inference: prefix KV-cache reuse vs re-prefilling, and tokens vs early exits.

Question 1: with a small causal LM (random weights) and hundreds of visual tokens at the finest
level, how much faster are the refinement steps (levels 1..L-1) when the prefix KV cache is
reused than when the whole prefix is prefilled again at every level? Outputs must be equal.
Refinement time = ``sum(out.level_seconds[1:])`` of one full 3-level run (nobody exits early,
``"first_token"`` confidence), as timed inside ``progressive_generate``: the wall time of levels
1 and 2 (carrying the cache or the history over, LM prefill, decoding, confidence), measured
directly in the run itself, with nothing subtracted. The full-run speed-up (whole 3-level runs,
encoder and level 0 included, timed outside the call) is printed too. Both are minima over
``--repeats`` runs, the two paths interleaved.

Question 2: how many visual tokens (and LM tokens) are processed when a given fraction of the
samples exits at the coarse level?

Question 3 (``MixedResolutionVLM``): how much compute does the allocation really save end to
end? Encoder time (allocation on the one pyramid, tokens, the ViT on exactly those tokens,
projector) and LM prefill time per image at budgets 64 and 256 against full detail (1024
tokens: every 16-px patch of a 512 x 512 image), small CLIP + Llama, batch 1.

Question 4: the quadtree ladder (``MixedResolutionVLM.progressive_generate``): refinement-step
time (``sum(level_seconds[1:])``: each rung's ViT on its allocation, then the LM) with the KV
cache reused against re-prefilling the whole prefix, for a steep ladder (64 -> 256 -> 1024), a
gentle one (64 -> 127 -> 256), and the gentle one after a long (512-token) system prompt. The
vision part, the same either way, is timed in the same runs, so the LM part is shown too.

Run: ``python benchmarks/progressive.py`` (prints markdown tables; ``--only mixed`` runs
questions 3 and 4, ``--only hierarchical`` questions 1 and 2).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from transformers import CLIPVisionConfig, CLIPVisionModel, LlamaConfig, LlamaForCausalLM

from pyrtok.vlm import MixedResolutionVLM, ProgressiveOutput, ProgressiveVLM, first_token_prob

IMAGE = 999


def build(allocator: str, hidden: int, layers: int) -> ProgressiveVLM:
    torch.manual_seed(0)
    vision = CLIPVisionModel(
        CLIPVisionConfig(
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            image_size=32,
            patch_size=8,
        )
    )
    lm = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=1000,
            hidden_size=hidden,
            intermediate_size=4 * hidden,
            num_hidden_layers=layers,
            num_attention_heads=8,
            num_key_value_heads=8,
            max_position_embeddings=4096,
        )
    )
    return ProgressiveVLM(
        vision,
        lm,
        levels=3,
        selector=allocator,
        image_token_id=IMAGE,
        thresholds=(1.0, 1.0),
        max_new_tokens=4,
    ).eval()


def build_mixed(args: argparse.Namespace) -> MixedResolutionVLM:
    """A small CLIP (16-px patches, 512-px position grid) and a larger Llama, random weights."""
    torch.manual_seed(0)
    vision = CLIPVisionModel(
        CLIPVisionConfig(
            hidden_size=256,
            intermediate_size=1024,
            num_hidden_layers=4,
            num_attention_heads=4,
            image_size=512,
            patch_size=16,
            attn_implementation="sdpa",
        )
    )
    lm = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=1000,
            hidden_size=args.hidden,
            intermediate_size=4 * args.hidden,
            num_hidden_layers=args.layers,
            num_attention_heads=8,
            num_key_value_heads=8,
            max_position_embeddings=4096,
            attn_implementation="sdpa",
        )
    )
    return MixedResolutionVLM(vision, lm, max_patch=64, image_token_id=IMAGE).eval()


def mixed_resolution_cost(args: argparse.Namespace, x: Tensor, ids: Tensor) -> None:
    """Question 3: encoder and LM time per image by budget, against full detail."""
    vlm = build_mixed(args)
    print(
        f"\nMixedResolutionVLM, {x.shape[-2]}x{x.shape[-1]} image, CLIP 4x256 (16-px patches), "
        f"Llama {args.layers}x{args.hidden}, prompt {ids.shape[1] - 1} text tokens, batch 1, "
        f"min of {args.repeats} interleaved runs\n"
    )
    print("| budget | encoder ms | LM prefill ms | total ms | total vs full detail |")
    print("|---:|---:|---:|---:|---:|")
    budgets = (64, 256, 1024)
    best: dict[int, tuple[float, float]] = {}
    with torch.no_grad():
        for i in range(args.repeats + 1):
            for budget in budgets:
                start = time.perf_counter()
                merged, *_ = vlm.merge(x[:1], ids[:1], budget=budget)
                middle = time.perf_counter()
                vlm.language_model(
                    inputs_embeds=merged.inputs_embeds, attention_mask=merged.attention_mask
                )
                end = time.perf_counter()
                if i:
                    old = best.get(budget, (float("inf"), float("inf")))
                    best[budget] = (min(old[0], middle - start), min(old[1], end - middle))
    full = sum(best[1024])
    for budget in budgets:
        encoder, lm = best[budget]
        print(
            f"| {budget} | {1e3 * encoder:.1f} | {1e3 * lm:.1f} | {1e3 * (encoder + lm):.1f} "
            f"| {(encoder + lm) / full:.2f} ({full / (encoder + lm):.1f}x faster) |"
        )


def ladder_reuse(args: argparse.Namespace, x: Tensor, ids: Tensor) -> None:
    """Question 4: the quadtree ladder's refinement steps, KV reuse against re-prefill.

    Refinement = ``sum(level_seconds[1:])`` of runs where nobody exits early; its vision part
    (each rung's ``encode_images``, the same work either way) is timed in the same runs by a
    wrapper, so the LM part is the rest."""
    vlm = build_mixed(args)
    encode = vlm.encode_images
    encoder_seconds: list[float] = []

    def timed_encode(*a: Any, **k: Any) -> Any:
        start = time.perf_counter()
        out = encode(*a, **k)
        encoder_seconds.append(time.perf_counter() - start)
        return out

    vlm.encode_images = timed_encode  # type: ignore[method-assign]
    print(
        f"\nQuadtree ladder, batch {x.shape[0]}, question 8 tokens, 4 answer tokens, nobody exits "
        f"early; min of {args.repeats} interleaved runs\n"
    )
    print(
        "| ladder | system prompt | visual tokens sent | reuse: refine ms (LM) | "
        "re-prefill: refine ms (LM) | speed-up (LM part) | max abs logit diff |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    g = torch.Generator().manual_seed(2)
    question = ids[:, -8:]
    for ladder, system in (((64, 256, 1024), 64), ((64, 127, 256), 64), ((64, 127, 256), 512)):
        prompt = torch.cat(
            [torch.randint(1, 900, (x.shape[0], system), generator=g), ids[:, -9:-8], question], 1
        )
        refine: dict[bool, tuple[float, float]] = {}
        outs: dict[bool, ProgressiveOutput] = {}
        for i in range(args.repeats + 1):
            for reuse in (True, False):
                encoder_seconds.clear()
                out = vlm.progressive_generate(
                    x,
                    prompt,
                    budgets=ladder,
                    thresholds=(1.0, 1.0),
                    max_new_tokens=4,
                    reuse_cache=reuse,
                )
                total = sum(out.level_seconds[1:])
                lm = total - sum(encoder_seconds[1:])
                if i:
                    best = refine.get(reuse, (float("inf"), float("inf")))
                    refine[reuse] = (min(best[0], total), min(best[1], lm))
                    outs[reuse] = out
        diff = (outs[True].logits - outs[False].logits).abs().max().item()
        (reuse_total, reuse_lm), (again_total, again_lm) = refine[True], refine[False]
        print(
            f"| {' -> '.join(map(str, ladder))} | {system} | {int(outs[True].visual_tokens[0])} "
            f"| {1e3 * reuse_total:.1f} ({1e3 * reuse_lm:.1f}) "
            f"| {1e3 * again_total:.1f} ({1e3 * again_lm:.1f}) "
            f"| {again_total / reuse_total:.2f}x ({again_lm / reuse_lm:.2f}x) | {diff:.1e} |"
        )


def fixed_exits(fraction: float) -> Callable[[Tensor, Tensor, Tensor], Tensor]:
    """Confidence 1 for the first ``fraction`` of the batch at level 0, 0 everywhere else."""
    calls = {"n": 0}

    def confidence(logits: Tensor, tokens: Tensor, mask: Tensor) -> Tensor:
        out = torch.zeros(logits.shape[0])
        if calls["n"] == 0:
            out[: round(fraction * logits.shape[0])] = 1.0
        calls["n"] += 1
        return out

    return confidence


def timed(fn: Callable[[], ProgressiveOutput], repeats: int) -> tuple[float, ProgressiveOutput]:
    fn()
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    assert out is not None
    return min(times), out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--system", type=int, default=64, help="system prompt tokens")
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--mixed-size", type=int, default=512, help="MixedResolutionVLM images")
    parser.add_argument("--only", choices=("hierarchical", "mixed"), default=None)
    args = parser.parse_args()
    if args.only != "hierarchical":
        g = torch.Generator().manual_seed(1)
        images = torch.rand(2, 3, args.mixed_size, args.mixed_size, generator=g)
        prompt = torch.cat(
            [
                torch.randint(1, 900, (2, args.system), generator=g),
                torch.full((2, 1), IMAGE),
                torch.randint(1, 900, (2, 8), generator=g),
            ],
            dim=1,
        )
        mixed_resolution_cost(args, images, prompt)
        ladder_reuse(args, images, prompt)
    if args.only == "mixed":
        return
    torch.manual_seed(0)
    x = torch.rand(args.batch, 3, args.size, args.size)
    g = torch.Generator().manual_seed(0)
    system = torch.randint(1, 900, (args.batch, args.system), generator=g)
    question = torch.randint(1, 900, (args.batch, 8), generator=g)
    ids = torch.cat([system, torch.full((args.batch, 1), IMAGE), question], 1)

    print(
        f"batch {args.batch}, {args.size}x{args.size} images, 3 levels, system prompt "
        f"{args.system} tokens, question 8, 4 answer tokens, Llama {args.layers}x{args.hidden}, "
        f"{torch.get_num_threads()} threads, min of {args.repeats} interleaved runs\n"
    )
    print(
        "| selection | visual tokens / level | reuse: refine ms | re-prefill: refine ms | "
        "speed-up | full-run speed-up | max abs logit diff | same exits |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for allocator in ("all", "frequency"):
        vlm = build(allocator, args.hidden, args.layers)
        visual = vlm.encode_images(x)
        per_level = [
            int((visual.mask & (visual.scales == s)).sum(1).float().mean()) for s in range(3)
        ]
        full: dict[bool, float] = {}
        refine: dict[bool, float] = {}
        outs: dict[bool, ProgressiveOutput] = {}
        vlm.confidence = first_token_prob
        for i in range(args.repeats + 1):  # round 0 warms up; then min over interleaved rounds
            for reuse in (True, False):
                start = time.perf_counter()
                out = vlm.progressive_generate(x, ids, reuse_cache=reuse)
                took = time.perf_counter() - start
                assert len(out.level_seconds) == 3, "every sample must reach the last level"
                if i == 0:
                    continue
                full[reuse] = min(full.get(reuse, float("inf")), took)
                refine[reuse] = min(refine.get(reuse, float("inf")), sum(out.level_seconds[1:]))
                outs[reuse] = out
        full_run = full[False] / full[True]
        diff = (outs[True].logits - outs[False].logits).abs().max().item()
        same = torch.equal(outs[True].exit_level, outs[False].exit_level) and torch.equal(
            outs[True].sequences, outs[False].sequences
        )
        print(
            f"| {allocator} | {per_level} | {1e3 * refine[True]:.1f} | {1e3 * refine[False]:.1f} "
            f"| {refine[False] / refine[True]:.2f}x | {full_run:.2f}x "
            f"| {diff:.1e} | {same} |"
        )

    print(
        "\n| selection | early-exit fraction | visual tokens processed | LM tokens (reuse) | "
        "LM tokens (re-prefill) | wall ms (reuse, min) |"
    )
    print("|---|---|---|---|---|---|")
    for allocator in ("all", "frequency"):
        vlm = build(allocator, args.hidden, args.layers)
        for fraction in (0.0, 0.25, 0.5, 0.75, 1.0):

            def run(
                reuse: bool, f: float = fraction, model: ProgressiveVLM = vlm
            ) -> ProgressiveOutput:
                model.confidence = fixed_exits(f)
                return model.progressive_generate(x, ids, reuse_cache=reuse)

            wall, out = timed(lambda: run(True), args.repeats)
            again = run(False)
            print(
                f"| {allocator} | {fraction:.2f} | {int(out.visual_tokens.sum())} | "
                f"{out.lm_tokens} | {again.lm_tokens} | {1e3 * wall:.1f} |"
            )


if __name__ == "__main__":
    main()

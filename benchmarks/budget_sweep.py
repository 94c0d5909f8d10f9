"""Equal-budget sweep: every token-reduction contender on one LLaVA-style model and one dataset.

Contenders: full, random, downsample, cls_attention, mean_attention, divprune (pre-LLM),
fastv, pyramid_drop (in-LLM, matched in equivalent tokens), pyrtok_laplacian, pyrtok_entropy
(MixedResolutionVLM). Columns: accuracy, visual and equivalent tokens, analytic encoder and LM
prefill GFLOPs, measured prefill ms and decode ms/token (pyrtok.eval.sweep).

Dataset: needle v2 test scenes (benchmarks/needle_v2/scenes.py: unseen photos, unseen
handwriting; the digit is the answer), large 40-56 px digits by default (``--large-share``).
The harness takes any iterable of (image, prompt, answer): swap ``needle_items`` for another
source. Model: :func:`needle_llava` (CLIP tower 4 layers width 128 at 256 px / 16 px patches,
256 ViT tokens; Llama 4 layers width 128; SDPA), with the weights that
benchmarks/train_needle_llava.py trained (``--llava .needle/llava/model``), or random weights
without ``--llava`` (a smoke run: the accuracy column is then at chance). ``PROMPT`` and
``FIRST_DIGIT`` are the prompt and answer ids both scripts use.

Run (the numbers in docs/benchmarks.md; the model from benchmarks/train_needle_llava.py's two
commands):
    nice -n 10 python benchmarks/budget_sweep.py --llava .needle/llava2/model --samples 1800 \\
        --batch 1 --out .needle/budget_sweep
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from needle_v2.scenes import VARIANTS, scenes
from needle_v2.stats import paired

from pyrtok.eval import SweepModel, SweepResult, sweep, write
from pyrtok.vlm.testing import tiny_llava

IMAGE, FIRST_DIGIT = 63, 7
PROMPT = (1, IMAGE, 3, 4, 5)
METHODS = (
    "full",
    "random",
    "downsample",
    "cls_attention",
    "visionzip",
    "mean_attention",
    "divprune",
    "fastv",
    "pyramid_drop",
    "pyrtok_laplacian",
    "pyrtok_entropy",
)


def needle_llava(seed: int = 0) -> torch.nn.Module:
    """The sweep's LLaVA with random weights (``seed``): CLIP 256 px / 16 px patches (4 layers,
    width 128) + Llama (4 layers, width 128, 4 heads), SDPA attention.

    Examples:
        >>> needle_llava().config.text_config.num_hidden_layers
        4
    """
    return tiny_llava(  # type: ignore[no-any-return]
        IMAGE,
        seed,
        image_size=256,
        patch_size=16,
        vision_width=128,
        vision_layers=4,
        text_width=128,
        text_layers=4,
        text_heads=4,
        attention="sdpa",
    )


def needle_items(
    count: int, variant: str, seed: int, large_share: float = 1.0
) -> list[tuple[torch.Tensor, torch.Tensor, int]]:
    """Needle v2 test scenes as ``(image [0, 1], prompt ids, answer id)``.

    Examples:
        >>> image, prompt, answer = needle_items(1, "plain", seed=0)[0]
        >>> tuple(image.shape), prompt.tolist(), FIRST_DIGIT <= answer < FIRST_DIGIT + 10
        ((3, 256, 256), [1, 63, 3, 4, 5], True)
    """
    batch = scenes("test", variant, seed, count, large_share)
    prompt = torch.tensor(PROMPT)
    return [
        (image.float() / 255, prompt, int(label) + FIRST_DIGIT)
        for image, label in zip(batch.images, batch.labels, strict=True)
    ]


def paired_table(result: SweepResult, reference: str) -> str:
    """Markdown: every other cell against ``reference`` on the same scenes (at the same budget;
    ``"full"`` at its one budget): accuracy difference in points with its paired bootstrap
    95 % interval, the scenes only one of the two reads, McNemar's exact p.

    Examples:
        >>> from pyrtok.eval.sweep import SweepResult
        >>> cells = [("full", 64, [True, True]), ("random", 64, [True, False])]
        >>> result = SweepResult(samples=[{"method": m, "budget": b, "index": i, "correct": c}
        ...     for m, b, marks in cells for i, c in enumerate(marks)])
        >>> print(paired_table(result, "full").splitlines()[-1])
        | random | 64 | -50.0 [-100.0, +0.0] | 0 | 1 | 1 |
    """
    cells = list(dict.fromkeys((s["method"], s["budget"]) for s in result.samples))
    budgets = {budget for method, budget in cells if method == reference}
    lines = [
        f"| method | budget | vs {reference}, points [95 % CI] | only method | only "
        f"{reference} | McNemar p |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for method, budget in cells:
        if method == reference:
            continue
        against = budget if reference != "full" else min(budgets, default=budget)
        if against not in budgets:
            continue
        mine = torch.tensor(result.paired(method, budget))
        theirs = torch.tensor(result.paired(reference, against))
        gain = paired(mine, theirs)
        lines.append(
            f"| {method} | {budget} | {gain.difference:+.1f} [{gain.low:+.1f}, {gain.high:+.1f}] "
            f"| {gain.a_only} | {gain.b_only} | {gain.p_value:.2g} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--variant", default="plain", choices=VARIANTS)
    parser.add_argument(
        "--large-share", type=float, default=1.0, help="share of large (40-56 px) digits"
    )
    parser.add_argument("--budgets", type=int, nargs="+", default=[64, 128, 192])
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fastv-layer", type=int, default=2)
    parser.add_argument("--llava", type=Path, help="a local LlavaForConditionalGeneration")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", type=Path, default=Path("budget_sweep"))
    parser.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (1: stable times on busy cores)"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.llava is None:
        llava = needle_llava(args.seed)
    else:
        from transformers import LlavaForConditionalGeneration

        llava = LlavaForConditionalGeneration.from_pretrained(args.llava).eval()
    model = SweepModel(llava.to(args.device), fastv_layer=args.fastv_layer, seed=args.seed)
    data = needle_items(args.samples, args.variant, args.seed, args.large_share)
    result = sweep(model, data, args.methods, args.budgets, args.batch, args.seed)
    result.config |= {
        "dataset": f"needle v2 {args.variant} test scenes, large share {args.large_share}",
        "model": "random weights" if args.llava is None else str(args.llava),
        "device": args.device,
    }
    write(result, args.out)
    tables = [paired_table(result, reference) for reference in ("full", "pyrtok_laplacian")]
    (args.out / "paired.md").write_text("\n".join(tables))
    print((args.out / "results.md").read_text())
    print("\n".join(tables))


if __name__ == "__main__":
    main()

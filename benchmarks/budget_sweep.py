"""Equal-budget sweep: every token-reduction contender on one LLaVA-style model and one dataset.

Contenders: full, random, downsample, cls_attention, mean_attention, divprune (pre-LLM),
fastv, pyramid_drop (in-LLM, matched in equivalent tokens), pyrtok_laplacian, pyrtok_entropy
(MixedResolutionVLM). Columns: accuracy, visual and equivalent tokens, analytic encoder and LM
prefill GFLOPs, measured prefill ms and decode ms/token (pyrtok.eval.sweep).

Dataset: needle-in-image test scenes (benchmarks/needle/scenes.py; the digit is the answer).
The harness takes any iterable of (image, prompt, answer): swap ``needle_items`` for another
source. Model: a LLaVA (CLIP tower, Llama) built from a config with random weights sized like
the needle geometry (256 px, 16 px patches: 256 ViT tokens), or ``--llava DIR`` for a local
checkpoint (the prompt ids then follow its tokenizer: give them with ``--prompt``).

Run (the numbers in docs/benchmarks.md):
    nice -n 10 python benchmarks/budget_sweep.py --samples 48 --batch 1 --out /tmp/budget_sweep
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent / "needle"))

from pyrtok.eval import SweepModel, sweep, write
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


def random_llava(seed: int = 0, layers: int = 8) -> torch.nn.Module:
    """A LLaVA with random weights: CLIP 256 px / 16 px patches (4 layers, width 128) + Llama
    (``layers`` layers, width 256, 8 heads), SDPA attention."""
    return tiny_llava(  # type: ignore[no-any-return]
        IMAGE,
        seed,
        image_size=256,
        patch_size=16,
        vision_width=128,
        vision_layers=4,
        text_width=256,
        text_layers=layers,
        text_heads=8,
        attention="sdpa",
    )


def needle_items(
    count: int, variant: str, seed: int
) -> list[tuple[torch.Tensor, torch.Tensor, int]]:
    """Needle test scenes as ``(image [0, 1], prompt ids, answer id)``."""
    from scenes import scenes

    images, labels, _ = scenes("test", variant, 1000 + seed, count)
    prompt = torch.tensor(PROMPT)
    return [
        (image.float() / 255, prompt, int(label) + FIRST_DIGIT)
        for image, label in zip(images, labels, strict=True)
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--variant", default="plain", choices=("plain", "distractor"))
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
        llava = random_llava(args.seed)
    else:
        from transformers import LlavaForConditionalGeneration

        llava = LlavaForConditionalGeneration.from_pretrained(args.llava).eval()
    model = SweepModel(llava.to(args.device), fastv_layer=args.fastv_layer, seed=args.seed)
    data = needle_items(args.samples, args.variant, args.seed)
    result = sweep(model, data, args.methods, args.budgets, args.batch, args.seed)
    result.config |= {"dataset": f"needle {args.variant} test scenes", "device": args.device}
    write(result, args.out)
    print((args.out / "results.md").read_text())


if __name__ == "__main__":
    main()

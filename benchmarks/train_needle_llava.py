"""Train the budget sweep's LLaVA on needle v2 training scenes, so its accuracy column means
something.

The model is :func:`budget_sweep.needle_llava` (random init, every weight trained) run by its
own ``LlavaForConditionalGeneration`` forward on the **full** 256-token grid, as a pretrained
LLaVA is; the sweep then applies every token-reduction method to it training-free. The prompt
is the sweep's ``PROMPT`` with the image placeholder expanded to the 256 image tokens; the
target is the digit's id (``FIRST_DIGIT + digit``) at the last position (cross-entropy over
the whole vocabulary, as greedy decoding reads it).

Scenes: ``needle_v2.scenes("train", ...)`` with ``TRAIN_CONTRAST`` and glyph jitter, a fresh
batch per step (seed ``1_000_000 * (seed + 1) + step``: never repeated, never the held-out
seed), a ``--large-share`` of them large (40-56 px) digits. Held out: ``--heldout`` train-split
scenes of seed ``seed`` (training photos and glyphs, new crops and jitter) and as many
test-split scenes (unseen photos and handwriting, the sweep's seed 0).

The answer loss alone does not train this model from scratch on a CPU budget (issue #7's
record: loss stuck at ln 10 for 1000 steps), so an auxiliary token loss (weight
``--token-loss``) teaches the encoder the digit: a linear head on the features the projector
reads (CLIP layer ``vision_feature_layer``, CLS dropped) gives each 16 px token a "digit here"
logit (binary cross-entropy, digit and background tokens weighted equally; a token is a digit
token when the box covers at least ``COVER`` of it) and 10 class logits whose mean over the
digit tokens must name the digit (cross-entropy): the same pooling the LM's attention can do.
Stage 1 (``--encoder-steps``) trains the tower and head alone on it (twice the samples per
second), stage 2 every weight on answer + token loss, each stage with a fresh AdamW and a
one-cycle cosine schedule, gradients clipped at 1, one torch thread. The head is not part of
the saved model: a plain LLaVA.

``--init DIR`` continues from an earlier run's ``DIR/model`` (with a fresh token head); give
it another ``--seed`` so its scenes are new. ``--fade F`` blends each scene's background
(everything outside the digit's box) from its flat mean colour to the scene itself over the
first ``F`` of the joint steps: a curriculum for the LM's read-out (from scratch its answer loss
sat at ln 10 for 1000 joint steps), full scenes after.

Writes ``OUT/model`` (``save_pretrained``) and ``OUT/train.json`` (settings, steps, samples,
seconds, train accuracy over the last 10 % of the joint steps, held-out accuracies).

Run (the model in docs/benchmarks.md: 35 + 18 min on one core of a busy 2-core CPU):
    nice -n 10 python benchmarks/train_needle_llava.py --steps 3400 --encoder-steps 2400 \\
        --out .needle/llava
    nice -n 10 python benchmarks/train_needle_llava.py --init .needle/llava --seed 1 \\
        --steps 1000 --fade 0.5 --out .needle/llava2
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

from budget_sweep import FIRST_DIGIT, IMAGE, PROMPT, needle_llava
from needle_v2.scenes import PATCH, TRAIN_CONTRAST, VARIANTS, SceneBatch, scenes

from pyrtok.vlm.llava import llava_parts
from pyrtok.vlm.pixels import normalisation_for

COVER = 0.25
BACKGROUND = 10


def prompt_ids(batch: int, image_tokens: int) -> Tensor:
    """``(batch, len(PROMPT) - 1 + image_tokens)`` ids: ``PROMPT`` with its image placeholder
    repeated once per image token (the expanded prompt LLaVA's forward takes).

    Examples:
        >>> prompt_ids(2, 3).tolist()[0]
        [1, 63, 63, 63, 3, 4, 5]
    """
    at = PROMPT.index(IMAGE)
    ids = PROMPT[:at] + (IMAGE,) * image_tokens + PROMPT[at + 1 :]
    return torch.tensor(ids).expand(batch, -1)


def token_targets(boxes: Tensor, labels: Tensor, side: int, patch: int = PATCH) -> Tensor:
    """``(N, (side // patch) ** 2)`` per-token targets, row-major: the digit where its box
    ``(top, left, size)`` covers at least ``COVER`` of the patch, else ``BACKGROUND``.

    Examples:
        >>> token_targets(torch.tensor([[4, 16, 24]]), torch.tensor([7]), 32).tolist()
        [[10, 7, 10, 7]]
    """
    start = torch.arange(0, side, patch)
    top, left, size = boxes.unbind(1)

    def overlap(begin: Tensor) -> Tensor:  # (N, cells) pixels of the box inside each cell
        low = torch.maximum(begin[:, None], start[None])
        high = torch.minimum((begin + size)[:, None], start[None] + patch)
        return (high - low).clamp(min=0)

    cover = overlap(top)[:, :, None] * overlap(left)[:, None, :] / patch**2
    digit = cover.flatten(1) >= COVER
    return torch.where(digit, labels[:, None], torch.full_like(digit, BACKGROUND, dtype=torch.long))


def fade_background(batch: SceneBatch, alpha: float) -> SceneBatch:
    """The scenes with everything outside the digit's box blended towards the image's mean
    colour: ``alpha = 0`` a flat background, ``1`` the scene itself (a curriculum).

    Examples:
        >>> from needle_v2.scenes import scenes
        >>> batch = scenes("train", "plain", seed=0, count=1, large_share=1.0)
        >>> flat = fade_background(batch, 0.0).images[0]
        >>> top, left, side = batch.boxes[0].tolist()
        >>> inside = flat[:, top : top + side, left : left + side]
        >>> bool((inside == batch.images[0, :, top : top + side, left : left + side]).all())
        True
        >>> len(flat[:, 0 if top else -1].flatten(1).unique(dim=1).T)  # a flat row
        1
    """
    if alpha >= 1:
        return batch
    images = batch.images.float()
    side = images.shape[-1]
    row, column = torch.arange(side)[:, None], torch.arange(side)[None]
    top, left, size = (batch.boxes[:, i, None, None] for i in range(3))
    inside = (row >= top) & (row < top + size) & (column >= left) & (column < left + size)
    fill = images.mean((2, 3), keepdim=True)
    faded = alpha * images + (1 - alpha) * fill
    blended = torch.where(inside[:, None], images, faded).round().to(torch.uint8)
    return replace(batch, images=blended)


@dataclass
class Trainer:
    """A needle LLaVA, its token head, and the pixel normalisation the sweep uses."""

    llava: nn.Module
    head: nn.Linear
    mean: Tensor
    std: Tensor
    features: list[Tensor]

    @classmethod
    def build(cls, llava: nn.Module) -> Trainer:
        """``llava`` (e.g. :func:`needle_llava`) with a fresh token head; a hook keeps the
        tower's output at ``vision_feature_layer``."""
        parts = llava_parts(llava)
        tower = getattr(parts.vision_tower, "vision_model", parts.vision_tower)  # transformers 4
        layers = tower.encoder.layers
        features: list[Tensor] = []

        def keep(module: nn.Module, inputs: Any, output: Any) -> None:
            features.append(output[0] if isinstance(output, tuple) else output)

        layers[len(layers) + parts.feature_layer].register_forward_hook(keep)
        mean, std = normalisation_for((parts.vision_tower, llava), None, None)
        head = nn.Linear(parts.vision_tower.config.hidden_size, BACKGROUND + 1)
        return cls(llava, head, mean[:, :, None], std[:, :, None], features)

    def logits(self, images: Tensor) -> Tensor:
        """``(N, vocabulary)`` last-position logits for uint8 images ``(N, 3, H, W)``."""
        self.features.clear()
        tokens = (images.shape[-2] // PATCH) * (images.shape[-1] // PATCH)
        ids = prompt_ids(images.shape[0], tokens)
        out = self.llava(input_ids=ids, pixel_values=self.pixels(images), logits_to_keep=1)
        return out.logits[:, -1]  # type: ignore[no-any-return]

    def pixels(self, images: Tensor) -> Tensor:
        """uint8 images, normalised as the sweep normalises them."""
        return (images.float() / 255 - self.mean) / self.std

    def loss(self, batch: SceneBatch, token_weight: float, answer: bool) -> dict[str, Tensor]:
        """``loss`` = answer loss + ``token_weight`` x token loss, each part, the answers'
        ``correct`` ``(N,)`` bool and ``pooled_correct`` (the head's pooled digit reading).
        ``answer=False``: the vision tower alone and the token loss alone (stage 1)."""
        if answer:
            logits = self.logits(batch.images)
        else:
            self.features.clear()
            llava_parts(self.llava).vision_tower(self.pixels(batch.images))
        tokens = self.head(self.features[-1][:, 1:])  # (N, T, 11), CLS dropped as LLaVA does
        digit = token_targets(batch.boxes, batch.labels, batch.images.shape[-1]) != BACKGROUND
        present = F.binary_cross_entropy_with_logits(
            tokens[..., BACKGROUND], digit.float(), reduction="none"
        )
        weights = digit.sum(1, keepdim=True).float()
        pooled = (tokens[..., :BACKGROUND] * digit[..., None]).sum(1) / weights
        token_loss = F.cross_entropy(pooled, batch.labels)
        token_loss = token_loss + (present[digit].mean() + present[~digit].mean()) / 2
        out = {"token_loss": token_loss, "pooled_correct": pooled.argmax(-1) == batch.labels}
        if not answer:
            return out | {"loss": token_loss}
        target = batch.labels + FIRST_DIGIT
        answer_loss = F.cross_entropy(logits, target)
        return out | {
            "answer_loss": answer_loss,
            "loss": answer_loss + token_weight * token_loss,
            "correct": logits.argmax(-1) == target,
        }

    @torch.no_grad()
    def correct(self, batch: SceneBatch, chunk: int = 64) -> Tensor:
        """``(N,)`` bool: the greedy answer is the digit."""
        self.llava.eval()
        parts = [
            self.logits(batch.images[at : at + chunk]).argmax(-1)
            == batch.labels[at : at + chunk] + FIRST_DIGIT
            for at in range(0, len(batch), chunk)
        ]
        return torch.cat(parts)


def accuracy(correct: Tensor, large: Tensor) -> dict[str, Any]:
    """Accuracy overall and per digit size (``None`` for a size with no scenes)."""
    rate = {"all": correct.float().mean().item()}
    for name, pick in (("large", large), ("small", ~large)):
        rate[name] = correct[pick].float().mean().item() if bool(pick.any()) else None
    return rate | {"scenes": len(correct)}


def stage(
    trainer: Trainer, args: argparse.Namespace, first: int, steps: int, answer: bool
) -> list[Tensor]:
    """Steps ``first .. first + steps - 1`` with a fresh AdamW and one-cycle schedule: the tower
    and token head (``answer=False``) or every weight; returns each step's answers' correctness
    (empty in stage 1)."""
    tower = llava_parts(trainer.llava).vision_tower
    model = trainer.llava if answer else tower
    weights = [*model.parameters(), *trainer.head.parameters()]
    optimiser = torch.optim.AdamW(weights, lr=args.lr, weight_decay=args.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, args.lr, total_steps=steps, pct_start=0.05
    )
    began, history = time.perf_counter(), []
    for step in range(first, first + steps):
        batch = scenes(
            "train",
            args.variant,
            1_000_000 * (args.seed + 1) + step,
            args.batch,
            args.large_share,
            TRAIN_CONTRAST,
            jitter=True,
        )
        if answer and args.fade:
            batch = fade_background(batch, (step - first) / (args.fade * steps))
        trainer.llava.train()
        out = trainer.loss(batch, args.token_loss, answer)
        optimiser.zero_grad(set_to_none=True)
        out["loss"].backward()  # type: ignore[no-untyped-call]
        torch.nn.utils.clip_grad_norm_(weights, 1.0)
        optimiser.step()
        schedule.step()
        if answer:
            history.append(out["correct"])
        if args.log and (step + 1) % args.log == 0:
            shown = {k: round(v.float().mean().item(), 3) for k, v in out.items() if k != "loss"}
            seconds = time.perf_counter() - began
            print(f"step {step + 1}/{args.steps} {shown} {seconds:.0f} s", flush=True)
    return history


def train(args: argparse.Namespace) -> dict[str, Any]:
    """Train, save ``args.out / "model"`` and return the record written to ``train.json``."""
    if not 0 <= args.encoder_steps < args.steps or args.batch < 1:
        raise ValueError(
            f"--steps, --encoder-steps, --batch: expected 0 <= encoder steps < steps and batch "
            f">= 1, got {args.steps}, {args.encoder_steps}, {args.batch}"
        )
    torch.manual_seed(args.seed)
    if args.init is None:
        trainer = Trainer.build(needle_llava(args.seed))
    else:
        from transformers import LlavaForConditionalGeneration

        trainer = Trainer.build(LlavaForConditionalGeneration.from_pretrained(args.init / "model"))
    began = time.perf_counter()
    if args.encoder_steps:
        stage(trainer, args, 0, args.encoder_steps, answer=False)
    joint = args.steps - args.encoder_steps
    history = stage(trainer, args, args.encoder_steps, joint, answer=True)
    seconds = time.perf_counter() - began
    held = scenes("train", args.variant, args.seed, args.heldout, args.large_share, TRAIN_CONTRAST)
    test = scenes("test", args.variant, 0, args.heldout, args.large_share)
    record = {
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "steps": args.steps,
        "samples": args.steps * args.batch,
        "seconds": round(seconds, 1),
        "train_accuracy_last_tenth": torch.cat(history[-max(joint // 10, 1) :])
        .float()
        .mean()
        .item(),
        "heldout_train_split": accuracy(trainer.correct(held), held.large),
        "heldout_test_split": accuracy(trainer.correct(test), test.large),
        "torch": torch.__version__,
    }
    trainer.llava.save_pretrained(args.out / "model")
    (args.out / "train.json").write_text(json.dumps(record, indent=2) + "\n")
    return record


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--weight-decay", type=float, default=0.05)
    parser.add_argument("--token-loss", type=float, default=1.0, help="0: answer loss only")
    parser.add_argument(
        "--encoder-steps", type=int, default=0, help="first steps: tower + token head only"
    )
    parser.add_argument(
        "--fade",
        type=float,
        default=0.0,
        help="share of the joint steps over which backgrounds fade in from flat (0: none)",
    )
    parser.add_argument("--large-share", type=float, default=1.0)
    parser.add_argument("--variant", default="plain", choices=VARIANTS)
    parser.add_argument("--heldout", type=int, default=512, help="held-out scenes per split")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--log", type=int, default=50, help="print every N steps (0: never)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path(".needle/llava"))
    parser.add_argument(
        "--init", type=Path, help="continue from the --out of a run (use another --seed)"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    record = train(args)
    print(json.dumps({k: v for k, v in record.items() if k != "settings"}, indent=2))
    return record


if __name__ == "__main__":
    main()

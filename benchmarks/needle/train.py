"""Training in two stages: the vision encoder learns digits per token, then the whole VLM.

Stage 1 (``pretrain_encoder``, once per seed on plain scenes, shared by both variants and every
allocator): the ViT runs on whole scenes at scale 2 (full resolution) and scale 1 (half
resolution) in turn, and a linear head on each output token predicts the digit's class on the
tokens that cover the digit and "background" elsewhere (the digit-token loss plus half the
background loss). The head is thrown away. This stands in for the pretrained vision encoder
every real VLM starts from; the box annotations it uses are never shown to stage 2 or to the
evaluation. Without it, trained from scratch on the answer alone, the model sees one 16-32 px
digit among 336 patches per scene and stays at chance for as long as this CPU budget allows
(see docs/benchmarks.md).

Stage 2 (``train_vlm``, once per allocator): the HierarchicalVLM is trained on the answer token
with the encoder's weights frozen (projector, scale embeddings and LM learn; the stem's
BatchNorm statistics still follow the batches, as ``vlm.train()`` leaves it in train mode), the
budget drawn per batch (``splits`` uniform in ``0..MAX_TRAIN_SPLITS``) so one model serves every
budget; a quarter of the batches also drop the tokens of the scales after a random coarser one,
so the model has seen the prefixes ProgressiveVLM asks at.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from model import LEVELS, PATCH, build, normalise, prompts, set_budget
from torch import Tensor, nn
from tqdm import tqdm

from pyrtok import gaussian_pyramid

MAX_TRAIN_SPLITS = 32


@dataclass(frozen=True)
class Schedule:
    """Steps, batch size and peak learning rate of one training stage."""

    steps: int
    batch: int
    lr: float


def _optimiser(
    params: list[nn.Parameter], schedule: Schedule
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    optimiser = torch.optim.AdamW(params, schedule.lr, weight_decay=0.01)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, schedule.lr, total_steps=schedule.steps, pct_start=0.05
    )
    return optimiser, scheduler


def token_targets(boxes: Tensor, grid: int, size: int) -> Tensor:
    """``(B, grid * grid)`` bool: the tokens of a ``grid`` x ``grid`` patch grid over a ``size``
    px image whose cell overlaps the central half of the digit box ``(top, left, side)``."""
    cell = size / grid
    centre = boxes[:, :2].float() + boxes[:, 2:].float() / 2
    half = boxes[:, 2:].float() / 4
    low = ((centre - half) / cell).floor().long().clamp(0, grid - 1)
    high = ((centre + half) / cell).floor().long().clamp(0, grid - 1)
    index = torch.arange(grid, device=boxes.device)
    rows = (index[None] >= low[:, :1]) & (index[None] <= high[:, :1])
    cols = (index[None] >= low[:, 1:]) & (index[None] <= high[:, 1:])
    return (rows[:, :, None] & cols[:, None, :]).flatten(1)


def pretrain_encoder(
    vision: nn.Module, data: tuple[Tensor, Tensor, Tensor], schedule: Schedule, seed: int
) -> float:
    """Stage 1 in place on ``vision`` (an HF ViT); returns the last 50 steps' accuracy of the
    digit tokens' class."""
    images, labels, boxes = data
    device = next(vision.parameters()).device
    head = nn.Linear(vision.config.hidden_size, 11, device=device)  # 10 digits + background
    vision.requires_grad_(True)
    params = [*vision.parameters(), *head.parameters()]
    optimiser, scheduler = _optimiser(params, schedule)
    generator = torch.Generator().manual_seed(seed)
    vision.train()
    correct: list[float] = []
    bar = tqdm(range(schedule.steps), desc="encoder", leave=False)
    for step in bar:
        pick = torch.randint(len(images), (schedule.batch,), generator=generator)
        pixels = normalise(images[pick].to(device))
        if step % 2:  # every other batch at scale 1 (half resolution, digits 8-16 px)
            pixels = gaussian_pyramid(pixels, levels=2)[1]
        tokens = vision(pixels, interpolate_pos_encoding=True).last_hidden_state[:, 1:]
        grid = pixels.shape[-1] // PATCH
        on_digit = token_targets(boxes[pick].to(device), grid, images.shape[-1])
        targets = torch.where(on_digit, labels[pick].to(device)[:, None], 10)
        logits = head(tokens)
        losses = F.cross_entropy(logits.transpose(1, 2), targets, reduction="none")
        loss = losses[on_digit].mean() + 0.5 * losses[~on_digit].mean()
        loss.backward()
        optimiser.step()
        optimiser.zero_grad()
        scheduler.step()
        hits = (logits.argmax(-1) == targets)[on_digit]
        correct.append(hits.float().mean().item())
        bar.set_postfix(accuracy=f"{sum(correct[-50:]) / len(correct[-50:]):.3f}")
    vision.requires_grad_(False).eval()
    return sum(correct[-50:]) / len(correct[-50:])


def train_vlm(
    vlm: nn.Module, data: tuple[Tensor, Tensor, Tensor], schedule: Schedule, seed: int, desc: str
) -> float:
    """Stage 2 in place; returns the mean loss of the last 50 steps."""
    images, labels, _ = data
    optimiser, scheduler = _optimiser(list(vlm.parameters()), schedule)
    device = next(vlm.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    draw = random.Random(seed)
    vlm.train()
    losses: list[float] = []
    bar = tqdm(range(schedule.steps), desc=desc, leave=False)
    for _ in bar:
        pick = torch.randint(len(images), (schedule.batch,), generator=generator)
        cut = draw.randrange(LEVELS - 1) if draw.random() < 0.25 else LEVELS - 1
        set_budget(vlm, draw.randint(0, MAX_TRAIN_SPLITS), cut)
        ids, targets = prompts(labels[pick].to(device))
        loss = vlm(normalise(images[pick].to(device)), ids, labels=targets).loss
        loss.backward()
        nn.utils.clip_grad_norm_(vlm.parameters(), 1.0)
        optimiser.step()
        optimiser.zero_grad()
        scheduler.step()
        losses.append(loss.item())
        bar.set_postfix(loss=f"{sum(losses[-50:]) / len(losses[-50:]):.3f}")
    set_budget(vlm, MAX_TRAIN_SPLITS)
    vlm.eval()
    return sum(losses[-50:]) / len(losses[-50:])


def trained_vlm(
    allocator: str,
    seed: int,
    encoder_state: dict[str, Tensor],
    data: tuple[Tensor, Tensor, Tensor],
    schedule: Schedule,
    checkpoint: Path,
    device: torch.device,
) -> nn.Module:
    """The stage-2 model for ``allocator`` on ``device``, loaded from ``checkpoint`` or trained
    and saved."""
    vlm = build(allocator, seed).to(device)
    if checkpoint.exists():
        vlm.load_state_dict(torch.load(checkpoint, map_location=device, weights_only=True))
        return vlm.eval()
    vlm.vision_encoder.model.load_state_dict(encoder_state)
    train_vlm(vlm, data, schedule, seed, desc=checkpoint.stem)
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    torch.save(vlm.state_dict(), checkpoint)
    return vlm

"""Needle-in-image: accuracy vs visual tokens for every allocator, and progressive early exit.

For each seed, pretrain the vision encoder on per-token digit labels of plain scenes (stage 1);
for each variant (plain, distractor) and seed, train one HierarchicalVLM per allocator with
budgets drawn per batch (stage 2, the encoder frozen), evaluate every model at fixed budgets on
unseen photos, and run the laplacian model as a ProgressiveVLM while its thresholds sweep.
Checkpoints (``torch.save``) make reruns resume; results go to ``<out>/results.json``,
``<out>/results.md`` and PNG plots.

Run (the numbers in docs/benchmarks.md):
    python benchmarks/needle/run.py --jobs 2
Smoke size (CI):
    python benchmarks/needle/run.py --quick --out /tmp/needle
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # scenes reads installed_photos
sys.path.insert(0, str(Path(__file__).resolve().parent))

from model import (
    ALLOCATORS,
    CELLS,
    FIRST_DIGIT,
    MAX_PATCH,
    PATCH,
    PROMPT,
    build,
    normalise,
    predict,
    scorer_for,
    set_budget,
    visual_tokens,
)
from scenes import VARIANTS, scenes
from train import Schedule, pretrain_encoder, trained_vlm

EVAL_SPLITS = (4, 8, 16, 32)
THRESHOLDS = (0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.99, 0.999)


@dataclass(frozen=True)
class Config:
    """Sizes of one run of the experiment."""

    train_scenes: int
    test_scenes: int
    encoder: Schedule
    vlm: Schedule
    eval_batch: int


FULL = Config(8192, 500, Schedule(6000, 32, 2e-3), Schedule(1200, 16, 3e-3), 100)
QUICK = Config(64, 16, Schedule(2, 8, 2e-3), Schedule(2, 4, 1e-3), 8)


def _batches(count: int, size: int) -> list[slice]:
    return [slice(start, min(start + size, count)) for start in range(0, count, size)]


def accuracy_at(
    vlm: torch.nn.Module, test: tuple[torch.Tensor, ...], splits: int, batch: int
) -> float:
    """Answer accuracy with ``splits`` quadtree splits per image (``16 + 4 * splits`` tokens)."""
    images, labels = test[0], test[1]
    device = next(vlm.parameters()).device
    set_budget(vlm, splits)
    correct = 0
    for part in _batches(len(images), batch):
        predicted, counts = predict(vlm, images[part].to(device))
        assert bool((counts == visual_tokens(splits)).all()), "budget not met exactly"
        correct += int((predicted.cpu() == labels[part]).sum())
    return correct / len(images)


def progressive_sweep(
    vlm: torch.nn.Module, test: tuple[torch.Tensor, ...], batch: int
) -> list[dict[str, float]]:
    """ProgressiveVLM (thresholds ``(t, t)``) at the finest budget: accuracy and mean tokens."""
    images, labels = test[0], test[1]
    device = next(vlm.parameters()).device
    set_budget(vlm, EVAL_SPLITS[-1])
    rows = []
    for threshold in THRESHOLDS:
        vlm.thresholds = (threshold, threshold)
        correct, tokens = 0, 0
        for part in _batches(len(images), batch):
            ids = torch.tensor(PROMPT, device=device).expand(part.stop - part.start, -1)
            out = vlm.progressive_generate(normalise(images[part].to(device)), ids)
            correct += int((out.sequences[:, 0].cpu() == labels[part] + FIRST_DIGIT).sum())
            tokens += int(out.visual_tokens.sum())
        rows.append(
            {
                "threshold": threshold,
                "accuracy": correct / len(images),
                "tokens": tokens / len(images),
            }
        )
    return rows


def encoder_path(checkpoints: Path, seed: int) -> Path:
    return checkpoints / f"seed{seed}-encoder.pt"


def pretrained_encoder(
    seed: int, config: Config, checkpoints: Path, threads: int, device: str
) -> float | None:
    """Stage 1 for ``seed`` on plain training scenes (shared by both variants and every
    allocator) unless its checkpoint exists; returns its final digit-token accuracy."""
    path = encoder_path(checkpoints, seed)
    record = path.with_suffix(".json")
    if path.exists():
        return json.loads(record.read_text()) if record.exists() else None
    torch.set_num_threads(threads)
    vision = build("uniform", seed).vision_encoder.model.to(torch.device(device))
    data = scenes("train", "plain", seed, config.train_scenes)
    accuracy = pretrain_encoder(vision, data, config.encoder, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(vision.state_dict(), path)
    record.write_text(json.dumps(accuracy))
    return accuracy


def run_one(
    variant: str, seed: int, config: Config, checkpoints: Path, threads: int, device: str
) -> dict[str, object]:
    """Every model of one (variant, seed): accuracies per allocator and budget, and progressive
    (read back from its checkpoint folder when this (variant, seed) has finished before)."""
    done = checkpoints / f"{variant}-seed{seed}-results.json"
    if done.exists():
        result: dict[str, object] = json.loads(done.read_text())
        return result
    torch.set_num_threads(threads)
    target = torch.device(device)
    start = time.perf_counter()
    data = scenes("train", variant, seed, config.train_scenes)
    test = scenes("test", variant, 1000 + seed, config.test_scenes)
    encoder_state = torch.load(
        encoder_path(checkpoints, seed), map_location=target, weights_only=True
    )
    accuracy: dict[str, dict[int, float]] = {}
    for allocator in ALLOCATORS:
        path = checkpoints / f"{variant}-seed{seed}-{allocator}.pt"
        vlm = trained_vlm(allocator, seed, encoder_state, data, config.vlm, path, target)
        accuracy[allocator] = {
            visual_tokens(s): accuracy_at(vlm, test, s, config.eval_batch)
            for s in (0, *EVAL_SPLITS)
        }
    progressive = build("laplacian", seed, progressive=True).to(target)
    progressive.load_state_dict(
        torch.load(
            checkpoints / f"{variant}-seed{seed}-laplacian.pt",
            map_location=target,
            weights_only=True,
        )
    )
    result = {
        "variant": variant,
        "seed": seed,
        "accuracy": accuracy,
        "progressive": progressive_sweep(progressive.eval(), test, config.eval_batch),
        "seconds": time.perf_counter() - start,
    }
    done.write_text(json.dumps(result))
    return result


def _spread(values: list[float]) -> str:
    mean = statistics.fmean(values)
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * mean:.1f} ± {100 * spread:.1f}"


def tables(results: list[dict]) -> str:
    """Markdown: accuracy (mean ± std over seeds, %) per allocator and budget; progressive."""
    lines = []
    for variant in VARIANTS:
        runs = [r for r in results if r["variant"] == variant]
        if not runs:
            continue
        budgets = list(runs[0]["accuracy"]["uniform"])
        lines += [
            f"**{variant}** ({len(runs)} seeds, {runs[0]['tests']} test scenes each; accuracy %, "
            f"mean ± std over seeds)",
            "",
            "| allocator | " + " | ".join(f"{b} tokens" for b in budgets) + " |",
            "|---|" + "---:|" * len(budgets),
        ]
        for allocator in ALLOCATORS:
            cells = [_spread([r["accuracy"][allocator][b] for r in runs]) for b in budgets]
            lines.append(f"| {allocator} | " + " | ".join(cells) + " |")
        lines += [
            "",
            "| progressive threshold | accuracy % | mean visual tokens |",
            "|---:|---:|---:|",
        ]
        for i, threshold in enumerate(THRESHOLDS):
            acc = _spread([r["progressive"][i]["accuracy"] for r in runs])
            tokens = statistics.fmean(r["progressive"][i]["tokens"] for r in runs)
            lines.append(f"| {threshold} | {acc} | {tokens:.1f} |")
        lines.append("")
    return "\n".join(lines)


def plot(results: list[dict], path: Path) -> None:
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(VARIANTS), figsize=(11, 4), sharey=True)
    for axis, variant in zip(axes, VARIANTS, strict=True):
        runs = [r for r in results if r["variant"] == variant]
        if not runs:
            continue
        for allocator in ALLOCATORS:
            budgets = [int(b) for b in runs[0]["accuracy"][allocator]]
            values = [[r["accuracy"][allocator][str(b)] * 100 for r in runs] for b in budgets]
            axis.errorbar(
                budgets,
                [statistics.fmean(v) for v in values],
                yerr=[statistics.stdev(v) if len(v) > 1 else 0 for v in values],
                marker="o",
                capsize=3,
                label=allocator,
            )
        tokens = [
            statistics.fmean(r["progressive"][i]["tokens"] for r in runs)
            for i in range(len(THRESHOLDS))
        ]
        accuracy = [
            statistics.fmean(r["progressive"][i]["accuracy"] * 100 for r in runs)
            for i in range(len(THRESHOLDS))
        ]
        axis.plot(tokens, accuracy, "k--x", label="progressive (laplacian)")
        axis.set_title(f"{variant} ({len(runs)} seed{'s' if len(runs) > 1 else ''})")
        axis.set_xlabel("visual tokens per image")
        axis.set_xscale("log", base=2)
        axis.set_xticks(budgets, [str(b) for b in budgets])
        axis.axhline(10, color="grey", lw=0.5, label="chance")
    axes[0].set_ylabel("accuracy (%)")
    axes[0].legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def allocation_examples(path: Path, splits: int = EVAL_SPLITS[0], count: int = 2) -> None:
    """PNG: test scenes (rows: plain then distractor) with each allocator's quadtree leaves at
    ``16 + 4 * splits`` visual tokens (columns: :data:`ALLOCATORS`)."""
    from pyrtok.allocation import allocate
    from pyrtok.viz import allocation_overlay, save_png, side_by_side

    rows = []
    for variant in VARIANTS:
        images = scenes("test", variant, 1000, count)[0].float() / 255
        for image in images:
            cells = []
            for allocator in ALLOCATORS:
                budget = CELLS + 3 * splits
                scorer = scorer_for(allocator)
                leaves = allocate(image[None], budget, PATCH, MAX_PATCH, "greedy", scorer)
                cells.append(allocation_overlay(image, leaves))
            rows.append(side_by_side(cells))
    save_png(torch.cat(rows, dim=1), path)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--jobs", type=int, default=1, help="(variant, seed) runs in parallel")
    parser.add_argument("--quick", action="store_true", help="smoke size: checks the pipeline")
    parser.add_argument("--out", type=Path, default=Path("docs/needle"))
    parser.add_argument("--checkpoints", type=Path, default=Path(".needle"))
    parser.add_argument("--device", default="cpu", help="cpu or cuda (use --jobs 1 on cuda)")
    args = parser.parse_args(argv)
    config = QUICK if args.quick else FULL
    checkpoints = args.checkpoints / ("quick" if args.quick else "full")
    jobs = [(variant, seed) for variant in args.variants for seed in range(args.seeds)]
    threads = max(1, (os.cpu_count() or 1) // args.jobs)
    work = [(v, s, config, checkpoints, threads, args.device) for v, s in jobs]
    seeds = [(s, config, checkpoints, threads, args.device) for s in range(args.seeds)]
    if args.jobs == 1:
        encoders = [pretrained_encoder(*seed) for seed in seeds]
        results = [run_one(*job) for job in work]
    else:
        with ProcessPoolExecutor(max_workers=args.jobs) as pool:
            encoders = list(pool.map(pretrained_encoder, *zip(*seeds, strict=True)))
            results = list(pool.map(run_one, *zip(*work, strict=True)))
    for result in results:
        result["encoder_token_accuracy"] = encoders[int(result["seed"])]
    results = json.loads(json.dumps(results))  # str budget keys, as read back from the file
    for result in results:
        result["tests"] = config.test_scenes
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(
        json.dumps({"config": asdict(config), "runs": results}, indent=1)
    )
    markdown = tables(results)
    (args.out / "results.md").write_text(markdown)
    plot(results, args.out / "accuracy_vs_tokens.png")
    allocation_examples(args.out / "allocations.png")
    print(markdown)
    return results


if __name__ == "__main__":
    main()

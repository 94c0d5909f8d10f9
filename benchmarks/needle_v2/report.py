"""Tables, goal checks and figures of needle v2 from the per-scene outcomes.

``runs`` is a list of ``{"seed", "variant", "scenes": {labels, large, contrasts}, <arm>:
{budget: {"correct": (N,) bool, "hit": (N,) bool}}}`` as :func:`run.evaluate` writes them.
Statistics pool the seeds' scenes (each seed has its own reader and scenes; within a seed every
arm is read on the same scenes, so the comparisons are paired).
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .arms import ARMS, BUDGETS
from .progressive import LADDER_ARMS, THRESHOLDS, stop
from .stats import paired

CONTRAST_BINS = 0.04
GOAL_FULL = 90.0
GOAL_RANGE = 10.0
GOAL_GAIN = 10.0
GOAL_PROGRESSIVE = 1.0  # points below the finest budget, at <= half its visual tokens
ALPHA = 0.05

Run = dict[str, Any]
"""One (seed, variant): ``seed``, ``variant``, ``scenes`` and one entry per arm."""


def calibration_table(rows: dict[str, list[Any]]) -> str:
    """Markdown: crop-oracle accuracy (%) per contrast bin at full / half / quarter resolution."""
    width = CONTRAST_BINS
    bins: dict[float, list[int]] = {}
    for i, c in enumerate(rows["contrast"]):
        bins.setdefault(round(int(c / width) * width, 2), []).append(i)
    lines = [
        "| contrast | scenes | full % | half % | quarter % |",
        "|---|---:|---:|---:|---:|",
    ]
    for low in sorted(bins):
        idx = bins[low]
        cells = [
            100 * statistics.fmean(rows[k][i] for i in idx) for k in ("full", "half", "quarter")
        ]
        lines.append(
            f"| {low:.2f}-{low + width:.2f} | {len(idx)} | "
            + " | ".join(f"{c:.1f}" for c in cells)
            + " |"
        )
    return "\n".join(lines)


def gate_lines(record: dict[str, Any] | None) -> list[str]:
    """Markdown: the reader's gate (full detail on calibration scenes), met or not."""
    if record is None:
        return []
    lines = [
        f"**Gate** (seed 0's reader, full detail on calibration scenes, required "
        f">= {record['required']:.0f} %):",
        "",
        "| variant | all % | small % | large % | gate |",
        "|---|---:|---:|---:|---|",
    ]
    for variant in ("plain", "distractor"):
        row = record[variant]
        met = "met" if row["all"] >= record["required"] else "**not met**"
        lines.append(
            f"| {variant} | {row['all']:.1f} | {row['small']:.1f} | {row['large']:.1f} | {met} |"
        )
    return [*lines, ""]


SIZES = ("all", "small", "large")


def size_mask(large: Tensor, which: str) -> Tensor:
    """The scenes of size ``which`` (a key of :data:`SIZES`) given their ``large`` flags."""
    return {"all": torch.ones_like(large), "small": ~large, "large": large}[which]


def _subset(run: Run, which: str) -> Tensor:
    return size_mask(run["scenes"]["large"], which)


def _pooled(runs: list[Run], arm: str, budget: int, key: str, which: str) -> Tensor:
    return torch.cat([r[arm][budget][key][_subset(r, which)] for r in runs])


def _accuracy_cell(runs: list[Run], arm: str, budget: int, which: str) -> str:
    values = [
        100 * r[arm][budget]["correct"][_subset(r, which)].float().mean().item() for r in runs
    ]
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.1f} ± {spread:.1f}"


def _header(first: str) -> list[str]:
    return [
        f"| {first} | " + " | ".join(str(b) for b in BUDGETS) + " |",
        "|---|" + "---:|" * len(BUDGETS),
    ]


def accuracy_table(runs: list[Run], which: str) -> list[str]:
    lines = _header("arm \\ visual tokens")
    for arm in ARMS:
        cells = [_accuracy_cell(runs, arm.name, b, which) for b in BUDGETS]
        lines.append(f"| {arm.name} | " + " | ".join(cells) + " |")
    return lines


def _share(correct: Tensor, mask: Tensor) -> str:
    return f"{100 * correct[mask].float().mean():.0f}" if mask.any() else "-"


def hit_table(runs: list[Run]) -> list[str]:
    """Small digits: hit rate %, and accuracy % given hit / given miss (pooled over seeds)."""
    lines = _header("arm: hit % (acc. hit / miss)")
    for arm in ARMS:
        cells = []
        for b in BUDGETS:
            hit = _pooled(runs, arm.name, b, "hit", "small")
            correct = _pooled(runs, arm.name, b, "correct", "small")
            given = [_share(correct, hit), _share(correct, ~hit)]
            cells.append(f"{100 * hit.float().mean():.0f} ({given[0]} / {given[1]})")
        lines.append(f"| {arm.name} | " + " | ".join(cells) + " |")
    return lines


def paired_table(runs: list[Run], reference: str = "uniform") -> list[str]:
    """Every arm against ``reference`` at every budget, all scenes pooled over seeds:
    difference in points [paired bootstrap 95 % interval], McNemar p."""
    lines = _header(f"arm - {reference} (points [95% CI], p)")
    base = {b: _pooled(runs, reference, b, "correct", "all") for b in BUDGETS}
    for arm in ARMS:
        if arm.name == reference:
            continue
        cells = []
        for b in BUDGETS:
            r = paired(_pooled(runs, arm.name, b, "correct", "all"), base[b])
            cells.append(f"{r.difference:+.1f} [{r.low:+.1f}, {r.high:+.1f}] p={r.p_value:.2g}")
        lines.append(f"| {arm.name} | " + " | ".join(cells) + " |")
    return lines


def bins_table(runs: list[Run], budget: int) -> list[str]:
    """Accuracy % at ``budget`` by digit size and contrast bin (uniform arm, pooled)."""
    contrasts = torch.cat([r["scenes"]["contrasts"] for r in runs])
    large = torch.cat([r["scenes"]["large"] for r in runs])
    correct = torch.cat([r["uniform"][budget]["correct"] for r in runs])
    edges = sorted({round(int(c / 0.08) * 0.08, 2) for c in contrasts.tolist()})
    lines = [
        "| size | " + " | ".join(f"{e:.2f}-{e + 0.08:.2f}" for e in edges) + " |",
        "|---|" + "---:|" * len(edges),
    ]
    for name, mask in (("small", ~large), ("large", large)):
        cells = []
        for e in edges:
            pick = mask & (contrasts >= e - 1e-6) & (contrasts < e + 0.08 - 1e-6)
            cells.append(f"{100 * correct[pick].float().mean():.1f} ({int(pick.sum())})")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def _mean_accuracy(runs: list[Run], arm: str, budget: int) -> float:
    return 100 * _pooled(runs, arm, budget, "correct", "all").float().mean().item()


def goals(runs: list[Run]) -> list[str]:
    """The issue's goals, tested on these runs (pooled over seeds, all scenes)."""
    full = _mean_accuracy(runs, "uniform", BUDGETS[-1])
    lines = [
        f"- full detail ({BUDGETS[-1]} tokens) >= {GOAL_FULL:.0f} %: {full:.1f} % -> "
        + ("**met**" if full >= GOAL_FULL else "**failed**")
    ]
    gaps = {
        b: _mean_accuracy(runs, "oracle", b) - _mean_accuracy(runs, "anti_oracle", b)
        for b in BUDGETS
    }
    budget = next((b for b in BUDGETS if gaps[b] >= GOAL_RANGE), None)
    if budget is None:
        lines.append(f"- no budget has oracle - anti-oracle >= {GOAL_RANGE:.0f} points")
        return lines
    frequency = [a.name for a in ARMS if a.kind == "frequency"]
    baselines = [a.name for a in ARMS if a.kind == "baseline"]
    best = max(frequency, key=lambda a: _mean_accuracy(runs, a, budget))
    ours = _pooled(runs, best, budget, "correct", "all")
    gain = paired(ours, _pooled(runs, "uniform", budget, "correct", "all"))
    met = gain.difference >= GOAL_GAIN and gain.p_value < ALPHA
    lines.append(
        f"- smallest budget with oracle - anti-oracle >= {GOAL_RANGE:.0f} points: {budget} "
        f"tokens (gap {gaps[budget]:.1f}); best frequency scorer there: {best} "
        f"({_mean_accuracy(runs, best, budget):.1f} %), {gain.difference:+.1f} points over uniform "
        f"[{gain.low:+.1f}, {gain.high:+.1f}], McNemar p={gain.p_value:.2g} -> "
        + ("**met**" if met else "**failed**")
    )
    worse = []
    for name in baselines:
        r = paired(ours, _pooled(runs, name, budget, "correct", "all"))
        if r.difference < 0 and r.p_value < ALPHA:
            worse.append(f"{name} ({r.difference:+.1f}, p={r.p_value:.2g})")
    lines.append(
        f"- {best} not worse than any baseline at {budget} tokens (paired, p < {ALPHA}): "
        + ("**met**" if not worse else "**failed**: worse than " + ", ".join(worse))
    )
    return lines


def progressive_table(runs: list[Run]) -> list[str]:
    """Accuracy and mean visual tokens per stopping threshold of each ladder arm (seeds pooled),
    the fixed finest budget first, and the goal line."""
    finest = BUDGETS[-1]
    reference = _mean_accuracy(runs, "uniform", finest)
    lines = [
        "| ladder | threshold | accuracy % | small % | large % | mean visual tokens |",
        "|---|---:|---:|---:|---:|---:|",
        f"| fixed ({finest} tokens) | - | {reference:.1f} | "
        f"{_mean_accuracy_subset(runs, 'uniform', finest, 'small'):.1f} | "
        f"{_mean_accuracy_subset(runs, 'uniform', finest, 'large'):.1f} | {finest} |",
    ]
    met = []
    large = torch.cat([r["scenes"]["large"] for r in runs])
    for arm in LADDER_ARMS:
        for threshold in THRESHOLDS:
            outcomes = [stop(r[f"ladder/{arm}"], threshold) for r in runs]
            right = torch.cat([o[0] for o in outcomes]).float()
            tokens = torch.cat([o[1] for o in outcomes]).float().mean().item()
            accuracy = 100 * right.mean().item()
            lines.append(
                f"| {arm} | {threshold} | {accuracy:.1f} | {100 * right[~large].mean():.1f} | "
                f"{100 * right[large].mean():.1f} | {tokens:.1f} |"
            )
            if accuracy >= reference - GOAL_PROGRESSIVE and tokens <= finest / 2:
                met.append(f"{arm} at {threshold} ({accuracy:.1f} %, {tokens:.1f} tokens)")
    lines += [
        "",
        f"- progressive within {GOAL_PROGRESSIVE:.0f} point of the fixed {finest} tokens "
        f"({reference:.1f} %) at <= {finest // 2} mean visual tokens: "
        + ("**met**: " + ", ".join(met) if met else "**failed**"),
    ]
    return lines


def write_report(
    runs: list[Run], calibration: dict[str, list[Any]], meta: dict[str, Any], out: Path
) -> None:
    """``results.md``, ``results.json`` (summary), ``accuracy_vs_tokens.png`` and
    ``allocations.png`` in ``out``."""
    lines = [
        f"Configuration `{meta['config']}`: {meta['test_scenes']} test scenes per variant and "
        f"seed (half small, half large digits), {meta['seeds']} seeds; reader training "
        f"accuracy (last 100 steps) "
        + ", ".join(f"{r['train_accuracy']:.3f}" for r in meta["readers"])
        + ".",
        "",
        "**Crop-oracle check** (seed 0's reader on the ground-truth view of small digits; "
        "contrast drawn from the wide calibration range):",
        "",
        calibration_table(calibration),
        "",
        *gate_lines(meta.get("gate")),
    ]
    summary: dict[str, dict[str, Any]] = {}
    for variant in ("plain", "distractor"):
        chosen = [r for r in runs if r["variant"] == variant]
        if not chosen:
            continue
        lines += [f"### {variant}", "", "**Goals**", "", *goals(chosen), ""]
        for which in ("all", "small", "large"):
            lines += [f"**Accuracy %, {which} digits** (mean ± std over seeds)", ""]
            lines += [*accuracy_table(chosen, which), ""]
        lines += ["**Small digits: hit rate % (accuracy % given hit / given miss)**", ""]
        lines += [*hit_table(chosen), ""]
        lines += ["**Paired against uniform** (all scenes, seeds pooled)", ""]
        lines += [*paired_table(chosen), ""]
        lines += [f"**Full detail ({BUDGETS[-1]} tokens) by size and contrast** (scenes)", ""]
        lines += [*bins_table(chosen, BUDGETS[-1]), ""]
        if all(f"ladder/{arm}" in r for r in chosen for arm in LADDER_ARMS):
            lines += ["**Progressive: the quadtree ladder, stopping when sure**", ""]
            lines += [*progressive_table(chosen), ""]
        summary[variant] = {
            arm.name: {
                which: {b: _mean_accuracy_subset(chosen, arm.name, b, which) for b in BUDGETS}
                for which in ("all", "small", "large")
            }
            for arm in ARMS
        }
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.md").write_text("\n".join(lines))
    (out / "results.json").write_text(json.dumps({"meta": meta, "accuracy": summary}, indent=1))
    plot(summary, out / "accuracy_vs_tokens.png")
    allocation_figure(out / "allocations.png")
    print("\n".join(lines))


def _mean_accuracy_subset(runs: list[Run], arm: str, budget: int, which: str) -> float:
    return 100 * _pooled(runs, arm, budget, "correct", which).float().mean().item()


def plot(summary: dict[str, dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    variants = list(summary)
    figure, axes = plt.subplots(
        1, 2 * len(variants), figsize=(5 * len(variants) * 2, 4), sharey=True
    )
    for i, variant in enumerate(variants):
        for j, which in enumerate(("all", "small")):
            axis = axes[2 * i + j]
            for arm in ARMS:
                values = summary[variant][arm.name][which]
                style = "--" if arm.kind == "control" else "-"
                axis.plot(BUDGETS, [values[b] for b in BUDGETS], style, marker="o", label=arm.name)
            axis.set_title(f"{variant}, {which} digits")
            axis.set_xlabel("visual tokens per image")
            axis.axhline(10, color="grey", lw=0.5)
    axes[0].set_ylabel("accuracy (%)")
    axes[0].legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def leaf_overlay(image: Tensor, visible: list[Tensor]) -> Tensor:
    """``image`` ``(3, H, W)`` with the leaves of ``visible`` (one scene's nodes per depth,
    bool ``(n, n)``; a leaf is a visible node without visible children) tinted and outlined in
    :data:`pyrtok.viz.LEVEL_COLOURS` (red: full resolution, orange: half, green: the coarsest),
    and the area no token covers dimmed.

    Examples:
        >>> visible = [torch.ones(4 << d, 4 << d, dtype=torch.bool) for d in range(3)]
        >>> leaf_overlay(torch.rand(3, 256, 256), visible).shape
        torch.Size([3, 256, 256])
    """
    from pyrtok.viz import LEVEL_COLOURS

    out = image * 0.35
    size = image.shape[-1]
    for d, nodes in enumerate(visible):
        leaves = nodes.clone()
        if d + 1 < len(visible):
            n = nodes.shape[0]
            leaves &= ~visible[d + 1].reshape(n, 2, n, 2).any(3).any(1)
        side = size // nodes.shape[0]
        mask = leaves.repeat_interleave(side, 0).repeat_interleave(side, 1)
        colour = torch.tensor(LEVEL_COLOURS[len(visible) - 1 - d][1])[:, None, None]
        out = torch.where(mask, 0.7 * image + 0.3 * colour, out)
        edge = torch.zeros_like(mask)
        edge[::side], edge[:, ::side] = mask[::side], mask[:, ::side]
        out = torch.where(edge, colour, out)
    return out


def allocation_figure(path: Path, budget: int = 64, count: int = 2) -> None:
    """PNG: small-digit test scenes (rows: ``count`` plain, then ``count`` distractor), each
    arm's tokens at ``budget`` (columns: :data:`arms.ARMS`, :func:`leaf_overlay`), the digit
    boxed in white."""
    from pyrtok.viz import save_png, side_by_side

    from .scenes import scenes

    rows = []
    for variant in ("plain", "distractor"):
        batch = scenes("test", variant, 1000, count, large_share=0.0)
        visible = {arm.name: arm.visible(batch, [budget])[budget] for arm in ARMS}
        for i in range(count):
            image = batch.images[i].float() / 255
            cells = []
            for arm in ARMS:
                overlay = leaf_overlay(image, [v[i] for v in visible[arm.name]])
                top, left, side = (int(v) for v in batch.boxes[i])
                overlay[:, top - 1 : top + side + 1, [left - 1, left + side]] = 1.0
                overlay[:, [top - 1, top + side], left - 1 : left + side + 1] = 1.0
                cells.append(overlay)
            rows.append(side_by_side(cells))
    save_png(torch.cat(rows, dim=1), path)

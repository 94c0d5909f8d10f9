"""Needle v2: one command, resumable, from the crop-oracle check to the paired tables.

Stages (each writes its result under ``--checkpoints`` and is skipped when that file exists):

1. ``reader``: per seed, train the local token reader on freshly rendered training canvases
   (:func:`scenes.canvas`: train split, both variants, 4-10 digits per canvas, a
   ``Config.large_share`` of them large (50 % since the fifth session, was 30 %),
   contrast ``TRAIN_CONTRAST``, glyphs jittered by a random affine map), with hard negatives
   (:func:`reader.training_views`); frozen afterwards. Training keeps its whole state in a
   progress file every 200 steps: stopped anywhere (Ctrl-C, a lost session), the same command
   resumes there and ends with the reader an uninterrupted run gives (on the same device and
   thread count).
2. ``calibrate`` (seed 0's reader, before any allocator): the crop-oracle check -- accuracy on
   the ground-truth digit views of small digits at full, half and quarter resolution, per
   contrast bin of the wide ``CALIBRATION_CONTRAST`` (test photos and glyphs, scene seed 2000,
   never evaluated on).
3. ``rule`` (seed 0's reader, before any test scene): :func:`choose_rule` picks how node
   readings combine, on held-out training scenes: one of the fixed rules or the
   :class:`reader.LearnedRule` fit on other held-out training scenes.
3b. ``gate`` (seed 0's reader, before any test scene): :func:`gate`, its full-detail accuracy
   on calibration scenes against the required :data:`GATE`.
4. ``evaluate``: per seed and variant, test scenes (seed ``1000 + seed``, half small, half
   large), the reader run once on all 336 nodes of each, then every arm of
   :data:`arms.ARMS` at every budget of :data:`arms.BUDGETS`: per-scene correctness and hit.
5. ``report``: tables with paired tests, the goal checks, the plot and the allocation figure.

Run (the three-seed tables in docs/benchmarks.md: reduced configuration with width-48 float32
readers, which trained three at once on the 2-core CPU in 77 min; the gate took 7 min and the
three seeds' evaluations 9 min at once. The configuration now trains width-96 bfloat16 readers:
seed 0's took 97-104 min on one core with the other core busy, its rule choice and gate
8-12 min; one process, sequentially, ~4 h est.):
    nice -n 5 python benchmarks/needle_v2/run.py --config reduced
    # or: --seed S --until reader (S = 0, 1, 2 in parallel), --seeds 1 --until gate,
    #     --seed S (evaluate, S in parallel), then the line above to report
Full configuration (width 96, twice the training; seed 0's reader took 94 min, mostly on two
threads of a quiet machine, ~2.5x that on one busy core, and its crop-oracle check, rule choice and
gate 11 min; all three seeds, one process, ~5-6 h est.; minutes with --device cuda):
    python benchmarks/needle_v2/run.py --config full
``--config long`` trains twice as long again (seed 0's reader: 153 min, steps 0-2400 on one
busy core, the rest on two threads, ~15 min of it beside CI; its check, rule choice and gate
13 min; all three seeds, one process, ~8-9 h est.):
    python benchmarks/needle_v2/run.py --config long
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from needle_v2.arms import ARMS, BUDGETS
from needle_v2.controls import hits
from needle_v2.progressive import LADDER_ARMS, ladder_outcomes
from needle_v2.reader import (
    DEPTHS,
    NONE,
    RULES,
    TUNE_SHARES,
    LearnedRule,
    Reader,
    Rule,
    Views,
    answer,
    chunks_rendered,
    contains,
    fit_rule,
    node_labels,
    node_views,
    read_nodes,
    train_reader,
    training_views,
)
from needle_v2.report import SIZES, calibration_table, size_mask, write_report
from needle_v2.scenes import (
    CALIBRATION_CONTRAST,
    TRAIN_LARGE_SHARE,
    VARIANTS,
    SceneBatch,
    canvases,
    scenes,
)


@dataclass(frozen=True)
class Config:
    """Sizes of one run."""

    width: int  # the reader's (Reader(width, bf16))
    bf16: bool  # the reader computes in bfloat16 (autocast), float32 otherwise
    steps: int
    batch: int
    lr: float
    tune_steps: int  # second phase: more no-digit views per batch (reader.TUNE_SHARES)
    tune_lr: float
    canvases: int  # training canvases per rendered chunk (a new chunk every REFRESH steps)
    others: int  # other (no digit) views per training canvas, plus as many hard negatives
    calibration_scenes: int  # per variant
    test_scenes: int  # per variant and seed
    large_share: float = TRAIN_LARGE_SHARE  # chance that a training canvas's digit is large


CONFIGS = {
    "full": Config(96, True, 8000, 256, 3e-3, 3000, 1e-3, 32, 24, 2000, 1000, large_share=0.5),
    # twice the full training: the full reader's gate was 3-4 points above the reduced one's
    "long": Config(96, True, 16000, 256, 3e-3, 6000, 1e-3, 32, 24, 2000, 1000, large_share=0.5),
    "reduced": Config(96, True, 4000, 256, 3e-3, 1500, 1e-3, 32, 24, 600, 400, large_share=0.5),
    "smoke": Config(8, True, 4, 32, 1e-3, 2, 1e-3, 2, 4, 8, 8),
}


def _renderer(config: Config, seed: int) -> tuple[Callable[[int, Reader], Views], torch.Generator]:
    """Chunk ``c`` of the reader's training views: ``config.canvases`` new training canvases
    (variants alternating by chunk), each digit's views, its fragments, ``config.others`` random
    views without a digit and as many that the reader now finds most digit-like; and the
    generator those views are drawn with (its state is part of a training run's progress)."""
    generator = torch.Generator().manual_seed(seed)

    def render(chunk: int, reader: Reader) -> Views:
        variant = VARIANTS[chunk % len(VARIANTS)]
        start = chunk // len(VARIANTS) * config.canvases
        batch = canvases("train", variant, seed, start, config.canvases, config.large_share)
        device = next(reader.parameters()).device

        @torch.no_grad()
        def suspicion(views: torch.Tensor) -> torch.Tensor:
            digit = [1 - reader(v.to(device)).softmax(-1)[:, NONE] for v in views.split(4096)]
            return torch.cat(digit).cpu()

        return training_views(batch, config.others, generator, suspicion)

    return render, generator


def reader_for(seed: int, config: Config, folder: Path, device: str) -> Reader:
    """Stage 1: the frozen reader of ``seed`` (trained unless its checkpoint exists). Each
    training phase keeps its progress in ``reader-seed{seed}-first.progress.pt`` /
    ``reader-seed{seed}.progress.pt`` (every 200 steps): a run stopped at any point resumes
    there and ends with the reader an uninterrupted run gives."""
    path = folder / f"reader-seed{seed}.pt"
    torch.manual_seed(seed)
    reader = Reader(config.width, config.bf16).to(device)
    if path.exists():
        reader.load_state_dict(torch.load(path, map_location=device, weights_only=True))
        return reader.eval()
    folder.mkdir(parents=True, exist_ok=True)
    first = path.with_name(f"reader-seed{seed}-first.pt")
    progress = [path.with_name(f"reader-seed{seed}{p}.progress.pt") for p in ("-first", "")]
    render, generator = _renderer(config, seed)
    chunks = chunks_rendered(config.steps)
    if first.exists() and not progress[0].exists():  # from before progress files: phase 2
        reader.load_state_dict(torch.load(first, map_location=device, weights_only=True))
    else:
        train_reader(
            reader,
            render,
            config.steps,
            config.batch,
            config.lr,
            seed,
            progress=progress[0],
            generators=[generator],
        )
        torch.save(reader.state_dict(), first)
    accuracy = train_reader(
        reader,
        lambda chunk, now: render(chunks + chunk, now),
        config.tune_steps,
        config.batch,
        config.tune_lr,
        seed + 1,
        shares=TUNE_SHARES,
        progress=progress[1],
        generators=[generator],
    )
    torch.save(reader.state_dict(), path)
    seconds = 0.0
    for done in progress:
        if done.exists():
            seconds += torch.load(done, weights_only=True)["seconds"]
            done.unlink()
    chunks += chunks_rendered(config.tune_steps)
    record = {
        "train_accuracy": accuracy,
        "canvases": chunks * config.canvases,
        "seconds": seconds,  # training time, summed over every run that resumed it
    }
    path.with_suffix(".json").write_text(json.dumps(record))
    print(f"reader seed {seed}: {record}", flush=True)
    return reader.eval()


def _load(path: Path) -> dict[str, Any]:
    record: dict[str, Any] = json.loads(path.read_text())
    return record


@torch.no_grad()
def calibrate(reader: Reader, config: Config, folder: Path, device: str) -> dict[str, Any]:
    """Stage 2: the crop-oracle check (small digits only): per scene, whether the reader's digit
    argmax on the digit's own view is right at full (depth 2), half (1) and quarter (0)."""
    path = folder / "calibration.json"
    if path.exists():
        return _load(path)
    rows: dict[str, list[Any]] = {
        "contrast": [],
        "full": [],
        "half": [],
        "quarter": [],
        "variant": [],
    }
    for variant in VARIANTS:
        batch = scenes("test", variant, 2000, config.calibration_scenes, 0.0, CALIBRATION_CONTRAST)
        for start in range(0, len(batch), 64):
            part = slice(start, start + 64)
            views = node_views(batch.images[part].to(device))
            for d, name in ((2, "full"), (1, "half"), (0, "quarter")):
                inside, _ = contains(batch.boxes[part].to(device), d)
                digit_view = views[d][inside]
                guess = reader(digit_view)[:, :NONE].argmax(-1).cpu()
                rows[name] += (guess == batch.labels[part]).tolist()
        rows["contrast"] += batch.contrasts.tolist()
        rows["variant"] += [variant] * len(batch)
    path.write_text(json.dumps(rows))
    return rows


def _learned_rule(reader: Reader, config: Config) -> LearnedRule:
    """:func:`reader.fit_rule` on held-out training scenes of their own (scene seed 11000,
    ``config.calibration_scenes // 2`` per variant), not those the rules are compared on."""
    probabilities: list[list[torch.Tensor]] = [[] for _ in range(DEPTHS)]
    labels: list[list[torch.Tensor]] = [[] for _ in range(DEPTHS)]
    for variant in VARIANTS:
        batch = scenes("train", variant, 11_000, config.calibration_scenes // 2)
        for d, (p, held) in enumerate(
            zip(read_nodes(reader, batch.images), node_labels(batch), strict=True)
        ):
            probabilities[d].append(p)
            labels[d].append(held)
    return fit_rule([torch.cat(p) for p in probabilities], [torch.cat(h) for h in labels])


def rule_of(record: dict[str, Any]) -> Rule:
    """The rule a ``rule.json`` record chose (``"learned"``: its fitted weights)."""
    return LearnedRule(tuple(record["learned"])) if record["rule"] == "learned" else record["rule"]


@torch.no_grad()
def choose_rule(reader: Reader, config: Config, folder: Path) -> dict[str, Any]:
    """Stage 2b (seed 0's reader, before any test scene is read): the combination rule of
    :data:`reader.RULES`, or the :class:`reader.LearnedRule` fit by :func:`_learned_rule`, with
    the best mean accuracy of the uniform arm over all budgets, on held-out *training* scenes
    (train split, scene seed 10000, half large digits, the test contrast); returns ``{"rule",
    "accuracy": {rule: {budget: %}}, "learned": weights}`` (:func:`rule_of` reads it)."""
    path = folder / "rule.json"
    if path.exists():
        return _load(path)
    learned = _learned_rule(reader, config)
    rules: dict[str, Rule] = {**{r: r for r in RULES}, "learned": learned}
    uniform = next(arm for arm in ARMS if arm.name == "uniform")
    accuracy: dict[str, dict[int, list[bool]]] = {r: {b: [] for b in BUDGETS} for r in rules}
    for variant in VARIANTS:
        batch = scenes("train", variant, 10_000, config.calibration_scenes // 2)
        probabilities = read_nodes(reader, batch.images)
        for budget, visible in uniform.visible(batch, BUDGETS).items():
            for name, rule in rules.items():
                right = answer(probabilities, visible, rule) == batch.labels
                accuracy[name][budget] += right.tolist()
    table = {r: {b: 100 * sum(v) / len(v) for b, v in per.items()} for r, per in accuracy.items()}
    best = max(table, key=lambda r: sum(table[r].values()))
    record = {"rule": best, "accuracy": table, "learned": list(learned.weights)}
    path.write_text(json.dumps(record, indent=1))
    print(f"combination rule: {best} ({json.dumps(table)})", flush=True)
    return record


GATE = 90.0
"""Full-detail accuracy (%) the reader must reach before comparisons count (issue #16)."""


@torch.no_grad()
def gate(reader: Reader, rule: Rule, config: Config, folder: Path) -> dict[str, Any]:
    """Stage 2c, the reader's gate: its full-detail accuracy (%, every node visible, ``rule``)
    per variant and digit size on calibration scenes (test split, scene seed 2000: test photos,
    never evaluated; test contrast, half large digits), before it reads any test scene."""
    path = folder / "gate.json"
    if path.exists():
        return _load(path)
    record: dict[str, Any] = {"required": GATE}
    for variant in VARIANTS:
        batch = scenes("test", variant, 2000, config.calibration_scenes)
        probabilities = read_nodes(reader, batch.images)
        everything = [torch.ones(p.shape[:3], dtype=torch.bool) for p in probabilities]
        right = (answer(probabilities, everything, rule) == batch.labels).float()
        record[variant] = {
            which: 100 * right[size_mask(batch.large, which)].mean().item() for which in SIZES
        }
    path.write_text(json.dumps(record, indent=1))
    print(f"gate (full detail on calibration scenes): {json.dumps(record)}", flush=True)
    return record


def evaluate(
    seed: int, variant: str, reader: Reader, rule: Rule, config: Config, folder: Path
) -> dict[str, object]:
    """Stage 3 for one (seed, variant): per-scene outcomes of every arm at every budget."""
    path = folder / f"outcomes-{variant}-seed{seed}.pt"
    done: dict[str, object] = torch.load(path, weights_only=False) if path.exists() else {}
    batch: SceneBatch | None = None
    probabilities: list[torch.Tensor] | None = None
    for arm in ARMS:
        ladder = f"ladder/{arm.name}"
        wants_ladder = arm.name in LADDER_ARMS and ladder not in done
        if arm.name in done and not wants_ladder:
            continue
        if batch is None:
            batch = scenes("test", variant, 1000 + seed, config.test_scenes)
            start = time.perf_counter()
            probabilities = read_nodes(reader, batch.images)
            print(f"read {variant} seed {seed}: {time.perf_counter() - start:.1f} s", flush=True)
            done["scenes"] = {
                "labels": batch.labels,
                "large": batch.large,
                "contrasts": batch.contrasts,
            }
        assert probabilities is not None
        visible = arm.visible(batch, BUDGETS)
        if arm.name not in done:  # present when only its ladder is missing
            done[arm.name] = {
                b: {
                    "correct": answer(probabilities, v, rule) == batch.labels,
                    "hit": hits(v, batch.boxes),
                }
                for b, v in visible.items()
            }
        if wants_ladder:
            done[ladder] = ladder_outcomes(probabilities, visible, batch.labels, rule)
        torch.save(done, path)
    return done


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--config", choices=list(CONFIGS), default="reduced")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("docs/needle_v2"))
    parser.add_argument("--checkpoints", type=Path, default=Path(".needle/v2"))
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument(
        "--until",
        choices=("reader", "calibrate", "gate", "report"),
        default="report",
        help="stop after the reader(s), after the crop-oracle check (how CONTRAST was fixed "
        "before any allocator ran), or after the gate (seed 0's full-detail accuracy on "
        "calibration scenes, before any test scene is read)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        help="run seed SEED only: its reader, then (with seed 0's reader and the rule it picks) "
        "its evaluation; for seeds in parallel processes, a run without --seed then reports",
    )
    args = parser.parse_args(argv)
    config = CONFIGS[args.config]
    folder = args.checkpoints / args.config
    started = time.perf_counter()
    if args.seed is not None:
        reader = reader_for(args.seed, config, folder, args.device)
        if args.until == "reader":
            return
        first = reader_for(0, config, folder, args.device)
        rule = choose_rule(first, config, folder)
        gate(first, rule_of(rule), config, folder)
        for variant in VARIANTS:
            evaluate(args.seed, variant, reader, rule_of(rule), config, folder)
        return
    readers = [reader_for(s, config, folder, args.device) for s in range(args.seeds)]
    if args.until == "reader":
        return
    calibration = calibrate(readers[0], config, folder, args.device)
    if args.until == "calibrate":
        print(calibration_table(calibration))
        return
    rule = choose_rule(readers[0], config, folder)
    passed = gate(readers[0], rule_of(rule), config, folder)
    if args.until == "gate":
        return
    runs = [
        {"seed": s, "variant": v, **evaluate(s, v, readers[s], rule_of(rule), config, folder)}
        for s in range(args.seeds)
        for v in VARIANTS
    ]
    args.out.mkdir(parents=True, exist_ok=True)
    meta = {"config": args.config, **asdict(config), "seeds": args.seeds}
    meta |= {"rule": rule["rule"], "rule_validation": rule["accuracy"], "gate": passed}
    meta["readers"] = [
        json.loads((folder / f"reader-seed{s}.json").read_text())
        for s in range(args.seeds)
        if (folder / f"reader-seed{s}.json").exists()
    ]
    write_report(runs, calibration, meta, args.out)
    print(f"done in {time.perf_counter() - started:.0f} s; tables in {args.out / 'results.md'}")


if __name__ == "__main__":
    main()

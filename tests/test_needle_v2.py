"""Needle v2 (benchmarks/needle_v2): scene invariants, the reader's lookup, hit rates, the
oracle controls, paired statistics, and the one command at smoke size."""

from __future__ import annotations

import itertools
import json
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("skimage")
pytest.importorskip("sklearn")
pytest.importorskip("scipy")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from needle.scenes import _crop, _distract, crop_of
from needle_v2 import arms, controls, leaves, reader, run, scenes, stats

from pyrtok.allocation import allocate


@pytest.fixture(scope="module")
def batch() -> scenes.SceneBatch:
    return scenes.scenes("test", "distractor", seed=3, count=12)


def test_scenes_are_deterministic_and_alternate_sizes(batch: scenes.SceneBatch) -> None:
    again = scenes.scenes("test", "distractor", seed=3, count=12)
    assert torch.equal(batch.images, again.images)
    assert torch.equal(batch.boxes, again.boxes)
    assert batch.large.tolist() == [False, True] * 6
    other = scenes.scenes("test", "distractor", seed=4, count=1)
    assert not torch.equal(batch.images[:1], other.images)


def test_small_digits_fill_one_finest_patch_and_large_ones_one_cell(
    batch: scenes.SceneBatch,
) -> None:
    for (top, left, side), large in zip(batch.boxes.tolist(), batch.large.tolist(), strict=True):
        low, high = scenes.LARGE if large else scenes.SMALL
        tile = scenes.MAX_PATCH if large else scenes.PATCH
        assert low <= side <= high
        assert top // tile == (top + side - 1) // tile
        assert left // tile == (left + side - 1) // tile
    assert scenes.CONTRAST[0] <= float(batch.contrasts.min())
    assert float(batch.contrasts.max()) <= scenes.CONTRAST[1]


@pytest.mark.parametrize("index", range(6))
def test_distractors_never_cover_the_digit(index: int) -> None:
    rng = scenes._generator("train", "distractor", 0, index)
    image = _crop(rng, "train")
    _, box, _ = scenes._paste_digit(rng, image, "train", index % 2 == 1, scenes.CONTRAST)
    before = image.copy()
    margin = scenes.Box(box.top - scenes.MARGIN, box.left - scenes.MARGIN, box.side + 4)
    _distract(rng, image, margin)
    region = np.s_[
        max(0, margin.top) : margin.top + margin.side,
        max(0, margin.left) : margin.left + margin.side,
    ]
    assert (image[region] == before[region]).all()
    assert (image != before).any()  # the clutter is there, elsewhere
    assert scenes.scene("train", "distractor", 0, index).box == box


def test_contains_and_hits_on_a_hand_example() -> None:
    boxes = torch.tensor([[100, 36, 10], [120, 60, 8]])  # the 2nd straddles cells 0 and 1
    inside, overlap = reader.contains(boxes, 2)
    assert inside[0].nonzero().tolist() == [[6, 2]]
    assert not inside[1].any()
    assert overlap[1].nonzero().tolist() == [[7, 3], [7, 4]]
    visible = [torch.zeros(2, 4 << d, 4 << d, dtype=torch.bool) for d in range(3)]
    visible[2][0, 6, 3] = visible[2][1, 7, 4] = True  # image 0: next to the digit, 1: on it
    assert controls.hits(visible, boxes).tolist() == [False, True]
    visible[2][0, 6, 2] = True
    assert controls.hits(visible, boxes).tolist() == [True, True]


def test_oracle_splits_the_digit_first_and_anti_oracle_last(batch: scenes.SceneBatch) -> None:
    images = batch.images.float() / 255
    small = ~batch.large
    two = allocate(images, 16 + 3 * 2, 16, 64, "greedy", controls.oracle(batch.boxes))
    assert controls.hits(two.nodes(), batch.boxes)[small].all()
    one = allocate(images, 16 + 3, 16, 64, "greedy", controls.oracle(batch.boxes))
    assert not controls.hits(one.nodes(), batch.boxes).any()
    last = allocate(images, 16 + 3 * 79, 16, 64, "greedy", controls.anti_oracle(batch.boxes))
    assert not controls.hits(last.nodes(), batch.boxes)[small].any()
    assert int(last.lengths[0]) == 16 + 3 * 79


def test_answer_reads_only_visible_nodes(batch: scenes.SceneBatch) -> None:
    """A reader that is sure of the digit on the node that holds it, at full resolution only for
    small digits, answers every scene at full detail and only the large ones from the cells."""
    small = ~batch.large
    perfect = []
    for d, labels in enumerate(reader.node_labels(batch)):
        probs = torch.nn.functional.one_hot(labels, reader.NONE + 1)[..., : reader.NONE].float()
        if d < 2:
            probs[small] = 0
        perfect.append(probs)
    every = [torch.ones(len(batch), 4 << d, 4 << d, dtype=torch.bool) for d in range(3)]
    assert torch.equal(reader.answer(perfect, every), batch.labels)
    coarse = [every[0], ~every[1], ~every[2]]
    answers = reader.answer(perfect, coarse)
    assert torch.equal(answers[batch.large], batch.labels[batch.large])
    assert (answers[small] == 0).all()  # nothing visible: every probability 0, argmax 0


def test_node_views_are_the_tokens_the_allocation_reads(batch: scenes.SceneBatch) -> None:
    from pyrtok.allocation import tokenize

    images = batch.images[:2].float() / 255
    allocation = allocate(images, 16 + 3 * 5, 16, 64)
    tokens = tokenize(images, allocation).tokens
    views = reader.node_views(batch.images[:2])
    for i, (y, x, size) in enumerate(allocation.boxes[0].tolist()):
        depth = 2 - (size // 16).bit_length() + 1
        view = views[depth][0, y // size, x // size]
        assert torch.allclose(view.flatten(), tokens[0, i], atol=1e-6)


def _tokens(visible: list[torch.Tensor]) -> torch.Tensor:
    """Leaves per scene: visible nodes without visible children."""
    count = visible[-1].flatten(1).sum(1)
    for coarse, fine in itertools.pairwise(visible):
        split = fine.unflatten(1, (-1, 2)).unflatten(3, (-1, 2)).any(4).any(2)
        count += (coarse & ~split).flatten(1).sum(1)
    return count


def test_every_budget_is_met_exactly_by_every_arm(batch: scenes.SceneBatch) -> None:
    """Quadtree and selection arms send exactly the budget; downsample the largest uniform grid
    within it; every visible set is closed (a visible node's parent is visible, except for
    selection arms, whose coarse nodes are visible exactly when all their tokens are kept)."""
    budgets = [16, 28, 64, 208, 256]
    for arm in arms.ARMS:
        visible = arm.visible(batch, budgets)
        for budget, nodes in visible.items():
            tokens = _tokens(nodes)
            if isinstance(arm, arms.DownsampleArm):
                expected = {16: 16, 28: 16, 64: 64, 208: 64, 256: 256}[budget]
                assert (tokens == expected).all(), arm.name
            else:
                assert (tokens == budget).all(), (arm.name, budget, tokens)
            if isinstance(arm, arms.SelectionArm):
                assert (nodes[-1].flatten(1).sum(1) == budget).all()
                assert all(
                    torch.equal(m, c)
                    for m, c in zip(nodes, arms.finest_closure(nodes[-1]), strict=True)
                )


def test_random_arm_is_seeded_and_draws_per_scene(batch: scenes.SceneBatch) -> None:
    random = next(a for a in arms.ARMS if a.name == "random")
    keep = random.visible(batch, [40])[40][-1]
    assert torch.equal(keep, random.visible(batch, [40])[40][-1])
    assert not torch.equal(keep[0], keep[1])


def test_scene_batch_slices_every_field(batch: scenes.SceneBatch) -> None:
    part = batch[3:5]
    assert len(part) == 2
    assert torch.equal(part.images, batch.images[3:5])
    assert part.large.tolist() == [True, False]


def test_combination_rules_on_a_large_digit_with_a_confident_fragment() -> None:
    """The cell reads 7 (0.8); one fragment reads 1 confidently (0.9), two others lean to 7
    (0.3): only the sum over nodes reads 7."""
    cells = torch.zeros(1, 1, 1, 10)
    cells[0, 0, 0, 7] = 0.8
    fragments = torch.zeros(1, 2, 2, 10)
    fragments[0, 0, 0, 1] = 0.9
    fragments[0, 1, 0, 7] = fragments[0, 1, 1, 7] = 0.3
    every = [torch.ones(1, 1, 1, dtype=torch.bool), torch.ones(1, 2, 2, dtype=torch.bool)]
    read = {rule: reader.answer([cells, fragments], every, rule).item() for rule in reader.RULES}
    assert read == {"max": 1, "sum": 7, "confident": 1, "surest": 1}
    with pytest.raises(ValueError, match="rule: expected one of"):
        reader.answer([cells, fragments], every, "mean")


def test_learned_rule_learns_that_a_digit_is_read_by_its_parent_too() -> None:
    """Per scene the digit's full-resolution node reads it (0.6) and so does its parent (0.5);
    elsewhere a full-resolution node reads another digit surer (0.8) under a parent that
    reads nothing: ``max`` answers the impostor, the rule fit on these scenes the digit."""
    generator = torch.Generator().manual_seed(0)
    count = 64
    p = [torch.full((count, 4 << d, 4 << d, 10), 0.001) for d in range(3)]
    held = [torch.full((count, 4 << d, 4 << d), reader.NONE) for d in range(3)]
    digits = torch.randint(10, (count,), generator=generator)
    for i, digit in enumerate(digits.tolist()):
        p[2][i, 2, 2, digit], p[1][i, 1, 1, digit] = 0.6, 0.5
        held[2][i, 2, 2] = held[1][i, 1, 1] = held[0][i, 0, 0] = digit
        p[2][i, 12, 12, (digit + 1) % 10] = 0.8
    every = [torch.ones(q.shape[:3], dtype=torch.bool) for q in p]
    assert not bool((reader.answer(p, every, "max") == digits).any())
    rule = reader.fit_rule(p, held)
    assert torch.equal(reader.answer(p, every, rule), digits)
    assert rule.weights[reader.FEATURES.index("parent log p")] > 0
    assert run.rule_of({"rule": "learned", "learned": list(rule.weights)}) == rule
    assert run.rule_of({"rule": "max", "learned": list(rule.weights)}) == "max"


def test_paired_statistics_on_a_hand_example() -> None:
    a = torch.tensor([True] * 6 + [False] * 4)
    b = torch.tensor([True] * 3 + [False] * 6 + [True])
    r = stats.paired(a, b)
    assert (r.a_only, r.b_only) == (3, 1)
    assert r.difference == pytest.approx(20.0)
    assert r.p_value == pytest.approx(0.625)  # exact binomial, 3 of 4 discordant
    assert r.low <= r.difference <= r.high
    with pytest.raises(ValueError, match="two \\(N,\\) bool tensors"):
        stats.paired(a, b[:5])


@pytest.mark.slow
def test_one_command_at_smoke_size(tmp_path: Path) -> None:
    run.main(
        [
            "--config",
            "smoke",
            "--seeds",
            "1",
            "--out",
            str(tmp_path / "out"),
            "--checkpoints",
            str(tmp_path / "ck"),
        ]
    )
    summary = json.loads((tmp_path / "out" / "results.json").read_text())
    assert set(summary["accuracy"]["plain"]) == {a.name for a in arms.ARMS}
    assert (tmp_path / "out" / "accuracy_vs_tokens.png").stat().st_size > 0
    gate = summary["meta"]["gate"]
    assert gate["required"] == run.GATE
    assert all(0 <= gate[v][w] <= 100 for v in scenes.VARIANTS for w in ("all", "small", "large"))
    assert "**Gate**" in (tmp_path / "out" / "results.md").read_text()


def test_dead_leaves_radii_follow_the_power_law_and_images_are_pure() -> None:
    """Leaf radii have density ~ r**-3 on ``RADIUS`` (their CDF at three radii matches the
    closed form), and a background is a pure function of its generator."""
    radii = leaves._radii(np.random.default_rng(0), 200_000)
    low, high = leaves.RADIUS
    assert low <= radii.min()
    assert radii.max() <= high
    for r in (3.0, 6.0, 24.0):
        expected = (low**-2 - r**-2) / (low**-2 - high**-2)
        assert abs((radii <= r).mean() - expected) < 0.005
    first, again = (leaves.dead_leaves(np.random.default_rng(7), 32) for _ in range(2))
    assert np.array_equal(first, again)
    assert not np.array_equal(first, leaves.dead_leaves(np.random.default_rng(8), 32))


def test_glyph_jitter_keeps_the_glyph_and_its_patch() -> None:
    """Jittered training scenes draw the same glyph at the same size (then the map and the
    position from the same generator), still inside one finest patch, with its ink there."""
    for index in (0, 2, 4):
        plain = scenes.scene("train", "plain", 0, index)
        jittered = scenes.scene("train", "plain", 0, index, jitter=True)
        assert (plain.label, plain.box.side) == (jittered.label, jittered.box.side)
        top, left, side = jittered.box.top, jittered.box.left, jittered.box.side
        assert top // 16 == (top + side - 1) // 16
        assert left // 16 == (left + side - 1) // 16
        assert not np.array_equal(plain.image, jittered.image)


@pytest.mark.parametrize("variant", scenes.VARIANTS)
def test_training_canvases_hold_one_digit_per_cell_and_keep_clutter_off(variant: str) -> None:
    """Every digit of a canvas sits in its own cell (inside one finest patch when small), the
    node labels find each digit whole on exactly its nodes, and the clutter leaves every digit's
    margin untouched (the canvas without clutter has the same pixels there)."""
    batch = scenes.canvases("train", variant, seed=0, start=0, count=4)
    present = batch.labels >= 0
    assert ((present.sum(1) >= scenes.CANVAS_DIGITS[0]) & (present.sum(1) <= 10)).all()
    labels = reader.node_labels(batch)
    for row in range(4):
        slots = present[row].nonzero().flatten().tolist()
        cells = labels[0][row].flatten()
        assert cells[slots].tolist() == batch.labels[row, slots].tolist()
        assert (cells[[s for s in range(16) if s not in slots]] == reader.NONE).all()
        small = [s for s in slots if int(batch.boxes[row, s, 2]) <= scenes.SMALL[1]]
        assert int((labels[2][row] != reader.NONE).sum()) == len(small)
    if variant == "distractor":
        plain, placed = scenes.canvas("train", "distractor", 0, 0)
        rng = scenes._generator("train", "distractor", 0, 0, "/canvas")
        clean = scenes._background(rng, "train")
        count = int(rng.integers(scenes.CANVAS_DIGITS[0], scenes.CANVAS_DIGITS[1] + 1))
        for flat in rng.permutation(16)[:count]:
            large = bool(rng.random() < 0.3)
            scenes._paste_digit(
                rng, clean, "train", large, scenes.TRAIN_CONTRAST, True, (flat // 4, flat % 4)
            )
        assert not np.array_equal(clean, plain)  # the clutter is there
        for _, box in placed:
            m = scenes.MARGIN
            region = np.s_[
                max(0, box.top - m) : box.top + box.side + m,
                max(0, box.left - m) : box.left + box.side + m,
            ]
            assert np.array_equal(clean[region], plain[region])


@pytest.mark.parametrize("large_share", [0.0, 1.0])
def test_canvases_draw_large_digits_at_the_given_share(large_share: float) -> None:
    batch = scenes.canvases("train", "plain", seed=2, start=0, count=3, large_share=large_share)
    sides = batch.boxes[batch.labels >= 0][:, 2]
    low, high = scenes.LARGE if large_share else scenes.SMALL
    assert int(sides.min()) >= low
    assert int(sides.max()) <= high


def test_reader_canvases_draw_on_more_photos_none_of_them_a_test_photo(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Training canvases crop v1's training photos plus READER_PHOTOS (test scenes keep their
    own photos), and no photo of that pool equals a test photo at any scale."""
    pool = scenes.reader_photos()
    train = scenes.photos("train")
    assert len(pool) == len(train) + len(scenes.READER_PHOTOS)
    assert all(p is t for p, t in zip(pool, train, strict=False))
    test = [image for scales in scenes.photos("test") for image in scales]
    for image in (image for scales in pool for image in scales):
        assert not any(t.shape == image.shape and np.allclose(t, image) for t in test)
    pools = []

    def recording(rng: np.random.Generator, photos: tuple[list[np.ndarray], ...]) -> np.ndarray:
        pools.append(photos)
        return crop_of(rng, photos)

    monkeypatch.setattr(scenes, "crop_of", recording)
    for split in scenes.SPLITS:
        for index in range(6):
            rng = scenes._generator(split, "plain", 0, index, "/canvas")
            assert scenes._background(rng, split).shape == (scenes.SIZE, scenes.SIZE, 3)
    assert pools[0] is pool
    assert pools[-1] is scenes.photos("test")
    assert {id(p) for p in pools} == {id(pool), id(scenes.photos("test"))}


def test_bf16_reader_matches_its_float32_twin_and_trains() -> None:
    """The bfloat16 reader computes what the same weights compute in float32, to bfloat16's
    precision, returns float32 logits, and its gradients reach every parameter."""
    torch.manual_seed(0)
    exact = reader.Reader(16).eval()
    fast = reader.Reader(16, bf16=True).eval()
    fast.load_state_dict(exact.state_dict())
    views = torch.rand(64, 3, 16, 16)
    with torch.no_grad():
        want, got = exact(views), fast(views)
    assert got.dtype == torch.float32
    assert not torch.equal(got, want)  # it did compute in bfloat16
    torch.testing.assert_close(got.softmax(-1), want.softmax(-1), atol=0.02, rtol=0)
    assert (got.argmax(-1) == want.argmax(-1)).float().mean() >= 0.9
    fast.train()
    torch.nn.functional.cross_entropy(fast(views), torch.randint(11, (64,))).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in fast.parameters())


def _interrupted(calls: int) -> Callable[..., object]:
    """A stand-in for ``render`` that raises on its ``calls``-th call (as a killed run stops)."""
    count = itertools.count(1)

    def check(*_: object) -> None:
        if next(count) == calls:
            raise KeyboardInterrupt

    return check


@pytest.mark.parametrize("stop_at", [5, 6])  # between two refreshes; at a refresh
def test_reader_training_resumes_bit_for_bit(tmp_path: Path, stop_at: int) -> None:
    """A training run stopped while rendering chunk ``stop_at`` and run again from its progress
    file ends with the weights and accuracy of a run never stopped; run once more, it only
    restores them (it renders nothing)."""

    def trained(progress: Path | None, stop: Callable[..., object]) -> tuple[reader.Reader, float]:
        views = torch.Generator().manual_seed(5)

        def render(chunk: int, now: reader.Reader) -> reader.Views:
            stop(chunk)
            kinds = torch.arange(12) % 3
            digits = torch.randint(10, (12,), generator=views)
            labels = torch.where(kinds == reader.DIGIT, digits, reader.NONE)
            return torch.rand(12, 3, 16, 16, generator=views), labels, kinds

        torch.manual_seed(0)
        model = reader.Reader(4)
        accuracy = reader.train_reader(
            model, render, 30, 8, 1e-3, 0, 4, 2, progress=progress, every=5, generators=[views]
        )
        return model, accuracy

    want, want_accuracy = trained(None, lambda _: None)
    path = tmp_path / "progress.pt"
    with pytest.raises(KeyboardInterrupt):
        trained(path, _interrupted(stop_at + 1))  # chunk c is render call c + 1
    rendered_at = 4 * (stop_at - 1)  # chunks 0, 1 first, then one every 4 steps
    stopped = torch.load(path, weights_only=True)
    assert stopped["step"] == rendered_at // 5 * 5
    for finished in (False, True):  # resume, then restore the finished run
        got, accuracy = trained(path, _interrupted(1) if finished else lambda _: None)
        assert accuracy == want_accuracy
        for name, value in want.state_dict().items():
            assert torch.equal(got.state_dict()[name], value), name
        assert torch.load(path, weights_only=True)["seconds"] > stopped["seconds"] > 0


def test_reader_for_resumes_across_its_two_phases(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The two-phase reader of a run killed early in its second phase (before that phase saved
    progress) is the reader of a run never killed; the progress files are gone afterwards."""
    config = run.CONFIGS["smoke"]
    want = run.reader_for(0, config, tmp_path / "whole", "cpu")
    render = scenes.canvases
    stop = _interrupted(reader.chunks_rendered(config.steps) + 2)

    def killed(*args: object, **kwargs: object) -> scenes.CanvasBatch:
        stop()
        return render(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(run, "canvases", killed)
    with pytest.raises(KeyboardInterrupt):
        run.reader_for(0, config, tmp_path / "killed", "cpu")
    assert (tmp_path / "killed" / "reader-seed0-first.progress.pt").exists()
    assert not (tmp_path / "killed" / "reader-seed0.progress.pt").exists()
    monkeypatch.setattr(run, "canvases", render)
    got = run.reader_for(0, config, tmp_path / "killed", "cpu")
    for name, value in want.state_dict().items():
        assert torch.equal(got.state_dict()[name], value), name
    assert not list((tmp_path / "killed").glob("*.progress.pt"))
    assert json.loads((tmp_path / "killed" / "reader-seed0.json").read_text())["seconds"] > 0


def test_hard_negatives_are_the_most_suspicious_other_views() -> None:
    """With a suspicion score, every digit and fragment view is kept, and of four times
    ``others`` candidates a random quarter and the quarter the score ranks highest among the
    rest."""
    batch = scenes.canvases("train", "plain", seed=1, start=0, count=2)

    def brightness(views: torch.Tensor) -> torch.Tensor:
        return views.mean(dim=(1, 2, 3))

    *_, kinds = reader.training_views(batch, 8, torch.Generator().manual_seed(0))
    hard_views, _, hard_kinds = reader.training_views(
        batch, 8, torch.Generator().manual_seed(0), brightness
    )
    assert int((hard_kinds != reader.OTHER).sum()) == int((kinds != reader.OTHER).sum())
    others = hard_views[hard_kinds == reader.OTHER]
    assert 16 <= len(others) <= 48  # 8 random + 8 hard per canvas, drawn with noise
    scores = brightness(others)
    hardest = scores[len(others) // 2 :]
    assert torch.equal(hardest, hardest.sort(descending=True).values)


def test_progressive_ladder_counts_every_token_sent_and_stops_when_sure(
    batch: scenes.SceneBatch,
) -> None:
    """A reader sure of each digit only on the node holding it: large digits stop at the first
    rung (16 tokens); a small digit climbs until its finest token is sent; tokens sent grow
    with each rung and reach 256 plus the split parents on the last."""
    from needle_v2 import progressive

    perfect = [
        torch.nn.functional.one_hot(labels, reader.NONE + 1)[..., : reader.NONE].float()
        for labels in reader.node_labels(batch)
    ]
    for d in (0, 1):
        perfect[d][~batch.large] = 0
    uniform = arms.ARMS[0]
    visible = uniform.visible(batch, list(progressive.LADDER))
    out = progressive.ladder_outcomes(perfect, visible, batch.labels, "max")
    assert out["tokens"][0].tolist() == [16] * len(batch)
    assert (out["tokens"].diff(dim=0) > 0).all()
    assert ((out["tokens"][-1] > 256) & (out["tokens"][-1] <= 336)).all()
    right, tokens = progressive.stop(out, 0.5)
    assert right.all()
    assert (tokens[batch.large] == 16).all()
    assert (tokens[~batch.large] > 16).all()

"""`pyrtok allocate`, the allocation figure of `pyrtok demo`, and the overlay helpers."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pyrtok.allocation import allocate
from pyrtok.cli import main
from pyrtok.data import load_sample
from pyrtok.viz import (
    LEVEL_COLOURS,
    allocation_figure,
    allocation_overlay,
    shrink,
    side_by_side,
    titled,
)
from pyrtok.viz.text import text_image

ROW = re.compile(r"^\s*(\d+)\s+(\d+) px\s+(\d+)\s+(\d+\.\d)\s+(\w+)\s*$")


def _rows(out: str) -> list[tuple[int, int, int, float, str]]:
    return [
        (int(m[1]), int(m[2]), int(m[3]), float(m[4]), m[5])
        for line in out.splitlines()
        if (m := ROW.match(line))
    ]


def _png_shape(path: Path) -> tuple[int, ...]:
    with Image.open(path) as image:
        return np.asarray(image).shape


def _figure_as_written(sample: str, budget: int, title: str) -> np.ndarray:
    """``(H, W, 3)`` uint8: the labelled allocation figure of ``sample`` under ``title``."""
    image = load_sample(sample)
    figure = titled(
        allocation_figure(image, allocate(image[None], budget, 16, 64), labels=True), title
    )
    return (figure * 255).round().byte().permute(1, 2, 0).numpy()


def _psnr(out: str) -> str:
    return re.search(r"token reconstruction PSNR: (\S+) dB", out)[1]  # type: ignore[index]


def test_allocate_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_path = tmp_path / "figs" / "chelsea.png"
    argv = ["allocate", "chelsea", "--budget", "101", "--out", str(out_path)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "chelsea (embedded sample), 300x451" in out
    assert "89 root tokens; feasible budgets 89 + 3*s up to 551" in out
    rows = _rows(out)
    assert [(k, size, colour) for k, size, _, _, colour in rows] == [
        (0, 16, "red"),
        (1, 32, "orange"),
        (2, 64, "green"),
    ]
    assert sum(tokens for _, _, tokens, _, _ in rows) == 101
    assert sum(area for *_, area, _ in rows) == pytest.approx(100, abs=0.2)
    assert 20 < float(_psnr(out)) < 60
    assert str(out_path.resolve()) in out
    title = (
        f"chelsea (embedded sample), 300x451: 101 tokens, greedy + laplacian, PSNR {_psnr(out)} dB"
    )
    with Image.open(out_path) as written:
        assert np.array_equal(np.asarray(written), _figure_as_written("chelsea", 101, title))


@pytest.mark.parametrize("strategy", ["optimal", "proportional", "threshold"])
def test_allocate_command_strategies(
    tmp_path: Path, strategy: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["allocate", "coffee", "--budget", "107", "--strategy", strategy, "--scorer", "blur",
            "--max-patch", "128", "--out", str(tmp_path / "x.png")]  # fmt: skip
    assert main(argv) == 0
    assert sum(tokens for _, _, tokens, _, _ in _rows(capsys.readouterr().out)) == 107  # 104 roots


def test_allocate_infeasible_budget(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["allocate", "astronaut", "--budget", "65", "--out", str(tmp_path / "x.png")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("pyrtok: error: budget: 65 tokens is not feasible")
    assert err[0].endswith("the nearest feasible budgets are 64 and 67")
    assert not (tmp_path / "x.png").exists()


def test_allocate_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["allocate", "astronaut"]) == 2
    assert "the following arguments are required: --budget" in capsys.readouterr().err
    assert main(["allocate", "astronaut", "--budget", "64", "--strategy", "best"]) == 2
    assert "invalid choice: 'best'" in capsys.readouterr().err


def test_demo_writes_the_allocation_figure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    # astronaut 512x512, 16..64 px leaves: 64 cells, full detail 1024, a quarter is 256
    assert "allocation: 256 tokens" in out
    assert sum(tokens for _, _, tokens, _, _ in _rows(out)) == 256
    figure = tmp_path / "pyrtok_demo_allocation.png"
    assert str(figure.resolve()) in out
    title = (
        f"astronaut (embedded sample), 512x512: 256 tokens, greedy + laplacian, "
        f"PSNR {_psnr(out)} dB"
    )
    with Image.open(figure) as written:
        assert np.array_equal(np.asarray(written), _figure_as_written("astronaut", 256, title))
    assert (tmp_path / "pyrtok_demo.png").exists()


@pytest.mark.parametrize(("name", "image_format"), [("f.jpg", "JPEG"), ("f.webp", "WEBP")])
def test_allocate_writes_the_format_of_the_extension(
    tmp_path: Path, name: str, image_format: str
) -> None:
    noise = np.random.default_rng(0).integers(0, 256, (64, 128, 3), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "in.png")
    argv = ["allocate", str(tmp_path / "in.png"), "--budget", "8", "--out", str(tmp_path / name)]
    assert main(argv) == 0
    with Image.open(tmp_path / name) as written:
        assert written.format == image_format


def test_demo_skips_the_allocation_for_small_images(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    Image.fromarray(np.zeros((40, 30), dtype=np.uint8)).save(tmp_path / "small.png")
    argv = ["demo", str(tmp_path / "small.png"), "--levels", "2", "--out", str(tmp_path / "m.png")]
    assert main(argv) == 0
    assert "allocation: skipped, the image is smaller than 64 px" in capsys.readouterr().out
    assert not (tmp_path / "m_allocation.png").exists()


def test_overlay_colours_leaves_by_level() -> None:
    x = torch.full((1, 3, 64, 128), 0.5)
    x[..., :32, :32] = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(0))
    allocation = allocate(x, 2 + 3 * 2, 16, 64)  # left cell split twice into the texture
    overlay = allocation_overlay(x[0], allocation, tint=0.5, thickness=1)
    assert overlay.shape == (3, 64, 128)
    red, blue = (torch.tensor(rgb) for _, rgb in (LEVEL_COLOURS[0], LEVEL_COLOURS[2]))
    torch.testing.assert_close(overlay[:, 0, 0], red)  # edge of a 16-px leaf at the corner
    torch.testing.assert_close(overlay[:, 0, 64], blue)  # edge of the unsplit right cell
    torch.testing.assert_close(overlay[:, 30, 100], 0.5 * 0.5 + 0.5 * blue)  # tinted inside


def test_figure_and_side_by_side() -> None:
    x = torch.rand(2, 1, 64, 96)
    allocation = allocate(x, 6 + 3 * 4, 16, 32)
    figure = allocation_figure(x[1], allocation, index=1)
    assert figure.shape == (3, 64, 3 * 96 + 8)
    torch.testing.assert_close(figure[:, :, :96], x[1].expand(3, -1, -1))
    assert bool((figure[:, :, 96:100] == 1).all())  # the gap
    tall = side_by_side([torch.zeros(3, 10, 5), torch.zeros(20, 5)], gap=0, background=0.25)
    assert tall.shape == (3, 20, 10)
    assert bool((tall[:, 10:, :5] == 0.25).all())


def test_labelled_figure_has_captions_and_a_colour_key() -> None:
    x = torch.full((1, 3, 64, 128), 0.5)
    x[..., :32, :32] = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(0))
    allocation = allocate(x, 2 + 3 * 2, 16, 64)  # 3 + 3 leaves of 16 and 32 px, 1 of 64
    bare = allocation_figure(x[0], allocation)
    labelled = allocation_figure(x[0], allocation, labels=True)
    caption = text_image("x").shape[-2]
    captions = ["original, 64x128", "8 tokens: leaves coloured by level", "reconstruction"]
    left = 0
    for k, text in enumerate(captions):  # each panel under its caption, as wide as the wider
        panel = labelled[:, caption : caption + 64, left : left + 128]
        torch.testing.assert_close(panel, bare[:, :, 132 * k : 132 * k + 128])
        left += max(128, text_image(text).shape[-1]) + 4
    assert float(labelled[:, :caption].min()) < 0.25  # black captions above the panels
    key = labelled[:, caption + 64 + 4 :]
    assert key.shape[-2] == caption
    for _, rgb in LEVEL_COLOURS[:3]:  # one swatch per level, 16, 32 and 64 px
        swatch = (key == torch.tensor(rgb)[:, None, None]).all(dim=0)
        assert int(swatch.sum()) == (caption - 8) ** 2
    assert not (key == torch.tensor(LEVEL_COLOURS[3][1])[:, None, None]).all(dim=0).any()


def test_scaled_figure_keeps_its_outlines() -> None:
    x = torch.rand(1, 3, 64, 128, generator=torch.Generator().manual_seed(0))
    allocation = allocate(x, 2, 16, 64)  # two 64 px cells
    figure = allocation_figure(x[0], allocation, scale=0.25)
    assert figure.shape == (3, 16, 3 * 32 + 8)
    torch.testing.assert_close(figure[:, :, :32], shrink(x[0], 0.25))
    outlines = allocation_overlay(x[0], allocation, thickness=4)  # round(1 / 0.25) px at full size
    torch.testing.assert_close(figure[:, :, 36:68], shrink(outlines, 0.25))
    blue = torch.tensor(LEVEL_COLOURS[2][1])
    torch.testing.assert_close(figure[:, 0, 36], blue)  # still a full-colour 1 px edge


def test_overlay_bad_input() -> None:
    x = torch.rand(1, 3, 64, 64)
    allocation = allocate(x, 4, 16, 32)
    with pytest.raises(ValueError, match="image: the allocation was made for 64x64 images, got"):
        allocation_overlay(torch.rand(3, 64, 96), allocation)
    with pytest.raises(ValueError, match=r"image: expected one image of shape \(3, H, W\)"):
        allocation_overlay(x, allocation)
    with pytest.raises(ValueError, match=r"tint: must be in \[0, 1\]"):
        allocation_overlay(x[0], allocation, tint=2.0)
    with pytest.raises(ValueError, match="gap: expected an int >= 0"):
        side_by_side([x[0]], gap=-1)

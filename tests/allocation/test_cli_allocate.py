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
from pyrtok.viz import LEVEL_COLOURS, allocation_figure, allocation_overlay, side_by_side

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


def test_allocate_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_path = tmp_path / "figs" / "chelsea.png"
    argv = ["allocate", "chelsea", "--budget", "100", "--out", str(out_path)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "chelsea (embedded sample), 300x451" in out
    assert "40 cells; feasible budgets 40 + 3*s up to 640" in out
    rows = _rows(out)
    assert [(k, size, colour) for k, size, _, _, colour in rows] == [
        (0, 16, "red"),
        (1, 32, "orange"),
        (2, 64, "green"),
    ]
    assert sum(tokens for _, _, tokens, _, _ in rows) == 100
    assert sum(area for *_, area, _ in rows) == pytest.approx(100, abs=0.2)
    psnr = float(re.search(r"token reconstruction PSNR: (\S+) dB", out)[1])  # type: ignore[index]
    assert 20 < psnr < 60
    assert str(out_path.resolve()) in out
    assert _png_shape(out_path) == (300, 3 * 451 + 8, 3)


@pytest.mark.parametrize("strategy", ["optimal", "proportional", "threshold"])
def test_allocate_command_strategies(
    tmp_path: Path, strategy: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["allocate", "coffee", "--budget", "87", "--strategy", strategy, "--scorer", "blur",
            "--max-patch", "128", "--out", str(tmp_path / "x.png")]  # fmt: skip
    assert main(argv) == 0
    assert sum(tokens for _, _, tokens, _, _ in _rows(capsys.readouterr().out)) == 87


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
    assert _png_shape(figure) == (512, 3 * 512 + 8, 3)
    assert (tmp_path / "pyrtok_demo.png").exists()


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

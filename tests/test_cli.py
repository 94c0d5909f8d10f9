"""The ``pyrtok`` command (pyrtok.cli), run in-process through ``main``."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import pyrtok
from pyrtok import band_energy, laplacian_pyramid
from pyrtok.cli import main
from pyrtok.data import load_sample

ROW = re.compile(r"^\s*(\d+)\s+(band|residual)\s+(\d+)x(\d+)\s+(\d+\.\d+)\s*$")


def _read_png(path: object) -> torch.Tensor:
    """The PNG's pixels as written, ``(C, H, W)`` uint8 (C = 1 for greyscale)."""
    with Image.open(str(path)) as image:
        pixels = torch.from_numpy(np.array(image))
    return pixels.unsqueeze(0) if pixels.ndim == 2 else pixels.permute(2, 0, 1)


def _rows(out: str) -> list[tuple[int, str, int, int, float]]:
    return [
        (int(m[1]), m[2], int(m[3]), int(m[4]), float(m[5]))
        for line in out.splitlines()
        if (m := ROW.match(line))
    ]


def _png_size(path: Path) -> tuple[int, int, int]:
    shape = _read_png(path).shape
    return (shape[0], shape[1], shape[2])


def test_demo_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "astronaut" in out
    rows = _rows(out)
    assert [(k, kind, h, w) for k, kind, h, w, _ in rows] == [
        (0, "band", 512, 512),
        (1, "band", 256, 256),
        (2, "band", 128, 128),
        (3, "residual", 64, 64),
    ]
    # shares are each level's sum of squares over the total, to the printed precision
    energy = band_energy(laplacian_pyramid(load_sample("astronaut"), levels=4), 512).flatten()
    expected = (100 * energy / energy.sum()).tolist()
    assert [share for *_, share in rows] == pytest.approx(expected, abs=1e-3)
    assert sum(share for *_, share in rows) == pytest.approx(100, abs=0.01)
    error = float(re.search(r"reconstruction max error: (\S+)", out)[1])  # type: ignore[index]
    assert 0 <= error < 1e-5
    png = tmp_path / "pyrtok_demo.png"
    assert str(png.resolve()) in out
    # 512 + 2 + 256 wide; level 0 (512) is taller than the column (256 + 128 + 64 + 4)
    assert _png_size(png) == (3, 512, 770)


def test_demo_sample_name_levels_and_out(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_path = tmp_path / "new" / "coffee.png"
    assert main(["demo", "coffee", "--levels", "3", "--out", str(out_path)]) == 0
    rows = _rows(capsys.readouterr().out)
    assert [(kind, h, w) for _, kind, h, w, _ in rows] == [
        ("band", 341, 512),
        ("band", 171, 256),
        ("residual", 86, 128),
    ]
    assert _png_size(out_path) == (3, 341, 512 + 2 + 256)


def test_demo_image_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    array = np.random.default_rng(0).integers(0, 256, (40, 30), dtype=np.uint8)
    Image.fromarray(array).save(tmp_path / "grey.png")
    out_path = tmp_path / "montage.png"
    argv = ["demo", str(tmp_path / "grey.png"), "--levels", "auto", "--out", str(out_path)]
    assert main(argv) == 0
    # levels="auto" for 40x30 with the 5-tap kernel: 40x30 -> 20x15 -> 10x8 -> 5x4 stops at 3
    rows = _rows(capsys.readouterr().out)
    assert [(h, w) for _, _, h, w, _ in rows] == [(40, 30), (20, 15), (10, 8)]
    assert _png_size(out_path) == (3, 40, 30 + 2 + 15)


def test_demo_prefers_an_existing_file_over_a_sample_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    Image.fromarray(np.zeros((20, 24, 3), dtype=np.uint8)).save(tmp_path / "coffee", "PNG")
    assert main(["demo", "coffee", "--levels", "2"]) == 0
    assert "20x24" in capsys.readouterr().out


def _error(capsys: pytest.CaptureFixture[str]) -> str:
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("pyrtok: error: ")
    assert "Traceback" not in captured.err
    return lines[0]


def test_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "missing.jpg"
    assert main(["demo", str(missing), "--out", str(tmp_path / "x.png")]) == 2
    line = _error(capsys)
    assert str(missing) in line
    assert "astronaut" in line  # the sample names are suggested
    assert not (tmp_path / "x.png").exists()


def test_non_image_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("not an image\n")
    assert main(["demo", str(notes), "--out", str(tmp_path / "x.png")]) == 2
    line = _error(capsys)
    assert str(notes) in line
    assert "not a readable image" in line


@pytest.mark.parametrize("levels", ["11", "0"])
def test_bad_levels(tmp_path: Path, capsys: pytest.CaptureFixture[str], levels: str) -> None:
    assert main(["demo", "--levels", levels, "--out", str(tmp_path / "x.png")]) == 2
    assert "levels" in _error(capsys)
    assert not (tmp_path / "x.png").exists()


def test_levels_too_large_names_the_limit(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "chelsea", "--levels", "12"]) == 2
    assert _error(capsys) == (
        "pyrtok: error: levels: 12 is too many for a 300x451 input; the largest allowed is 10 "
        "(its coarsest level is 1x1)"
    )


def test_out_is_a_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "chelsea", "--levels", "2", "--out", str(tmp_path)]) == 2
    assert "is a directory" in _error(capsys)


def test_levels_not_a_number_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--levels", "many"]) == 2
    err = capsys.readouterr().err
    assert "usage: pyrtok demo" in err
    assert "argument --levels: expected an integer or 'auto', got 'many'" in err


def test_no_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "usage: pyrtok" in capsys.readouterr().err


def test_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "usage: pyrtok" in out
    assert "demo" in out


def test_demo_help_lists_samples(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--levels" in out
    assert "chelsea" in out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"pyrtok {pyrtok.__version__}\n"


def test_python_dash_m_version() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pyrtok", "--version"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "pyrtok 0.1.0\n"


def test_montage_is_mid_grey_where_bands_are_flat(tmp_path: Path) -> None:
    Image.fromarray(np.full((32, 32, 3), 100, dtype=np.uint8)).save(tmp_path / "flat.png")
    out_path = tmp_path / "m.png"
    assert main(["demo", str(tmp_path / "flat.png"), "--levels", "2", "--out", str(out_path)]) == 0
    montage = _read_png(out_path)
    assert torch.equal(montage[:, :32, :32], torch.full((3, 32, 32), 128, dtype=torch.uint8))
    assert torch.equal(montage[:, :16, 34:50], torch.full((3, 16, 16), 100, dtype=torch.uint8))

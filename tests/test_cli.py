"""The ``pyrtok`` command (pyrtok.cli), run in-process through ``main``."""

from __future__ import annotations

import argparse
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import pyrtok
import pyrtok.cli
from pyrtok import band_energy, laplacian_pyramid
from pyrtok.cli import build_parser, main
from pyrtok.data import load_sample
from pyrtok.viz import pyramid_montage, shrink, titled
from pyrtok.viz.text import TITLE_SIZE, text_image

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


def _as_written(image: torch.Tensor) -> torch.Tensor:
    """``(3, H, W)`` in ``[0, 1]`` -> the uint8 pixels an 8-bit PNG of it holds."""
    return (image * 255).round().to(torch.uint8)


def _montage(image: torch.Tensor, levels: int, title: str) -> torch.Tensor:
    """The pixels ``pyrtok demo`` writes for ``image``: labelled montage under ``title``."""
    montage = pyramid_montage(laplacian_pyramid(image, levels=levels), labels=True)
    return _as_written(titled(montage, title))


TOP = text_image("x", TITLE_SIZE).shape[-2] + text_image("x").shape[-2]
"""Rows above a montage's levels: the title and the level captions."""


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
    expected = _montage(load_sample("astronaut"), 4, "Laplacian pyramid of astronaut "
                        "(embedded sample), 512x512: 4 levels")  # fmt: skip
    assert torch.equal(_read_png(png), expected)
    # 512 + 2 + 256 wide; level 0 (512) is taller than the column (256 + 128 + 64 + 4)
    assert _png_size(png)[-1] == 770


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
    title = "Laplacian pyramid of coffee (embedded sample), 341x512: 3 levels"
    assert torch.equal(_read_png(out_path), _montage(load_sample("coffee"), 3, title))


def test_demo_image_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    array = np.random.default_rng(0).integers(0, 256, (40, 30), dtype=np.uint8)
    Image.fromarray(array).save(tmp_path / "grey.png")
    out_path = tmp_path / "montage.png"
    argv = ["demo", str(tmp_path / "grey.png"), "--levels", "auto", "--out", str(out_path)]
    assert main(argv) == 0
    # levels="auto" for 40x30 with the 5-tap kernel: 40x30 -> 20x15 -> 10x8 -> 5x4 stops at 3
    rows = _rows(capsys.readouterr().out)
    assert [(h, w) for _, _, h, w, _ in rows] == [(40, 30), (20, 15), (10, 8)]
    image = torch.from_numpy(array / 255).float().expand(3, -1, -1)
    title = "Laplacian pyramid of grey.png, 40x30: 3 levels"
    assert torch.equal(_read_png(out_path), _montage(image, 3, title))


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


def _cut_png() -> bytes:
    """The first half of a PNG file."""
    data = io.BytesIO()
    Image.fromarray(np.zeros((64, 64), dtype=np.uint8)).save(data, "PNG")
    return data.getvalue()[: len(data.getvalue()) // 2]


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"not an image\n", "not a readable image (its contents match no image format)"),
        (_cut_png(), "not a readable image (image file is truncated)"),
        (b"", "the file is empty, not an image"),
    ],
)
def test_unreadable_image_names_the_file_and_the_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes, problem: str
) -> None:
    notes = tmp_path / "notes.png"
    notes.write_bytes(content)
    assert main(["demo", str(notes), "--out", str(tmp_path / "x.png")]) == 2
    line = _error(capsys)
    assert f"'{notes}': {problem}" in line
    assert "BytesIO" not in line
    assert " at 0x" not in line


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


@pytest.fixture
def no_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loading the image fails the test: checks of --out must come before any work."""

    def fail(spec: str) -> None:
        raise AssertionError(f"the work started (loading {spec})")

    monkeypatch.setattr(pyrtok.cli, "open_image", fail)


COMMANDS = [["demo", "chelsea"], ["allocate", "chelsea", "--budget", "100"]]


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("name", ["m.gif", "m.png.txt", "montage"])
def test_out_with_an_unsupported_extension_fails_before_the_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], no_work: None, command: list[str], name: str
) -> None:
    out = tmp_path / name
    assert main([*command, "--out", str(out)]) == 2
    line = _error(capsys)
    assert f"'{out}': unsupported image extension '{out.suffix}'" in line
    assert line.endswith("expected .png, .jpg, .jpeg or .webp")


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize(
    ("out", "problem"),
    [
        (".", "is a directory"),
        ("notes.txt/m.png", "is a file, not a folder"),
        ("notes.txt/deeper/m.png", "is a file, not a folder"),
    ],
)
def test_out_in_a_bad_place_fails_before_the_work(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    no_work: None,
    command: list[str],
    out: str,
    problem: str,
) -> None:
    (tmp_path / "notes.txt").write_text("")
    assert main([*command, "--out", str(tmp_path / out)]) == 2
    line = _error(capsys)
    assert str(tmp_path / out) in line
    assert problem in line


def test_demo_allocation_figure_path_is_checked_before_the_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], no_work: None
) -> None:
    (tmp_path / "m_allocation.webp").mkdir()
    assert main(["demo", "--out", str(tmp_path / "m.webp")]) == 2
    assert f"'{tmp_path / 'm_allocation.webp'}' is a directory" in _error(capsys)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes anywhere")
def test_out_in_a_read_only_folder_fails_before_the_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], no_work: None
) -> None:
    folder = tmp_path / "read_only"
    folder.mkdir(mode=0o555)
    assert main(["demo", "--out", str(folder / "sub" / "m.png")]) == 2
    assert f"'{folder}' is not writable" in _error(capsys)


def _noise(path: Path, height: int = 96, width: int = 128) -> Path:
    """Write an RGB noise image (big enough for the demo's allocation) to ``path``."""
    array = np.random.default_rng(1).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(array).save(path)
    return path


@pytest.mark.parametrize(
    ("name", "image_format"),
    [("m.png", "PNG"), ("m.jpg", "JPEG"), ("m.JPEG", "JPEG"), ("m.webp", "WEBP")],
)
def test_demo_writes_the_format_of_the_extension(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, image_format: str
) -> None:
    image = _noise(tmp_path / "in.png")
    assert main(["demo", str(image), "--levels", "3", "--out", str(tmp_path / name)]) == 0
    out = capsys.readouterr().out
    stem, suffix = name.split(".")
    for path in (tmp_path / name, tmp_path / f"{stem}_allocation.{suffix}"):
        assert f"{path.resolve()}\n" in out
        with Image.open(path) as written:
            assert written.format == image_format


def test_demo_shrinks_a_large_image(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(pyrtok.cli, "DEMO_MAX_SIDE", 100)  # 2048 in use; smaller to be fast
    image = _noise(tmp_path / "big.png", 250, 200)
    assert main(["demo", str(image), "--levels", "3", "--out", str(tmp_path / "m.png")]) == 0
    out = capsys.readouterr().out
    size = "250x200, shrunk to 100x80 (the demo's limit: 100 px)"
    assert f"image: {image}, {size}, 3 levels" in out
    assert [(h, w) for _, _, h, w, _ in _rows(out)] == [(100, 80), (50, 40), (25, 20)]
    assert "allocation: 14 tokens" in out  # its coarsest (14 roots); a quarter of 35 is below
    shrunk = shrink(
        torch.from_numpy(np.asarray(Image.open(image)) / 255).float().permute(2, 0, 1), 0.4
    )
    title = f"Laplacian pyramid of big.png, {size}: 3 levels"
    assert torch.equal(_read_png(tmp_path / "m.png"), _montage(shrunk, 3, title))


def test_figures_are_drawn_to_fit_the_largest_side(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(pyrtok.cli, "FIGURE_MAX_SIDE", 800)  # 2048 in use; smaller to be fast
    image = _noise(tmp_path / "wide.png", 200, 600)
    assert main(["demo", str(image), "--levels", "2", "--out", str(tmp_path / "m.png")]) == 0
    out = capsys.readouterr().out
    # montage 600 + 2 + 300 px wide at full size, allocation figure 3 * 600 + 8
    scales = [int(s) for s in re.findall(r" \(drawn at (\d+)% to fit 800 px\)\n", out)]
    assert len(scales) == 2
    assert 86 <= scales[0] <= 89  # at most 800 / 902
    assert 42 <= scales[1] <= 44  # at most 800 / 1808
    for path in (tmp_path / "m.png", tmp_path / "m_allocation.png"):
        _, height, width = _png_size(path)
        assert 790 <= max(height, width) <= 800


def test_montage_is_labelled(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image = _noise(tmp_path / "in.png")
    assert main(["demo", str(image), "--levels", "3", "--out", str(tmp_path / "m.png")]) == 0
    montage = _read_png(tmp_path / "m.png")
    bare = _as_written(pyramid_montage(laplacian_pyramid(_read_png(image) / 255, levels=3)))
    # the title and the level captions above the levels, the key below them
    assert montage.shape[-2] > TOP + 96 + text_image("x").shape[-2]
    assert torch.equal(montage[:, TOP : TOP + 96, :128], bare[:, :, :128])
    for band in (montage[:, :TOP], montage[:, TOP + 96 :]):
        assert int(band.min()) < 64  # black text
        assert int(band.float().median()) == 255  # on white


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


@pytest.mark.parametrize(
    ("command", "options"),
    [
        ("demo", {"image", "levels", "out"}),
        ("allocate", {"strategy", "scorer", "min_patch", "max_patch", "out"}),
    ],
)
def test_help_shows_every_default(
    capsys: pytest.CaptureFixture[str], command: str, options: set[str]
) -> None:
    assert main([command, "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())  # unwrapped
    subparsers = next(
        action for action in build_parser()._actions
        if isinstance(action, argparse._SubParsersAction)
    )  # fmt: skip
    actions = subparsers.choices[command]._actions
    defaults = {a.dest: a.default for a in actions if a.default not in (None, argparse.SUPPRESS)}
    assert set(defaults) == options
    for default in defaults.values():
        assert f"(default: {default})" in text
    assert "extension: .png, .jpg/.jpeg or .webp" in text
    assert f"at most {pyrtok.cli.FIGURE_MAX_SIDE} px" in text


def test_demo_help_states_the_size_limit(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert f"larger than {pyrtok.cli.DEMO_MAX_SIDE} px on the longer side are first shrunk" in text


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
    montage = _read_png(out_path)[:, TOP:]
    assert torch.equal(montage[:, :32, :32], torch.full((3, 32, 32), 128, dtype=torch.uint8))
    left = text_image("L0 band (finest), 32x32").shape[-1] + 2  # the caption is the wider
    residual = montage[:, :16, left : left + 16]
    assert torch.equal(residual, torch.full((3, 16, 16), 100, dtype=torch.uint8))

"""PNG output and pyramid montages (pyrtok.viz)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pyrtok import laplacian_pyramid
from pyrtok.viz import pyramid_montage, save_png


def _read_png(path: object) -> torch.Tensor:
    """The PNG's pixels as written, ``(C, H, W)`` uint8 (C = 1 for greyscale)."""
    with Image.open(str(path)) as image:
        pixels = torch.from_numpy(np.array(image))
    return pixels.unsqueeze(0) if pixels.ndim == 2 else pixels.permute(2, 0, 1)


def test_save_png_round_trips_rgb(tmp_path: Path) -> None:
    pixels = torch.randint(0, 256, (3, 9, 14), dtype=torch.uint8)
    path = save_png(pixels.double() / 255, tmp_path / "rgb.png")
    assert path == tmp_path / "rgb.png"
    assert torch.equal(_read_png(path), pixels)


@pytest.mark.parametrize("shape", [(9, 14), (1, 9, 14)])
def test_save_png_writes_grey_as_one_channel(tmp_path: Path, shape: tuple[int, ...]) -> None:
    pixels = torch.randint(0, 256, shape, dtype=torch.uint8)
    path = save_png(pixels.float() / 255, tmp_path / "grey.png")
    assert torch.equal(_read_png(path), pixels.reshape(1, 9, 14))


def test_save_png_rounds_to_nearest(tmp_path: Path) -> None:
    image = torch.tensor([[0.0, 0.4 / 255, 0.6 / 255, 1.0]])
    assert _read_png(save_png(image, tmp_path / "r.png")).flatten().tolist() == [0, 0, 1, 255]


def test_save_png_creates_parent_dirs(tmp_path: Path) -> None:
    path = save_png(torch.rand(3, 4, 4), str(tmp_path / "a" / "b" / "c.png"))
    assert path.is_file()


def test_save_png_accepts_float_error_just_outside_unit_range(tmp_path: Path) -> None:
    image = torch.tensor([[-1e-6, 1 + 1e-6]])
    assert _read_png(save_png(image, tmp_path / "e.png")).flatten().tolist() == [0, 255]


@pytest.mark.parametrize("value", [1.1, -0.05])
def test_save_png_refuses_out_of_range_values(tmp_path: Path, value: float) -> None:
    with pytest.raises(ValueError, match=r"values must be in \[0, 1\]"):
        save_png(torch.full((3, 2, 2), value), tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_save_png_refuses_nan(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="NaN"):
        save_png(torch.tensor([[0.5, float("nan")]]), tmp_path / "x.png")


@pytest.mark.parametrize("shape", [(2, 4, 4), (1, 3, 4, 4), (4,), (3, 0, 4)])
def test_save_png_refuses_bad_shapes(tmp_path: Path, shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=r"image: expected shape \(3, H, W\)"):
        save_png(torch.rand(shape), tmp_path / "x.png")


def test_save_png_refuses_integer_images(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="float"):
        save_png(torch.zeros(3, 4, 4, dtype=torch.uint8), tmp_path / "x.png")


def test_save_png_refuses_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="is a directory"):
        save_png(torch.rand(3, 4, 4), tmp_path)


def _layout(height: int, width: int, levels: int, spacing: int = 2) -> list[tuple[int, int]]:
    """Top-left corner of each level in the montage."""
    corners = [(0, 0)]
    top, left = 0, width + spacing
    h = height
    for _ in range(levels - 1):
        h = (h + 1) // 2
        corners.append((top, left))
        top += h + spacing
    return corners


def test_montage_layout_and_contents() -> None:
    image = torch.rand(3, 37, 50, generator=torch.Generator().manual_seed(0))
    pyramid = laplacian_pyramid(image, levels=4)
    montage = pyramid_montage(pyramid)
    # left: 37x50; column: 19x25, 10x13, 5x7 with 2 px gaps -> height max(37, 38), width 77
    assert montage.shape == (3, 38, 77)
    assert montage.dtype == torch.float32
    assert float(montage.min()) >= 0
    assert float(montage.max()) <= 1
    covered = torch.zeros(38, 77, dtype=torch.bool)
    for level, (top, left) in zip(pyramid, _layout(37, 50, 4), strict=True):
        h, w = level.shape[-2:]
        tile = montage[:, top : top + h, left : left + w]
        covered[top : top + h, left : left + w] = True
        if level is pyramid[-1]:
            torch.testing.assert_close(tile, level)  # residual shown as is
        else:
            scale = torch.quantile(level.abs().flatten(), 0.99, interpolation="higher")
            torch.testing.assert_close(tile, (0.5 + 0.5 * level / scale).clamp(0, 1))
    assert bool((montage[:, ~covered] == 1.0).all())  # separators and empty area: background


def test_montage_band_gain_makes_faint_detail_visible() -> None:
    image = 0.5 + 1e-3 * torch.randn(3, 64, 64, generator=torch.Generator().manual_seed(1))
    pyramid = laplacian_pyramid(image, levels=3)
    fine = pyramid_montage(pyramid)[:, :64, :64]
    assert float(fine.std()) > 0.1  # a 1e-3 band stretched to most of the grey range


def test_montage_of_flat_image_is_mid_grey_bands() -> None:
    pyramid = laplacian_pyramid(torch.full((3, 16, 16), 0.25), levels=3)
    montage = pyramid_montage(pyramid, spacing=0)
    assert montage.shape == (3, 16, 24)
    torch.testing.assert_close(montage[:, :, :16], torch.full((3, 16, 16), 0.5))
    torch.testing.assert_close(montage[:, 8:12, 16:20], torch.full((3, 4, 4), 0.25))


@pytest.mark.parametrize("grey_shape", [(40, 30), (1, 40, 30)])
def test_montage_of_grey_pyramid_has_three_equal_channels(grey_shape: tuple[int, ...]) -> None:
    montage = pyramid_montage(laplacian_pyramid(torch.rand(grey_shape), levels=3))
    assert montage.shape == (3, 40, 47)
    assert torch.equal(montage[0], montage[1])
    assert torch.equal(montage[0], montage[2])


def test_montage_column_taller_than_level_zero() -> None:
    # 4x4 -> 2x2 -> 1x1: column height 2 + 2 + 1 = 5 > 4, width 4 + 2 + 2
    montage = pyramid_montage(laplacian_pyramid(torch.rand(3, 4, 4), levels=3))
    assert montage.shape == (3, 5, 8)


def test_montage_of_one_level_is_the_image() -> None:
    image = torch.rand(3, 8, 8)
    torch.testing.assert_close(pyramid_montage([image]), image)


def test_montage_refuses_a_batch() -> None:
    with pytest.raises(ValueError, match="for one image"):
        pyramid_montage(laplacian_pyramid(torch.rand(2, 3, 16, 16), levels=2))


def test_montage_refuses_mismatched_levels() -> None:
    with pytest.raises(ValueError, match="pyramid"):
        pyramid_montage([torch.rand(3, 16, 16), torch.rand(3, 5, 5)])


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"quantile": 0.0}, "quantile"),
        ({"spacing": -1}, "spacing"),
        ({"background": 2}, "background"),
    ],
)
def test_montage_refuses_bad_options(kwargs: dict[str, float], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        pyramid_montage(laplacian_pyramid(torch.rand(3, 16, 16), levels=2), **kwargs)  # type: ignore[arg-type]

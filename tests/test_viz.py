"""Image output, layout, text and pyramid montages (pyrtok.viz)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from pyrtok import laplacian_pyramid
from pyrtok.viz import (
    check_image_path,
    colour_key,
    fit,
    pyramid_montage,
    save_image,
    save_png,
    shrink,
    side_by_side,
    titled,
)
from pyrtok.viz.montage import KEY
from pyrtok.viz.text import text_image


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


@pytest.mark.parametrize(
    ("name", "image_format"),
    [
        ("a.png", "PNG"),
        ("a.jpg", "JPEG"),
        ("a.jpeg", "JPEG"),
        ("a.JPG", "JPEG"),
        ("a.webp", "WEBP"),
    ],
)
def test_save_image_writes_the_format_of_the_extension(
    tmp_path: Path, name: str, image_format: str
) -> None:
    image = torch.linspace(0, 1, 48 * 64).reshape(1, 48, 64).expand(3, -1, -1)
    path = save_image(image, tmp_path / name)
    with Image.open(path) as written:
        assert written.format == image_format
    expected = (image * 255).round().to(torch.uint8)
    difference = (_read_png(path).int() - expected.int()).abs()
    assert int(difference.max()) <= (0 if image_format == "PNG" else 8)  # JPEG, WebP lossy


@pytest.mark.parametrize("name", ["a.gif", "a.png.txt", "a"])
def test_save_image_refuses_other_extensions(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match=r"unsupported image extension .*expected \.png, \.jpg"):
        save_image(torch.rand(3, 4, 4), tmp_path / name)
    assert list(tmp_path.iterdir()) == []


def test_save_png_refuses_other_image_formats(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"expected a \.png file, got .*a\.jpg'"):
        save_png(torch.rand(3, 4, 4), tmp_path / "a.jpg")


def test_check_image_path_refuses_a_file_for_a_folder(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("")
    with pytest.raises(ValueError, match=r"notes\.txt' is a file, not a folder"):
        check_image_path(tmp_path / "notes.txt" / "sub" / "a.png")
    assert (
        check_image_path(tmp_path / "new" / "sub" / "a.png") == tmp_path / "new" / "sub" / "a.png"
    )
    assert not (tmp_path / "new").exists()  # checking creates nothing


def test_shrink_averages_areas() -> None:
    image = torch.rand(3, 8, 12, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(shrink(image, 0.5), F.avg_pool2d(image[None], 2)[0])
    assert shrink(image, 1.0) is image
    assert shrink(image, 0.01).shape == (3, 1, 1)
    with pytest.raises(ValueError, match=r"scale: must be in \(0, 1\]"):
        shrink(image, 1.5)


def test_side_by_side_vertical_is_left_aligned() -> None:
    stacked = side_by_side([torch.zeros(3, 10, 5), torch.zeros(20, 8)], gap=2, vertical=True)
    assert stacked.shape == (3, 32, 8)
    assert bool((stacked[:, :10, 5:] == 1).all())  # right of the narrower one: background
    assert bool((stacked[:, 10:12] == 1).all())  # the gap
    assert bool((stacked[:, 12:] == 0).all())


def test_fit_shrinks_until_the_figure_fits() -> None:
    scales: list[float] = []

    def draw(scale: float) -> torch.Tensor:
        scales.append(scale)
        return titled(torch.zeros(3, round(900 * scale), round(1500 * scale)), "a title")

    figure, scale = fit(draw, 1000)
    assert 995 <= max(figure.shape[-2:]) <= 1000
    assert scale == scales[-1]
    assert len(scales) <= 3


def test_fit_gives_up_when_the_text_alone_is_too_large() -> None:
    with pytest.raises(ValueError, match="max_side: 50 px is too small for the figure's text"):
        fit(lambda scale: titled(torch.zeros(3, 10, 10), "a title wider than fifty px"), 50)


def test_text_is_black_on_white_and_lines_up() -> None:
    one, two = text_image("L0 band"), text_image("G3 residual\nsecond line")
    assert one.shape[-2] < two.shape[-2]
    assert text_image("gyp").shape[-2] == one.shape[-2]  # height by line count, not by glyphs
    assert float(one.min()) < 0.25  # black glyphs
    assert float(one.median()) == 1.0  # on white
    assert bool((one[:, :, :2] == 1).all())  # a margin


def test_titled_puts_the_title_above() -> None:
    image = torch.full((3, 20, 400), 0.5)
    figure = titled(image, "a title")
    height = text_image("a title", 18).shape[-2]
    assert figure.shape == (3, height + 20, 400)
    assert torch.equal(figure[:, height:], image)
    assert float(figure[:, :height].min()) < 0.25
    assert titled(torch.rand(3, 5, 5), "a title wider than the image").shape[-1] > 5


def test_colour_key_has_a_swatch_per_entry() -> None:
    key = colour_key([("red", (1.0, 0.0, 0.0)), ("blue", (0.0, 0.0, 1.0))])
    side = key.shape[-2] - 8
    for rgb in ((1.0, 0.0, 0.0), (0.0, 0.0, 1.0)):
        swatch = (key == torch.tensor(rgb)[:, None, None]).all(dim=0)
        assert int(swatch.sum()) == side * side
    with pytest.raises(ValueError, match="entries"):
        colour_key([])


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


def test_montage_labels_caption_every_level_and_add_the_key() -> None:
    image = torch.rand(3, 64, 96, generator=torch.Generator().manual_seed(0))
    pyramid = laplacian_pyramid(image, levels=3)
    bare, labelled = pyramid_montage(pyramid), pyramid_montage(pyramid, labels=True)
    cap = text_image("x").shape[-2]
    left = max(96, text_image("L0 band (finest), 64x96").shape[-1]) + 2
    # bare: L0 at (0, 0), L1 (32x48) at (0, 98), G2 (16x24) at (34, 98); labelled: each level
    # under its caption, the column right of L0's caption if that is the wider
    torch.testing.assert_close(labelled[:, cap : cap + 64, :96], bare[:, :, :96])
    torch.testing.assert_close(labelled[:, cap : cap + 32, left : left + 48], bare[:, :32, 98:])
    top = cap + 32 + 2 + cap
    torch.testing.assert_close(
        labelled[:, top : top + 16, left : left + 24], bare[:, 34:50, 98:122]
    )
    for caption, top in [
        ("L0 band (finest), 64x96", 0),
        ("L1 band, 32x48", 0),
        ("G2 residual, 16x24", cap + 34),
    ]:
        text = text_image(caption)
        column = 0 if caption.startswith("L0") else left
        strip = labelled[:, top : top + cap, column : column + text.shape[-1]]
        assert torch.equal(strip, text)
    key = labelled[:, max(cap + 64, 2 * cap + 32 + 2 + 16) + 2 :]  # under both L0 and the column
    assert torch.equal(key[:, :, : text_image(KEY).shape[-1]], text_image(KEY))


def test_montage_scale_shrinks_each_level() -> None:
    pyramid = laplacian_pyramid(
        torch.rand(3, 64, 96, generator=torch.Generator().manual_seed(0)), 3
    )
    bare, half = pyramid_montage(pyramid), pyramid_montage(pyramid, scale=0.5)
    assert half.shape == (3, 32, 48 + 2 + 24)
    torch.testing.assert_close(half[:, :, :48], shrink(bare[:, :, :96], 0.5))
    torch.testing.assert_close(half[:, :16, 50:74], shrink(bare[:, :32, 98:146], 0.5))


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
        ({"scale": 0.0}, "scale"),
    ],
)
def test_montage_refuses_bad_options(kwargs: dict[str, float], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        pyramid_montage(laplacian_pyramid(torch.rand(3, 16, 16), levels=2), **kwargs)  # type: ignore[arg-type]

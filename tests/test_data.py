"""Embedded samples and the user-file loader (pyrtok.data)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pyrtok.data import list_samples, load_image, load_sample

SAMPLE_NAMES = ["astronaut", "camera", "chelsea", "coffee", "rocket"]
DATA_DIR = Path(__file__).resolve().parent.parent / "src" / "pyrtok" / "data"


def _write(path: Path, array: np.ndarray, fmt: str = "PNG") -> Path:
    """Save ``array`` with Pillow: (H, W) uint8 -> L, uint16 -> I;16, (H, W, 3|4) -> RGB|RGBA."""
    Image.fromarray(array).save(path, fmt)
    return path


def test_list_samples() -> None:
    assert list_samples() == SAMPLE_NAMES


@pytest.mark.parametrize("name", SAMPLE_NAMES)
def test_sample_loads_as_rgb_float(name: str) -> None:
    image = load_sample(name)
    assert image.ndim == 3
    assert image.shape[0] == 3
    assert image.dtype == torch.float32
    assert float(image.min()) >= 0.0
    assert float(image.max()) <= 1.0
    assert max(image.shape[1:]) <= 512
    assert float(image.std()) > 0.05  # a real photo, not a blank
    # bytes decoded by Pillow agree (JPEG decoders may differ by a level or two)
    with Image.open(DATA_DIR / f"{name}.jpg") as reference:
        expected = torch.from_numpy(np.array(reference.convert("RGB"))).permute(2, 0, 1)
    assert (image * 255 - expected.float()).abs().max() <= 3


def test_sample_sizes_keep_aspect() -> None:
    shapes = {name: tuple(load_sample(name).shape[1:]) for name in SAMPLE_NAMES}
    # skimage originals: astronaut/camera 512x512, chelsea 300x451, coffee 400x600, rocket 427x640
    assert shapes == {
        "astronaut": (512, 512),
        "camera": (512, 512),
        "chelsea": (300, 451),
        "coffee": (341, 512),
        "rocket": (342, 512),
    }


def test_grey_sample_is_stored_grey_and_loaded_as_three_equal_channels() -> None:
    with Image.open(DATA_DIR / "camera.jpg") as stored:
        assert stored.mode == "L"
    camera = load_sample("camera")
    assert torch.equal(camera[0], camera[1])
    assert torch.equal(camera[0], camera[2])


def test_sample_files_are_small_and_attributed() -> None:
    files = sorted(DATA_DIR.glob("*.jpg"))
    assert [f.stem for f in files] == SAMPLE_NAMES
    assert sum(f.stat().st_size for f in files) < 300_000
    attribution = (DATA_DIR / "ATTRIBUTION.md").read_text()
    for name in SAMPLE_NAMES:
        assert f"`{name}.jpg`" in attribution


def test_load_sample_returns_a_fresh_tensor() -> None:
    first = load_sample("chelsea")
    first.zero_()
    assert float(load_sample("chelsea").max()) > 0


def test_unknown_sample_lists_valid_names() -> None:
    with pytest.raises(ValueError, match="unknown sample 'lena'") as info:
        load_sample("lena")
    for name in SAMPLE_NAMES:
        assert name in str(info.value)


def test_sample_name_must_be_a_string() -> None:
    with pytest.raises(TypeError, match="name"):
        load_sample(3)  # type: ignore[arg-type]


def test_load_rgb_png_is_exact(tmp_path: Path) -> None:
    array = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    image = load_image(_write(tmp_path / "rgb.png", array))
    assert image.shape == (3, 5, 7)
    assert image.dtype == torch.float32
    assert torch.equal(image, torch.from_numpy(array).permute(2, 0, 1).float() / 255)


def test_load_grey_png_repeats_the_channel(tmp_path: Path) -> None:
    array = np.random.default_rng(1).integers(0, 256, (6, 4), dtype=np.uint8)
    image = load_image(str(_write(tmp_path / "grey.png", array)))
    expected = torch.from_numpy(array).float() / 255
    assert image.shape == (3, 6, 4)
    for channel in image:
        assert torch.equal(channel, expected)


def test_load_rgba_png_drops_alpha(tmp_path: Path) -> None:
    array = np.random.default_rng(2).integers(0, 256, (5, 7, 4), dtype=np.uint8)
    image = load_image(_write(tmp_path / "rgba.png", array))
    assert torch.equal(image, torch.from_numpy(array[..., :3]).permute(2, 0, 1).float() / 255)


def test_load_16_bit_png_scales_to_unit_range(tmp_path: Path) -> None:
    array = np.array([[0, 65535], [32768, 1000]], dtype=np.uint16)
    image = load_image(_write(tmp_path / "deep.png", array))
    expected = torch.from_numpy(array.astype(np.float32) / 65535)
    assert image.shape == (3, 2, 2)
    torch.testing.assert_close(image[0], expected)


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP", "GIF"])
def test_load_other_formats(tmp_path: Path, fmt: str) -> None:
    array = np.full((8, 10, 3), (200, 40, 90), dtype=np.uint8)
    image = load_image(_write(tmp_path / f"x.{fmt.lower()}", array, fmt))
    assert image.shape == (3, 8, 10)
    colour = torch.tensor([200, 40, 90]) / 255
    assert (image.mean(dim=(1, 2)) - colour).abs().max() < 0.03


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.png"
    with pytest.raises(FileNotFoundError, match=r"nope\.png"):
        load_image(missing)


def test_directory_is_not_an_image(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="is not a file"):
        load_image(tmp_path)


@pytest.mark.parametrize(
    "content",
    [b"", b"just some text, not an image\n", b"\xff\xd8\xff\xe0 truncated jpeg"],
    ids=["empty", "text", "truncated-jpeg"],
)
def test_non_image_file_raises_value_error_naming_the_path(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.jpg"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=r"bad\.jpg") as info:
        load_image(path)
    assert ".cpp" not in str(info.value)  # no C++ source locations in the message


def test_truncated_real_jpeg(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((64, 64, 3), dtype=np.uint8)).save(buffer, "JPEG")
    path = tmp_path / "cut.jpg"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(ValueError, match=r"cut\.jpg.*not a readable image"):
        load_image(path)

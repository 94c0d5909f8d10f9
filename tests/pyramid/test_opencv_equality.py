"""pyr_down / pyr_up equal OpenCV's pyrDown / pyrUp (the Burt-Adelson reference) for every size.

pyrtok's own (torch) path is compared: with the ``cpu`` extra the default CPU path *is* OpenCV,
so the OpenCV path is switched off here (tests/pyramid/test_opencv_path.py checks it against
the torch path)."""

import numpy as np
import pytest
import torch

from pyrtok import pyr_down, pyr_up

cv2 = pytest.importorskip("cv2")

SIDES = range(1, 98)


@pytest.fixture(autouse=True)
def _torch_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYRTOK_DISABLE_OPENCV", "1")


def test_pyr_down_equals_cv2_for_every_size_1_to_97() -> None:
    rng = np.random.default_rng(0)
    worst = 0.0
    for height in SIDES:
        for width in SIDES:
            image = rng.random((height, width))
            ours = pyr_down(torch.from_numpy(image)).numpy()
            reference = cv2.pyrDown(image)
            assert ours.shape == reference.shape, (height, width)
            worst = max(worst, float(np.abs(ours - reference).max()))
    assert worst <= 1e-12


def test_pyr_up_equals_cv2_for_every_size_1_to_97() -> None:
    rng = np.random.default_rng(1)
    worst = 0.0
    for height in SIDES:
        for width in range(1, 98, 4):
            image = rng.random((height, width))
            ours = pyr_up(torch.from_numpy(image), (2 * height, 2 * width)).numpy()
            reference = cv2.pyrUp(image)
            assert ours.shape == reference.shape, (height, width)
            worst = max(worst, float(np.abs(ours - reference).max()))
    assert worst <= 1e-12


def test_batched_and_channel_dims_match_cv2_per_channel() -> None:
    image = np.random.default_rng(2).random((2, 3, 23, 18))
    ours = pyr_down(torch.from_numpy(image)).numpy()
    for b in range(2):
        for c in range(3):
            np.testing.assert_allclose(ours[b, c], cv2.pyrDown(image[b, c]), atol=1e-12, rtol=0)


@pytest.mark.parametrize(
    ("border", "cv2_border"), [("replicate", "BORDER_REPLICATE"), ("circular", "BORDER_WRAP")]
)
def test_other_borders_match_cv2_pyr_down(border: str, cv2_border: str) -> None:
    rng = np.random.default_rng(3)
    for height, width in [(19, 26), (7, 3), (2, 5), (1, 1)]:
        image = rng.random((height, width))
        reference = cv2.pyrDown(image, borderType=getattr(cv2, cv2_border))
        ours = pyr_down(torch.from_numpy(image), border=border).numpy()
        np.testing.assert_allclose(ours, reference, atol=1e-12, rtol=0, err_msg=border)

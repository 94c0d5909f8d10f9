"""The one switch for checks that sync with the device: on by default, off for the process,
for a block, or through PYRTOK_SYNC_CHECKS=0; checks on metadata always run."""

import pytest
import torch

from pyrtok import band_energy, laplacian_energy, laplacian_pyramid
from pyrtok.pyramid import SYNC_CHECKS_ENV, sync_checks, sync_checks_enabled

NAN_MESSAGE = "band energy is NaN or Inf"


def _nan_image() -> torch.Tensor:
    x = torch.rand(1, 3, 32, 32)
    x[0, 1, 5, 7] = float("nan")
    return x


def test_on_by_default_nan_energy_raises() -> None:
    assert sync_checks_enabled()
    with pytest.raises(ValueError, match=NAN_MESSAGE):
        band_energy(laplacian_pyramid(_nan_image(), 3), 8)
    with pytest.raises(ValueError, match=NAN_MESSAGE):
        laplacian_energy(_nan_image(), 8, levels=3)


def test_context_turns_them_off_inside_only() -> None:
    with sync_checks(False):
        assert not sync_checks_enabled()
        energy = band_energy(laplacian_pyramid(_nan_image(), 3), 8)
        assert energy.isnan().any()
        _, energy = laplacian_energy(_nan_image(), 8, levels=3)
        assert energy.isnan().any()
    assert sync_checks_enabled()


def test_call_keeps_the_setting_until_called_again() -> None:
    try:
        sync_checks(False)
        assert not sync_checks_enabled()
        band_energy(laplacian_pyramid(_nan_image(), 3), 8)
    finally:
        sync_checks(True)
    assert sync_checks_enabled()


def test_environment_variable_turns_them_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SYNC_CHECKS_ENV, "0")
    assert not sync_checks_enabled()
    with sync_checks(True):  # the environment wins
        assert not sync_checks_enabled()
        band_energy(laplacian_pyramid(_nan_image(), 3), 8)


def test_metadata_checks_still_run_when_off() -> None:
    with sync_checks(False), pytest.raises(TypeError, match="expected a floating dtype"):
        laplacian_pyramid(torch.zeros(1, 8, 8, dtype=torch.int64), 2)
    with sync_checks(False), pytest.raises(ValueError, match="patch_size: must be between"):
        band_energy(laplacian_pyramid(torch.rand(1, 3, 8, 8), 2), 100)

"""Triton is optional: the shared gate, and the whole library on a Python without Triton."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from pyrtok import _triton

ROOT = Path(__file__).resolve().parents[1]
NO_TRITON = ROOT / "tests" / "no_triton"
"""The folder whose ``sitecustomize`` blocks Triton (CI puts it on ``PYTHONPATH``)."""

CPU, CUDA, META = torch.device("cpu"), torch.device("cuda"), torch.device("meta")


@pytest.fixture
def gate_open(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """Triton 'imports', nothing disables it, no interpreter, not compiling."""
    monkeypatch.setattr(_triton, "available", lambda: True)
    monkeypatch.delenv(_triton.DISABLE_ENV, raising=False)
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: False)
    return monkeypatch


def test_kernels_run_on_cuda_or_interpreted_cpu_only(gate_open: pytest.MonkeyPatch) -> None:
    assert _triton.kernels_enabled(CUDA)
    assert not _triton.kernels_enabled(CPU)
    assert not _triton.kernels_enabled(META)
    for value in ("1", "true", "ON"):
        gate_open.setenv("TRITON_INTERPRET", value)
        assert _triton.interpreting()
        assert _triton.kernels_enabled(CPU)
        assert not _triton.kernels_enabled(META)
    gate_open.setenv("TRITON_INTERPRET", "0")
    assert not _triton.interpreting()
    assert not _triton.kernels_enabled(CPU)


@pytest.mark.parametrize("value", ["1", "0", "", "yes"])
def test_disable_env_is_read_on_every_call(gate_open: pytest.MonkeyPatch, value: str) -> None:
    gate_open.setenv(_triton.DISABLE_ENV, value)
    assert _triton.disabled() == (value == "1")
    assert _triton.kernels_enabled(CUDA) == (value != "1")


def test_compiling_or_missing_triton_closes_the_gate(gate_open: pytest.MonkeyPatch) -> None:
    gate_open.setattr(torch.compiler, "is_compiling", lambda: True)
    assert _triton.compiling()
    assert not _triton.kernels_enabled(CUDA)
    gate_open.setattr(torch.compiler, "is_compiling", lambda: False)
    gate_open.setattr(_triton, "available", lambda: False)
    assert not _triton.kernels_enabled(CUDA)


def test_available_matches_the_import() -> None:
    try:
        import triton  # noqa: F401
    except ImportError:
        assert not _triton.available()
    else:
        assert _triton.available()


SCRIPT = textwrap.dedent(
    """
    import os
    import sys

    assert "triton" in sys.modules and sys.modules["triton"] is None, "Triton is not blocked"
    try:
        import triton  # noqa: F401
    except ImportError:
        pass
    else:
        raise AssertionError("import triton worked")

    import numpy as np
    import torch

    import pyrtok
    from pyrtok import _triton
    from pyrtok.pyramid.energy import laplacian_energy
    from pyrtok.quantize import nearest_code
    from tests.pyramid.reference import pyr_down_reference, pyr_up_reference
    from tests.quantize.helpers import brute_force_nearest

    # TRITON_INTERPRET=1 would send these CPU tensors to the kernels if Triton imported.
    assert _triton.interpreting() and not _triton.available()
    assert not _triton.kernels_enabled(torch.device("cpu"))

    def run_all():
        g = torch.Generator().manual_seed(0)
        x = torch.rand(2, 3, 37, 26, generator=g)
        vx, codes = torch.randn(300, 16, generator=g), torch.randn(200, 16, generator=g)
        out = {"x": x, "vx": vx, "codes": codes, "down": pyrtok.pyr_down(x)}
        out["up"] = pyrtok.pyr_up(out["down"], (37, 26))
        out["pyramid"] = pyrtok.laplacian_pyramid(x, levels=4)
        out["image"] = pyrtok.reconstruct(out["pyramid"])
        out["energy"] = laplacian_energy(x, patch_size=8, levels=3)[1]
        leaf = x.clone().requires_grad_(True)
        loss = sum(level.square().sum() for level in pyrtok.laplacian_pyramid(leaf))
        out["grad"] = torch.autograd.grad(loss, leaf)[0]
        out["index"] = nearest_code(vx, codes)
        return out

    got = run_all()
    os.environ["PYRTOK_DISABLE_TRITON"] = "1"  # the torch path, chosen explicitly
    want = run_all()
    for name, value in got.items():
        pairs = zip(value, want[name], strict=True) if name == "pyramid" else [(value, want[name])]
        assert all(torch.equal(a, b) for a, b in pairs), name

    # and the torch path is right: independent references
    taps = np.array([1, 4, 6, 4, 1]) / 16
    x64 = got["x"].double().numpy()
    assert np.abs(got["down"].numpy() - pyr_down_reference(x64, taps, "reflect")).max() < 1e-6
    ref_up = pyr_up_reference(got["down"].double().numpy(), (37, 26), taps, "reflect")
    assert np.abs(got["up"].numpy() - ref_up).max() < 1e-6
    assert (got["image"] - got["x"]).abs().max() < 1e-5  # reconstruct(laplacian_pyramid(x))
    assert torch.equal(got["index"], brute_force_nearest(got["vx"], got["codes"]))

    kernel_modules = [
        "pyrtok.pyramid.triton.kernels",
        "pyrtok.pyramid.triton.autograd",
        "pyrtok.quantize.triton_search",
    ]
    touched = [name for name in kernel_modules if name in sys.modules]
    assert not touched, f"kernel modules imported: {touched}"
    print("torch path ok")
    """
)


def test_without_triton_the_torch_path_runs_and_matches() -> None:
    """A Python whose ``import triton`` fails (the CI shim) runs every op on the torch path."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(NO_TRITON), str(ROOT), str(ROOT / "src")]),
        "TRITON_INTERPRET": "1",
    }
    env.pop(_triton.DISABLE_ENV, None)
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stdout.strip().endswith("torch path ok")

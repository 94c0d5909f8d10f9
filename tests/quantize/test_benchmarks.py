"""The VQ benchmark scripts run end to end at a tiny size (CPU) and print their tables."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

pytest.importorskip("vector_quantize_pytorch")

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _load(name: str) -> ModuleType:
    if str(BENCHMARKS) not in sys.path:  # the scripts import their shared vq_matched module
        sys.path.insert(0, str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_vq_speed_tiny() -> None:
    table = _load("vq_speed").main(
        ["--n", "64", "--dim", "8", "--codebook-size", "16", "--steps", "1", "--warmup", "0"]
    )
    rows = [line for line in table.splitlines() if line.startswith("| ")][1:]
    assert [row.split("|")[1].strip() for row in rows] == ["pyrtok", "vector-quantize-pytorch"]
    assert rows[1].split("|")[3].strip() == "1.00x"


def test_vq_quality_tiny() -> None:
    pytest.importorskip("skimage")
    pytest.importorskip("sklearn")
    args = ["--steps", "2", "--seeds", "2", "--codebook-size", "16", "--batch", "64"]
    table = _load("vq_quality").main([*args, "--max-eval", "300"])
    rows = [line for line in table.splitlines() if line.startswith("| ")][1:]
    assert len(rows) == 4
    for row in rows:
        utilisation = float(row.split("|")[3].split("±")[0])
        assert 0.0 < utilisation <= 1.0

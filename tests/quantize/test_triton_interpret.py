"""The fused Triton kernel against float64 brute force: on the CPU under ``TRITON_INTERPRET=1``,
and compiled on a GPU where there is one.

The interpreter flag must be set before Triton is imported, so the check runs in a fresh
subprocess (nothing leaks into the other tests).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

pytest.importorskip("triton", reason="Triton is not installed (it is optional)")

SCRIPT = textwrap.dedent(
    """
    import sys

    import torch
    from pyrtok.quantize.search import fused_search, score_error_bound
    from pyrtok.quantize.triton_search import top2_scores_triton
    from tests.quantize.helpers import brute_force_nearest

    dev = torch.device(sys.argv[1])
    g = torch.Generator().manual_seed(0)
    cases = [(70, 150, 40), (1, 1, 16), (33, 129, 3), (64, 128, 64)]
    for n, k, d in cases:
        x, codes = torch.randn(n, d, generator=g).to(dev), torch.randn(k, d, generator=g).to(dev)
        sq = codes.square().sum(1)
        scores = x.double() @ codes.double().T - 0.5 * sq.double()
        for precision in ("fp32", "tf32"):
            index, best, second = top2_scores_triton(x, codes, sq, precision)
            top = scores.topk(min(2, k), dim=1).values
            # the kernel's top-2 scores stay within the error model the search relies on
            bound = score_error_bound(x.norm(dim=1), sq.max().sqrt(), d, precision).double()
            assert ((best.double() - top[:, 0]).abs() <= bound).all(), (n, k, d, precision)
            if k > 1:
                assert ((second.double() - top[:, 1]).abs() <= bound).all(), (n, k, d)
            else:
                assert torch.isneginf(second).all()
            got = fused_search(x, codes, sq, precision)
            assert torch.equal(got, brute_force_nearest(x, codes)), (n, k, d, precision)
    # exact duplicates: every row undecided by the kernel, resolved to the lowest index
    codes = torch.randn(20, 8, generator=g).repeat(2, 1).to(dev)
    x = torch.randn(50, 8, generator=g).to(dev)
    got = fused_search(x, codes, codes.square().sum(1), "tf32")
    assert torch.equal(got, brute_force_nearest(x, codes)) and (got < 20).all()
    try:
        fused_search(torch.tensor([[float("nan"), 0.0]], device=dev), codes[:, :2].contiguous(),
                     codes[:, :2].square().sum(1), "fp32")
    except ValueError as err:
        assert "row 0" in str(err)
    else:
        raise AssertionError("NaN row was not reported")
    print("ok")
    """
)


@pytest.mark.parametrize(
    "device",
    [
        "cpu",
        pytest.param(
            "cuda",
            marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
        ),
    ],
)
def test_triton_kernel_matches_brute_force(device: str) -> None:
    """On the CPU through the interpreter; on a GPU the compiled kernel."""
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{root / 'src'}"}
    if device == "cpu":
        env["TRITON_INTERPRET"] = "1"
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, device],
        env=env,
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().endswith("ok")

"""Run the ``test_interp_*`` files in a fresh pytest process with ``TRITON_INTERPRET=1``.

Triton reads the flag when a kernel is first decorated, so the interpreter tests need their own
process; that also keeps the flag out of every other test.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("triton", reason="Triton is not installed (it is optional)")

HERE = Path(__file__).resolve().parent


@pytest.mark.slow
@pytest.mark.skipif(
    os.environ.get("TRITON_INTERPRET") == "1", reason="already the interpreter process"
)
def test_kernels_match_torch_path_under_interpreter() -> None:
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    env.pop("PYRTOK_DISABLE_TRITON", None)
    files = sorted(str(path) for path in HERE.glob("test_interp_*.py"))
    assert files
    done = subprocess.run(
        [sys.executable, "-m", "pytest", *files, "-q", "-p", "no:cacheprovider"],
        cwd=HERE.parents[1],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert " passed" in done.stdout
    assert "failed" not in done.stdout

"""Block Triton in every Python process started with this folder on ``PYTHONPATH``.

CI runs the suite as on a machine without Triton (CPU wheels of PyTorch, macOS, Windows) with::

    PYTHONPATH="$PWD/tests/no_triton" .venv/bin/python -m pytest

Python imports ``sitecustomize`` at start-up, before any other code, so Triton is blocked before
anything could import it, and child processes inherit the block through ``PYTHONPATH``. A
``None`` entry in ``sys.modules`` makes ``import triton`` raise ``ModuleNotFoundError`` and
``importlib.util.find_spec("triton")`` return ``None`` (how PyTorch probes for Triton), exactly
as when it is not installed. A ``sitecustomize`` this file shadows (a distribution's) still runs.
"""

import importlib.machinery
import importlib.util
import os
import sys


def _run_shadowed_sitecustomize() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    rest = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is not None and spec.loader is not None:
        spec.loader.exec_module(importlib.util.module_from_spec(spec))


if __name__ == "sitecustomize":  # not when pytest's doctest collection imports this file
    for _name in ("triton", "triton.language"):
        sys.modules[_name] = None  # type: ignore[assignment]
    _run_shadowed_sitecustomize()

"""Doctest collection of ``src/pyrtok`` imports every module: where Triton is missing, the one
module that needs it at import (the pyramid kernels) is left out. Not part of the wheel."""

from pyrtok import _triton

collect_ignore = [] if _triton.available() else ["pyrtok/pyramid/triton/kernels.py"]

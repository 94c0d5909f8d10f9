"""Equal-budget evaluation: every token-reduction contender on one model, one dataset, one
budget definition (:mod:`pyrtok.vlm.cost`)."""

from pyrtok.eval.data import Sample, as_sample
from pyrtok.eval.methods import Prepared, SweepModel
from pyrtok.eval.report import markdown, plot, write
from pyrtok.eval.sweep import SweepResult, sweep

__all__ = [
    "Prepared",
    "Sample",
    "SweepModel",
    "SweepResult",
    "as_sample",
    "markdown",
    "plot",
    "sweep",
    "write",
]

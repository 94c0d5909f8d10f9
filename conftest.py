"""Shared pytest set-up. Doctests get no injected names: every example imports what it uses."""

import os

import torch


def pytest_configure() -> None:
    """One torch thread (and in subprocesses) unless ``OMP_NUM_THREADS`` says otherwise: the suite
    is many small ops, and on a shared or busy machine a second thread mostly waits for a core."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

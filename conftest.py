"""Shared pytest set-up: names every docstring example may use without importing them."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _doctest_namespace(doctest_namespace: dict[str, object]) -> None:
    doctest_namespace["torch"] = torch

"""The docs as a reader uses them: links resolve, the extras table matches pyproject.toml, and
the snippet check really runs a page in a clean namespace (``tools/check_docs.py``)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("check_docs", ROOT / "tools" / "check_docs.py")
assert _spec is not None
assert _spec.loader is not None
check_docs = importlib.util.module_from_spec(_spec)
sys.modules["check_docs"] = check_docs
_spec.loader.exec_module(check_docs)

PYPROJECT = {
    "project": {
        "dependencies": ["torch>=2.4", "numpy"],
        "optional-dependencies": {"dev": ["pytest>=8", "Scikit_Learn>=1.3"], "docs": ["mkdocs"]},
    }
}


def test_relative_links_of_readme_contributing_and_notebooks_resolve() -> None:
    assert check_docs.link_problems(check_docs.linked_files()) == []


def test_extras_table_and_core_dependencies_match_pyproject() -> None:
    pytest.importorskip("tomllib")  # Python 3.11+
    assert check_docs.dependency_problems() == []


def test_link_check_names_missing_files_and_headings(tmp_path: Path) -> None:
    (tmp_path / "guide.md").write_text("# Title\n\n## Two words: here\n", encoding="utf-8")
    page = tmp_path / "page.md"
    page.write_text(
        "[ok](guide.md#two-words-here) [ok](#top) [web](https://example.com/x.md)\n"
        "[gone](missing.md) [bad anchor](guide.md#nowhere) `[code](not-a-link.md)`\n\n# Top\n",
        encoding="utf-8",
    )
    assert check_docs.link_problems([page], root=tmp_path) == [
        "page.md: link 'missing.md': no file 'missing.md'",
        "page.md: link 'guide.md#nowhere': no heading #nowhere in guide.md",
    ]


def test_extras_check_names_the_package_and_the_extra() -> None:
    table = "| `dev` | pytest, ruff | tests |\n| `docs` | mkdocs | site |\n"
    assert check_docs.extras_problems(PYPROJECT, table) == [
        "extra 'dev': scikit-learn is in pyproject.toml, not in the table",
        "extra 'dev': ruff is in the table, not in pyproject.toml",
    ]
    assert check_docs.extras_problems(PYPROJECT, "| `dev` | pytest, scikit-learn | |") == [
        "extra 'docs': no row in the extras table"
    ]


def test_core_check_reads_the_backticked_names() -> None:
    text = "Its core dependencies are `torch` and `torchvision`. Other `names` do not count."
    assert check_docs.core_problems(PYPROJECT, text, "page.md") == [
        "page.md: core dependency numpy is missing",
        "page.md: torchvision is named a core dependency, pyproject.toml has no such dependency",
    ]


def test_snippet_check_runs_each_page_in_a_clean_namespace(tmp_path: Path) -> None:
    good = tmp_path / "good.md"
    good.write_text(">>> import math\n>>> math.floor(2.5)\n2\n\nprose\n\n>>> math.tau\n6.28...\n")
    bad = tmp_path / "bad.md"
    bad.write_text(">>> torch.zeros(1)\ntensor([0.])\n", encoding="utf-8")
    assert check_docs.run_page(good) is None
    report = check_docs.run_page(bad)
    assert report is not None
    assert "NameError: name 'torch' is not defined" in report

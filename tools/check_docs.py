"""Check the docs the way a reader uses them.

- ``snippets``: the ``>>>`` examples of every ``docs/**/*.md`` page run top to bottom in a fresh
  Python process (``python -m doctest``), one clean namespace per page and no conftest: pasted
  into a fresh interpreter, the page runs.
- ``links``: every relative link in ``README.md``, ``CONTRIBUTING.md`` and the markdown cells of
  ``examples/*.ipynb`` points at an existing file, and at an existing heading when it has a
  ``#fragment``. ``mkdocs build --strict`` checks the links inside ``docs/``.
- ``extras``: the extras table of ``docs/installation.md`` and the core dependencies named there
  and in ``CONTRIBUTING.md`` match ``pyproject.toml``.

Usage: ``python tools/check_docs.py [snippets] [links] [extras]`` (no argument: all three).
Exits 1 and names every problem when a check fails.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import unicodedata
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINKED_FILES = ("README.md", "CONTRIBUTING.md")

_FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
_CODE_SPAN = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_HTML_LINK = re.compile(r"<(?:a|img)\s[^>]*?(?:href|src)=\"([^\"]+)\"")
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.M)
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def doc_pages(root: Path = ROOT) -> list[Path]:
    """The docs pages that hold ``>>>`` examples, sorted."""
    return sorted(p for p in (root / "docs").rglob("*.md") if ">>>" in p.read_text("utf-8"))


def run_page(page: Path) -> str | None:
    """Run a page's ``>>>`` examples in a fresh interpreter; the doctest report if any fails."""
    done = subprocess.run(
        [sys.executable, "-m", "doctest", "-o", "ELLIPSIS", str(page)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    return None if done.returncode == 0 else done.stdout + done.stderr


def check_snippets(pages: Iterable[Path]) -> list[str]:
    """One problem per page whose examples fail, with doctest's report."""
    problems = []
    for page in pages:
        report = run_page(page)
        shown = page.relative_to(ROOT) if page.is_relative_to(ROOT) else page
        print(f"{'FAIL' if report else 'ok  '} {shown}", flush=True)
        if report:
            problems.append(f"{shown}: examples fail in a fresh namespace\n{report}")
    return problems


def _prose(markdown: str) -> str:
    """Markdown without fenced code blocks and code spans, where links are not links."""
    return _CODE_SPAN.sub("", _FENCE.sub("", markdown))


def _slugs(heading: str) -> set[str]:
    """Anchors a heading gets on GitHub, in mkdocs (Python-Markdown's toc) and in Jupyter."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "")
    words = re.sub(r"[^\w\s-]", "", text.lower())
    toc = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return {
        words.strip().replace(" ", "-"),
        re.sub(r"[-\s]+", "-", re.sub(r"[^\w\s-]", "", toc).strip().lower()),
        text.strip().replace(" ", "-"),
    }


def markdown_of(path: Path) -> str:
    """A markdown file's text, or a notebook's markdown cells joined."""
    if path.suffix != ".ipynb":
        return path.read_text("utf-8")
    cells = json.loads(path.read_text("utf-8"))["cells"]
    return "\n\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")


def anchors(path: Path) -> set[str]:
    """Every anchor the headings of a markdown file or notebook may have."""
    found: set[str] = set()
    for heading in _HEADING.findall(_FENCE.sub("", markdown_of(path))):
        slugs = _slugs(heading)
        for n in range(1, 10):  # repeated headings get -1, _1, ... appended
            slugs |= {f"{s}-{n}" for s in slugs} | {f"{s}_{n}" for s in slugs}
        found |= slugs
    return found


def link_problems(files: Iterable[Path], root: Path = ROOT) -> list[str]:
    """One problem per relative link that names a missing file or heading."""
    problems = []
    for source in files:
        name = source.relative_to(root)
        text = _prose(markdown_of(source))
        for target in _LINK.findall(text) + _HTML_LINK.findall(text):
            if _SCHEME.match(target):
                continue
            path_part, _, fragment = target.partition("#")
            path = (source.parent / path_part).resolve() if path_part else source
            if not path.is_relative_to(root) or not path.exists():
                problems.append(f"{name}: link {target!r}: no file {path_part!r}")
            elif fragment and path.suffix in (".md", ".ipynb") and fragment not in anchors(path):
                problems.append(f"{name}: link {target!r}: no heading #{fragment} in {path_part}")
    return problems


def linked_files(root: Path = ROOT) -> list[Path]:
    """README, CONTRIBUTING and the example notebooks."""
    return [root / f for f in LINKED_FILES] + sorted((root / "examples").glob("*.ipynb"))


def _name(requirement: str) -> str:
    """``"Foo_Bar[x]>=1"`` -> ``"foo-bar[x]"``: the normalised name, extras kept."""
    match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*(\[[^\]]*\])?", requirement.strip())
    if match is None:
        raise ValueError(f"requirement: cannot read a package name from {requirement!r}")
    return re.sub(r"[-_.]+", "-", match.group(0)).lower()


def extras_table(markdown: str) -> dict[str, set[str]]:
    """The table rows ``| `extra` | package, package, ... | ... |`` as ``{extra: names}``."""
    rows = re.findall(r"^\|\s*`([\w-]+)`\s*\|([^|]*)\|", markdown, re.M)
    return {extra: {_name(p) for p in packages.split(",") if p.strip()} for extra, packages in rows}


def extras_problems(pyproject: dict[str, object], markdown: str) -> list[str]:
    """Differences between ``[project.optional-dependencies]`` and the installation table."""
    project = pyproject["project"]
    assert isinstance(project, dict)
    declared = {e: {_name(r) for r in reqs} for e, reqs in project["optional-dependencies"].items()}
    table = extras_table(markdown)
    problems = [f"extra {e!r}: no row in the extras table" for e in declared.keys() - table.keys()]
    problems += [
        f"extra {e!r}: in the table, not in pyproject.toml" for e in table.keys() - declared.keys()
    ]
    for extra in sorted(declared.keys() & table.keys()):
        for package in sorted(declared[extra] - table[extra]):
            problems.append(f"extra {extra!r}: {package} is in pyproject.toml, not in the table")
        for package in sorted(table[extra] - declared[extra]):
            problems.append(f"extra {extra!r}: {package} is in the table, not in pyproject.toml")
    return problems


def core_problems(pyproject: dict[str, object], markdown: str, name: str) -> list[str]:
    """Differences between ``[project].dependencies`` and the backticked names of the sentence
    that starts with "core dependencies" in ``markdown``."""
    project = pyproject["project"]
    assert isinstance(project, dict)
    declared = {_name(r) for r in project["dependencies"]}
    sentence = re.search(r"core dependencies.*?\.(?:\s|$)", markdown, re.I | re.S)
    if sentence is None:
        return [f"{name}: no sentence naming the core dependencies"]
    listed = {_name(n) for n in re.findall(r"`([^`]+)`", sentence.group(0))}
    return [f"{name}: core dependency {p} is missing" for p in sorted(declared - listed)] + [
        f"{name}: {p} is named a core dependency, pyproject.toml has no such dependency"
        for p in sorted(listed - declared)
    ]


def dependency_problems(root: Path = ROOT) -> list[str]:
    """The extras table and the core-dependency sentences against ``pyproject.toml``."""
    import tomllib  # Python 3.11+

    pyproject = tomllib.loads((root / "pyproject.toml").read_text("utf-8"))
    installation = (root / "docs" / "installation.md").read_text("utf-8")
    problems = extras_problems(pyproject, installation)
    for page in ("docs/installation.md", "CONTRIBUTING.md"):
        problems += core_problems(pyproject, (root / page).read_text("utf-8"), page)
    return problems


def main(checks: list[str]) -> int:
    unknown = set(checks) - {"snippets", "links", "extras"}
    if unknown:
        print(f"checks: unknown {sorted(unknown)}; choose from snippets, links, extras")
        return 2
    checks = checks or ["snippets", "links", "extras"]
    problems = []
    if "links" in checks:
        problems += link_problems(linked_files())
    if "extras" in checks:
        problems += dependency_problems()
    if "snippets" in checks:
        problems += check_snippets(doc_pages())
    print("\n".join(problems) or f"{', '.join(checks)}: ok")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

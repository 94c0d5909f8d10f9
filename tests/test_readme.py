"""The README's promises: its tour runs, and CI runs the README's own commands."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_readme_opens_with_the_two_commands() -> None:
    block = re.search(r"```bash\n(.*?)```", README, re.S)
    assert block is not None
    demo, tests = block.group(1).strip().splitlines()
    assert demo.endswith("pyrtok demo")
    assert tests.endswith("python -m pytest")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert 'readme_command "python -m pytest"' in ci
    assert 'readme_command "pyrtok demo"' in ci


def test_readme_tour_runs() -> None:
    block = re.search(r"```python\n(.*?)```", README, re.S)
    assert block is not None
    namespace: dict[str, object] = {}
    exec(compile(block.group(1), "README.md", "exec"), namespace)
    assert tuple(namespace["x_hat"].shape) == (1, 3, 512, 512)  # type: ignore[attr-defined]
    assert namespace["allocation"].lengths.tolist() == [256]  # type: ignore[attr-defined]

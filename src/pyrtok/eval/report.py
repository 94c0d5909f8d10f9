"""A sweep's results on disk: JSON (rows, paired samples, skipped cells), a markdown table
and an accuracy-vs-equivalent-tokens plot."""

from __future__ import annotations

import json
from pathlib import Path

from pyrtok.eval.sweep import SweepResult

COLUMNS = (
    ("accuracy", "accuracy %", 100.0, 1),
    ("visual_tokens", "visual tokens", 1.0, 1),
    ("equivalent_tokens", "equivalent tokens", 1.0, 1),
    ("encoder_gflops", "encoder GFLOPs", 1.0, 4),
    ("lm_prefill_gflops", "LM prefill GFLOPs", 1.0, 4),
    ("prefill_ms", "prefill ms", 1.0, 2),
    ("decode_ms_per_token", "decode ms/token", 1.0, 2),
)


def markdown(result: SweepResult) -> str:
    """One row per (method, budget), the cost columns side by side, skipped cells below.

    Examples:
        >>> print(markdown(SweepResult()).splitlines()[0])
        | method | budget | accuracy % | visual tokens | equivalent tokens | encoder GFLOPs | LM \
prefill GFLOPs | prefill ms | decode ms/token |
    """
    lines = [
        "| method | budget | " + " | ".join(title for _, title, _, _ in COLUMNS) + " |",
        "|---|---:|" + "---:|" * len(COLUMNS),
    ]
    for row in result.rows:
        cells = [f"{row[key] * scale:.{digits}f}" for key, _, scale, digits in COLUMNS]
        lines.append(f"| {row['method']} | {row['budget']} | " + " | ".join(cells) + " |")
    if result.skipped:
        lines.append("")
        lines += [f"- skipped {m} at {b}: {reason}" for m, b, reason in result.skipped]
    return "\n".join(lines) + "\n"


def plot(result: SweepResult, path: Path) -> None:
    """PNG: accuracy against equivalent tokens, one line per method (needs matplotlib)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4))
    for method in dict.fromkeys(r["method"] for r in result.rows):
        rows = sorted(
            (r for r in result.rows if r["method"] == method), key=lambda r: r["equivalent_tokens"]
        )
        axis.plot(
            [r["equivalent_tokens"] for r in rows],
            [100 * r["accuracy"] for r in rows],
            marker="o",
            label=method,
        )
    axis.set_xlabel("equivalent visual tokens (mean over LM layers)")
    axis.set_ylabel("accuracy (%)")
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def write(result: SweepResult, directory: str | Path, figure: bool = True) -> Path:
    """``results.json``, ``results.md`` and (``figure``) ``accuracy_vs_tokens.png`` in
    ``directory``; returns the directory."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    payload = {
        "config": result.config,
        "rows": result.rows,
        "samples": result.samples,
        "skipped": [list(s) for s in result.skipped],
    }
    (out / "results.json").write_text(json.dumps(payload, indent=1))
    (out / "results.md").write_text(markdown(result))
    if figure:
        plot(result, out / "accuracy_vs_tokens.png")
    return out

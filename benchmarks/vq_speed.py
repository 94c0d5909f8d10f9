"""Speed and peak memory of a VQ training step (fwd + bwd): pyrtok vs vector-quantize-pytorch.

Matched settings: EMA codebook (decay 0.99), commitment weight 0.25, straight-through estimator,
no k-means init, no dead-code restarts, training mode (the EMA update runs every step). Each
implementation runs in its own child process so that peak memory is its own: on the CPU the
child's peak resident set size (``ru_maxrss``, which includes the ~0.5 GB that importing torch
costs, reported separately as "import RSS"); on CUDA ``torch.cuda.max_memory_allocated``.

    python benchmarks/vq_speed.py --repeats 3          # CPU, N=16384, D=256, K=8192
    python benchmarks/vq_speed.py --device cuda --n 65536 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

from vq_matched import IMPLEMENTATIONS, matched_quantizer


def worker(args: argparse.Namespace) -> dict[str, float]:
    """Run ``args.warmup + args.steps`` training steps of one implementation; return timings."""
    import torch

    import_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    module = matched_quantizer(
        args.worker, args.dim, args.codebook_size, search_precision=args.precision
    )
    assert isinstance(module, torch.nn.Module)
    module = module.to(device).train()
    x = torch.randn(1, args.n, args.dim, device=device)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for step in range(args.warmup + args.steps):
        xi = x.clone().requires_grad_(True)
        sync()
        start = time.perf_counter()
        quantized, _, loss = module(xi)
        (quantized.square().mean() + loss.sum()).backward()
        sync()
        if step >= args.warmup:
            times.append(time.perf_counter() - start)
    if device.type == "cuda":
        peak = float(torch.cuda.max_memory_allocated())
    else:
        peak = float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return {"ms": 1e3 * statistics.median(times), "peak": peak, "import_rss": float(import_rss)}


def _run_child(impl: str, args: argparse.Namespace) -> dict[str, float]:
    cmd = [sys.executable, __file__, "--worker", impl]
    for key in ("device", "n", "dim", "codebook_size", "steps", "warmup", "seed", "precision"):
        cmd += [f"--{key.replace('_', '-')}", str(getattr(args, key))]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{impl} worker failed:\n{done.stderr}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _gb(n: float) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--n", type=int, default=16384, help="tokens per step")
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--codebook-size", type=int, default=8192)
    parser.add_argument("--steps", type=int, default=3, help="timed steps (median reported)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--precision",
        default="auto",
        choices=("auto", "fp32", "tf32", "bf16"),
        help="pyrtok's search_precision (indices are exact for every choice)",
    )
    parser.add_argument(
        "--repeats", type=int, default=1, help="child processes per implementation, alternated"
    )
    parser.add_argument("--worker", choices=IMPLEMENTATIONS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args)))
        return ""

    runs: dict[str, list[dict[str, float]]] = {impl: [] for impl in IMPLEMENTATIONS}
    for _ in range(args.repeats):  # alternate, so load changes hit both alike
        for impl in IMPLEMENTATIONS:
            runs[impl].append(_run_child(impl, args))
    results = {
        impl: {
            "ms": statistics.median(r["ms"] for r in rs),
            "peak": max(r["peak"] for r in rs),
            "import_rss": max(r["import_rss"] for r in rs),
        }
        for impl, rs in runs.items()
    }
    anchor = results["vector-quantize-pytorch"]
    memory = "peak RSS" if args.device == "cpu" else "peak CUDA memory"
    lines = [
        f"VQ training step (fwd+bwd), {args.device}, N={args.n}, D={args.dim}, "
        f"K={args.codebook_size}, EMA 0.99, commitment 0.25, STE; median of {args.steps} steps "
        f"x {args.repeats} process(es), peak = max over processes; pyrtok search_precision="
        f"{args.precision!r}",
        "",
        f"| implementation | ms / step | speed-up | {memory} | memory ratio |"
        + (" import RSS |" if args.device == "cpu" else ""),
        "|---|---:|---:|---:|---:|" + ("---:|" if args.device == "cpu" else ""),
    ]
    for impl, r in results.items():
        row = (
            f"| {impl} | {r['ms']:.1f} | {anchor['ms'] / r['ms']:.2f}x | {_gb(r['peak'])} "
            f"| {r['peak'] / anchor['peak']:.3f} |"
        )
        lines.append(row + (f" {_gb(r['import_rss'])} |" if args.device == "cpu" else ""))
    table = "\n".join(lines)
    print(table)
    return table


if __name__ == "__main__":
    main()

"""Pyramid speed: pyrtok against OpenCV and kornia (CPU) or kornia (CUDA), in one run.

Laplacian pyramid build and reconstruction, 4 levels (3 bands and the low-pass residual). Every
table prints ratios against the anchors measured in the same run.

CPU (default; issues #2, #18): 8x3x512x512 float32 (24 channel-images), eager. OpenCV's
``pyrDown``/``pyrUp`` loop (what a CPU user would pick), kornia's ``build_laplacian_pyramid``
and ``pyrup`` loop, pyrtok's pure-torch path (``PYRTOK_DISABLE_OPENCV=1``) and pyrtok's default
(OpenCV's pyrDown/pyrUp where the ``cpu`` extra is installed, as here) run side by side in one
process, interleaved per repeat (so a load spike hits all four), median of ``--repeats`` after a
warm-up, each ratio the median over repeats of the two times measured back to back; at 1 and 2
threads (OpenCV with the same count via ``cv2.setNumThreads``), and at 2 threads with one core
kept busy by another process (a spinning ``python -c "while True: pass"``, killed at the end).
The load average at each scenario's start is printed: absolute times on a shared machine are
noisy, the ratios are the result. ``--omp-passive`` sets ``OMP_WAIT_POLICY=PASSIVE`` before
torch loads (idle OpenMP threads sleep instead of spinning: what keeps torch's multi-threaded
ops from collapsing on a busy machine). Needs the ``bench`` extra (opencv-python-headless,
kornia).

CUDA (``--device cuda``; issue #3): checks the fused kernels against the torch path first (fp32
max abs error <= 1e-5, bf16 within 2 eps), measures the device-to-device copy bandwidth, then
times kornia, the torch path (eager and ``torch.compile(fullgraph=True)``), the fused kernels
and the fused kernels replayed from a CUDA graph, with CUDA events (median of ``--repeats``
after warm-up), in float32 and bfloat16. Achieved bandwidth counts the minimal bytes: build
reads the input once and writes every level once; reconstruction reads every level once and
writes the image once. A scaling table (batch 1/8/64 x side 224/512/1024) shows eager launches
against CUDA-graph replay; inputs rotate among copies larger than the L2 cache.

    python benchmarks/pyramid_speed.py --device cpu        # CPU, 8x3x512x512
    python benchmarks/pyramid_speed.py --device cpu --omp-passive  # idle OpenMP threads sleep
    python benchmarks/pyramid_speed.py --device cuda       # GPU suite (64x3x512x512 + scaling)
    python benchmarks/pyramid_speed.py --quick             # tiny smoke run of either suite
    python benchmarks/pyramid_speed.py --triton-interpret  # the GPU suite's code on the CPU
        # through Triton's interpreter at a tiny size: checks the script and the kernels end to
        # end; its timings are not GPU numbers and mean nothing
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

LEVELS = 4
PATCH = 16
OPS = ("build", "reconstruct")


# ---------------------------------------------------------------------------------------------
# Shared helpers
# ---------------------------------------------------------------------------------------------


FAST_PATH_SWITCHES = ("PYRTOK_DISABLE_TRITON", "PYRTOK_DISABLE_OPENCV")


@contextlib.contextmanager
def torch_path() -> Iterator[None]:
    """Force pyrtok's pure-torch path (the reference: no Triton, no OpenCV) inside the block."""
    old = {name: os.environ.get(name) for name in FAST_PATH_SWITCHES}
    os.environ.update(dict.fromkeys(FAST_PATH_SWITCHES, "1"))
    try:
        yield
    finally:
        for name, value in old.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def on_torch_path(fn: Callable[[], Any]) -> Callable[[], Any]:
    """``fn`` run under :func:`torch_path`."""

    def run() -> Any:
        with torch_path():
            return fn()

    return run


def kornia_build(x: Any, levels: int = LEVELS) -> list[Any]:
    from kornia.geometry.transform import build_laplacian_pyramid

    return list(build_laplacian_pyramid(x, levels))


def kornia_reconstruct(pyramid: list[Any]) -> Any:
    from kornia.geometry.transform import pyrup

    image = pyramid[-1]
    for band in reversed(pyramid[:-1]):
        image = band + pyrup(image)
    return image


def level_shapes(shape: tuple[int, ...], levels: int = LEVELS) -> list[tuple[int, ...]]:
    *lead, h, w = shape
    shapes = []
    for _ in range(levels):
        shapes.append((*lead, h, w))
        h, w = (h + 1) // 2, (w + 1) // 2
    return shapes


def pyramid_elements(shape: tuple[int, ...], levels: int = LEVELS) -> int:
    return sum(math.prod(s) for s in level_shapes(shape, levels))


def _kornia_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("kornia")
    except PackageNotFoundError:
        return "(not installed)"


def _fmt(value: float, digits: int = 2) -> str:
    if value != value:  # NaN: not measured
        return "-"
    return f"{value:.{digits}f}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# CPU suite: OpenCV, kornia and pyrtok side by side, in one process, interleaved
# ---------------------------------------------------------------------------------------------

CPU_IMPLEMENTATIONS = ("opencv", "kornia", "pyrtok torch", "pyrtok")
"""``pyrtok torch``: the pure-torch path (``PYRTOK_DISABLE_OPENCV=1``); ``pyrtok``: the default,
which runs OpenCV's pyrDown/pyrUp where the ``cpu`` extra is installed."""
CPU_SCENARIOS = ((1, False), (2, False), (2, True))
"""(threads, one core kept busy by another process)."""


def opencv_build(planes: Any, levels: int = LEVELS) -> list[list[Any]]:
    """Laplacian pyramid of each ``(H, W)`` float32 plane with ``cv2.pyrDown``/``pyrUp``."""
    import cv2

    out = []
    for plane in planes:
        g = [plane]
        for _ in range(levels - 1):
            g.append(cv2.pyrDown(g[-1]))
        bands = [g[k] - cv2.pyrUp(g[k + 1], dstsize=g[k].shape[::-1]) for k in range(levels - 1)]
        out.append([*bands, g[-1]])
    return out


def opencv_reconstruct(pyramids: list[list[Any]]) -> list[Any]:
    import cv2

    out = []
    for pyramid in pyramids:
        image = pyramid[-1]
        for band in reversed(pyramid[:-1]):
            image = band + cv2.pyrUp(image, dstsize=band.shape[::-1])
        out.append(image)
    return out


@contextlib.contextmanager
def busy_core(active: bool) -> Iterator[None]:
    """Keep one core busy with another process (a spinning Python) inside the block."""
    if not active:
        yield
        return
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)  # let it take its core
        yield
    finally:
        spinner.kill()
        spinner.wait(timeout=10)


def cpu_scenario(args: argparse.Namespace, threads: int) -> dict[tuple[str, str], list[float]]:
    """ms of every repeat of every (implementation, op), the implementations interleaved."""
    import cv2
    import torch

    import pyrtok

    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)
    torch.manual_seed(args.seed)
    x = torch.rand(args.batch, 3, args.size, args.size)
    planes = x.reshape(-1, args.size, args.size).numpy()
    levels = [torch.rand(s) for s in level_shapes(tuple(x.shape))]
    cv_levels = opencv_build(planes)
    runs: dict[tuple[str, str], Callable[[], Any]] = {
        ("opencv", "build"): lambda: opencv_build(planes),
        ("pyrtok", "build"): lambda: pyrtok.laplacian_pyramid(x, LEVELS),
        ("pyrtok torch", "build"): on_torch_path(lambda: pyrtok.laplacian_pyramid(x, LEVELS)),
        ("kornia", "build"): lambda: kornia_build(x),
        ("opencv", "reconstruct"): lambda: opencv_reconstruct(cv_levels),
        ("pyrtok", "reconstruct"): lambda: pyrtok.reconstruct(levels),
        ("pyrtok torch", "reconstruct"): on_torch_path(lambda: pyrtok.reconstruct(levels)),
        ("kornia", "reconstruct"): lambda: kornia_reconstruct(levels),
    }
    times: dict[tuple[str, str], list[float]] = {
        key: [] for key in runs
    }  # pyrtok right after OpenCV
    for step in range(args.warmup + args.repeats):
        for key, run in runs.items():
            start = time.perf_counter()
            run()
            if step >= args.warmup:
                times[key].append(1e3 * (time.perf_counter() - start))
    return times


def cpu_correctness(args: argparse.Namespace) -> list[str]:
    """pyrtok against OpenCV (same bands) and both reconstructions, on the benchmark's input."""
    import numpy as np
    import torch

    import pyrtok

    torch.manual_seed(args.seed)
    x = torch.rand(args.batch, 3, args.size, args.size)
    with torch_path():
        ours = pyrtok.laplacian_pyramid(x, LEVELS)
    theirs = opencv_build(x.reshape(-1, args.size, args.size).numpy())
    band_error = max(
        float(np.abs(ours[k].reshape(-1, *ours[k].shape[-2:]).numpy()[i] - theirs[i][k]).max())
        for i in range(len(theirs))
        for k in range(LEVELS)
    )
    with torch_path():
        back = (pyrtok.reconstruct(ours) - x).abs().max().item()
    default_back = (pyrtok.reconstruct(pyrtok.laplacian_pyramid(x, LEVELS)) - x).abs().max().item()
    kornia_back = (kornia_reconstruct(kornia_build(x)) - x).abs().max().item()
    return [
        f"- pyrtok's torch-path bands against OpenCV's (float32): max abs difference "
        f"{band_error:.1e}",
        f"- reconstruction max abs error: pyrtok torch path {back:.1e}, pyrtok default "
        f"{default_back:.1e}, kornia {kornia_back:.1e} "
        "(kornia's bands are not Burt-Adelson's: it blurs then bilinear-resizes)",
    ]


def _ratio_of_repeats(times: list[float], anchor: list[float]) -> str:
    """Median over repeats of ``time / anchor`` (each pair measured back to back)."""
    return _fmt(statistics.median(t / a for t, a in zip(times, anchor, strict=True))) + "x"


def run_cpu(args: argparse.Namespace) -> str:
    import cv2
    import torch

    from pyrtok.pyramid import opencv_path
    from pyrtok.pyramid.kernels import resolve_kernel

    default_path = (
        "OpenCV's pyrDown/pyrUp"
        if opencv_path.usable(torch.zeros(2, 2), resolve_kernel("binom5"), "reflect")
        else "the torch path"
    )

    rows = []
    for threads, busy in CPU_SCENARIOS:
        with busy_core(busy):
            load = os.getloadavg()[0]
            result = cpu_scenario(args, threads)
        for op in OPS:
            anchor = result[("opencv", op)]

            rows.append(
                [
                    op,
                    str(threads) + (" + 1 core busy" if busy else ""),
                    *(_fmt(statistics.median(result[(i, op)]), 1) for i in CPU_IMPLEMENTATIONS),
                    _ratio_of_repeats(result[("pyrtok torch", op)], anchor),
                    _ratio_of_repeats(result[("pyrtok", op)], anchor),
                    _ratio_of_repeats(result[("kornia", op)], anchor),
                    f"{load:.1f}",
                ]
            )
    head = (
        f"CPU ({os.cpu_count()} cores), {args.batch}x3x{args.size}x{args.size} float32, "
        f"{LEVELS} levels, eager; median ms of {args.repeats} after {args.warmup} warm-up, the "
        f"implementations interleaved in one process, ratios the median of each repeat's ratio; "
        f"OpenCV {cv2.__version__} "
        f"(cv2.setNumThreads = torch threads), kornia {_kornia_version()}; pyrtok torch = its "
        f"pure-torch path (PYRTOK_DISABLE_OPENCV=1), pyrtok default = what a call runs "
        f"({default_path}); "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}"
    )
    header = ["op", "threads", "OpenCV ms", "kornia ms", "pyrtok torch ms", "pyrtok default ms"]
    header += ["pyrtok torch / OpenCV", "pyrtok default / OpenCV", "kornia / OpenCV", "load avg"]
    return "\n".join([head, "", _table(header, rows), "", *cpu_correctness(args)])


# ---------------------------------------------------------------------------------------------
# GPU suite (also runnable on the CPU through the Triton interpreter, as a smoke test)
# ---------------------------------------------------------------------------------------------


@dataclass
class Clock:
    """Times callables: CUDA events on a GPU, the wall clock otherwise (interpreter smoke)."""

    device: Any
    warmup: int
    repeats: int
    notes: list[str] = field(default_factory=list)

    @property
    def cuda(self) -> bool:
        return bool(self.device.type == "cuda")

    def median_ms(self, fn: Callable[[], Any]) -> float:
        import torch

        for _ in range(self.warmup):
            fn()
        if not self.cuda:
            times = []
            for _ in range(self.repeats):
                start = time.perf_counter()
                fn()
                times.append(1e3 * (time.perf_counter() - start))
            return statistics.median(times)
        torch.cuda.synchronize()
        times = []
        for _ in range(self.repeats):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        return statistics.median(times)

    def graphed(self, fn: Callable[[], Any]) -> Callable[[], Any] | None:
        """``fn`` captured into a CUDA graph (replayed per call), or None off the GPU."""
        if not self.cuda:
            return None
        import torch

        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(2):  # warm-up outside the graph: compiles kernels, fills caches
                fn()
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            fn()
        return graph.replay


def copy_bandwidth(clock: Clock, quick: bool) -> float:
    """Bytes per second of a large device-to-device copy (bytes read + bytes written)."""
    import torch

    n = 2**20 if quick or not clock.cuda else 2**28  # 1 GiB of float32 on the GPU
    src = torch.rand(n, device=clock.device)
    dst = torch.empty_like(src)
    ms = clock.median_ms(lambda: dst.copy_(src))
    return 2 * src.numel() * src.element_size() / (ms * 1e-3)


@dataclass
class Row:
    op: str
    dtype: str
    impl: str
    ms: float
    bytes_moved: int
    peak_bytes: float = float("nan")


def _check(name: str, error: float, bound: float, failures: list[str]) -> str:
    ok = error <= bound
    if not ok:
        failures.append(f"{name}: {error:.2e} > {bound:.1e}")
    return f"- {name}: max error {error:.2e} (bound {bound:.1e}) {'ok' if ok else 'FAILED'}"


def _max_error(got: Any, want: Any) -> float:
    if isinstance(got, (list, tuple)):
        return max(_max_error(a, b) for a, b in zip(got, want, strict=True))
    return float((got.double() - want.double()).abs().max())


def gpu_compare(
    clock: Clock,
    shape: tuple[int, ...],
    dtype_name: str,
    compile_torch: bool,
    failures: list[str],
) -> tuple[list[Row], list[str]]:
    """Correctness, then timings of every implementation for one shape and dtype."""
    import torch

    import pyrtok
    from pyrtok.pyramid.energy import laplacian_energy

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
    torch.manual_seed(0)
    x = torch.rand(shape, device=clock.device).to(dtype)
    size = x.element_size()
    n_image = x.numel()
    n_pyramid = pyramid_elements(shape)
    build_bytes = size * (n_image + n_pyramid)
    recon_bytes = size * (n_pyramid + n_image)
    energy_out = 4 * shape[0] * LEVELS * math.ceil(shape[-2] / PATCH) * math.ceil(shape[-1] / PATCH)

    # Correctness first: the fused kernels against the torch path (the reference).
    fused = pyrtok.laplacian_pyramid(x, LEVELS)
    fused_image = pyrtok.reconstruct(fused)
    fused_with_energy, fused_energy = laplacian_energy(x, PATCH, LEVELS)
    with torch_path():
        reference = pyrtok.laplacian_pyramid(x, LEVELS)
        reference_image = pyrtok.reconstruct(reference)
        # The energy of the bands as stored (bf16 bands differ from the torch path's by an ulp).
        reference_energy = pyrtok.band_energy(fused_with_energy, PATCH)
    eps = torch.finfo(dtype).eps
    bound = 1e-5 if dtype == torch.float32 else 2 * eps * float(x.abs().max())
    label = f"{dtype_name} {tuple(shape)}"
    notes = [
        _check(
            f"{label} build, fused vs torch path", _max_error(fused, reference), bound, failures
        ),
        _check(
            f"{label} reconstruct, fused vs torch path",
            _max_error(fused_image, reference_image),
            bound,
            failures,
        ),
        _check(
            f"{label} in-kernel band energy vs band_energy of its bands (relative)",
            _max_error(fused_energy, reference_energy) / float(reference_energy.abs().max()),
            1e-5,
            failures,
        ),
    ]
    del fused, fused_image, fused_with_energy, fused_energy, reference_image, reference_energy

    # The public functions; the torch path rows run them under PYRTOK_DISABLE_TRITON=1.
    def build() -> Any:
        return pyrtok.laplacian_pyramid(x, LEVELS)

    def recon() -> Any:
        return pyrtok.reconstruct(reference)

    def energy_fused() -> Any:
        return laplacian_energy(x, PATCH, LEVELS)

    def energy_torch() -> Any:
        return pyrtok.band_energy(pyrtok.laplacian_pyramid(x, LEVELS), PATCH)

    candidates: list[tuple[str, str, Callable[[], Any], bool]] = [
        ("build", "kornia", lambda: kornia_build(x), False),
        ("build", "pyrtok torch path (eager)", build, True),
        ("build", "pyrtok fused", build, False),
        ("reconstruct", "kornia (pyrup loop)", lambda: kornia_reconstruct(reference), False),
        ("reconstruct", "pyrtok torch path (eager)", recon, True),
        ("reconstruct", "pyrtok fused", recon, False),
        ("build + energy", "pyrtok torch path + band_energy", energy_torch, True),
        ("build + energy", "pyrtok fused (energy in-kernel)", energy_fused, False),
    ]
    if compile_torch:
        compiled_build = torch.compile(
            lambda t: pyrtok.laplacian_pyramid(t, LEVELS), fullgraph=True
        )
        compiled_recon = torch.compile(lambda p: pyrtok.reconstruct(p), fullgraph=True)
        candidates.insert(
            2, ("build", "pyrtok torch path (compiled)", lambda: compiled_build(x), True)
        )
        candidates.insert(
            6,
            (
                "reconstruct",
                "pyrtok torch path (compiled)",
                lambda: compiled_recon(reference),
                True,
            ),
        )
    elif "torch.compile rows skipped" not in clock.notes:
        clock.notes.append("torch.compile rows skipped")

    rows = []
    for op, impl, fn, on_torch_path in candidates:
        moved = {"build": build_bytes, "reconstruct": recon_bytes}.get(op, build_bytes + energy_out)
        with torch_path() if on_torch_path else contextlib.nullcontext():
            if clock.cuda:
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            try:
                ms = clock.median_ms(fn)
            except Exception as error:  # an anchor that cannot run (e.g. kornia in bf16)
                clock.notes.append(f"{op} / {impl} / {dtype_name}: not run ({error!s:.120})")
                continue
            peak = float(torch.cuda.max_memory_allocated()) if clock.cuda else float("nan")
            rows.append(Row(op, dtype_name, impl, ms, moved, peak))
            if impl == "pyrtok fused":  # kornia copies from the host: not capturable
                graphed = clock.graphed(fn)
                if graphed is not None:
                    rows.append(
                        Row(op, dtype_name, impl + " (CUDA graph)", clock.median_ms(graphed), moved)
                    )
    return rows, notes


def _ratio(rows: list[Row], row: Row, impl_prefix: str) -> str:
    anchors = [
        r
        for r in rows
        if r.op == row.op and r.dtype == row.dtype and r.impl.startswith(impl_prefix)
    ]
    if not anchors or "CUDA graph" in anchors[0].impl:
        return "-"
    return _fmt(anchors[0].ms / row.ms) + "x"


def gpu_table(rows: list[Row], bandwidth: float) -> str:
    header = ["op", "dtype", "implementation", "median ms", "GB/s (minimal bytes)"]
    header += ["% of copy BW", "vs kornia", "vs compiled torch", "peak GB"]
    body = []
    for row in rows:
        rate = row.bytes_moved / (row.ms * 1e-3)
        body.append(
            [
                row.op,
                row.dtype,
                row.impl,
                _fmt(row.ms, 3),
                _fmt(rate / 1e9, 0),
                _fmt(100 * rate / bandwidth, 1),
                _ratio(rows, row, "kornia"),
                _ratio(rows, row, "pyrtok torch path (compiled)"),
                _fmt(row.peak_bytes / 1e9, 2),
            ]
        )
    return _table(header, body)


def gpu_scaling(clock: Clock, bandwidth: float, batches: list[int], sides: list[int]) -> str:
    """Fused build and reconstruct, eager vs CUDA-graph replay, against the bytes floor."""
    body = []
    for batch in batches:
        for side in sides:
            body += _scaling_rows(clock, bandwidth, (batch, 3, side, side))
    header = ["input (fp32)", "op", "floor ms", "eager ms", "graph ms (per call)"]
    header += ["% of floor (eager)", "% of floor (best)", "dominated by"]
    return _table(header, body)


def _scaling_rows(clock: Clock, bandwidth: float, shape: tuple[int, ...]) -> list[list[str]]:
    """Rows of :func:`gpu_scaling` for one shape. Inputs rotate among copies that together
    exceed twice the L2 cache, so small shapes are not timed from the cache."""
    import torch

    import pyrtok

    l2 = torch.cuda.get_device_properties(clock.device).L2_cache_size if clock.cuda else 2**20
    copies = max(1, min(256, math.ceil(2 * l2 / (4 * math.prod(shape)))))
    xs = [torch.rand(shape, device=clock.device) for _ in range(copies)]
    with torch_path():
        pyramids = [pyrtok.laplacian_pyramid(x, LEVELS) for x in xs]
    floor_ms = 1e3 * 4 * (math.prod(shape) + pyramid_elements(shape)) / bandwidth
    cursor = iter(range(10**12))
    ops: list[tuple[str, Callable[[], Any], Callable[[], Any]]] = [
        (
            "build",
            lambda: pyrtok.laplacian_pyramid(xs[next(cursor) % copies], LEVELS),
            lambda: [pyrtok.laplacian_pyramid(x, LEVELS) for x in xs],
        ),
        (
            "reconstruct",
            lambda: pyrtok.reconstruct(pyramids[next(cursor) % copies]),
            lambda: [pyrtok.reconstruct(p) for p in pyramids],
        ),
    ]
    rows = []
    for op, one, everything in ops:
        eager = clock.median_ms(one)
        graphed = clock.graphed(everything)
        graph_ms = clock.median_ms(graphed) / copies if graphed is not None else float("nan")
        best = eager if graph_ms != graph_ms else min(eager, graph_ms)
        launch_bound = graph_ms == graph_ms and graph_ms < 0.8 * eager
        rows.append(
            [
                "x".join(map(str, shape)),
                op,
                _fmt(floor_ms, 4),
                _fmt(eager, 4),
                _fmt(graph_ms, 4),
                _fmt(100 * floor_ms / eager, 1),
                _fmt(100 * floor_ms / best, 1),
                "-" if graphed is None else ("launches" if launch_bound else "bytes"),
            ]
        )
    return rows


def gpu_sweep(clock: Clock, shape: tuple[int, ...]) -> str:
    """Time the fused level steps and expands with several tile shapes (for tuning)."""
    import torch

    from pyrtok.pyramid.triton import launch
    from pyrtok.pyramid.triton.launch import Tile

    taps = (0.0625, 0.25, 0.375)
    x = torch.rand(shape, device=clock.device).reshape(-1, shape[-2], shape[-1])
    moved = 4 * (math.prod(shape) + pyramid_elements(shape))
    body = []
    tiles = [
        Tile(c, r, w)
        for c in (64, 128, 256)
        for r in (8, 16, 32)
        for w in (2, 4, 8)
        if c // 32 >= w
    ]
    if not clock.cuda:
        tiles = tiles[:2]

    for tile in tiles:

        def build(tile: Tile = tile) -> Any:
            g, out = x, []
            for _ in range(LEVELS - 1):
                band, g = launch.level_step(g, taps, tile=tile)
                out.append(band)
            return out, g

        bands, residual = build()

        def recon(tile: Tile = tile, bands: Any = bands, residual: Any = residual) -> Any:
            image = residual
            for band in reversed(bands):
                image = launch.expand(
                    image, (band.shape[-2], band.shape[-1]), taps, band, tile=tile
                )
            return image

        build_ms, recon_ms = clock.median_ms(build), clock.median_ms(recon)
        body.append(
            [
                f"cols {tile.cols}, rows {tile.rows}, warps {tile.warps}",
                _fmt(build_ms, 3),
                _fmt(moved / (build_ms * 1e-3) / 1e9, 0),
                _fmt(recon_ms, 3),
                _fmt(moved / (recon_ms * 1e-3) / 1e9, 0),
            ]
        )
    return _table(["tile", "build ms", "build GB/s", "reconstruct ms", "reconstruct GB/s"], body)


def run_gpu(args: argparse.Namespace) -> str:
    import torch

    interpret = args.triton_interpret
    device = torch.device("cpu" if interpret else "cuda")
    if not interpret and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device here")
    quick = args.quick or interpret
    clock = Clock(
        device, warmup=1 if interpret else args.warmup, repeats=2 if interpret else args.repeats
    )
    bandwidth = copy_bandwidth(clock, quick)
    shape = (
        (2, 3, 24, 24)
        if interpret
        else ((8, 3, 256, 256) if args.quick else (args.batch, 3, args.size, args.size))
    )
    failures: list[str] = []
    rows: list[Row] = []
    notes: list[str] = []
    for dtype_name in ("fp32", "bf16"):
        more_rows, more_notes = gpu_compare(
            clock, shape, dtype_name, not (interpret or args.skip_compile), failures
        )
        rows += more_rows
        notes += more_notes
    name = torch.cuda.get_device_name(device) if clock.cuda else "CPU (Triton interpreter)"
    out = []
    if interpret:
        out.append(
            "**Triton-interpreter smoke run on the CPU: these timings are NOT GPU numbers and "
            "measure nothing about the kernels' speed.**\n"
        )
    out += [
        f"{name}, torch {torch.__version__}; copy bandwidth measured in this run: "
        f"{bandwidth / 1e12:.3f} TB/s (read + write)",
        "",
        f"{'x'.join(map(str, shape))}, {LEVELS} levels; median of {clock.repeats} after "
        f"{clock.warmup} warm-up; minimal bytes = read input once + write every level once "
        "(reconstruction: read every level once + write the image once)",
        "",
        gpu_table(rows, bandwidth),
        "",
        "Correctness (fused kernels vs the torch path):",
        *notes,
        *[f"- note: {n}" for n in clock.notes],
    ]
    if not args.skip_scaling:
        batches, sides = (
            ([1, 2], [16, 24])
            if interpret
            else (([1, 8], [224]) if args.quick else ([1, 8, 64], [224, 512, 1024]))
        )
        out += [
            "",
            "Scaling (fused kernels, float32):",
            "",
            gpu_scaling(clock, bandwidth, batches, sides),
        ]
    if args.sweep:
        out += [
            "",
            f"Tile sweep at {'x'.join(map(str, shape))} float32:",
            "",
            gpu_sweep(clock, shape),
        ]
    if failures:
        out += ["", "CORRECTNESS FAILURES:", *failures]
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--batch", type=int, default=None, help="default 8 (CPU) / 64 (CUDA)")
    parser.add_argument("--size", type=int, default=512, help="image side")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs (median reported)")
    parser.add_argument("--warmup", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    parser.add_argument("--triton-interpret", action="store_true", help="GPU suite on the CPU")
    parser.add_argument("--skip-compile", action="store_true", help="no torch.compile rows")
    parser.add_argument("--skip-scaling", action="store_true", help="no scaling table")
    parser.add_argument("--sweep", action="store_true", help="also sweep the kernels' tiles")
    parser.add_argument(
        "--omp-passive",
        action="store_true",
        help="set OMP_WAIT_POLICY=PASSIVE before torch loads (idle OpenMP threads sleep)",
    )
    args = parser.parse_args(argv)
    gpu = args.device == "cuda" or args.triton_interpret
    if args.batch is None:
        args.batch = (2 if args.quick else 64) if gpu else (1 if args.quick else 8)
    if args.quick and not gpu:
        args.size = min(args.size, 64)
    if args.repeats is None:
        args.repeats = (5 if args.quick else 50) if gpu else (3 if args.quick else 15)
    if args.warmup is None:
        args.warmup = 5 if gpu else 2
    if args.triton_interpret:
        os.environ["TRITON_INTERPRET"] = "1"  # before Triton is first imported
    if args.omp_passive:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"  # before torch (and its OpenMP) first loads
    report = run_gpu(args) if gpu else run_cpu(args)
    print(report)
    return 1 if "CORRECTNESS FAILURES" in report else 0


if __name__ == "__main__":
    sys.exit(main())
